//! Temp-table rows: how each column is read at capture so that its value survives exactly, and
//! the INSERT statements that put it back.
//!
//! | column type                         | read as              | written as                  |
//! |-------------------------------------|----------------------|-----------------------------|
//! | integers, DECIMAL, YEAR             | the value            | the number                  |
//! | FLOAT, DOUBLE                       | `CAST(c AS DOUBLE)`  | the number (17 digits)      |
//! | BIT                                 | `c + 0`              | the number                  |
//! | TIMESTAMP                           | `UNIX_TIMESTAMP(c)`  | `FROM_UNIXTIME(n)` (UTC)    |
//! | DATE, DATETIME, TIME, INET4/6, UUID | the value            | `'text'`                    |
//! | CHAR, VARCHAR, TEXT, ENUM, SET, JSON| `HEX(c)`             | `_charset X'..'`            |
//! | BINARY, VARBINARY, BLOB, geometry   | `HEX(c)`             | `X'..'`                     |
//!
//! TIMESTAMP goes through the epoch because its text form depends on time_zone, and in a zone
//! with daylight saving an hour of local times is ambiguous; replay inserts with
//! `time_zone = '+00:00'`.

use super::snapshot::TempTable;
use super::sql::{charset_of, quote_ident};

/// INSERT statements are cut at about this size.
pub const INSERT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    Number,
    Float,
    Bit,
    Timestamp,
    /// ASCII text form: dates, times, INET, UUID.
    Plain,
    /// Character data in this character set.
    Chars(String),
    Bytes,
}

/// From `SHOW FULL COLUMNS` Type and Collation. None: a type we don't know how to copy.
pub fn column_kind(col_type: &str, collation: Option<&str>) -> Option<ColumnKind> {
    let t = col_type.to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or("");
    Some(match base {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal" | "dec"
        | "numeric" | "fixed" | "year" | "bool" | "boolean" => ColumnKind::Number,
        "float" | "double" | "real" => ColumnKind::Float,
        "bit" => ColumnKind::Bit,
        "timestamp" => ColumnKind::Timestamp,
        "date" | "datetime" | "time" | "inet4" | "inet6" | "uuid" => ColumnKind::Plain,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "json" => match collation {
            Some(c) if c != "binary" => ColumnKind::Chars(charset_of(c).to_string()),
            _ => ColumnKind::Bytes,
        },
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => ColumnKind::Bytes,
        _ => return None,
    })
}

/// `` `db`.`t` ``
pub fn table_ref(t: &TempTable) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}

/// The capture SELECT for a table's copied columns.
pub fn select_rows(t: &TempTable, kinds: &[ColumnKind], key: &[String]) -> String {
    let exprs: Vec<String> = t
        .columns
        .iter()
        .zip(kinds)
        .map(|(c, k)| {
            let c = quote_ident(c);
            match k {
                ColumnKind::Number | ColumnKind::Plain => c,
                ColumnKind::Float => format!("CAST({c} AS DOUBLE)"),
                ColumnKind::Bit => format!("{c} + 0"),
                ColumnKind::Timestamp => format!("UNIX_TIMESTAMP({c})"),
                ColumnKind::Chars(_) | ColumnKind::Bytes => format!("HEX({c})"),
            }
        })
        .collect();
    let order = if key.is_empty() {
        String::new()
    } else {
        let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
        format!(" ORDER BY {}", cols.join(", "))
    };
    format!(
        "{}SELECT {} FROM {}{order}",
        super::capture::UNLIMITED,
        exprs.join(", "),
        table_ref(t),
    )
}

fn numeric(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'))
}

fn hex_digits(v: &[u8]) -> bool {
    v.len().is_multiple_of(2) && v.iter().all(u8::is_ascii_hexdigit)
}

fn value_sql(out: &mut String, kind: &ColumnKind, v: Option<&[u8]>) -> Result<(), String> {
    let Some(v) = v else {
        out.push_str("NULL");
        return Ok(());
    };
    // Every accepted form below is ASCII, checked byte by byte, so the pushes are exact.
    let ascii = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let date_time = |v: &[u8]| {
        v.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b':' | b'.' | b'-' | b'+'))
    };
    // Whether the value has the form, the error when not, and what goes around it.
    let (valid, error, before, after): (bool, &str, &[&str], &str) = match kind {
        ColumnKind::Number | ColumnKind::Float | ColumnKind::Bit => (
            numeric(v),
            "a numeric column gave a non-numeric value",
            &[],
            "",
        ),
        ColumnKind::Timestamp => (
            numeric(v),
            "UNIX_TIMESTAMP gave a non-numeric value",
            &["FROM_UNIXTIME("],
            ")",
        ),
        ColumnKind::Plain => (
            date_time(v),
            "a date/time value has unexpected characters",
            &["'"],
            "'",
        ),
        ColumnKind::Chars(cs) => (
            hex_digits(v),
            "HEX() gave non-hex text",
            &["_", cs, " X'"],
            "'",
        ),
        ColumnKind::Bytes => (hex_digits(v), "HEX() gave non-hex text", &["X'"], "'"),
    };
    if !valid {
        return Err(error.into());
    }
    out.extend(before.iter().copied());
    out.push_str(&ascii(v));
    out.push_str(after);
    Ok(())
}

