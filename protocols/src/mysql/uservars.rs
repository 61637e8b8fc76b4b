//! User variables: reading a value with the type the server keeps for it, and the typed
//! literal that gives it back. Also the text of `PREPARE name FROM @var`, which comes from a
//! user variable.
//!
//! | server type (column of `SELECT @v`) | kept as       | replayed as                          |
//! |-------------------------------------|---------------|--------------------------------------|
//! | NULL                                | Null          | `NULL`                               |
//! | LONGLONG (UNSIGNED flag)            | Int / UInt    | `CAST(n AS SIGNED / UNSIGNED)`       |
//! | NEWDECIMAL                          | Decimal(text) | `CAST('t' AS DECIMAL(65, scale))`    |
//! | DOUBLE                              | Double        | shortest round-trip `{:e}` literal   |
//! | string, CHARSET(@v) = binary        | Binary        | `_binary X'..'`                      |
//! | string, other charset               | Text          | `_cs X'..' COLLATE coll`             |
//!
//! String bytes come from `HEX(@v)`, so they are the variable's own bytes whatever
//! character_set_results converts the plain value to.

use super::capture::{CaptureError, ColumnInfo, cell, text, unexpected};
use super::snapshot::{SqlPrepared, UserValue, UserVar};
use super::sql::{
    PrepareSource, Tok, charset_of, hex, quote_ident, quote_literal, statements, unhex,
};
use super::tracked::TrackedPrepare;

/// MySQL column type codes used here.
mod ty {
    pub(super) const DECIMAL: u8 = 0;
    pub(super) const TINY: u8 = 1;
    pub(super) const SHORT: u8 = 2;
    pub(super) const LONG: u8 = 3;
    pub(super) const FLOAT: u8 = 4;
    pub(super) const DOUBLE: u8 = 5;
    pub(super) const NULL: u8 = 6;
    pub(super) const LONGLONG: u8 = 8;
    pub(super) const INT24: u8 = 9;
    pub(super) const NEWDECIMAL: u8 = 246;
}
const UNSIGNED_FLAG: u16 = 32;

/// Columns `i..i+4` of the user variable batch: `@v, HEX(@v), CHARSET(@v), COLLATION(@v)`.
pub(crate) fn user_value(
    col: &ColumnInfo,
    row: &[Option<Vec<u8>>],
    i: usize,
) -> Result<UserValue, CaptureError> {
    let Some(raw) = opt_text_lossless(row, i)? else {
        return Ok(UserValue::Null);
    };
    let num = |what: &str| {
        std::str::from_utf8(raw)
            .map_err(|_| unexpected(format!("user variable {what}: not UTF-8")))
            .map(str::to_string)
    };
    Ok(match col.column_type {
        ty::TINY | ty::SHORT | ty::LONG | ty::INT24 | ty::LONGLONG => {
            let t = num("integer")?;
            if col.flags & UNSIGNED_FLAG != 0 {
                UserValue::UInt(
                    t.parse()
                        .map_err(|_| unexpected(format!("unsigned value {t:?}")))?,
                )
            } else {
                UserValue::Int(
                    t.parse()
                        .map_err(|_| unexpected(format!("integer value {t:?}")))?,
                )
            }
        }
        ty::DECIMAL | ty::NEWDECIMAL => UserValue::Decimal(num("decimal")?),
        ty::FLOAT | ty::DOUBLE => {
            let t = num("double")?;
            UserValue::Double(
                t.parse()
                    .map_err(|_| unexpected(format!("double value {t:?}")))?,
            )
        }
        ty::NULL => UserValue::Null,
        _ => {
            let hex_text = cell(row, i + 1).ok_or_else(|| unexpected("HEX(@v) is NULL"))?;
            let bytes = unhex(hex_text).ok_or_else(|| unexpected("HEX(@v) is not hex"))?;
            let charset = text(row, i + 2, "CHARSET(@v)")?;
            let collation = text(row, i + 3, "COLLATION(@v)")?;
            if charset == "binary" {
                UserValue::Binary(bytes)
            } else {
                UserValue::Text { bytes, collation }
            }
        }
    })
}

fn opt_text_lossless(row: &[Option<Vec<u8>>], i: usize) -> Result<Option<&[u8]>, CaptureError> {
    if i >= row.len() {
        return Err(unexpected(format!("user variables: missing column {i}")));
    }
    Ok(cell(row, i))
}

/// A typed SQL expression that gives a user variable back its value and type.
pub fn user_value_sql(v: &UserValue) -> String {
    match v {
        UserValue::Null => "NULL".to_string(),
        UserValue::Int(i) => format!("CAST({i} AS SIGNED)"),
        UserValue::UInt(u) => format!("CAST({u} AS UNSIGNED)"),
        UserValue::Decimal(d) => {
            let scale = d.split_once('.').map_or(0, |(_, f)| f.len()).min(38);
            format!("CAST({} AS DECIMAL(65,{scale}))", quote_literal(d))
        }
        // `{:e}` is the shortest text that reads back as the same f64; the exponent makes
        // the server read it as a DOUBLE literal.
        UserValue::Double(f) => format!("{f:e}"),
        UserValue::Text { bytes, collation } => text_literal(bytes, collation),
        UserValue::Binary(b) => format!("_binary X'{}'", hex(b)),
    }
}

fn text_literal(bytes: &[u8], collation: &str) -> String {
    format!(
        "_{} X'{}' COLLATE {}",
        charset_of(collation),
        hex(bytes),
        quote_ident(collation)
    )
}

pub(crate) fn sql_prepared(p: &TrackedPrepare, vars: &[UserVar]) -> Result<SqlPrepared, String> {
    match &p.source {
        PrepareSource::Literal(src) => {
            let toks = statements(src);
            let sql = match toks.as_slice() {
                [one] if one.len() == 1 => match &one[0].tok {
                    Tok::Str(v) => v.clone(),
                    _ => src.clone(),
                },
                _ => src.clone(),
            };
            Ok(SqlPrepared {
                name: p.name.clone(),
                sql,
                schema: p.schema.clone(),
                from: src.clone(),
            })
        }
        PrepareSource::Var(v) => {
            let value = vars
                .iter()
                .find(|u| u.name.eq_ignore_ascii_case(v))
                .map(|u| &u.value);
            let (sql, from) = match value {
                Some(UserValue::Text { bytes, collation }) => (
                    String::from_utf8_lossy(bytes).into_owned(),
                    text_literal(bytes, collation),
                ),
                Some(UserValue::Binary(b)) => (
                    String::from_utf8_lossy(b).into_owned(),
                    format!("_binary X'{}'", hex(b)),
                ),
                _ => {
                    return Err(format!(
                        "prepared statement {}: its text came from @{v}, which no longer holds text",
                        p.name
                    ));
                }
            };
            Ok(SqlPrepared {
                name: p.name.clone(),
                sql,
                schema: p.schema.clone(),
                from,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_value_literals() {
        assert_eq!(user_value_sql(&UserValue::Int(-3)), "CAST(-3 AS SIGNED)");
        assert_eq!(
            user_value_sql(&UserValue::Decimal("-1.50".into())),
            "CAST('-1.50' AS DECIMAL(65,2))"
        );
        assert_eq!(user_value_sql(&UserValue::Double(0.1)), "1e-1");
        assert_eq!(
            user_value_sql(&UserValue::Text {
                bytes: vec![0xe9],
                collation: "latin1_swedish_ci".into()
            }),
            "_latin1 X'E9' COLLATE `latin1_swedish_ci`"
        );
    }
}
