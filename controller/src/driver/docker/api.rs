//! The Docker Engine API client, and what its failures mean to a waking client: a daemon that
//! doesn't answer may answer later (retryable); a refusal from the daemon is repeated until
//! someone changes something (not retryable).

use std::io;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as ApiError;
use bollard::query_parameters::WaitContainerOptions;
use futures_util::StreamExt;
use tokio::sync::Mutex;

use super::super::DriverError;

/// How long one API call may take; a start's or stop's own wait is bounded separately.
const CALL: Duration = Duration::from_secs(30);

/// A connection to one daemon, made when first needed and again after a failure: the daemon
/// may not run yet when torpor starts, and may restart.
pub(super) struct Api {
    host: String,
    cluster: String,
    client: Mutex<Option<Docker>>,
}

/// What a call got: the daemon's answer, a refusal with its status, or no answer.
pub(super) enum Failure {
    /// The daemon answered with this HTTP status and message.
    Refused { status: u16, message: String },
    /// The daemon was not reached, or did not answer in time.
    Unreachable(String),
}

impl Api {
    pub(super) fn new(host: String, cluster: &str) -> Api {
        Api {
            host,
            cluster: cluster.to_string(),
            client: Mutex::new(None),
        }
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// Runs `call` with a client, dropping the client when the daemon didn't answer so that
    /// the next call connects anew.
    pub(super) async fn call<T, F, Fut>(&self, call: F) -> Result<T, Failure>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.call_within(CALL, call).await
    }

    pub(super) async fn call_within<T, F, Fut>(
        &self,
        within: Duration,
        call: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let client = self.client(within).await?;
        let result = match tokio::time::timeout(within, call(client)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => classify(e),
            Err(_) => Failure::Unreachable(format!(
                "no answer within {}",
                humantime::format_duration(within)
            )),
        };
        if matches!(result, Failure::Unreachable(_)) {
            *self.client.lock().await = None;
        }
        Err(result)
    }

    async fn client(&self, within: Duration) -> Result<Docker, Failure> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // Each call has its own bound (a stop's is its timeout, which may pass bollard's
        // default of two minutes); the client's own only ends the wait of `wait_stopped`.
        let fresh = Docker::connect_with_host(&self.host)
            .map_err(classify)?
            .with_timeout(Duration::from_secs(3600));
        // Speak the daemon's API version: bollard's own is newer than many daemons in use
        // (Debian's 20.10 speaks 1.41).
        let client = match tokio::time::timeout(within, fresh.negotiate_version()).await {
            Ok(r) => r.map_err(classify)?,
            Err(_) => return Err(Failure::Unreachable("no answer to /version".into())),
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Waits until the container `name` does not run, and says with what exit code. Err when
    /// the daemon stops answering (a request lasts an hour at most: then ask again) or the
    /// container is gone (404).
    pub(super) async fn wait_stopped(&self, name: &str) -> Result<i64, Failure> {
        let client = self.client(CALL).await?;
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut answers = client.wait_container(name, Some(options));
        let failure = match answers.next().await {
            Some(Ok(r)) => return Ok(r.status_code),
            Some(Err(ApiError::DockerContainerWaitError { code, .. })) => return Ok(code),
            Some(Err(e)) => classify(e),
            None => Failure::Unreachable("the wait ended without an answer".into()),
        };
        if matches!(failure, Failure::Unreachable(_)) {
            *self.client.lock().await = None;
        }
        Err(failure)
    }

    /// The error a waking client sees for `failure` while torpor did `what`.
    pub(super) fn error(&self, what: &str, failure: Failure) -> DriverError {
        match failure {
            Failure::Refused { status, message } => DriverError::Failed(format!(
                "cluster {}: docker {what}: {message} (HTTP {status})",
                self.cluster
            )),
            Failure::Unreachable(why) => DriverError::Io {
                what: format!(
                    "cluster {}: the Docker daemon at {} does not answer ({what})",
                    self.cluster, self.host
                ),
                source: io::Error::new(io::ErrorKind::ConnectionRefused, why),
            },
        }
    }
}

fn classify(e: ApiError) -> Failure {
    match e {
        ApiError::DockerResponseServerError {
            status_code,
            message,
        } => Failure::Refused {
            status: status_code,
            message,
        },
        other => Failure::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_daemon_that_is_not_there_is_worth_another_try() {
        let api = Api::new("unix:///nonexistent/torpor/docker.sock".into(), "c");
        let Err(failure) = api.call(|d| async move { d.ping().await }).await else {
            panic!("no daemon there");
        };
        let e = api.error("inspect", failure);
        assert!(e.is_retryable(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(
                "the Docker daemon at unix:///nonexistent/torpor/docker.sock does not answer"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_refusal_is_not_retried() {
        let api = Api::new("unix:///x".into(), "c");
        let e = api.error(
            "create",
            Failure::Refused {
                status: 409,
                message: "Conflict".into(),
            },
        );
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "cluster c: docker create: Conflict (HTTP 409)"
        );
    }
}
