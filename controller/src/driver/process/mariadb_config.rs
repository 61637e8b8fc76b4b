//! What the MariaDB driver accepts from its configuration: where the binaries are, and which
//! settings may become server options.
//!
//! Binaries: with no `bin_dir`, `mariadbd` is looked up in /usr/sbin then /usr/bin, and
//! `mariadb-install-db` in /usr/bin then /usr/sbin. With a `bin_dir`, both are looked up in it,
//! and `mariadb-install-db` also in its sibling `bin` directory (so `bin_dir = "/usr/sbin"`
//! works on Debian). install-db builds the system tables with the server it finds itself.

use std::path::{Path, PathBuf};

use super::child;
use crate::driver::DriverError;

const SERVER: &str = "mariadbd";
pub(crate) const INSTALL_DB: &str = "mariadb-install-db";
const DEFAULT_SERVER_DIRS: [&str; 2] = ["/usr/sbin", "/usr/bin"];
const DEFAULT_INSTALL_DB_DIRS: [&str; 2] = ["/usr/bin", "/usr/sbin"];

/// Options the driver owns (normalised: lower case, `-` for `_`, without `loose-`/`skip-`/
/// `enable-`/`disable-`): they decide where the server listens and which files it uses.
const RESERVED_SETTINGS: [&str; 15] = [
    "port",
    "bind-address",
    "socket",
    "datadir",
    "pid-file",
    "log-error",
    "user",
    "networking",
    "bootstrap",
    "no-defaults",
    "defaults-file",
    "defaults-extra-file",
    "defaults-group-suffix",
    "print-defaults",
    "basedir",
];

/// `innodb_buffer_pool_size`, `loose-innodb-buffer-pool-size` → `innodb-buffer-pool-size`;
/// `skip-networking` → `networking`.
pub(crate) fn normalise(key: &str) -> String {
    let key = key.to_ascii_lowercase().replace('_', "-");
    let key = key.strip_prefix("loose-").unwrap_or(&key);
    ["skip-", "enable-", "disable-"]
        .iter()
        .find_map(|p| key.strip_prefix(p))
        .unwrap_or(key)
        .to_owned()
}

pub(crate) fn check_setting(key: &str, value: &str) -> Result<(), DriverError> {
    let key_ok = !key.is_empty()
        && !key.starts_with('-')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let reserved = RESERVED_SETTINGS.contains(&normalise(key).as_str());
    super::check_setting(key, value, key_ok, reserved, "port and data_dir fields")
}

/// The server and install-db executables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub server: PathBuf,
    pub install_db: PathBuf,
}

/// The server and install-db executables (see the module comment for where they are looked
/// for).
pub(crate) fn find_binaries(bin_dir: Option<&Path>) -> Result<Binaries, DriverError> {
    let (server_dirs, install_dirs): (Vec<PathBuf>, Vec<PathBuf>) = match bin_dir {
        Some(dir) => {
            let mut install = vec![dir.to_path_buf()];
            if let Some(parent) = dir.parent() {
                install.push(parent.join("bin"));
            }
            (vec![dir.to_path_buf()], install)
        }
        None => (
            DEFAULT_SERVER_DIRS.iter().map(PathBuf::from).collect(),
            DEFAULT_INSTALL_DB_DIRS.iter().map(PathBuf::from).collect(),
        ),
    };
    let find = |dirs: &[PathBuf], tool: &str| {
        dirs.iter()
            .map(|d| d.join(tool))
            .find(|p| child::is_executable(p))
            .ok_or_else(|| {
                let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                DriverError::Failed(format!(
                    "no executable `{tool}` in {}; set bin_dir to the directory holding \
                     mariadbd",
                    searched.join(" or ")
                ))
            })
    };
    Ok(Binaries {
        server: find(&server_dirs, SERVER)?,
        install_db: find(&install_dirs, INSTALL_DB)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(check_setting("innodb_buffer_pool_size", "64M").is_ok());
        assert!(check_setting("innodb-flush-log-at-trx-commit", "2").is_ok());
        for reserved in [
            "port",
            "PORT",
            "bind_address",
            "loose-bind-address",
            "skip-networking",
            "skip_networking",
            "datadir",
            "pid_file",
            "log-error",
            "user",
            "socket",
        ] {
            assert!(check_setting(reserved, "x").is_err(), "{reserved}");
        }
        for (key, value) in [("a=b", "1"), ("", "1"), ("-x", "1"), ("sql_mode", "a\0b")] {
            assert!(check_setting(key, value).is_err(), "{key:?} = {value:?}");
        }
    }

    #[test]
    fn binaries_in_bin_dir_or_its_sibling() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let sbin = root.path().join("sbin");
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&sbin).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let make = |p: PathBuf| {
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let err = find_binaries(Some(&sbin)).unwrap_err().to_string();
        assert!(err.contains("mariadbd") && err.contains("sbin"), "{err}");
        make(sbin.join(SERVER));
        assert!(find_binaries(Some(&sbin)).is_err());
        // install-db beside the server wins over the one in the sibling bin.
        for dir in [&bin, &sbin] {
            make(dir.join(INSTALL_DB));
            assert_eq!(
                find_binaries(Some(&sbin)).unwrap(),
                Binaries {
                    server: sbin.join(SERVER),
                    install_db: dir.join(INSTALL_DB)
                }
            );
        }
    }

    #[test]
    fn normalised_names() {
        assert_eq!(normalise("Loose_Skip-Networking"), "networking");
        assert_eq!(
            normalise("innodb_buffer_pool_size"),
            "innodb-buffer-pool-size"
        );
    }
}
