//! deploy/kubernetes/*.yaml, checked without a cluster (none can run here, and `kubectl apply
//! --dry-run=client` still downloads the server's OpenAPI schema): every object reads as its
//! k8s-openapi type and writes back unchanged, so a misspelt or misplaced field fails; the
//! Role grants exactly the calls the driver makes; and torpor's config in the ConfigMap loads
//! and names the StatefulSet, Service and namespace the other files define.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn manifests() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        // Examples that need more than Kubernetes itself (keda/) are checked on their own.
        if path.is_dir() {
            continue;
        }
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{path:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let found: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!found.is_empty(), "{}", path.display());
        docs.extend(found);
    }
    docs
}

/// `doc` as a `T`, which must write back as the same JSON: k8s-openapi ignores unknown
/// fields when reading, so a typo would otherwise pass.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    assert_eq!(
        &serde_json::to_value(&t).unwrap(),
        doc,
        "a field k8s-openapi doesn't know"
    );
    t
}

struct Objects {
    role: Vec<Role>,
    bindings: Vec<RoleBinding>,
    accounts: Vec<ServiceAccount>,
    configs: Vec<ConfigMap>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    statefulsets: Vec<StatefulSet>,
}

fn objects() -> Objects {
    let mut o = Objects {
        role: vec![],
        bindings: vec![],
        accounts: vec![],
        configs: vec![],
        deployments: vec![],
        services: vec![],
        statefulsets: vec![],
    };
    for doc in manifests() {
        match doc["kind"].as_str().unwrap_or_default() {
            "Namespace" => drop(typed::<Namespace>(&doc)),
            "Role" => o.role.push(typed(&doc)),
            "RoleBinding" => o.bindings.push(typed(&doc)),
            "ServiceAccount" => o.accounts.push(typed(&doc)),
            "ConfigMap" => o.configs.push(typed(&doc)),
            "Deployment" => o.deployments.push(typed(&doc)),
            "Service" => o.services.push(typed(&doc)),
            "StatefulSet" => o.statefulsets.push(typed(&doc)),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    o
}

#[test]
fn every_object_reads_as_its_type() {
    let o = objects();
    assert_eq!(o.role.len(), 1);
    assert_eq!(o.statefulsets.len(), 1);
    assert_eq!(o.deployments.len(), 1);
    assert_eq!(o.services.len(), 2);
}

#[test]
fn the_role_grants_only_what_the_driver_calls() {
    let o = objects();
    let rules = o.role[0].rules.clone().unwrap_or_default();
    let mut granted = Vec::new();
    for r in &rules {
        for group in r.api_groups.clone().unwrap_or_default() {
            for resource in r.resources.clone().unwrap_or_default() {
                for verb in &r.verbs {
                    granted.push(format!("{verb} {group}/{resource}"));
                }
            }
        }
    }
    granted.sort();
    // What kubernetes_driver sees the driver call for a StatefulSet: PATCH .../scale, GET pods.
    assert_eq!(granted, ["list /pods", "patch apps/statefulsets/scale"]);
    let binding = &o.bindings[0];
    assert_eq!(
        binding.role_ref.name,
        o.role[0].metadata.name.clone().unwrap()
    );
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(Some(&subject.name), o.accounts[0].metadata.name.as_ref());
    let pod = o.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(pod.service_account_name.as_ref(), Some(&subject.name));
}

#[test]
fn the_config_loads_and_names_the_example_database() {
    let o = objects();
    let text = &o.configs[0].data.as_ref().unwrap()["torpor.toml"];
    // The password comes from the pod's environment, which this process doesn't have (and
    // setting a variable while other tests run is unsound): a literal stands in for it.
    assert!(text.contains("password_env = \"APP_PASSWORD\""));
    let text = text.replace("password_env = \"APP_PASSWORD\"", "password = \"x\"");
    let cfg = torpor::config::Config::parse(&text, Path::new("/etc/torpor")).unwrap();
    let controller::driver::BackendConfig::Kubernetes(k) = &cfg.clusters[0].backend else {
        panic!("not the kubernetes driver: {:?}", cfg.clusters[0].backend);
    };
    let sts = &o.statefulsets[0];
    assert_eq!(sts.metadata.name.as_ref(), Some(&k.name));
    let spec = sts.spec.as_ref().unwrap();
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let wanted: BTreeMap<_, _> = spec.selector.match_labels.clone().unwrap();
    assert!(wanted.iter().all(|(k, v)| labels.get(k) == Some(v)));
    assert!(
        !spec
            .volume_claim_templates
            .clone()
            .unwrap_or_default()
            .is_empty()
    );
    let (host, port) = k.service.rsplit_once(':').unwrap();
    let svc_name = host.split('.').next().unwrap();
    let namespace = host.split('.').nth(1).unwrap();
    let svc = o
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(svc_name))
        .expect("the Service the config names");
    assert_eq!(svc.metadata.namespace.as_deref(), Some(namespace));
    assert_eq!(sts.metadata.namespace.as_deref(), Some(namespace));
    let svc_spec = svc.spec.as_ref().unwrap();
    assert_eq!(svc_spec.selector.clone().unwrap(), wanted);
    assert!(
        svc_spec
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.port.to_string() == port),
        "the Service has port {port}"
    );
}

/// keda/scaledobject.yaml: a KEDA ScaledObject (no k8s-openapi type: its fields are checked
/// against the ones KEDA documents) that scales a Deployment on torpor_cluster_active of the
/// cluster the ConfigMap's config names, in the same namespace.
#[test]
fn the_keda_example_scales_a_deployment_on_torpor_cluster_active() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/keda/scaledobject.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(docs.len(), 1);
    let so = &docs[0];
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["kind"], "ScaledObject");
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let spec = &so["spec"];
    for k in keys(spec) {
        assert!(
            [
                "scaleTargetRef",
                "minReplicaCount",
                "maxReplicaCount",
                "pollingInterval",
                "cooldownPeriod",
                "idleReplicaCount",
                "fallback",
                "advanced",
                "triggers",
            ]
            .contains(&k.as_str()),
            "spec.{k} is not a ScaledObject field"
        );
    }
    assert_eq!(spec["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(spec["minReplicaCount"], 0);
    let trigger = &spec["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    for k in keys(&trigger["metadata"]) {
        assert!(
            [
                "serverAddress",
                "query",
                "threshold",
                "activationThreshold",
                "namespace",
                "customHeaders",
                "ignoreNullValues",
                "queryParameters",
                "unsafeSsl",
            ]
            .contains(&k.as_str()),
            "triggers[0].metadata.{k} is not a Prometheus trigger field"
        );
    }
    // KEDA reads every metadata value as a string.
    assert!(
        trigger["metadata"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string)
    );

    let o = objects();
    let config = &o.configs[0];
    let text = config.data.as_ref().unwrap()["torpor.toml"]
        .replace("password_env = \"APP_PASSWORD\"", "password = \"x\"");
    let cfg = torpor::config::Config::parse(&text, Path::new("/etc/torpor")).unwrap();
    let query = trigger["metadata"]["query"].as_str().unwrap();
    let series = format!(
        "torpor_cluster_active{{cluster=\"{}\"}}",
        cfg.clusters[0].name
    );
    assert!(query.contains(&series), "{query} doesn't ask for {series}");
    assert_eq!(
        so["metadata"]["namespace"].as_str(),
        config.metadata.namespace.as_deref()
    );
}
