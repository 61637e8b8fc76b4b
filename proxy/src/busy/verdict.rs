//! What an answer to the busy query says against a drain, in the words of the blocker
//! operators see. Everything the server or its clients chose (names, query text, values, error
//! messages) is clipped first.

use crate::config::{BusyQuery, Protocol};
use crate::names::clip;

use super::Answer;

/// How many of the connections at work a blocker names.
const NAMED: usize = 3;

/// None: nothing against a drain. `torpor` holds the backends of torpor's sessions now (some
/// may have attached since the query was sent).
pub(super) fn judge(
    query: &BusyQuery,
    protocol: Protocol,
    answer: Answer,
    torpor: &[i32],
) -> Option<String> {
    match query {
        BusyQuery::Off => None,
        BusyQuery::Default => at_work(protocol, answer, torpor),
        BusyQuery::Custom(sql) => {
            let value = answer.rows.first()?.first()?.as_deref()?;
            match truth(value) {
                Some(false) => None,
                Some(true) => Some(format!("busy_query \"{}\" returned {value}", label(sql))),
                None => Some(format!(
                    "busy_query \"{}\" returned {value:?}, neither a truth value nor a number",
                    label(sql)
                )),
            }
        }
    }
}

/// The blocker for a busy query that could not be asked or failed.
pub(super) fn failed(query: &BusyQuery, error: &str) -> String {
    match query {
        BusyQuery::Custom(sql) => format!("busy_query \"{}\" failed: {}", label(sql), clip(error)),
        _ => format!("busy_query failed: {}", clip(error)),
    }
}

/// The default query's rows are the other connections at work: (id, who, state, query).
fn at_work(protocol: Protocol, answer: Answer, torpor: &[i32]) -> Option<String> {
    let unseen = answer.total - answer.rows.len();
    let others: Vec<Vec<Option<String>>> = answer
        .rows
        .into_iter()
        .filter(|row| !id_of(protocol, row).is_some_and(|id| torpor.contains(&id)))
        .collect();
    let n = others.len() + unseen;
    if n == 0 {
        return None;
    }
    let word = match protocol {
        Protocol::Postgres => "pid",
        Protocol::Mysql => "thread",
    };
    let mut named: Vec<String> = others
        .iter()
        .take(NAMED)
        .map(|row| describe(word, row))
        .collect();
    if n > named.len() {
        named.push(format!("and {} more", n - named.len()));
    }
    Some(format!(
        "busy_query: {n} other connection(s) at work: {}",
        named.join(", ")
    ))
}

/// A PostgreSQL pid or a MySQL thread id, as the registry keeps it.
fn id_of(protocol: Protocol, row: &[Option<String>]) -> Option<i32> {
    let text = row.first()?.as_deref()?;
    match protocol {
        Protocol::Postgres => text.parse().ok(),
        // Thread ids are unsigned; the registry keeps them bit for bit.
        Protocol::Mysql => text.parse::<u32>().ok().map(|id| id as i32),
    }
}

/// `pid 4711 (psql, active: SELECT pg_sleep(5))`
fn describe(word: &str, row: &[Option<String>]) -> String {
    let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let (id, who, state, query) = (cell(0), cell(1), cell(2), cell(3));
    let state = if state.is_empty() {
        "state unknown".to_string()
    } else {
        state
    };
    let mut what = state;
    if !query.is_empty() {
        what = format!("{what}: {}", one_line(&query));
    }
    if who.is_empty() {
        format!("{word} {id} ({what})")
    } else {
        format!("{word} {id} ({who}, {what})")
    }
}

/// true, false, or None when `value` is neither a truth value nor a number.
fn truth(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "on" | "yes" => Some(true),
        "f" | "false" | "off" | "no" => Some(false),
        v => v.parse::<f64>().ok().map(|n| n != 0.0),
    }
}

