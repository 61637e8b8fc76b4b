//! What each client of the `pool` measure keeps in its session and how it reads it back.
//! PostgreSQL: `application_name`, a SQL prepared statement and, for one client in ten, a
//! 100-row temp table. MySQL: a user variable, a SQL prepared statement and the same temp table.
//! Every value holds the client's number, so another session's state reads as a wrong answer.

use mysql_async::prelude::Queryable;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use crate::idle::Conn;
use crate::soak::my_text;

/// How one statement went.
pub(crate) enum Answer {
    Ok,
    /// A wrong answer, or an error that says the session's own state is gone (or that another
    /// session's is there): what a pooler that does not keep sessions gives.
    Lost(String),
    Failed(String),
}

/// The piece of its state a check reads back.
#[derive(Clone, Copy)]
pub(crate) enum Check {
    Setting,
    Prepared,
    TempTable,
}

impl Check {
    pub(crate) const ALL: [Check; 3] = [Check::Setting, Check::Prepared, Check::TempTable];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Check::Setting => "setting",
            Check::Prepared => "prepared",
            Check::TempTable => "temp table",
        }
    }
}

const TABLE_ROWS: usize = 100;

fn has_table(i: usize) -> bool {
    i.is_multiple_of(10)
}

/// The checks client `i` can run.
pub(crate) fn checks(i: usize) -> &'static [Check] {
    if has_table(i) {
        &Check::ALL
    } else {
        &Check::ALL[..2]
    }
}

/// SQLSTATEs that mean the statement or table this session made is not on this server
/// connection, or that another session's statement is.
const PG_STATE_GONE: [SqlState; 3] = [
    SqlState::INVALID_SQL_STATEMENT_NAME,
    SqlState::UNDEFINED_TABLE,
    SqlState::DUPLICATE_PSTATEMENT,
];

/// ER_UNKNOWN_STMT_HANDLER, ER_NO_SUCH_TABLE.
const MY_STATE_GONE: [u16; 2] = [1243, 1146];

fn setup_sql(conn: &Conn, i: usize) -> Vec<String> {
    let mut sql = match conn {
        Conn::Pg(_) => vec![
            format!("SET application_name = 'c{i}'"),
            format!("PREPARE q AS SELECT $1::int + {i}"),
        ],
        Conn::My(_) => vec![
            format!("SET @v = {i}"),
            format!("PREPARE q FROM 'SELECT ? + {i}'"),
        ],
    };
    if has_table(i) {
        match conn {
            Conn::Pg(_) => sql.push(format!(
                "CREATE TEMP TABLE t{i} AS SELECT g FROM generate_series(1, {TABLE_ROWS}) g"
            )),
            Conn::My(_) => {
                sql.push(format!("CREATE TEMPORARY TABLE t{i} (n INT)"));
                let rows: Vec<String> = (1..=TABLE_ROWS).map(|n| format!("({n})")).collect();
                sql.push(format!("INSERT INTO t{i} VALUES {}", rows.join(",")));
            }
        }
    }
    sql
}

/// Client `i` takes its state. A statement that failed outright ends it; one that met another
/// session's state (PgBouncer) is reported and the rest still run.
pub(crate) async fn take(conn: &mut Conn, i: usize) -> Answer {
    let mut outcome = Answer::Ok;
    for sql in setup_sql(conn, i) {
        match first_value(conn, &sql).await {
            Ok(_) => {}
            Err(Answer::Lost(e)) => outcome = Answer::Lost(e),
            Err(other) => return other,
        }
    }
    outcome
}

/// Reads one piece of client `i`'s state back.
pub(crate) async fn check(conn: &mut Conn, i: usize, which: Check) -> Answer {
    let (sql, want) = match (&*conn, which) {
        (Conn::Pg(_), Check::Setting) => ("SHOW application_name".to_string(), format!("c{i}")),
        (Conn::My(_), Check::Setting) => ("SELECT @v".to_string(), i.to_string()),
        (Conn::Pg(_), Check::Prepared) => ("EXECUTE q(1)".to_string(), (i + 1).to_string()),
        // MariaDB takes a literal in USING.
        (Conn::My(_), Check::Prepared) => ("EXECUTE q USING 1".to_string(), (i + 1).to_string()),
        (_, Check::TempTable) => (format!("SELECT count(*) FROM t{i}"), TABLE_ROWS.to_string()),
    };
    match first_value(conn, &sql).await {
        Ok(Some(got)) if got == want => Answer::Ok,
        Ok(_) => Answer::Lost(format!("{}: wrong answer", which.name())),
        Err(a) => a,
    }
}

/// The first column of the first row, as text (None without a row); an error as an [`Answer`].
async fn first_value(conn: &mut Conn, sql: &str) -> Result<Option<String>, Answer> {
    match conn {
        Conn::Pg(c) => match c.simple_query(sql).await {
            Ok(messages) => Ok(messages.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            })),
            Err(e) => Err(pg_answer(&e)),
        },
        Conn::My(c) => match c.query_first::<mysql_async::Row, _>(sql).await {
            Ok(row) => Ok(row.map(|r| my_text(r.as_ref(0)))),
            Err(e) => Err(my_answer(&e)),
        },
    }
}

fn pg_answer(e: &tokio_postgres::Error) -> Answer {
    let Some(db) = e.as_db_error() else {
        return Answer::Failed(e.to_string());
    };
    let text = format!("{} {}", db.code().code(), db.message());
    if PG_STATE_GONE.contains(db.code()) {
        Answer::Lost(text)
    } else {
        Answer::Failed(text)
    }
}

fn my_answer(e: &mysql_async::Error) -> Answer {
    match e {
        mysql_async::Error::Server(s) if MY_STATE_GONE.contains(&s.code) => {
            Answer::Lost(format!("{} {}", s.code, s.message))
        }
        mysql_async::Error::Server(s) => Answer::Failed(format!("{} {}", s.code, s.message)),
        other => Answer::Failed(other.to_string()),
    }
}

/// A failed connect as text: the server's code and message when it sent one (53300 "too many
/// clients", 1040 "Too many connections").
pub(crate) fn describe(e: &anyhow::Error) -> String {
    let answer = if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
        pg_answer(pg)
    } else if let Some(my) = e.downcast_ref::<mysql_async::Error>() {
        my_answer(my)
    } else {
        return format!("{e:#}");
    };
    match answer {
        Answer::Lost(t) | Answer::Failed(t) => t,
        Answer::Ok => String::new(),
    }
}
