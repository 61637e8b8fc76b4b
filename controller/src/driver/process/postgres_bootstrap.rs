//! The SQL that creates the bootstrap users and databases, fed to `postgres --single` on stdin.
//! Passwords never appear on a command line or in a log.

use super::child::Script;
use super::{BootstrapUser, each_user_once, for_hashed};
use crate::driver::DriverError;

/// The superuser initdb creates (`initdb -U postgres`); it and its database already exist.
pub(crate) const SUPERUSER: &str = "postgres";

/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
const MAX_NAME_BYTES: usize = 63;

/// A double-quoted identifier. Names with control characters are refused rather than escaped:
/// identifiers have no escape syntax, and a raw newline would end a statement in `--single -j`.
pub(crate) fn quote_ident(name: &str) -> Result<String, DriverError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(DriverError::Failed(format!(
            "invalid database name {name:?}: it must be 1 to {MAX_NAME_BYTES} bytes without \
             control characters"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// An escape-string literal (E'…'). Control characters become \xNN escapes, so the statement
/// stays on one line whatever the value holds.
pub(crate) fn quote_literal(value: &str) -> Result<String, DriverError> {
    if value.contains('\0') {
        return Err(DriverError::Failed(
            "a password contains a NUL character".into(),
        ));
    }
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// The statements, each ended by ";\n\n" as `postgres --single -j` expects.
pub(crate) fn script(cluster: &str, users: &[BootstrapUser]) -> Result<String, DriverError> {
    let mut sql = String::new();
    for u in each_user_once(users) {
        let u = u?;
        let name = quote_ident(&u.name)?;
        let password = quote_literal(&u.password)?;
        if u.name == SUPERUSER {
            // Already exists and must stay superuser; only its password is ours to set.
            sql.push_str(&format!("ALTER ROLE {name} PASSWORD {password};\n\n"));
            continue;
        }
        let superuser = if u.superuser { " SUPERUSER" } else { "" };
        sql.push_str(&format!(
            "CREATE ROLE {name} LOGIN{superuser} PASSWORD {password};\n\n"
        ));
        sql.push_str(&format!("CREATE DATABASE {name} OWNER {name};\n\n"));
    }
    if cluster != SUPERUSER && !users.iter().any(|u| u.name == cluster) {
        let owner = users.first().map_or(SUPERUSER, |u| u.name.as_str());
        sql.push_str(&format!(
            "CREATE DATABASE {} OWNER {};\n\n",
            quote_ident(cluster)?,
            quote_ident(owner)?
        ));
    }
    Ok(sql)
}

/// For a data directory made earlier: sets each `hashed` user's verifier again, so the server
/// holds exactly the one torpor checks clients against (a login with the key a client's
/// proof revealed works only then). A role the directory lacks is left for the operator.
/// `None` when no user is hashed.
pub(crate) fn align_script(users: &[BootstrapUser]) -> Result<Option<String>, DriverError> {
    for_hashed(users, |u| {
        let name = quote_literal(&u.name)?;
        let verifier = quote_literal(&u.password)?;
        Ok(format!(
            "DO $torpor$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN \
             EXECUTE format('ALTER ROLE %I PASSWORD %L', {name}, {verifier}); END IF; END \
             $torpor$;\n\n"
        ))
    })
}

/// How the bootstrap script runs, and how its errors are read.
pub(crate) const SCRIPT: Script = Script {
    program: "postgres --single",
    task: "creating the bootstrap users in single-user mode",
    errors,
};

/// The error lines of a single-user run, without anything that could echo a statement (and
/// with it a password).
pub(crate) fn errors(output: &str) -> Vec<String> {
    output
        .lines()
        .map(|l| l.trim_start_matches("backend> ").trim())
        .filter(|l| l.contains("ERROR:") || l.contains("FATAL:") || l.contains("PANIC:"))
        .filter(|l| !l.contains("STATEMENT:") && !l.contains("PASSWORD"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::process::user;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_ident("").is_err());
        assert!(quote_ident("a\nb").is_err());
        assert!(quote_ident(&"x".repeat(64)).is_err());
        assert_eq!(
            quote_literal("it's \\ a\n;\n\nb").unwrap(),
            "E'it''s \\\\ a\\x0a;\\x0a\\x0ab'"
        );
        assert!(quote_literal("a\0b").is_err());
    }

    #[test]
    fn script_creates_roles_and_databases() {
        let sql = script(
            "app",
            &[user("alice", "pw", false), user("root", "x", true)],
        )
        .unwrap();
        assert_eq!(
            sql,
            "CREATE ROLE \"alice\" LOGIN PASSWORD E'pw';\n\n\
             CREATE DATABASE \"alice\" OWNER \"alice\";\n\n\
             CREATE ROLE \"root\" LOGIN SUPERUSER PASSWORD E'x';\n\n\
             CREATE DATABASE \"root\" OWNER \"root\";\n\n\
             CREATE DATABASE \"app\" OWNER \"alice\";\n\n"
        );
    }

    #[test]
    fn script_handles_existing_names() {
        let sql = script("alice", &[user("alice", "pw", false)]).unwrap();
        assert_eq!(sql.matches("CREATE DATABASE").count(), 1);
        let sql = script("postgres", &[user("postgres", "pw", true)]).unwrap();
        assert_eq!(sql, "ALTER ROLE \"postgres\" PASSWORD E'pw';\n\n");
        assert!(script("c", &[user("a", "1", false), user("a", "2", false)]).is_err());
        let sql = script("c", &[]).unwrap();
        assert_eq!(sql, "CREATE DATABASE \"c\" OWNER \"postgres\";\n\n");
    }

    #[test]
    fn errors_drop_statements() {
        let out = "backend> 2024 ERROR:  role \"a\" already exists\n\
                   2024 STATEMENT:  CREATE ROLE \"a\" PASSWORD E'secret';\nbackend> ";
        assert_eq!(errors(out), vec!["2024 ERROR:  role \"a\" already exists"]);
    }
}
