//! What clients can take of this process: connection slots under `max_client_connections`
//! (over all clusters, and per cluster where set), and the file descriptors behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// One cap on client connections, shared by every connection it counts.
#[derive(Clone)]
pub(crate) struct Cap {
    used: Arc<AtomicUsize>,
    max: usize,
}

impl Cap {
    pub(crate) fn new(max: usize) -> Cap {
        Cap {
            used: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// A connection's place under each of its caps, given back when it is dropped.
pub(crate) struct Slot(Vec<Cap>);

impl Drop for Slot {
    fn drop(&mut self) {
        for cap in &self.0 {
            cap.used.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A slot under every one of `caps`, or None when any of them is full.
pub(crate) fn admit(caps: &[Cap]) -> Option<Slot> {
    let mut slot = Slot(Vec::with_capacity(caps.len()));
    for cap in caps {
        // On a full cap, dropping the partial slot gives back what it took.
        if !cap.try_take() {
            return None;
        }
        slot.0.push(cap.clone());
    }
    Some(slot)
}

/// Raises the soft limit on open files to the hard one: at the usual 1,024 a few hundred
/// sessions (each a client and a backend socket) exhaust it and new clients time out. Logs
/// the figure, and warns when `max_client_connections` can't fit under it.
pub(crate) fn raise_descriptor_limit(max_client_connections: usize) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open file limit");
            return;
        }
    };
    let limit = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open file limit");
                soft
            }
        }
    } else {
        soft
    };
    tracing::info!(limit, "open file limit");
    // A client connection holds its own socket and, while attached, one to the backend.
    let needed = (max_client_connections as u64).saturating_mul(2);
    if needed > limit {
        tracing::warn!(
            limit,
            max_client_connections,
            "the open file limit is below two descriptors per allowed client connection"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cap_refuses_and_gives_back_what_the_others_took() {
        let all = Cap::new(3);
        let one = Cap::new(1);
        let a = admit(&[all.clone(), one.clone()]).unwrap();
        assert!(admit(&[all.clone(), one.clone()]).is_none());
        // The refusal above took nothing from `all`.
        let b = admit(std::slice::from_ref(&all)).unwrap();
        let _c = admit(std::slice::from_ref(&all)).unwrap();
        assert!(admit(std::slice::from_ref(&all)).is_none());
        drop(b);
        drop(a);
        let _d = admit(&[all.clone(), one.clone()]).unwrap();
        assert_eq!(all.used.load(Ordering::SeqCst), 2);
    }
}
