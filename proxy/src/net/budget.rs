//! The proxy-wide budget for client messages held whole in memory (`[proxy]
//! max_buffered_bytes`). A client message is framed whole before it is passed on; without a
//! total, a few clients each sending a message near the per-message limit take the machine's
//! memory. A message that doesn't fit gets the server's out-of-memory error on its own
//! session; the others go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `[proxy] max_buffered_bytes` when the config doesn't say.
pub(crate) const DEFAULT_MAX_BUFFERED: usize = 256 << 20;

/// Messages up to this size aren't counted: a connection's read buffer holds that much anyway,
/// and the hot path of small queries stays free of a shared counter.
pub(crate) const UNCOUNTED: usize = 64 << 10;

#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now, over every session.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one connection holds of a budget for the message it is reading; given back when
/// dropped.
#[derive(Debug, Default)]
pub(crate) struct Held {
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Held {
    /// Holds `bytes` in all (what was held before counts toward it). False, and nothing more
    /// held, when that would take the budget past its limit.
    pub(crate) fn hold(&mut self, budget: &Arc<Budget>, bytes: usize) -> bool {
        if !self.budget.as_ref().is_some_and(|b| Arc::ptr_eq(b, budget)) {
            self.release();
            self.budget = Some(budget.clone());
        }
        if bytes <= self.bytes {
            budget.give_back(self.bytes - bytes);
        } else if !budget.take(bytes - self.bytes) {
            return false;
        }
        self.bytes = bytes;
        true
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn release(&mut self) {
        if let Some(b) = &self.budget {
            b.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_add_up_to_the_limit_and_come_back() {
        let budget = Budget::new(100);
        let mut a = Held::default();
        let mut b = Held::default();
        assert!(a.hold(&budget, 60));
        assert!(!b.hold(&budget, 50), "60 + 50 is over 100");
        assert!(b.hold(&budget, 40));
        assert_eq!(budget.used(), 100);
        assert!(a.hold(&budget, 10), "shrinking always fits");
        assert!(b.hold(&budget, 90), "a's 50 came back");
        drop(b);
        assert_eq!(budget.used(), 10);
        a.release();
        assert_eq!(budget.used(), 0);
    }
}
