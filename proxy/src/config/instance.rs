//! Which torpor this is in the snapshot store (`[proxy] instance`), and where its sealing key
//! lives when `[state_store]` names none.

use std::path::{Path, PathBuf};

use state_store::StoreConfig;

use super::{Config, ConfigError, invalid};

/// The file name of the key torpor makes when the config names none.
pub const KEY_FILE: &str = "torpor.key";

impl Config {
    /// `[proxy] instance`, or a name made of the host and the config file's path: the same
    /// config on the same host is the same instance across restarts, so a torpor finds (and
    /// clears) what its earlier runs left, and never what another torpor's did.
    pub fn instance(&self) -> String {
        match &self.proxy.instance {
            Some(name) => name.clone(),
            None => format!(
                "{}-{:016x}",
                host(),
                fnv1a(self.source.to_string_lossy().as_bytes())
            ),
        }
    }

    /// The key file torpor makes and uses because `[state_store]` names no key, if it names
    /// none.
    pub fn default_key_file(&self) -> Option<PathBuf> {
        let s = &self.state_store;
        (s.key_file.is_none() && s.key_env.is_none()).then(|| self.key_home.join(KEY_FILE))
    }
}

pub(super) fn resolve_paths(store: &mut StoreConfig, base: &Path) {
    for p in store.key_file.iter_mut().chain(&mut store.old_key_files) {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
}

pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    if let Some(name) = &cfg.proxy.instance
        && !is_name(name)
    {
        return Err(invalid(
            "proxy.instance",
            format!(
                "{:?} must be 1 to 100 letters, digits, '_', '-' or '.', not starting with '.'",
                name.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(())
}

fn is_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The host name, as a valid instance name part.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    if clean.is_empty() {
        "host".to_string()
    } else {
        clean
    }
}

/// FNV-1a: stable across builds and Rust versions, unlike std's hashers.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::super::TEST_CONFIG;
    use super::*;

    const BASE: &str = "/base";

    #[test]
    fn instance_names() {
        let cfg = Config::parse(TEST_CONFIG, Path::new(BASE)).unwrap();
        let derived = cfg.instance();
        assert!(is_name(&derived), "{derived}");
        assert_eq!(
            derived,
            Config::parse(TEST_CONFIG, Path::new(BASE))
                .unwrap()
                .instance()
        );
        let elsewhere = Config::parse(TEST_CONFIG, Path::new("/other")).unwrap();
        assert_ne!(derived, elsewhere.instance());

        let named = format!("[proxy]\ninstance = \"eu-1\"\n{TEST_CONFIG}");
        assert_eq!(
            Config::parse(&named, Path::new(BASE)).unwrap().instance(),
            "eu-1"
        );
        for bad in ["", ".hidden", "a/b", "x y"] {
            let text = format!("[proxy]\ninstance = {bad:?}\n{TEST_CONFIG}");
            let e = Config::parse(&text, Path::new(BASE))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("proxy.instance:"), "{e}");
        }
    }

    #[test]
    fn key_paths() {
        let cfg = Config::parse(TEST_CONFIG, Path::new(BASE)).unwrap();
        let default = cfg.default_key_file().unwrap();
        assert!(default.ends_with(KEY_FILE), "{}", default.display());

        let text = TEST_CONFIG.replace(
            "url = \"file://state\"",
            "url = \"file://state\"\nkey_file = \"keys/now.key\"\nold_key_files = [\"keys/old.key\"]",
        );
        let cfg = Config::parse(&text, Path::new(BASE)).unwrap();
        assert_eq!(cfg.default_key_file(), None);
        let s = &cfg.state_store;
        assert_eq!(s.key_file, Some(PathBuf::from("/base/keys/now.key")));
        assert_eq!(s.old_key_files, [PathBuf::from("/base/keys/old.key")]);
    }
}
