//! Node.js client libraries for the client tests (node-pg, mysql2), installed from npm into a
//! directory under the target directory on first use, so nothing outside the repository is
//! touched. Scripts live in `tests/clients/` and load the packages with `require()`: `NODE_PATH`
//! points at the installed `node_modules` (it works for CommonJS `require`, not for ESM `import`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The npm packages the client tests use, at the versions they were checked with.
pub const CLIENT_PACKAGES: &[&str] = &["pg@8.23.1", "mysql2@3.24.6"];

/// Serializes installs between the tests of one binary.
static INSTALL: Mutex<()> = Mutex::new(());

/// The `node_modules` of `target/<name>`, where each of `packages` (pinned `name@version` specs,
/// e.g. `pg@8.23.1`) is installed at exactly that version, after `npm install` if it wasn't.
pub fn node_modules(name: &str, packages: &[&str]) -> PathBuf {
    let dir = target_dir().join(name);
    let modules = dir.join("node_modules");
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if packages.iter().all(|spec| installed(&modules, spec)) {
        return modules;
    }
    std::fs::create_dir_all(&dir).expect("create the npm install directory");
    let status = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&dir)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .args(packages)
        .status()
        .expect("npm is needed for the Node.js client tests");
    assert!(status.success(), "npm install {packages:?} failed");
    for spec in packages {
        assert!(
            installed(&modules, spec),
            "{spec} is not in {} after npm install",
            modules.display()
        );
    }
    modules
}

/// [`node_modules`] of [`CLIENT_PACKAGES`] in `target/nodeclients`.
pub fn client_modules() -> PathBuf {
    node_modules("nodeclients", CLIENT_PACKAGES)
}

/// A `node <script>` command that finds the packages in `modules` (from [`node_modules`]). The
/// caller adds the environment the script reads and runs it.
pub fn node_command(modules: &Path, script: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script).env("NODE_PATH", modules);
    cmd
}

/// Whether `modules/<package>/package.json` has the version `spec` pins.
fn installed(modules: &Path, spec: &str) -> bool {
    let (package, version) = split_spec(spec);
    let Ok(text) = std::fs::read_to_string(modules.join(package).join("package.json")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .is_ok_and(|v| v.get("version").and_then(|v| v.as_str()) == Some(version))
}

/// `pg@8.23.1` → (`pg`, `8.23.1`); `@scope/pkg@1.0.0` → (`@scope/pkg`, `1.0.0`).
fn split_spec(spec: &str) -> (&str, &str) {
    match spec.rfind('@') {
        Some(at) if at > 0 => (&spec[..at], &spec[at + 1..]),
        _ => panic!("npm package {spec:?} must be pinned as name@version"),
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[cfg(test)]
mod tests {
    use super::split_spec;

    #[test]
    fn specs_split_at_the_last_at() {
        assert_eq!(split_spec("pg@8.23.1"), ("pg", "8.23.1"));
        assert_eq!(split_spec("@types/node@20.1.0"), ("@types/node", "20.1.0"));
    }
}
