//! What the server accepts, read from `information_schema` while it ran (variables with their
//! types, ranges and value lists; character sets; collations), so a `SET` sent while it sleeps
//! can be checked the way the server would check it. A value is accepted only when the check
//! is certain and the server would answer with a plain OK (no warning); anything else is left
//! to the server.

use std::collections::HashMap;

use super::sql::{Assignment, Value};

/// One text row of a catalog query.
pub type Row = Vec<Option<Vec<u8>>>;

/// The queries whose results [`Catalog::from_rows`] reads, in order. The explicit LIMIT keeps a
/// global sql_select_limit from cutting them short.
pub const QUERIES: [&str; 3] = [
    "SELECT LOWER(VARIABLE_NAME), VARIABLE_SCOPE, VARIABLE_TYPE, NUMERIC_MIN_VALUE, \
     NUMERIC_MAX_VALUE, NUMERIC_BLOCK_SIZE, ENUM_VALUE_LIST, READ_ONLY, GLOBAL_VALUE \
     FROM information_schema.SYSTEM_VARIABLES LIMIT 18446744073709551615",
    "SELECT LOWER(CHARACTER_SET_NAME), DEFAULT_COLLATE_NAME \
     FROM information_schema.CHARACTER_SETS LIMIT 18446744073709551615",
    "SELECT LOWER(COLLATION_NAME), CHARACTER_SET_NAME, ID \
     FROM information_schema.COLLATIONS LIMIT 18446744073709551615",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// By lower-case name.
    pub variables: HashMap<String, VarDef>,
    /// Character set (lower case) → its default collation.
    pub charsets: HashMap<String, String>,
    /// Collation (lower case) → its character set; collations that apply to several
    /// character sets (MariaDB's `uca1400_*`) have none and are left out.
    pub collations: HashMap<String, String>,
    /// A handshake's collation id → the collation (lower case), for ids a handshake can carry.
    pub collation_ids: HashMap<u8, String>,
    /// The order in which this server process reports tracked variables in an OK packet
    /// (lower case), or None when it could not be learned. It follows the server's hash of
    /// variable addresses, so it changes from one server start to the next.
    pub tracked_order: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarDef {
    pub scope: String,
    pub kind: String,
    pub min: Option<String>,
    pub max: Option<String>,
    pub block: Option<String>,
    pub values: Vec<String>,
    pub read_only: bool,
    pub global: Option<String>,
}

/// What one accepted assignment does to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Lower-case variable name.
    pub name: String,
    /// SQL literal for the replay's `SET SESSION name = literal`.
    pub literal: String,
    /// The value as the server shows it (in session tracking).
    pub shown: String,
    /// Whether the server reports this change when the variable is tracked: Some(true) for an
    /// assignment to the variable itself, None when torpor does not know.
    pub reported: Option<bool>,
}

/// Variables a parked session may set without the server. Each is plain: any user may set
/// it, a valid value changes nothing else, and MariaDB 10.11 gives no warning for it.
const ALLOWED: &[&str] = &[
    "autocommit",
    "sql_mode",
    "time_zone",
    "character_set_client",
    "character_set_results",
    "tx_isolation",
    "tx_read_only",
    "sql_auto_is_null",
    "foreign_key_checks",
    "unique_checks",
    "sql_safe_updates",
    "sql_quote_show_create",
    "sql_notes",
    "sql_warnings",
    "sql_buffer_result",
    "sql_big_selects",
    "check_constraint_checks",
    "wait_timeout",
    "interactive_timeout",
    "net_read_timeout",
    "net_write_timeout",
    "lock_wait_timeout",
    "innodb_lock_wait_timeout",
    "group_concat_max_len",
    "sql_select_limit",
    "auto_increment_increment",
    "auto_increment_offset",
    "div_precision_increment",
];

