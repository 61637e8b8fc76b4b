//! The SQL that creates the cluster database and the bootstrap users, fed to
//! `mariadbd --bootstrap` on stdin. Passwords never reach the server as text: the script holds
//! only their mysql_native_password hashes, so neither an error echo nor a general log can show
//! one.

use sha1::{Digest, Sha1};

use super::child::Script;
use super::{BootstrapUser, each_user_once, for_hashed};
use crate::driver::DriverError;

/// MariaDB's limits on database and user names, in characters.
const MAX_DB_NAME: usize = 64;
const MAX_USER_NAME: usize = 128;

/// A backtick-quoted identifier. Control characters are refused rather than escaped: the
/// bootstrap reader ends a statement at a line ending in `;`.
pub(crate) fn quote_ident(name: &str) -> Result<String, DriverError> {
    if name.is_empty()
        || name.chars().count() > MAX_DB_NAME
        || name.chars().any(char::is_control)
        || name.ends_with(' ')
    {
        return Err(DriverError::Failed(format!(
            "invalid database name {name:?}: it must be 1 to {MAX_DB_NAME} characters, without \
             control characters or a trailing space"
        )));
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

/// A single-quoted string literal for a user name. The script sets an empty sql_mode first, so
/// backslash escapes mean what they say here whatever the server's configured sql_mode.
pub(crate) fn quote_user(name: &str) -> Result<String, DriverError> {
    if name.is_empty() || name.chars().count() > MAX_USER_NAME || name.chars().any(char::is_control)
    {
        return Err(DriverError::Failed(format!(
            "invalid user name {name:?}: it must be 1 to {MAX_USER_NAME} characters without \
             control characters"
        )));
    }
    Ok(format!(
        "'{}'",
        name.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// The mysql_native_password hash: `*` + upper-case hex of SHA1(SHA1(password)), the form
/// `PASSWORD()` returns and `mysql.global_priv` stores.
pub(crate) fn native_hash(password: &str) -> String {
    let stage2 = Sha1::digest(Sha1::digest(password.as_bytes()));
    let mut out = String::with_capacity(41);
    out.push('*');
    for b in stage2 {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// The statements, one per line. Idempotent, so a bootstrap cut short can simply run again.
///
/// Users are `'name'@'%'`: the server only listens on 127.0.0.1, and with skip-name-resolve a
/// TCP client's host is its IP, which `%` matches. Anonymous users, which would outrank
/// `name@%` for a client from 127.0.0.1, are dropped (10.11's install-db creates none, older
/// ones did).
pub(crate) fn script(cluster: &str, users: &[BootstrapUser]) -> Result<String, DriverError> {
    let db = quote_ident(cluster)?;
    let mut sql = String::new();
    // Bootstrap mode starts with the grant tables off; CREATE USER and GRANT need them.
    sql.push_str("FLUSH PRIVILEGES;\n");
    sql.push_str("SET SESSION sql_mode = '';\n");
    sql.push_str("DROP USER IF EXISTS ''@'localhost', ''@'127.0.0.1', ''@'%';\n");
    sql.push_str(&format!("CREATE DATABASE IF NOT EXISTS {db};\n"));
    for u in each_user_once(users) {
        let u = u?;
        let account = format!("{}@'%'", quote_user(&u.name)?);
        let hash = user_hash(u)?;
        sql.push_str(&format!("CREATE USER IF NOT EXISTS {account};\n"));
        sql.push_str(&format!(
            "ALTER USER {account} IDENTIFIED VIA mysql_native_password USING '{hash}';\n"
        ));
        if u.superuser {
            sql.push_str(&format!(
                "GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;\n"
            ));
        } else {
            sql.push_str(&format!("GRANT ALL PRIVILEGES ON {db}.* TO {account};\n"));
        }
    }
    Ok(sql)
}

/// The mysql_native_password hash a user gets: the configured one for a `hashed` user (checked
/// to be `*` and 40 hex digits, as it goes into a statement), else the password's.
fn user_hash(u: &BootstrapUser) -> Result<String, DriverError> {
    if !u.hashed {
        return Ok(native_hash(&u.password));
    }
    let digits = u.password.strip_prefix('*').unwrap_or_default();
    if digits.len() != 40 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(DriverError::Failed(format!(
            "user {:?}: not a mysql_native_password hash",
            u.name
        )));
    }
    Ok(u.password.clone())
}

/// For a data directory made earlier: sets each `hashed` user's hash again, so the server
/// holds exactly the one torpor checks clients against. `None` when no user is hashed.
pub(crate) fn align_script(users: &[BootstrapUser]) -> Result<Option<String>, DriverError> {
    let sql = for_hashed(users, |u| {
        let account = format!("{}@'%'", quote_user(&u.name)?);
        let hash = user_hash(u)?;
        Ok(format!(
            "ALTER USER IF EXISTS {account} IDENTIFIED VIA mysql_native_password USING '{hash}';\n"
        ))
    })?;
    Ok(sql.map(|sql| format!("FLUSH PRIVILEGES;\n{sql}")))
}

/// How the bootstrap script runs, and how its errors are read.
pub(crate) const SCRIPT: Script = Script {
    program: "mariadbd --bootstrap",
    task: "creating the database and users with mariadbd --bootstrap",
    errors,
};

/// The error lines of a bootstrap run. A syntax error echoes the statement after "near"; that
/// part is cut (it could only hold a user name or a hash, but logs should hold neither).
pub(crate) fn errors(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.contains("[ERROR]"))
        .map(|l| match l.find(" near '") {
            Some(i) => format!("{} near …", &l[..i]),
            None => l.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::process::user;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b").unwrap(), "`a``b`");
        assert!(quote_ident("").is_err());
        assert!(quote_ident("a\nb").is_err());
        assert!(quote_ident("a ").is_err());
        assert!(quote_ident(&"x".repeat(65)).is_err());
        assert!(quote_ident(&"é".repeat(64)).is_ok());
        assert_eq!(quote_user("o'b\\x").unwrap(), "'o''b\\\\x'");
        assert!(quote_user("a\nb").is_err());
        assert!(quote_user("").is_err());
    }

    #[test]
    fn hash_matches_password_function() {
        // SELECT PASSWORD('abc') on MariaDB 10.11.
        assert_eq!(
            native_hash("abc"),
            "*0D3CED9BEC10A777AEC23CCC353A8C08A633045E"
        );
    }

    #[test]
    fn script_creates_database_and_users() {
        let sql = script(
            "app",
            &[user("alice", "pw", false), user("bob", "secret", true)],
        )
        .unwrap();
        let pw = native_hash("pw");
        let secret = native_hash("secret");
        assert_eq!(
            sql,
            format!(
                "FLUSH PRIVILEGES;\n\
                 SET SESSION sql_mode = '';\n\
                 DROP USER IF EXISTS ''@'localhost', ''@'127.0.0.1', ''@'%';\n\
                 CREATE DATABASE IF NOT EXISTS `app`;\n\
                 CREATE USER IF NOT EXISTS 'alice'@'%';\n\
                 ALTER USER 'alice'@'%' IDENTIFIED VIA mysql_native_password USING '{pw}';\n\
                 GRANT ALL PRIVILEGES ON `app`.* TO 'alice'@'%';\n\
                 CREATE USER IF NOT EXISTS 'bob'@'%';\n\
                 ALTER USER 'bob'@'%' IDENTIFIED VIA mysql_native_password USING '{secret}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO 'bob'@'%' WITH GRANT OPTION;\n"
            )
        );
        assert!(!sql.contains("secret"));
        assert!(script("c", &[user("a", "1", false), user("a", "2", false)]).is_err());
        assert!(script("bad\nname", &[]).is_err());
    }

    #[test]
    fn errors_drop_statement_echoes() {
        let out = "2024 [Note] InnoDB: ok\n\
                   ERROR: 1064  You have an error in your SQL syntax; check the manual near \
                   'ALTER USER 'x'@'%' IDENTIFIED' at line 1\n\
                   2024 0 [ERROR] Aborting\n";
        assert_eq!(
            errors(out),
            vec![
                "ERROR: 1064  You have an error in your SQL syntax; check the manual near …",
                "2024 0 [ERROR] Aborting"
            ]
        );
    }
}
