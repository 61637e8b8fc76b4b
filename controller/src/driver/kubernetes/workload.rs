//! The API calls the driver makes, and no others (deploy/kubernetes/rbac.yaml grants exactly
//! these): `patch` on `statefulsets/scale` or `deployments/scale`, or on a CloudNativePG
//! `clusters` object; `list` on `pods` by label selector.

use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;

use super::Kind;

/// CloudNativePG's declarative hibernation: "on" deletes the pods and keeps the volumes.
const HIBERNATION: &str = "cnpg.io/hibernation";

pub(super) struct Workload {
    client: kube::Client,
    kind: Kind,
    namespace: String,
    name: String,
}

/// Which pods belong to the workload: `all` of them (none may be left after a stop), and
/// the one that serves (`primary`), whose Ready condition ends a start.
pub(super) struct Selectors {
    pub(super) all: String,
    pub(super) primary: String,
}

/// The pods a selector matched, and how many of them are Ready (and not being deleted).
pub(super) struct Pods {
    pub(super) total: usize,
    pub(super) ready: usize,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The API server answered with something the driver can't use.
    #[error("{0}")]
    Odd(String),
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Statefulset => "statefulset",
            Kind::Deployment => "deployment",
            Kind::Cnpg => "cnpg cluster",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

impl Workload {
    pub(super) fn new(client: kube::Client, kind: Kind, namespace: &str, name: &str) -> Self {
        Workload {
            client,
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// Scales to one replica (or wakes the CNPG cluster), or to none; returns which pods to
    /// watch. Idempotent: asking for what already is changes nothing.
    pub(super) async fn set_running(&self, on: bool) -> Result<Selectors, CallError> {
        let replicas = json!({ "spec": { "replicas": i32::from(on) } });
        let scale = Patch::Merge(&replicas);
        let pp = PatchParams::default();
        let scaled = match self.kind {
            Kind::Statefulset => {
                Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                    .patch_scale(&self.name, &pp, &scale)
                    .await?
            }
            Kind::Deployment => {
                Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
                    .patch_scale(&self.name, &pp, &scale)
                    .await?
            }
            Kind::Cnpg => return self.hibernate(!on).await,
        };
        let selector = scaled
            .status
            .and_then(|s| s.selector)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CallError::Odd(format!(
                    "{self}: its scale subresource has no status.selector to find its pods by"
                ))
            })?;
        Ok(Selectors {
            all: selector.clone(),
            primary: selector,
        })
    }

    async fn hibernate(&self, on: bool) -> Result<Selectors, CallError> {
        let resource = ApiResource {
            group: "postgresql.cnpg.io".into(),
            version: "v1".into(),
            api_version: "postgresql.cnpg.io/v1".into(),
            kind: "Cluster".into(),
            plural: "clusters".into(),
        };
        let patch = json!({ "metadata": { "annotations": { HIBERNATION: if on { "on" } else { "off" } } } });
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &resource)
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // The labels CloudNativePG puts on its instances; clients reach the primary.
        let all = format!("cnpg.io/cluster={}", self.name);
        Ok(Selectors {
            primary: format!("{all},cnpg.io/instanceRole=primary"),
            all,
        })
    }

    pub(super) async fn pods(&self, selector: &str) -> Result<Pods, CallError> {
        let list = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(selector))
            .await?;
        let ready = list.items.iter().filter(|p| is_ready(p)).count();
        Ok(Pods {
            total: list.items.len(),
            ready,
        })
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