/// sql_mode values that stand for several modes: what they expand to is the server's.
const COMBINED_MODES: &[&str] = &[
    "ANSI",
    "DB2",
    "MAXDB",
    "MSSQL",
    "MYSQL323",
    "MYSQL40",
    "ORACLE",
    "POSTGRESQL",
    "TRADITIONAL",
];

/// Character sets a client may not use (their characters are wider than one byte at least).
const NOT_FOR_CLIENTS: &[&str] = &["ucs2", "utf16", "utf16le", "utf32"];

fn text(row: &Row, i: usize) -> Option<String> {
    row.get(i)
        .cloned()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Catalog {
    /// Builds the catalog from the results of [`QUERIES`].
    pub fn from_rows(
        variables: &[Row],
        charsets: &[Row],
        collations: &[Row],
        tracked_order: Option<Vec<String>>,
    ) -> Catalog {
        let mut c = Catalog {
            tracked_order,
            ..Catalog::default()
        };
        for row in variables {
            let Some(name) = text(row, 0) else { continue };
            c.variables.insert(
                name,
                VarDef {
                    scope: text(row, 1).unwrap_or_default(),
                    kind: text(row, 2).unwrap_or_default(),
                    min: text(row, 3),
                    max: text(row, 4),
                    block: text(row, 5),
                    values: text(row, 6)
                        .map(|l| l.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    read_only: text(row, 7).as_deref() != Some("NO"),
                    global: text(row, 8),
                },
            );
        }
        for row in charsets {
            if let (Some(cs), Some(default)) = (text(row, 0), text(row, 1)) {
                c.charsets.insert(cs, default);
            }
        }
        for row in collations {
            if let (Some(coll), Some(cs)) = (text(row, 0), text(row, 1)) {
                if let Some(id) = text(row, 2).and_then(|id| id.parse::<u8>().ok()) {
                    c.collation_ids.insert(id, coll.clone());
                }
                c.collations.insert(coll, cs);
            }
        }
        c
    }

    /// The character set and collation a handshake's collation id names.
    pub fn names_of(&self, id: u8) -> Option<(&str, &str)> {
        let coll = self.collation_ids.get(&id)?;
        Some((self.collations.get(coll)?, coll))
    }

    pub fn global(&self, name: &str) -> Option<&str> {
        self.variables.get(name)?.global.as_deref()
    }

    /// A fresh session of this server has what torpor assumes of one it never saw: autocommit
    /// on, and no sql_mode that changes the status flags or how a query is read.
    pub fn plain_defaults(&self) -> bool {
        let mode = self.global("sql_mode").unwrap_or("");
        self.global("autocommit") == Some("ON")
            && !mode
                .split(',')
                .any(|m| m == "ANSI_QUOTES" || m == "NO_BACKSLASH_ESCAPES")
    }

    /// The variables a fresh session tracks, lower case; None when the session tracking of
    /// this server is beyond what torpor reproduces (every variable, state changes, or
    /// transaction information).
    pub fn tracked(&self) -> Option<Vec<String>> {
        for (name, off) in [
            ("session_track_state_change", "OFF"),
            ("session_track_transaction_info", "OFF"),
        ] {
            if self.variables.contains_key(name) && self.global(name) != Some(off) {
                return None;
            }
        }
        let list = self.global("session_track_system_variables")?;
        let names: Vec<String> = list
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        if names.iter().any(|n| n == "*") {
            return None;
        }
        Some(names)
    }

    /// The catalog entry of a variable a parked session may set.
    fn settable(&self, name: &str) -> Option<&VarDef> {
        if !ALLOWED.contains(&name) {
            return None;
        }
        let def = self.variables.get(name)?;
        (def.scope == "SESSION" && !def.read_only).then_some(def)
    }

    /// `SET name = value` as the server would take it. `utf8_alias`: the session's old_mode is
    /// the server's, so `utf8` means what the global old_mode says.
    pub fn assignment(&self, a: &Assignment, utf8_alias: bool) -> Option<Change> {
        let def = self.settable(&a.name)?;
        let (literal, shown) = match a.name.as_str() {
            "sql_mode" => {
                let mode = self.sql_mode(def, &a.value)?;
                (quote(&mode), mode)
            }
            "time_zone" => {
                let tz = match &a.value {
                    Value::Text(t) => time_zone(t)?,
                    Value::Word(w) if w.eq_ignore_ascii_case("SYSTEM") => "SYSTEM".to_string(),
                    _ => return None,
                };
                (quote(&tz), tz)
            }
            "character_set_client" | "character_set_results" => {
                let cs = match &a.value {
                    Value::Word(w) if w.eq_ignore_ascii_case("NULL") => {
                        if a.name == "character_set_client" {
                            return None;
                        }
                        return Some(Change {
                            name: a.name.clone(),
                            literal: "NULL".into(),
                            shown: String::new(),
                            reported: Some(true),
                        });
                    }
                    Value::Word(w) | Value::Text(w) => self.charset(w, utf8_alias)?,
                    Value::Number(_) => return None,
                };
                if a.name == "character_set_client" && NOT_FOR_CLIENTS.contains(&cs.as_str()) {
                    return None;
                }
                (quote(&cs), cs)
            }
            _ => match def.kind.as_str() {
                "BOOLEAN" => {
                    let on = boolean(&a.value)?;
                    let shown = if on { "ON" } else { "OFF" };
                    (quote(shown), shown.to_string())
                }
                "ENUM" if !def.values.is_empty() => {
                    let v = match &a.value {
                        Value::Word(w) | Value::Text(w) => def
                            .values
                            .iter()
                            .find(|v| v.eq_ignore_ascii_case(w))?
                            .clone(),
                        Value::Number(_) => return None,
                    };
                    (quote(&v), v)
                }
                "INT" | "INT UNSIGNED" | "BIGINT" | "BIGINT UNSIGNED" => {
                    let Value::Number(n) = &a.value else {
                        return None;
                    };
                    let v = integer(def, n)?;
                    (v.to_string(), v.to_string())
                }
                _ => return None,
            },
        };
        Some(Change {
            name: a.name.clone(),
            literal,
            shown,
            reported: Some(true),
        })
    }

    /// `SET NAMES charset [COLLATE collation]`: the three character sets the server reports,
    /// then the connection collation.
    pub fn names(
        &self,
        charset: &str,
        collation: Option<&str>,
        utf8_alias: bool,
    ) -> Option<Vec<Change>> {
        let cs = self.charset(charset, utf8_alias)?;
        if NOT_FOR_CLIENTS.contains(&cs.as_str()) {
            return None;
        }
        let coll = match collation {
            Some(c) => {
                let c = c.to_ascii_lowercase();
                (self.collations.get(&c)? == &cs).then_some(c)?
            }
            None => {
                // From 11.2 a server may map character sets to other default collations.
                if self
                    .global("character_set_collations")
                    .is_some_and(|v| !v.is_empty())
                {
                    return None;
                }
                self.charsets.get(&cs)?.clone()
            }
        };
        let set = |name: &str| Change {
            name: name.to_string(),
            literal: quote(&cs),
            shown: cs.clone(),
            reported: Some(true),
        };
        Some(vec![
            set("character_set_client"),
            set("character_set_results"),
            set("character_set_connection"),
            Change {
                name: "collation_connection".into(),
                literal: quote(&coll),
                shown: coll.clone(),
                reported: None,
            },
        ])
    }

    /// `SET SESSION TRANSACTION ...`.
    pub fn transaction(
        &self,
        isolation: Option<&str>,
        read_only: Option<bool>,
    ) -> Option<Vec<Change>> {
        let mut out = Vec::new();
        if let Some(level) = isolation {
            let def = self.settable("tx_isolation")?;
            let level = def.values.iter().find(|v| v.as_str() == level)?;
            out.push(Change {
                name: "tx_isolation".into(),
                literal: quote(level),
                shown: level.clone(),
                reported: None,
            });
        }
        if let Some(ro) = read_only {
            self.settable("tx_read_only")?;
            let shown = if ro { "ON" } else { "OFF" };
            out.push(Change {
                name: "tx_read_only".into(),
                literal: quote(shown),
                shown: shown.into(),
                reported: None,
            });
        }
        Some(out)
    }

    /// A character set's name as the server reports it.
    fn charset(&self, name: &str, utf8_alias: bool) -> Option<String> {
        let mut cs = name.to_ascii_lowercase();
        if cs == "utf8" {
            let mb3 = self
                .global("old_mode")
                .is_some_and(|m| m.split(',').any(|f| f == "UTF8_IS_UTF8MB3"));
            if !(utf8_alias && mb3) {
                return None;
            }
            cs = "utf8mb3".into();
        }
        self.charsets.contains_key(&cs).then_some(cs)
    }

    /// The canonical sql_mode for a list of single modes: in the server's order, deduplicated.
    fn sql_mode(&self, def: &VarDef, v: &Value) -> Option<String> {
        let list = match v {
            Value::Text(t) | Value::Word(t) => t,
            Value::Number(_) => return None,
        };
        if list.is_empty() {
            return Some(String::new());
        }
        let mut set = vec![false; def.values.len()];
        for m in list.split(',') {
            let i = def.values.iter().position(|v| v.eq_ignore_ascii_case(m))?;
            if COMBINED_MODES.contains(&def.values[i].as_str()) {
                return None;
            }
            set[i] = true;
        }
        let modes: Vec<&str> = def
            .values
            .iter()
            .zip(set)
            .filter(|(_, on)| *on)
            .map(|(v, _)| v.as_str())
            .collect();
        Some(modes.join(","))
    }
}

/// ON/OFF, TRUE/FALSE and 0/1 as a boolean variable takes them.
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Number(n) if n == "0" => Some(false),
        Value::Number(n) if n == "1" => Some(true),
        Value::Word(w) if w.eq_ignore_ascii_case("TRUE") => Some(true),
        Value::Word(w) if w.eq_ignore_ascii_case("FALSE") => Some(false),
        Value::Word(w) | Value::Text(w) if w.eq_ignore_ascii_case("ON") => Some(true),
        Value::Word(w) | Value::Text(w) if w.eq_ignore_ascii_case("OFF") => Some(false),
        _ => None,
    }
}

