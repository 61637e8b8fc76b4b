//! What ends a session from outside: torpor shutting down, or a KILL of the session.

use std::pin::Pin;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub(crate) struct Ending {
    pub shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    pub killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Ending {
    pub(crate) fn new(shutdown: &CancellationToken, kill: &CancellationToken) -> Ending {
        Ending {
            shutdown: Box::pin(shutdown.clone().cancelled_owned()),
            killed: Box::pin(kill.clone().cancelled_owned()),
        }
    }
}
