//! Client authentication at the proxy for MySQL clusters: torpor checks passwords itself, gives
//! the server's own ERR 1045 on a failure, and a failed login never wakes a sleeping database.

use mysql_async::ChangeUserOpts;
use torpor_tests::harness::{OTHER_PASSWORD, OTHER_USER, Opts, PASSWORD, TestEnv, USER};
use torpor_tests::mysql::{code, text, try_connect_my};

fn refused(r: Result<mysql_async::Conn, mysql_async::Error>) -> (u16, String, String) {
    match r {
        Ok(_) => panic!("connection succeeded with bad credentials"),
        Err(mysql_async::Error::Server(s)) => (s.code, s.state, s.message),
        Err(e) => panic!("expected a server error, got {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_1045() {
    let (env, mut ok) = TestEnv::my_session(Opts::default()).await;
    assert_eq!(text(&mut ok, "SELECT CURRENT_USER()").await, "app@%");

    let (c, state, msg) =
        refused(try_connect_my(env.listen, USER, "not-the-password", Some("my")).await);
    assert_eq!((c, state.as_str()), (1045, "28000"), "{msg}");
    // The same words the server itself uses.
    let direct = env.backend_addr();
    let (dc, dstate, dmsg) =
        refused(try_connect_my(direct, USER, "not-the-password", Some("my")).await);
    assert_eq!(
        (c, state.as_str(), msg.as_str()),
        (dc, dstate.as_str(), dmsg.as_str())
    );

    let (c2, _, msg2) = refused(try_connect_my(env.listen, "nobody", "whatever", Some("my")).await);
    assert_eq!(c2, 1045, "{msg2}");
    assert_eq!(
        msg2.replace("nobody", USER),
        msg,
        "an unknown user looks like a wrong password"
    );
    let (c3, _, msg3) = refused(try_connect_my(env.listen, USER, "", Some("my")).await);
    assert_eq!(c3, 1045, "{msg3}");
    assert!(msg3.contains("using password: NO"), "{msg3}");

    // A configured user's password doesn't work for another configured user.
    let (c4, _, _) = refused(try_connect_my(env.listen, OTHER_USER, PASSWORD, Some("my")).await);
    assert_eq!(c4, 1045);
    let mut other = try_connect_my(env.listen, OTHER_USER, OTHER_PASSWORD, Some("my"))
        .await
        .unwrap();
    assert_eq!(text(&mut other, "SELECT CURRENT_USER()").await, "viewer@%");
    assert_eq!(text(&mut other, "SELECT DATABASE()").await, "my");
    // Failed logins hurt nobody else.
    assert_eq!(text(&mut ok, "SELECT 1").await, "1");
    env.shutdown_after((ok, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_during_standby_do_not_wake() {
    let (env, mut s) = TestEnv::my_session(Opts::default()).await;
    env.sleep_ok().await;
    let wakes = env.metric("torpor_wakes_total").await;
    for (user, pw) in [(USER, "wrong"), ("ghost", "wrong"), (OTHER_USER, PASSWORD)] {
        let (c, _, msg) = refused(try_connect_my(env.listen, user, pw, Some("my")).await);
        assert_eq!(c, 1045, "{user}: {msg}");
        let st = env.cluster_status().await;
        assert_eq!(st["state"], "standby", "{user}: {st}");
        assert!(st["backend_pid"].is_null(), "{user}: {st}");
    }
    assert_eq!(env.metric("torpor_wakes_total").await, wakes);
    // A real query (SELECT 1 is a probe torpor answers itself) wakes it.
    assert_eq!(text(&mut s, "SELECT CURRENT_USER()").await, "app@%");
    assert_eq!(env.metric("torpor_wakes_total").await, wakes + 1.0);
    env.shutdown_after(s).await;
}

/// COM_CHANGE_USER: checked by torpor, a fresh session as the new user, also after a sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_across_a_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    torpor_tests::mysql::exec(&mut c, "SET @gone = 1").await;
    env.sleep_ok().await;
    c.change_user(
        ChangeUserOpts::default()
            .with_user(Some(OTHER_USER.into()))
            .with_pass(Some(OTHER_PASSWORD.into()))
            .with_db_name(Some("my".into())),
    )
    .await
    .unwrap();
    assert_eq!(text(&mut c, "SELECT CURRENT_USER()").await, "viewer@%");
    assert_eq!(
        torpor_tests::mysql::value(&mut c, "SELECT @gone").await,
        None,
        "change user resets the session"
    );
    torpor_tests::mysql::exec(&mut c, "SET @mine = 2").await;
    env.sleep_ok().await;
    // The snapshot is sealed for the user the session is now.
    let object = std::fs::read_dir(env.snapshot_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let key = state_store::SnapshotKey {
        cluster: env.cluster.clone(),
        session: object.file_name().to_string_lossy().parse().unwrap(),
        user: OTHER_USER.into(),
        database: "my".into(),
    };
    state_store::sealed::open(&env.seal(), &key, &std::fs::read(object.path()).unwrap()).unwrap();
    assert_eq!(text(&mut c, "SELECT CURRENT_USER()").await, "viewer@%");
    assert_eq!(text(&mut c, "SELECT @mine").await, "2");
    let err = c
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some(USER.into()))
                .with_pass(Some("bad".into())),
        )
        .await
        .expect_err("change_user with a bad password succeeded");
    assert_eq!(code(&err), Some(1045), "{err}");
    env.shutdown().await;
}
