//! Client authentication at the proxy: SCRAM-SHA-256 against the configured users.

use torpor_tests::harness::{OTHER_PASSWORD, OTHER_USER, Opts, PASSWORD, TestEnv, USER, describe};

fn auth_failure(r: Result<torpor_tests::harness::Pg, tokio_postgres::Error>) -> (String, String) {
    let err = match r {
        Ok(_) => panic!("connection succeeded with bad credentials"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server error, got {err:?}"));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let (env, ok) = TestEnv::pg_session(Opts::default()).await;
    assert_eq!(ok.text("SELECT current_user").await, USER);

    let (code, msg) = auth_failure(env.try_connect(USER, "not-the-password").await);
    assert_eq!(code, "28P01", "{msg}");
    assert_eq!(
        msg,
        format!("password authentication failed for user \"{USER}\"")
    );

    let (code2, msg2) = auth_failure(env.try_connect("nobody", "whatever").await);
    assert_eq!(code2, "28P01", "{msg2}");
    // Same shape: only the user name differs, so the answer doesn't reveal who exists.
    assert_eq!(msg2.replace("nobody", USER), msg);

    // A configured user's password doesn't work for another configured user.
    let (code3, _) = auth_failure(env.try_connect(OTHER_USER, PASSWORD).await);
    assert_eq!(code3, "28P01");
    let other = env
        .try_connect(OTHER_USER, OTHER_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(other.text("SELECT current_user").await, OTHER_USER);
    assert_eq!(other.text("SELECT current_database()").await, OTHER_USER);

    // Failed logins hurt nobody else.
    assert_eq!(ok.text("SELECT 1").await, "1");
    env.shutdown_after((ok, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_during_standby_do_not_wake() {
    let (env, s) = TestEnv::pg_session(Opts::default()).await;
    env.sleep_ok().await;
    let wakes = env.metric("torpor_wakes_total").await;
    let (code, _) = auth_failure(env.try_connect(USER, "wrong").await);
    assert_eq!(code, "28P01");
    let (code, _) = auth_failure(env.try_connect("ghost", "wrong").await);
    assert_eq!(code, "28P01");
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "standby", "{c}");
    assert_eq!(env.metric("torpor_wakes_total").await, wakes);
    assert_eq!(s.text("SELECT 1").await, "1");
    env.shutdown_after(s).await;
}

/// The backend asks for md5 (then cleartext) instead of SCRAM: torpor answers what it's asked,
/// on the first connection and again after a scale-to-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_md5_and_cleartext_auth() {
    let (env, admin) = TestEnv::pg_session(Opts::default()).await;
    // Store an md5 verifier for the other user and make the server ask for md5.
    admin.exec("SET password_encryption = 'md5'").await;
    admin
        .exec(&format!(
            "ALTER ROLE \"{OTHER_USER}\" PASSWORD '{OTHER_PASSWORD}'"
        ))
        .await;
    let verifier = admin
        .text(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{OTHER_USER}'"
        ))
        .await;
    assert!(verifier.starts_with("md5"), "{verifier}");

    for method in ["md5", "password"] {
        let hba = env.data_dir.join("pg_hba.conf");
        let original = std::fs::read_to_string(&hba).unwrap();
        let first_rule = original
            .lines()
            .position(|l| l.starts_with("local") || l.starts_with("host"))
            .expect("a rule in pg_hba.conf");
        let mut lines: Vec<String> = original.lines().map(String::from).collect();
        // torpor reaches the server over its Unix socket; TCP gets the same rule anyway.
        lines.insert(
            first_rule,
            format!("host all \"{OTHER_USER}\" 127.0.0.1/32 {method}"),
        );
        lines.insert(first_rule, format!("local all \"{OTHER_USER}\" {method}"));
        std::fs::write(&hba, lines.join("\n") + "\n").unwrap();
        assert_eq!(admin.text("SELECT pg_reload_conf()").await, "t");

        let other = env
            .try_connect(OTHER_USER, OTHER_PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{method}: {}", describe(&e)));
        assert_eq!(other.text("SELECT current_user").await, OTHER_USER);
        // The backend really used this method for the proxy's connection.
        let used = admin
            .text(&format!(
                "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules \
                 WHERE '{OTHER_USER}' = ANY(user_name)"
            ))
            .await;
        assert_eq!(used, method);

        env.sleep_ok().await;
        // The wake re-authenticates to the new backend with the same method.
        assert_eq!(other.text("SELECT 2").await, "2");
        assert_eq!(admin.text("SELECT 3").await, "3");
        std::fs::write(&hba, original).unwrap();
        assert_eq!(admin.text("SELECT pg_reload_conf()").await, "t");
    }
    env.shutdown_after(admin).await;
}
