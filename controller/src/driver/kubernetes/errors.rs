//! A failed API call as the waking client reads it. Whether the next wake may succeed with
//! nothing changed decides the variant: an API server that can't be reached or is
//! overloaded may come back ([`DriverError::Unavailable`]); a workload that doesn't exist,
//! or a service account without the right, stays so until someone acts ([`DriverError::Failed`]).

use super::super::DriverError;
use super::workload::{CallError, Workload};
use crate::error_chain as chain;

pub(super) fn from_call(cluster: &str, w: &Workload, doing: &str, e: CallError) -> DriverError {
    let what = format!("cluster {cluster}: {w}: {doing}");
    let e = match e {
        CallError::Kube(e) => e,
        CallError::Odd(said) => return DriverError::Failed(format!("{what}: {said}")),
    };
    match e {
        kube::Error::Api(status) => {
            let said = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            match status.code {
                401 => DriverError::Failed(format!(
                    "{what}: the Kubernetes API server did not accept torpor's credentials: {said}"
                )),
                403 => DriverError::Failed(format!(
                    "{what}: forbidden by the Kubernetes API server: {said} (torpor's service account needs the Role in deploy/kubernetes/rbac.yaml)"
                )),
                404 => {
                    DriverError::Failed(format!("{what}: not found in the Kubernetes API: {said}"))
                }
                408 | 429 | 500..=599 => DriverError::Unavailable(format!(
                    "{what}: the Kubernetes API server can't answer now ({}): {said}",
                    status.code
                )),
                code => DriverError::Failed(format!(
                    "{what}: the Kubernetes API server refused ({code}): {said}"
                )),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => DriverError::Unavailable(format!(
            "{what}: the Kubernetes API server could not be reached: {}",
            chain(&e)
        )),
        other => DriverError::Failed(format!("{what}: {}", chain(&other))),
    }
}
