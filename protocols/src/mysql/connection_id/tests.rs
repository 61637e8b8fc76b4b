use rand::{Rng, SeedableRng};

use super::*;

const ID: &str = "CAST(0000000042 AS UNSIGNED)";

fn rw(sql: &str) -> Option<String> {
    rewrite(sql.as_bytes(), 42, true).map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// `sql` with `{}` standing for the id.
fn expect(sql: &str, want: &str) {
    assert_eq!(
        rw(sql).as_deref(),
        Some(want.replace("{}", ID).as_str()),
        "{sql}"
    );
}

#[test]
fn the_filter_finds_the_name_in_any_case() {
    for yes in [
        "SELECT CONNECTION_ID()",
        "select connection_id()",
        "x cOnNeCtIoN_Id",
        "connection_id",
        "'connection_id'",
    ] {
        assert!(mentions(yes.as_bytes()), "{yes}");
    }
    for no in [
        "",
        "_",
        "SELECT 1",
        "connection_i",
        "connectionid()",
        "onnection_id",
        "_id connection _",
    ] {
        assert!(!mentions(no.as_bytes()), "{no}");
        assert_eq!(rw(no), None);
    }
}

#[test]
fn calls_become_the_id_with_the_column_name_the_client_wrote() {
    expect("SELECT CONNECTION_ID()", "SELECT {} AS `CONNECTION_ID()`");
    expect("select connection_id()", "select {} AS `connection_id()`");
    expect(
        "SELECT CONNECTION_ID(), 1",
        "SELECT {} AS `CONNECTION_ID()`, 1",
    );
    expect("SELECT connection_id() AS id", "SELECT {} AS id");
    expect("SELECT connection_id() id", "SELECT {} id");
    expect("SELECT connection_id() `i d`", "SELECT {} `i d`");
    expect("SELECT connection_id() 'id'", "SELECT {} 'id'");
    expect(
        "SELECT 1 WHERE CONNECTION_ID() = 5",
        "SELECT 1 WHERE {} = 5",
    );
    expect(
        "SELECT CONNECTION_ID()+0",
        "SELECT {}+0 AS `CONNECTION_ID()+0`",
    );
    expect(
        "SELECT DISTINCT SQL_NO_CACHE CONNECTION_ID() FROM t ORDER BY CONNECTION_ID()",
        "SELECT DISTINCT SQL_NO_CACHE {} AS `CONNECTION_ID()` FROM t ORDER BY {}",
    );
    expect(
        "SELECT connection_id /* x */ ( ) , 2",
        "SELECT {} AS `connection_id /* x */ ( )` , 2",
    );
    expect(
        "SELECT CONNECTION_ID(/* why */)",
        "SELECT {} AS `CONNECTION_ID(/* why */)`",
    );
    expect(
        "SELECT CONNECTION_ID() -- c\n",
        "SELECT {} AS `CONNECTION_ID()` -- c\n",
    );
    expect("DO CONNECTION_ID()", "DO {}");
    expect(
        "SET @me = CONNECTION_ID(); SELECT @me",
        "SET @me = {}; SELECT @me",
    );
    expect(
        "SELECT CONNECTION_ID() INTO @me",
        "SELECT {} AS `CONNECTION_ID()` INTO @me",
    );
    expect(
        "SELECT CONNECTION_ID() = ?",
        "SELECT {} = ? AS `CONNECTION_ID() = ?`",
    );
}

#[test]
fn items_ending_in_an_operand_after_an_operator_get_an_alias() {
    for item in [
        "CONNECTION_ID() IS NULL",
        "CONNECTION_ID() + t.c",
        "CONNECTION_ID() + 1.5",
        "CONNECTION_ID() = 'x'",
        "CONNECTION_ID() = _latin1'x'",
        "CONNECTION_ID() LIKE \"x\"",
        "CONNECTION_ID() = @v",
        "CONNECTION_ID() DIV 2",
        "CASE WHEN CONNECTION_ID() > 0 THEN 1 END",
        "(CONNECTION_ID())",
        "CONCAT('a', CONNECTION_ID())",
    ] {
        let sql = format!("SELECT {item}, 2");
        let want = format!(
            "SELECT {} AS `{item}`, 2",
            item.replace("CONNECTION_ID()", ID)
        );
        assert_eq!(rw(&sql), Some(want), "{sql}");
    }
    // Whatever might be an alias is left alone: the column is named after the new text.
    for item in [
        "CONNECTION_ID() + 1 x",
        "CASE WHEN CONNECTION_ID() THEN 1 END END",
        "CONNECTION_ID() + INTERVAL 1 DAY",
    ] {
        let sql = format!("SELECT {item}");
        let want = format!("SELECT {}", item.replace("CONNECTION_ID()", ID));
        assert_eq!(rw(&sql), Some(want), "{sql}");
    }
}

#[test]
fn every_select_list_gets_aliases_subqueries_and_returning_too() {
    expect(
        "SELECT * FROM (SELECT CONNECTION_ID()) t",
        "SELECT * FROM (SELECT {} AS `CONNECTION_ID()`) t",
    );
    expect(
        "SELECT (SELECT CONNECTION_ID())",
        "SELECT (SELECT {} AS `CONNECTION_ID()`) AS `(SELECT CONNECTION_ID())`",
    );
    expect(
        "SELECT a FROM t WHERE b IN (SELECT CONNECTION_ID() FROM u)",
        "SELECT a FROM t WHERE b IN (SELECT {} AS `CONNECTION_ID()` FROM u)",
    );
    expect(
        "SELECT CONNECTION_ID() UNION SELECT CONNECTION_ID()",
        "SELECT {} AS `CONNECTION_ID()` UNION SELECT {} AS `CONNECTION_ID()`",
    );
    expect(
        "DELETE FROM t RETURNING CONNECTION_ID(), a",
        "DELETE FROM t RETURNING {} AS `CONNECTION_ID()`, a",
    );
    expect(
        "INSERT INTO t SELECT CONNECTION_ID()",
        "INSERT INTO t SELECT {} AS `CONNECTION_ID()`",
    );
    expect(
        "INSERT INTO t VALUES (CONNECTION_ID())",
        "INSERT INTO t VALUES ({})",
    );
}

#[test]
fn alias_names_are_quoted_and_lose_executable_comment_markers() {
    expect(
        "SELECT CONNECTION_ID() + `a``b`",
        "SELECT {} + `a``b` AS `CONNECTION_ID() + ``a````b```",
    );
    expect(
        "SELECT /*!CONNECTION_ID()*/",
        "SELECT /*!{} AS `CONNECTION_ID()`*/",
    );
    expect(
        "SELECT /*M!100100 CONNECTION_ID() */ , 1",
        "SELECT /*M!100100 {} AS `CONNECTION_ID()` */ , 1",
    );
    expect(
        "SELECT /*!50700 CONNECTION_ID()*/",
        "SELECT /*!50700 {} AS `CONNECTION_ID()`*/",
    );
    // The server's name for this one is `CONNECTION_ID()  + 0`.
    expect(
        "SELECT /*! CONNECTION_ID() */ /*!+ 0 */",
        "SELECT /*! {} */ /*!+ 0 AS `CONNECTION_ID()  + 0` */",
    );
}

#[test]
fn strings_names_comments_and_stored_functions_are_left_alone() {
    for sql in [
        "SELECT 'CONNECTION_ID()'",
        "SELECT \"CONNECTION_ID()\"",
        "SELECT 'it''s CONNECTION_ID()'",
        r"SELECT 'a\' CONNECTION_ID()'",
        "SELECT `CONNECTION_ID()`",
        "SELECT `connection_id`()",
        "SELECT db.connection_id()",
        "SELECT `db`.connection_id()",
        "SELECT my_connection_id()",
        "SELECT connection_id_x()",
        "SELECT connection_id FROM t",
        "SELECT connection_id(1)",
        "SELECT 1 /* CONNECTION_ID() */",
        "SELECT 1 -- CONNECTION_ID()",
        "SELECT 1 # CONNECTION_ID()",
        "SELECT @connection_id, @@connection_id",
        "PREPARE s FROM 'SELECT CONNECTION_ID()'",
    ] {
        assert_eq!(rw(sql), None, "{sql}");
    }
}

#[test]
fn stored_code_and_kill_are_left_alone() {
    for sql in [
        "CREATE VIEW v AS SELECT CONNECTION_ID()",
        "create or replace definer = current_user view v as select connection_id()",
        "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT CONNECTION_ID(); END",
        "CREATE TABLE t (a INT DEFAULT (CONNECTION_ID()))",
        "ALTER EVENT e DO INSERT INTO t VALUES (CONNECTION_ID())",
        "SET STATEMENT max_statement_time = 5 FOR CREATE VIEW v AS SELECT CONNECTION_ID()",
        "/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = CONNECTION_ID() */",
        "KILL CONNECTION_ID()",
        "SELECT 1; KILL QUERY CONNECTION_ID()",
    ] {
        assert_eq!(rw(sql), None, "{sql}");
    }
    // The words only count as code.
    expect(
        "SELECT CONNECTION_ID(), 'CREATE', `alter`",
        "SELECT {} AS `CONNECTION_ID()`, 'CREATE', `alter`",
    );
}

#[test]
fn no_backslash_escapes_changes_where_strings_end() {
    let sql = br"SELECT 'a\', CONNECTION_ID()";
    assert_eq!(rewrite(sql, 42, true), None);
    assert_eq!(
        rewrite(sql, 42, false).as_deref(),
        Some(format!(r"SELECT 'a\', {ID} AS `CONNECTION_ID()`").as_bytes())
    );
    let sql = br"SELECT 'a\'', CONNECTION_ID()";
    assert!(rewrite(sql, 42, true).is_some());
    assert_eq!(rewrite(sql, 42, false), None, "inside 'a\\'', CONN...");
}

#[test]
fn any_bytes_pass_through_unchanged() {
    let mut text = b"SELECT CONNECTION_ID(), '".to_vec();
    text.extend_from_slice(&[0xff, 0xfe, 0x00, b'\'', b' ', 0xc3]);
    let out = rewrite(&text, 7, true).unwrap_or_default();
    assert!(
        out.ends_with(&[0xff, 0xfe, 0x00, b'\'', b' ', 0xc3]),
        "{out:?}"
    );
    assert!(out.starts_with(b"SELECT CAST(0000000007 AS UNSIGNED) AS `CONNECTION_ID()`, '"));
    assert_eq!(
        rw("SELECT CONNECTION_ID()").map(|_| ()),
        rewrite(b"SELECT CONNECTION_ID()", u32::MAX, true).map(|_| ())
    );
    let max = rewrite(b"DO CONNECTION_ID()", u32::MAX, true).unwrap_or_default();
    assert_eq!(max, b"DO CAST(4294967295 AS UNSIGNED)");
}

/// Deep nesting repeats each level's text in its alias: the budget keeps the result linear.
#[test]
fn nesting_stays_linear() {
    let depth = 20_000;
    let sql = format!(
        "SELECT {}CONNECTION_ID(){}",
        "(SELECT ".repeat(depth),
        ")".repeat(depth)
    );
    let out = rewrite(sql.as_bytes(), 42, true).unwrap_or_default();
    assert!(
        out.len() <= 5 * sql.len() + MIN_ALIAS_BUDGET,
        "{}",
        out.len()
    );
    let commas = format!("SELECT {}", ["CONNECTION_ID()"; 50_000].join(","));
    let out = rewrite(commas.as_bytes(), 42, true).unwrap_or_default();
    assert!(out.len() <= 5 * commas.len(), "{}", out.len());
    // A flat list fits the budget: every item keeps its name.
    assert!(out.ends_with(b",CAST(0000000042 AS UNSIGNED) AS `CONNECTION_ID()`"));
}

/// Random text made of SQL's special characters and pieces of a call never panics, and what
/// comes out is the input where there was nothing to do.
#[test]
fn random_bytes() {
    const PIECES: &[&[u8]] = &[
        b"CONNECTION_ID",
        b"connection_id()",
        b"(",
        b")",
        b"'",
        b"\"",
        b"`",
        b"\\",
        b"/*",
        b"*/",
        b"/*!",
        b"/*M!1",
        b"-- ",
        b"#",
        b"\n",
        b" ",
        b",",
        b".",
        b";",
        b"SELECT ",
        b" AS ",
        b"END",
        b"CASE",
        b"+",
        b"?",
        b"@",
        b"FROM",
        b"x",
        b"1",
        b"\xff",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..20_000 {
        let mut text = Vec::new();
        for _ in 0..rng.random_range(0..40) {
            if rng.random_bool(0.2) {
                text.push(rng.random());
            } else {
                text.extend_from_slice(PIECES[rng.random_range(0..PIECES.len())]);
            }
        }
        for backslash in [true, false] {
            if let Some(out) = rewrite(&text, rng.random(), backslash) {
                assert!(out.len() <= 5 * text.len() + MIN_ALIAS_BUDGET);
                assert!(mentions(&text));
            }
        }
    }
}
