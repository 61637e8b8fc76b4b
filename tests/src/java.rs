//! Java clients for the client tests: pgjdbc from Debian's `libpostgresql-jdbc-java` package
//! (`scripts/test.sh` installs it), and the programs in `tests/clients/` compiled with
//! `javac` into the target directory on first use (again whenever the source is newer).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where `libpostgresql-jdbc-java` puts pgjdbc.
pub const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// HikariCP from Debian's `libhikaricp-java` (2.7), with the slf4j it logs through from
/// `libslf4j-java` (its dependency); slf4j-simple prints the pool's warnings and errors to
/// stderr, which the test shows when it fails.
pub const HIKARICP_JARS: &[&str] = &[
    "/usr/share/java/HikariCP.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-simple.jar",
];

/// What every program in `tests/clients/` uses, compiled with it from the same directory.
const SHARED_SOURCES: &[&str] = &["Phases.java"];

/// Serializes compiles between the tests of one binary.
static COMPILE: Mutex<()> = Mutex::new(());

/// pgjdbc's jar; panics with what to install when it is missing.
pub fn pgjdbc_jar() -> PathBuf {
    let jar = PathBuf::from(PGJDBC_JAR);
    assert!(
        jar.exists(),
        "{PGJDBC_JAR} is missing: apt-get install libpostgresql-jdbc-java (scripts/test.sh does)"
    );
    jar
}

/// HikariCP's jars for the class path; panics with what to install when one is missing.
pub fn hikaricp_jars() -> Vec<PathBuf> {
    HIKARICP_JARS
        .iter()
        .map(|j| {
            let jar = PathBuf::from(j);
            assert!(
                jar.exists(),
                "{j} is missing: apt-get install libhikaricp-java (scripts/test.sh does)"
            );
            jar
        })
        .collect()
}

/// A `java` command that runs the program in `source` (a `.java` file whose public class is
/// named after the file, e.g. `tests/clients/JdbcClient.java`, with [`SHARED_SOURCES`] beside it)
/// with `classpath` (jars) on the class path. The program is compiled into
/// `target/java-clients/<class>/` when that has no class file yet or an older one than a source.
/// The caller adds arguments and environment.
pub fn java_command(source: &Path, classpath: &[PathBuf]) -> tokio::process::Command {
    let class = source
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a .java file name")
        .to_string();
    let out = target_dir().join("java-clients").join(&class);
    let compiled = out.join(format!("{class}.class"));
    let dir = source.parent().expect("a .java file in a directory");
    let mut sources = vec![source.to_path_buf()];
    sources.extend(SHARED_SOURCES.iter().map(|s| dir.join(s)));
    let _guard = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    if !sources.iter().all(|s| fresh(&compiled, s)) {
        std::fs::create_dir_all(&out).expect("create the javac output directory");
        let status = Command::new("javac")
            .arg("-cp")
            .arg(join(classpath))
            .arg("-d")
            .arg(&out)
            .args(&sources)
            .status()
            .expect("javac is needed for the Java client tests (default-jdk-headless)");
        assert!(status.success(), "javac {} failed", source.display());
    }
    let mut cp = vec![out];
    cp.extend_from_slice(classpath);
    let mut cmd = tokio::process::Command::new("java");
    cmd.arg("-cp").arg(join(&cp)).arg(&class);
    cmd
}

/// Whether `compiled` exists and is at least as new as `source`.
fn fresh(compiled: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(compiled), modified(source)) {
        (Some(class), Some(java)) => class >= java,
        _ => false,
    }
}

fn join(paths: &[PathBuf]) -> std::ffi::OsString {
    std::env::join_paths(paths).expect("class path entries contain no ':'")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
