use super::*;

fn parse(text: &str) -> Result<KubernetesConfig, toml::de::Error> {
    toml::from_str(text)
}

const MINIMAL: &str = "kind = \"statefulset\"\nname = \"pg\"\nservice = \"pg.db.svc:5432\"\n";

#[test]
fn a_minimal_config_takes_the_defaults() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.kind, Kind::Statefulset);
    assert_eq!(cfg.namespace, None);
    assert_eq!(cfg.timeout, Duration::from_secs(300));
    assert_eq!(cfg.tls().mode, TlsMode::Require, "a server elsewhere");
    assert!(matches!(cfg.check(Engine::Postgres), Ok(w) if w.is_empty()));
}

#[test]
fn check_names_the_key_it_refuses() {
    let field = |text: &str, engine| parse(text).unwrap().check(engine).unwrap_err().field;
    assert_eq!(
        field(
            &MINIMAL.replace("pg.db.svc:5432", "pg.db.svc"),
            Engine::Postgres
        ),
        "service"
    );
    assert_eq!(
        field(&MINIMAL.replace(":5432", ":0"), Engine::Postgres),
        "service"
    );
    assert_eq!(
        field(&MINIMAL.replace("statefulset", "cnpg"), Engine::Mysql),
        "kind"
    );
    assert_eq!(
        field(&format!("{MINIMAL}timeout = \"0s\"\n"), Engine::Postgres),
        "timeout"
    );
    assert_eq!(
        field(
            &format!("{MINIMAL}kubeconfig = \"/nonexistent/torpor/kubeconfig\"\n"),
            Engine::Postgres
        ),
        "kubeconfig"
    );
    let e = parse(&MINIMAL.replace("statefulset", "daemonset")).unwrap_err();
    assert!(e.to_string().contains("daemonset"), "{e}");
    let e = parse(&format!("{MINIMAL}replicas = 2\n")).unwrap_err();
    assert!(e.to_string().contains("replicas"), "{e}");
}

#[test]
fn relative_paths_are_taken_from_the_config_file() {
    let mut cfg = parse(&format!(
        "{MINIMAL}kubeconfig = \"kc.yaml\"\nca = \"ca.pem\"\n"
    ))
    .unwrap();
    cfg.resolve_paths(Path::new("/etc/torpor"));
    assert_eq!(
        cfg.kubeconfig.as_deref(),
        Some(Path::new("/etc/torpor/kc.yaml"))
    );
    assert_eq!(cfg.ca.as_deref(), Some(Path::new("/etc/torpor/ca.pem")));
}

fn workload() -> workload::Workload {
    let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    workload::Workload::new(client, Kind::Statefulset, "db", "pg")
}

fn api_error(code: u16, message: &str) -> workload::CallError {
    let status: kube::core::Status = serde_json::from_value(serde_json::json!({
        "status": "Failure", "code": code, "message": message, "reason": "x"
    }))
    .unwrap();
    workload::CallError::Kube(kube::Error::Api(Box::new(status)))
}

#[tokio::test]
async fn api_failures_are_retryable_only_when_they_may_pass() {
    let w = workload();
    let e = errors::from_call("c", &w, "waking it", api_error(403, "cannot patch"));
    assert!(!e.is_retryable());
    let text = e.to_string();
    assert!(
        text.contains("forbidden") && text.contains("cannot patch"),
        "{text}"
    );
    assert!(text.contains("statefulset db/pg"), "{text}");
    let e = errors::from_call("c", &w, "waking it", api_error(404, "not there"));
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("not found"), "{e}");
    for code in [429, 500, 503] {
        assert!(errors::from_call("c", &w, "x", api_error(code, "busy")).is_retryable());
    }
    let odd = workload::CallError::Odd("no selector".into());
    assert!(!errors::from_call("c", &w, "x", odd).is_retryable());
}

#[tokio::test]
async fn an_api_server_that_refuses_connections_is_retryable() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let w = workload();
    let e = w.pods("app=pg").await.err().unwrap();
    let e = errors::from_call("c", &w, "listing its pods", e);
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("could not be reached"), "{e}");
}