/// A number within the variable's range and on its block size: anything else the server
/// would clamp or round with a warning.
fn integer(def: &VarDef, digits: &str) -> Option<u64> {
    let v: u64 = digits.parse().ok()?;
    let min: i128 = def.min.as_deref()?.parse().ok()?;
    let max: i128 = def.max.as_deref()?.parse().ok()?;
    if !(min..=max).contains(&i128::from(v)) {
        return None;
    }
    let block: u64 = def.block.as_deref().unwrap_or("1").parse().ok()?;
    (block <= 1 || v.is_multiple_of(block)).then_some(v)
}

/// A `+HH:MM` / `-HH:MM` offset as the server takes and prints it (from -12:59 to +13:00);
/// `SYSTEM` in any case. Named zones need the server's time zone tables.
fn time_zone(v: &str) -> Option<String> {
    if v.eq_ignore_ascii_case("SYSTEM") {
        return Some("SYSTEM".into());
    }
    let (negative, rest) = match v.as_bytes().first()? {
        b'+' => (false, &v[1..]),
        b'-' => (true, &v[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let digits = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h * 60 + m;
    let offset = if negative { -minutes } else { minutes };
    if m > 59 || !(-(12 * 60 + 59)..=13 * 60).contains(&offset) {
        return None;
    }
    let sign = if offset < 0 { '-' } else { '+' };
    Some(format!("{sign}{:02}:{:02}", h, m))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn row(cols: &[Option<&str>]) -> Row {
        cols.iter()
            .map(|c| c.map(|s| s.as_bytes().to_vec()))
            .collect()
    }

    pub(crate) fn catalog() -> Catalog {
        let var = |name, kind, min, max, list, global| {
            row(&[
                Some(name),
                Some("SESSION"),
                Some(kind),
                min,
                max,
                Some("1"),
                list,
                Some("NO"),
                Some(global),
            ])
        };
        let vars = vec![
            var("autocommit", "BOOLEAN", None, None, Some("OFF,ON"), "ON"),
            var(
                "sql_mode",
                "SET",
                None,
                None,
                Some("REAL_AS_FLOAT,ANSI_QUOTES,ANSI,NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES"),
                "STRICT_TRANS_TABLES",
            ),
            var("time_zone", "VARCHAR", None, None, None, "SYSTEM"),
            var("character_set_client", "ENUM", None, None, None, "latin1"),
            var("character_set_results", "ENUM", None, None, None, "latin1"),
            var(
                "tx_isolation",
                "ENUM",
                None,
                None,
                Some("READ-UNCOMMITTED,READ-COMMITTED,REPEATABLE-READ,SERIALIZABLE"),
                "REPEATABLE-READ",
            ),
            var("tx_read_only", "BOOLEAN", None, None, Some("OFF,ON"), "OFF"),
            var(
                "wait_timeout",
                "BIGINT UNSIGNED",
                Some("1"),
                Some("31536000"),
                None,
                "28800",
            ),
            var(
                "old_mode",
                "SET",
                None,
                None,
                Some("UTF8_IS_UTF8MB3"),
                "UTF8_IS_UTF8MB3",
            ),
            var(
                "session_track_system_variables",
                "VARCHAR",
                None,
                None,
                None,
                "autocommit,character_set_client,character_set_connection,character_set_results,time_zone",
            ),
            var(
                "session_track_state_change",
                "BOOLEAN",
                None,
                None,
                None,
                "OFF",
            ),
            row(&[
                Some("sql_log_bin"),
                Some("SESSION"),
                Some("BOOLEAN"),
                None,
                None,
                None,
                None,
                Some("NO"),
                Some("ON"),
            ]),
        ];
        let charsets = vec![
            row(&[Some("utf8mb4"), Some("utf8mb4_general_ci")]),
            row(&[Some("utf8mb3"), Some("utf8mb3_general_ci")]),
            row(&[Some("latin1"), Some("latin1_swedish_ci")]),
            row(&[Some("ucs2"), Some("ucs2_general_ci")]),
        ];
        let collations = vec![
            row(&[Some("utf8mb4_general_ci"), Some("utf8mb4"), Some("45")]),
            row(&[Some("utf8mb4_bin"), Some("utf8mb4"), Some("2047")]),
            row(&[Some("latin1_bin"), Some("latin1")]),
            row(&[Some("uca1400_ai_ci"), None]),
        ];
        Catalog::from_rows(&vars, &charsets, &collations, None)
    }

    fn assign(name: &str, value: Value) -> Assignment {
        Assignment {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn names_a_handshake_collation_id() {
        let c = catalog();
        assert_eq!(c.names_of(45), Some(("utf8mb4", "utf8mb4_general_ci")));
        // Past what a handshake's byte carries, or not in the catalog.
        assert_eq!(c.names_of(255), None);
        assert_eq!(c.collation_ids.len(), 1);
    }

    #[test]
    fn accepts_what_the_server_certainly_accepts() {
        let c = catalog();
        let shown = |name: &str, v: Value| c.assignment(&assign(name, v), true).map(|c| c.shown);
        let n = |s: &str| Value::Number(s.into());
        let w = |s: &str| Value::Word(s.into());
        let t = |s: &str| Value::Text(s.into());
        let sql_modes = "strict_trans_tables,ansi_quotes,ANSI_QUOTES";
        for (name, value, want) in [
            ("autocommit", n("0"), "OFF"),
            ("autocommit", w("true"), "ON"),
            ("autocommit", t("on"), "ON"),
            ("sql_mode", t(sql_modes), "ANSI_QUOTES,STRICT_TRANS_TABLES"),
            ("sql_mode", t(""), ""),
            ("time_zone", w("system"), "SYSTEM"),
            ("character_set_results", w("NULL"), ""),
            ("character_set_results", w("UTF8MB4"), "utf8mb4"),
            ("character_set_client", t("utf8"), "utf8mb3"),
            ("tx_isolation", t("read-committed"), "READ-COMMITTED"),
            ("wait_timeout", n("010"), "10"),
        ] {
            let what = format!("{name} = {value:?}");
            assert_eq!(shown(name, value).as_deref(), Some(want), "{what}");
        }
        // Offsets are shown as the server shows them: signed, two digits each.
        for (offset, want) in [
            ("+0:0", "+00:00"),
            ("-00:00", "+00:00"),
            ("-0:01", "-00:01"),
            ("+13:00", "+13:00"),
            ("-12:59", "-12:59"),
        ] {
            assert_eq!(
                shown("time_zone", t(offset)).as_deref(),
                Some(want),
                "{offset}"
            );
        }
        let names = c.names("UTF8MB4", None, true).unwrap();
        assert_eq!(names[3].shown, "utf8mb4_general_ci");
        assert_eq!(names[0].literal, "'utf8mb4'");
        let names = c.names("utf8mb4", Some("UTF8MB4_BIN"), true).unwrap();
        assert_eq!(names[3].shown, "utf8mb4_bin");
        assert_eq!(
            c.tracked().unwrap(),
            [
                "autocommit",
                "character_set_client",
                "character_set_connection",
                "character_set_results",
                "time_zone"
            ]
        );
        assert!(c.plain_defaults());
    }

    #[test]
    fn leaves_everything_uncertain_to_the_server() {
        let c = catalog();
        let n = |s: &str| Value::Number(s.into());
        let w = |s: &str| Value::Word(s.into());
        let t = |s: &str| Value::Text(s.into());
        for (name, v) in [
            ("autocommit", n("2")),
            ("autocommit", t("1")),
            ("autocommit", w("yes")),
            ("autocommit", w("NULL")),
            ("sql_mode", t("ANSI")),
            ("sql_mode", t("NOPE")),
            ("sql_mode", t("ANSI_QUOTES, STRICT_TRANS_TABLES")),
            ("sql_mode", t("ANSI_QUOTES,,STRICT_TRANS_TABLES")),
            ("sql_mode", n("4")),
            ("time_zone", t("UTC")),
            ("time_zone", t("+13:01")),
            ("time_zone", t("-13:00")),
            ("time_zone", t("+1:60")),
            ("time_zone", t("+001:00")),
            ("time_zone", t("01:00")),
            ("character_set_client", w("NULL")),
            ("character_set_client", w("ucs2")),
            ("character_set_results", w("klingon")),
            ("character_set_results", n("33")),
            ("tx_isolation", n("1")),
            ("tx_isolation", t("READ COMMITTED")),
            ("wait_timeout", n("0")),
            ("wait_timeout", n("31536001")),
            ("wait_timeout", t("60")),
            ("wait_timeout", n("99999999999999999999999")),
            ("sql_log_bin", n("0")),
            ("max_allowed_packet", n("1024")),
            ("no_such_variable", n("1")),
        ] {
            assert_eq!(
                c.assignment(&assign(name, v.clone()), true),
                None,
                "{name} = {v:?}"
            );
        }
        assert_eq!(
            c.assignment(&assign("character_set_client", w("utf8")), false),
            None
        );
        assert_eq!(c.names("ucs2", None, true), None);
        assert_eq!(c.names("latin1", Some("utf8mb4_bin"), true), None);
        assert_eq!(c.names("utf8mb4", Some("uca1400_ai_ci"), true), None);
        assert_eq!(c.names("nope", None, true), None);
    }
}
