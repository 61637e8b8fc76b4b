//! TLS with real PostgreSQL client libraries: psycopg 3 (its bundled libpq 18, verify-full,
//! channel_binding=require, also sslnegotiation=direct), asyncpg (an SSLContext trusting only
//! the test's CA, also direct_tls) and pgjdbc (sslmode=verify-full with the CA's PEM file). The
//! cluster has `require_tls = true`, so a client that fell back to plaintext would be refused.
//! Each keeps a temp table and a SET across a forced sleep; each refuses a certificate another
//! CA signed.

use std::path::Path;

use tokio::process::Command;
use torpor_tests::clients::{client_file, run_to_end};
use torpor_tests::harness::{Opts, PASSWORD, TestConfig, TestEnv, USER};
use torpor_tests::ports::free_port;
use torpor_tests::script::Script;
use torpor_tests::tls::TestCa;

/// A torpor whose cluster serves a certificate CA `a` signed and requires TLS, and that CA.
async fn env() -> (TestEnv, TestCa) {
    let opts = Opts::default().cluster_setting("require_tls = true");
    let mut cfg = TestConfig::new(&opts).await;
    let ca = TestCa::new(cfg.dir.path(), "a");
    cfg.toml.push_str(&ca.toml("tls"));
    (TestEnv::start_config(cfg).await, ca)
}

/// Runs the client program of `client` ("python" or "jdbc") twice. "kept": it trusts the CA
/// torpor's certificate comes from, and stops at "parked" while the test forces a sleep (the
/// backend proven gone). "refused": it trusts another CA only. Each run must exit 0 and print
/// its marker.
async fn check(client: &str) {
    let (env, ca) = env().await;
    let mut cmd = command(client, &env, &ca.ca).await;
    cmd.arg("kept");
    let mut script = Script::spawn(cmd);
    script.expect("parked").await;
    env.sleep_ok().await;
    script.go().await;
    let output = script.finish().await;
    assert!(output.contains(&format!("{client} tls ok")), "{output}");

    let other = TestCa::new(env.dir.path(), "b");
    let mut cmd = command(client, &env, &other.ca).await;
    run_to_end(cmd.arg("refused"), &format!("{client} tls refused ok")).await;
    env.shutdown().await;
}

async fn command(client: &str, env: &TestEnv, ca: &Path) -> Command {
    match client {
        "python" => python(env, ca).await,
        _ => jdbc(env, ca).await,
    }
}

async fn python(env: &TestEnv, ca: &Path) -> Command {
    let python = torpor_tests::python::python(torpor_tests::python::pg_clients).await;
    let mut cmd = Command::new(python);
    cmd.arg(client_file("pg_tls.py"))
        .env("TORPOR_PORT", env.listen.port().to_string())
        .env("RELAY_PORT", free_port().to_string())
        .env("TORPOR_CA", ca)
        .env("PGUSER", USER)
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", USER);
    cmd
}

async fn jdbc(env: &TestEnv, ca: &Path) -> Command {
    let source = client_file("PgTlsJdbc.java");
    let jar = torpor_tests::java::pgjdbc_jar();
    let mut cmd =
        tokio::task::spawn_blocking(move || torpor_tests::java::java_command(&source, &[jar]))
            .await
            .unwrap();
    // pgjdbc checks the name it connected to against the certificate: localhost, which torpor
    // serves on 127.0.0.1.
    let url = format!(
        "jdbc:postgresql://localhost:{}/{USER}?ssl=true&sslmode=verify-full&sslrootcert={}",
        env.listen.port(),
        ca.display()
    );
    cmd.env("TORPOR_JDBC_URL", url)
        .env("PGUSER", USER)
        .env("PGPASSWORD", PASSWORD);
    cmd
}

/// psycopg over SSLRequest and over direct TLS, both with channel binding required, and asyncpg
/// both ways: four TLS sessions parked at once and woken with their state. With another CA:
/// libpq's "certificate verify failed" for psycopg, SSLCertVerificationError for asyncpg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_and_asyncpg_verify_torpor_and_keep_state_over_tls() {
    check("python").await;
}

/// pgjdbc 42.5 (it has no channelBinding option) verifies the certificate and the host name;
/// with another CA it fails with JSSE's "PKIX path building failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_verifies_torpor_and_keeps_state_over_tls() {
    check("jdbc").await;
}