/// Fills `t.inserts` and `t.rows` from the capture SELECT's rows.
pub fn build_inserts(
    t: &mut TempTable,
    kinds: &[ColumnKind],
    rows: &[Vec<Option<Vec<u8>>>],
) -> Result<(), String> {
    let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(c)).collect();
    let head = format!("INSERT INTO {} ({}) VALUES ", table_ref(t), cols.join(", "));
    let mut cur = String::new();
    for row in rows {
        if row.len() != kinds.len() {
            return Err(format!(
                "temporary table {}.{}: row has {} values for {} columns",
                t.schema,
                t.name,
                row.len(),
                kinds.len()
            ));
        }
        if cur.is_empty() {
            cur.push_str(&head);
        } else {
            cur.push_str(", ");
        }
        cur.push('(');
        for (i, (k, v)) in kinds.iter().zip(row).enumerate() {
            if i > 0 {
                cur.push_str(", ");
            }
            value_sql(&mut cur, k, v.as_deref())
                .map_err(|e| format!("temporary table {}.{}: {e}", t.schema, t.name))?;
        }
        cur.push(')');
        t.rows += 1;
        if cur.len() >= INSERT_BYTES {
            t.inserts.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        t.inserts.push(cur);
    }
    Ok(())
}

/// `CREATE TEMPORARY TABLE `t` (...)` → `CREATE TEMPORARY TABLE `db`.`t` (...)`, so replay
/// needs no USE. The name is checked against the one we asked for.
pub fn qualify_create(create: &str, schema: &str, name: &str) -> Option<String> {
    const PREFIX: &str = "CREATE TEMPORARY TABLE ";
    let head = create.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &create[PREFIX.len()..];
    let b = rest.as_bytes();
    // Backquotes, or double quotes when the session's sql_mode has ANSI_QUOTES.
    let (found, after) = if let Some(&q) = b.first().filter(|c| **c == b'`' || **c == b'"') {
        let q = char::from(q);
        let mut v = String::new();
        let mut chars = rest.char_indices().skip(1).peekable();
        let end = loop {
            let (j, c) = chars.next()?;
            if c == q {
                if chars.peek().is_some_and(|(_, n)| *n == q) {
                    chars.next();
                    v.push(q);
                    continue;
                }
                break j + 1;
            }
            v.push(c);
        };
        (v, &rest[end..])
    } else {
        // sql_quote_show_create = OFF prints plain names.
        let end = rest.find([' ', '(']).unwrap_or(rest.len());
        (rest[..end].to_string(), &rest[end..])
    };
    if found != name {
        return None;
    }
    Some(format!(
        "{PREFIX}{}.{}{after}",
        quote_ident(schema),
        quote_ident(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualify() {
        assert_eq!(
            qualify_create("CREATE TEMPORARY TABLE `a``b` (\n x int)", "s", "a`b").as_deref(),
            Some("CREATE TEMPORARY TABLE `s`.`a``b` (\n x int)")
        );
        assert_eq!(
            qualify_create("CREATE TEMPORARY TABLE t (x int)", "s", "t").as_deref(),
            Some("CREATE TEMPORARY TABLE `s`.`t` (x int)")
        );
        assert_eq!(
            qualify_create("CREATE TEMPORARY TABLE \"a\"\"é\" (x int)", "s", "a\"é").as_deref(),
            Some("CREATE TEMPORARY TABLE `s`.`a\"é` (x int)")
        );
        assert_eq!(qualify_create("CREATE TABLE `t` (x int)", "s", "t"), None);
        assert_eq!(
            qualify_create("CREATE TEMPORARY TABLE `u` (x int)", "s", "t"),
            None
        );
    }

    #[test]
    fn kinds_and_values() {
        assert_eq!(
            column_kind("int(11) unsigned", None),
            Some(ColumnKind::Number)
        );
        assert_eq!(
            column_kind("enum('a','b')", Some("latin1_swedish_ci")),
            Some(ColumnKind::Chars("latin1".into()))
        );
        assert_eq!(column_kind("varbinary(3)", None), Some(ColumnKind::Bytes));
        assert_eq!(column_kind("vector(3)", None), None);
        let mut t = TempTable {
            schema: "s".into(),
            name: "t".into(),
            columns: vec!["a".into(), "b".into(), "c".into()],
            ..TempTable::default()
        };
        let kinds = [
            ColumnKind::Number,
            ColumnKind::Chars("utf8mb4".into()),
            ColumnKind::Timestamp,
        ];
        build_inserts(
            &mut t,
            &kinds,
            &[vec![
                Some(b"1".to_vec()),
                Some(b"C3A9".to_vec()),
                Some(b"1.5".to_vec()),
            ]],
        )
        .unwrap();
        assert_eq!(
            t.inserts,
            [
                "INSERT INTO `s`.`t` (`a`, `b`, `c`) VALUES (1, _utf8mb4 X'C3A9', FROM_UNIXTIME(1.5))"
            ]
        );
        assert!(
            build_inserts(
                &mut t,
                &kinds,
                &[vec![Some(b"1; DROP".to_vec()), None, None]]
            )
            .is_err()
        );
    }
}
