//! Work proportional to what a client sent, moved off the async runtime when it is large. The
//! trackers' statement scans cost up to ~200 ns a byte; on the runtime, one client's 16 MiB
//! multi-statement query would hold a worker thread, and every session on it, for seconds.
//! Up to [`INLINE_BYTES`] they run in place (a few milliseconds at worst); past it, on tokio's
//! blocking pool while the session waits, and other sessions go on.

use metrics::Counter;

use super::Error;

/// The most input whose scans run on the runtime itself.
pub(crate) const INLINE_BYTES: usize = 64 * 1024;

/// Runs `f` on `state`: in place when `size` is at most [`INLINE_BYTES`], else on the
/// blocking pool, `state` moved there and back (left at its default meanwhile). `offloaded`
/// counts the bytes that went.
pub(crate) async fn run<S, R>(
    size: usize,
    state: &mut S,
    offloaded: &Counter,
    f: impl FnOnce(&mut S) -> R + Send + 'static,
) -> Result<R, Error>
where
    S: Default + Send + 'static,
    R: Send + 'static,
{
    if size <= INLINE_BYTES {
        return Ok(f(state));
    }
    offloaded.increment(size as u64);
    let mut owned = std::mem::take(state);
    let (owned, out) = tokio::task::spawn_blocking(move || {
        let out = f(&mut owned);
        (owned, out)
    })
    .await
    .map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "a statement scan failed: {e}"
        )))
    })?;
    *state = owned;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A large input's work leaves the runtime free: on a single-threaded runtime, another task
    /// gets to run while it is under way (here, it is what lets the work finish).
    #[tokio::test(flavor = "current_thread")]
    async fn large_work_leaves_the_runtime_to_other_tasks() {
        let (tx, rx) = mpsc::channel::<()>();
        let other = tokio::spawn(async move {
            tx.send(()).ok();
        });
        let mut state = 0u32;
        let waited = tokio::time::timeout(
            Duration::from_secs(60),
            run(INLINE_BYTES + 1, &mut state, &Counter::noop(), move |s| {
                *s += 1;
                rx.recv_timeout(Duration::from_secs(30)).is_ok()
            }),
        )
        .await;
        assert!(matches!(waited, Ok(Ok(true))), "{waited:?}");
        assert_eq!(state, 1);
        other.await.ok();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn small_work_runs_in_place() {
        let mut state = String::from("a");
        let len = run(3, &mut state, &Counter::noop(), |s| {
            s.push('b');
            s.len()
        })
        .await;
        assert!(matches!(len, Ok(2)));
        assert_eq!(state, "ab");
    }
}
