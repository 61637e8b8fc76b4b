//! `[[cluster.users]]`: who may log in, and how torpor knows their password. `password_hash`
//! keeps the password itself out of the config; `password_file` and `password_env` keep it
//! out of the file; `password` in clear still works, and `torpor check` warns about it.

use std::path::{Path, PathBuf};

use protocols::auth::mysql::MyStored;
use protocols::auth::scram::ScramSecret;
use serde::Deserialize;

use super::{ConfigError, Protocol, invalid};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// The password in clear (discouraged).
    #[serde(default)]
    pub password: Option<String>,
    /// A file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// What `torpor hash-password` printed: the password never reaches torpor's config.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Created as a superuser on first start (PostgreSQL: needed for SET SESSION
    /// AUTHORIZATION; MariaDB: ALL on *.* WITH GRANT OPTION).
    #[serde(default)]
    pub superuser: bool,
}

/// How torpor knows a user's password.
#[derive(Clone)]
pub enum Secret {
    Password(String),
    /// PostgreSQL's SCRAM-SHA-256 verifier.
    Hash(ScramSecret),
    /// MySQL's `*<native>:<caching_sha2>` hashes.
    MyHash(MyStored),
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("superuser", &self.superuser)
            .finish_non_exhaustive()
    }
}

impl UserConfig {
    /// The user's secret, read from where the config says; `key` names the user in errors.
    pub fn secret(&self, protocol: Protocol, key: &str) -> Result<Secret, ConfigError> {
        let given = [
            self.password.is_some(),
            self.password_file.is_some(),
            self.password_env.is_some(),
            self.password_hash.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(invalid(
                key,
                "give exactly one of password_hash, password_file, password_env or password",
            ));
        }
        if let Some(hash) = &self.password_hash {
            return match protocol {
                Protocol::Postgres => ScramSecret::from_pg_verifier(hash.trim())
                    .map(Secret::Hash)
                    .map_err(|_| {
                        invalid(
                            format!("{key}.password_hash"),
                            "not a SCRAM-SHA-256 verifier (torpor hash-password --protocol postgres)",
                        )
                    }),
                Protocol::Mysql => MyStored::parse(hash).map(Secret::MyHash).map_err(|_| {
                    invalid(
                        format!("{key}.password_hash"),
                        "not a MySQL password hash: *<40 hex digits>:<64 hex digits> (torpor hash-password --protocol mysql)",
                    )
                }),
            };
        }
        let (field, password) = if let Some(p) = &self.password {
            ("password", p.clone())
        } else if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("{key}.password_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            (
                "password_file",
                text.lines().next().unwrap_or_default().to_string(),
            )
        } else {
            let var = self.password_env.as_deref().unwrap_or_default();
            let value = std::env::var(var).map_err(|_| {
                invalid(
                    format!("{key}.password_env"),
                    format!("the environment has no {var}"),
                )
            })?;
            ("password_env", value)
        };
        if password.is_empty() || password.contains('\0') {
            return Err(invalid(
                format!("{key}.{field}"),
                "must be non-empty, without NUL",
            ));
        }
        Ok(Secret::Password(password))
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.password_file
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, TEST_CONFIG};
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/base"))
    }

    #[test]
    fn a_password_comes_from_exactly_one_place() {
        let hash = ScramSecret::random_for("pw").to_pg_verifier();
        let cfg = parse(&TEST_CONFIG.replace(
            "password = \"secret\"",
            &format!("password_hash = \"{hash}\""),
        ))
        .unwrap();
        let u = &cfg.clusters[0].users[0];
        assert!(matches!(
            u.secret(Protocol::Postgres, "u"),
            Ok(Secret::Hash(_))
        ));
        let e = parse(&TEST_CONFIG.replace(
            "password = \"secret\"",
            &format!("password = \"x\"\npassword_hash = \"{hash}\""),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse(&TEST_CONFIG.replace("password = \"secret\"", "password_hash = \"pw\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("password_hash") && !e.contains("\"pw\""), "{e}");
        let cfg =
            parse(&TEST_CONFIG.replace("password = \"secret\"", "password_file = \"pw.txt\""));
        let e = cfg.unwrap_err().to_string();
        assert!(e.contains("/base/pw.txt"), "{e}");
    }
}