/// The statement as a blocker names it: on one line, clipped.
fn label(sql: &str) -> String {
    clip(&one_line(sql)).to_string()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rows: &[&[Option<&str>]]) -> Answer {
        let mut a = Answer::default();
        for row in rows {
            a.push(row.iter().map(|v| v.map(str::as_bytes)));
        }
        a
    }

    fn custom(sql: &str, rows: &[&[Option<&str>]]) -> Option<String> {
        judge(
            &BusyQuery::Custom(sql.into()),
            Protocol::Postgres,
            answer(rows),
            &[],
        )
    }

    #[test]
    fn a_custom_query_refuses_on_true_or_non_zero() {
        let q = "SELECT count(*) > 0 FROM jobs";
        for yes in ["t", "true", "1", "42", "-1", "0.5", "TRUE"] {
            assert_eq!(
                custom(q, &[&[Some(yes)]]),
                Some(format!("busy_query \"{q}\" returned {yes}")),
                "{yes}"
            );
        }
        for no in ["f", "false", "0", "0.0", "off"] {
            assert_eq!(custom(q, &[&[Some(no)]]), None, "{no}");
        }
        assert_eq!(custom(q, &[]), None, "no row");
        assert_eq!(custom(q, &[&[None]]), None, "NULL");
        // Only the first row counts.
        assert_eq!(custom(q, &[&[Some("0")], &[Some("1")]]), None);
        let odd = custom(q, &[&[Some("busy")]]).expect("refused");
        assert!(odd.contains("neither a truth value nor a number"), "{odd}");
    }

    #[test]
    fn a_long_statement_is_named_by_its_beginning_on_one_line() {
        let q = format!("SELECT\n  count(*) > 0\nFROM {}", "x".repeat(200));
        let why = custom(&q, &[&[Some("1")]]).expect("refused");
        assert!(
            why.starts_with("busy_query \"SELECT count(*) > 0 FROM xxx"),
            "{why}"
        );
        assert!(why.len() < 100, "{why}");
    }

    #[test]
    fn the_default_names_the_other_connections_at_work() {
        let rows: &[&[Option<&str>]] = &[
            &[
                Some("4711"),
                Some("psql"),
                Some("active"),
                Some("SELECT pg_sleep(5)"),
            ],
            // A session of torpor's that attached after the query was sent.
            &[Some("12"), Some("app"), Some("active"), Some("SELECT 1")],
        ];
        assert_eq!(
            judge(&BusyQuery::Default, Protocol::Postgres, answer(rows), &[12]),
            Some(
                "busy_query: 1 other connection(s) at work: pid 4711 (psql, active: SELECT pg_sleep(5))"
                    .into()
            )
        );
        let only_torpor: &[&[Option<&str>]] = &[&[Some("12"), None, Some("active"), None]];
        assert_eq!(
            judge(
                &BusyQuery::Default,
                Protocol::Postgres,
                answer(only_torpor),
                &[12]
            ),
            None
        );
        assert_eq!(
            judge(&BusyQuery::Default, Protocol::Mysql, answer(&[]), &[]),
            None
        );
    }

    #[test]
    fn many_connections_are_counted_and_a_few_named() {
        let rows: Vec<Vec<Option<String>>> = (1..=30)
            .map(|i| vec![Some(i.to_string()), None, None, None])
            .collect();
        let mut a = Answer::default();
        for r in &rows {
            a.push(r.iter().map(|v| v.as_deref().map(str::as_bytes)));
        }
        assert_eq!(a.rows.len(), super::super::KEEP);
        let why = judge(&BusyQuery::Default, Protocol::Mysql, a, &[1]).expect("refused");
        assert_eq!(
            why,
            "busy_query: 29 other connection(s) at work: thread 2 (state unknown), \
             thread 3 (state unknown), thread 4 (state unknown), and 26 more"
        );
    }

    #[test]
    fn what_the_server_or_a_client_chose_is_clipped() {
        let long = "é".repeat(500);
        let rows: &[&[Option<&str>]] = &[&[Some("1"), Some(&long), Some("active"), Some(&long)]];
        let why =
            judge(&BusyQuery::Default, Protocol::Postgres, answer(rows), &[]).expect("refused");
        assert!(why.len() < 250, "{}", why.len());
        let failed = failed(&BusyQuery::Default, &long);
        assert!(failed.len() < 100, "{}", failed.len());
    }
}
