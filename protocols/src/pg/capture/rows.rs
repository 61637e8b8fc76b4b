//! Reading the text rows capture gets back; a row of the wrong shape is an error, never a guess.

use super::{CaptureError, QueryResult, unexpected};
use crate::pg::snapshot::AdvisoryKey;

pub(super) type Row = Vec<Option<String>>;

pub(super) fn rows_of<'a>(
    results: &'a [QueryResult],
    index: usize,
    what: &str,
    width: usize,
) -> Result<&'a [Row], CaptureError> {
    let result = results
        .get(index)
        .ok_or_else(|| unexpected(format!("no result for {what}")))?;
    if let Some(row) = result.rows.iter().find(|r| r.len() != width) {
        return Err(unexpected(format!(
            "{what}: row has {} columns, expected {width}",
            row.len()
        )));
    }
    Ok(&result.rows)
}

pub(super) fn text<'a>(row: &'a Row, i: usize, what: &str) -> Result<&'a str, CaptureError> {
    row.get(i)
        .and_then(|c| c.as_deref())
        .ok_or_else(|| unexpected(format!("{what}: column {i} is NULL")))
}

pub(super) fn opt_text(row: &Row, i: usize) -> Option<&str> {
    row.get(i).and_then(|c| c.as_deref())
}

pub(super) fn num<T: std::str::FromStr>(
    row: &Row,
    i: usize,
    what: &str,
) -> Result<T, CaptureError> {
    let s = text(row, i, what)?;
    s.parse()
        .map_err(|_| unexpected(format!("{what}: column {i} is not a number: {s:?}")))
}

pub(super) fn boolean(row: &Row, i: usize, what: &str) -> Result<bool, CaptureError> {
    match text(row, i, what)? {
        "t" => Ok(true),
        "f" => Ok(false),
        other => Err(unexpected(format!(
            "{what}: column {i} is not a boolean: {other:?}"
        ))),
    }
}

/// Parses PostgreSQL's text output of a one-dimensional array (`{a,"b c",NULL}`); NULL
/// elements are skipped.
pub(super) fn parse_text_array(s: &str) -> Result<Vec<String>, CaptureError> {
    let inner = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| unexpected(format!("not an array: {s:?}")))?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => item.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err(unexpected(format!("unterminated array element: {s:?}"))),
                }
            }
            out.push(item);
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            if item != "NULL" {
                out.push(item);
            }
        }
        match chars.next() {
            None | Some(',') => {}
            Some(c) => return Err(unexpected(format!("bad array separator {c:?} in {s:?}"))),
        }
    }
    Ok(out)
}

/// Advisory lock key from pg_locks: objsubid 1 = one bigint split into classid (high 32 bits)
/// and objid (low 32 bits); objsubid 2 = two int4 keys stored as oids.
pub(super) fn advisory_key(classid: u32, objid: u32, objsubid: u16) -> Option<AdvisoryKey> {
    match objsubid {
        1 => Some(AdvisoryKey::Single(
            ((u64::from(classid) << 32) | u64::from(objid)) as i64,
        )),
        2 => Some(AdvisoryKey::Pair(classid as i32, objid as i32)),
        _ => None,
    }
}
