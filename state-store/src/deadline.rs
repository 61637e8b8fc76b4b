//! Every store operation has a deadline: a client waits on a wake's read, a drain on a
//! checkpoint's write, and neither may hang with the store.

use std::future::Future;
use std::time::Duration;

use crate::StoreError;

pub(crate) trait Within: Future + Sized {
    /// The future's output, or [`StoreError::Timeout`] naming `what` once `limit` passed.
    async fn within(
        self,
        limit: Duration,
        what: impl Into<String>,
    ) -> Result<Self::Output, StoreError> {
        tokio::time::timeout(limit, self).await.map_err(|_| {
            StoreError::Timeout(format!("{}: no answer within {limit:?}", what.into()))
        })
    }
}

impl<F: Future> Within for F {}
