//! TLS between MySQL clients and torpor: CLIENT_SSL in the greeting and the SSL request switch,
//! `require_tls`, with real clients verifying the certificate (the test's own CA) across
//! forced stops.

use torpor_tests::clients::{cli_stdout, client_file, my_env, run_to_end};
use torpor_tests::harness::{Opts, PASSWORD, USER};
use torpor_tests::mywire::{MyRaw, parse_err};
use torpor_tests::python;
use torpor_tests::tls::tls_env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_and_connector_verify_the_certificate_across_stops() {
    let python = python::python(python::my_clients).await;
    let (env, ca) = tls_env(&Opts::mysql(), true).await;
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(client_file("my_tls.py"));
    my_env(&mut cmd, env.listen)
        .env("TORPOR_HOST", "localhost")
        .env("TORPOR_DB", &env.cluster)
        .env("TORPOR_CA", &ca.ca);
    run_to_end(env.admin_env(&mut cmd), "python mysql tls clients ok").await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mariadb_cli_verifies_the_certificate() {
    let (env, ca) = tls_env(&Opts::mysql(), true).await;
    let stdout = cli_stdout(
        tokio::process::Command::new("mariadb")
            .args(["--no-defaults", "--protocol=TCP", "--host=localhost"])
            .arg(format!("--port={}", env.listen.port()))
            .arg(format!("--user={USER}"))
            .arg(format!("--password={PASSWORD}"))
            .arg("--ssl-verify-server-cert")
            .arg(format!("--ssl-ca={}", ca.ca.display()))
            .args(["-e", "status; SELECT 6 * 7 AS answer"])
            .arg(&env.cluster),
    )
    .await;
    assert!(stdout.contains("Cipher in use"), "{stdout}");
    assert!(stdout.contains("42"), "{stdout}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_a_plaintext_login() {
    let (env, _ca) = tls_env(&Opts::mysql(), true).await;
    let mut raw = MyRaw::connect(env.listen).await.unwrap();
    assert_ne!(
        raw.greeting.capabilities & (1 << 11),
        0,
        "CLIENT_SSL offered"
    );
    let resp = raw.handshake_response(USER, PASSWORD, None);
    raw.send_packet(1, &resp).await.unwrap();
    let (_, p) = raw.recv().await.unwrap().expect("an answer");
    let err = parse_err(&p).unwrap();
    assert_eq!(err.code, 3159, "{err:?}");
    assert!(err.message.contains("insecure transport"), "{err:?}");
    env.shutdown().await;
}
