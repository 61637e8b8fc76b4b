//! Each kind of session state survives a forced scale-to-zero: set it up through torpor, sleep
//! the cluster (the backend pid must be gone), then use the state on the new backend.

use torpor_tests::harness::{OTHER_USER, TestEnv, USER, describe, sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_survive_sleep() {
    let env = TestEnv::default().await;
    let s = env.connect().await;
    let setup = env.connect().await;
    setup
        .exec("CREATE SCHEMA IF NOT EXISTS tenant_a; CREATE ROLE reporter NOLOGIN; GRANT reporter TO app;")
        .await;
    drop(setup);

    s.exec(
        "SET search_path TO tenant_a, public;
         SET timezone = 'America/Sao_Paulo';
         SET application_name = 'e2e-settings';
         SELECT set_config('work_mem', '7MB', false);
         SET myapp.tenant = '42';
         SET statement_timeout = '123s';
         SET extra_float_digits = 2;",
    )
    .await;
    let before_pid = s.text("SELECT pg_backend_pid()").await;
    let told_before = s.reported();
    assert_eq!(told_before.get("application_name").map(String::as_str), Some("e2e-settings"));
    assert_eq!(told_before.get("TimeZone").map(String::as_str), Some("America/Sao_Paulo"));

    env.sleep_ok().await;

    assert_eq!(s.text("SHOW search_path").await, "tenant_a, public");
    assert_eq!(s.text("SHOW timezone").await, "America/Sao_Paulo");
    assert_eq!(s.text("SHOW application_name").await, "e2e-settings");
    assert_eq!(s.text("SELECT current_setting('work_mem')").await, "7MB");
    assert_eq!(s.text("SELECT current_setting('myapp.tenant')").await, "42");
    assert_eq!(s.text("SHOW statement_timeout").await, "123s");
    assert_eq!(s.text("SHOW extra_float_digits").await, "2");
    // The search_path is really in effect: an unqualified CREATE lands in tenant_a.
    s.exec("CREATE TEMP TABLE probe(x int); DROP TABLE probe; CREATE TABLE IF NOT EXISTS where_am_i(x int)")
        .await;
    assert_eq!(
        s.text("SELECT schemaname FROM pg_tables WHERE tablename = 'where_am_i'").await,
        "tenant_a"
    );
    let after_pid = s.text("SELECT pg_backend_pid()").await;
    assert_ne!(before_pid, after_pid, "the session should be on a new backend");

    // What the client was told stays what it was told.
    let told_after = s.reported();
    for k in ["application_name", "TimeZone", "DateStyle", "client_encoding", "is_superuser", "session_authorization"] {
        assert_eq!(told_before.get(k), told_after.get(k), "ParameterStatus {k}");
    }

    drop(s);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_and_session_authorization_survive_sleep() {
    let env = TestEnv::default().await;
    let admin = env.connect().await;
    admin
        .exec("CREATE ROLE auditor NOLOGIN; GRANT auditor TO app; CREATE TABLE secret_stuff(x int); REVOKE ALL ON secret_stuff FROM PUBLIC;")
        .await;

    // SET ROLE in one session, SET SESSION AUTHORIZATION in another.
    let role = env.connect().await;
    role.exec("SET ROLE auditor").await;
    assert_eq!(role.text("SELECT current_user").await, "auditor");

    let auth = env.connect().await;
    auth.exec(&format!("SET SESSION AUTHORIZATION {OTHER_USER}")).await;
    assert_eq!(auth.text("SELECT session_user").await, OTHER_USER);
    assert_eq!(auth.reported().get("session_authorization").map(String::as_str), Some(OTHER_USER));

    env.sleep_ok().await;

    assert_eq!(role.text("SELECT current_user").await, "auditor");
    assert_eq!(role.text("SELECT session_user").await, USER);
    assert_eq!(role.text("SHOW role").await, "auditor");
    // auditor has no rights on the table: the role is really in effect, not just displayed.
    let err = role.simple_query("SELECT * FROM secret_stuff").await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"), "{}", describe(&err));

    assert_eq!(auth.text("SELECT session_user").await, OTHER_USER);
    assert_eq!(auth.text("SELECT current_user").await, OTHER_USER);
    assert_eq!(auth.reported().get("session_authorization").map(String::as_str), Some(OTHER_USER));
    // RESET SESSION AUTHORIZATION goes back to the login user, as on the original backend.
    auth.exec("RESET SESSION AUTHORIZATION").await;
    assert_eq!(auth.text("SELECT session_user").await, USER);

    drop((admin, role, auth));
    env.shutdown().await;
}
