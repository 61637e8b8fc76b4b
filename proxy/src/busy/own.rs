//! torpor's own backend connections other than the check's (the catalog learners'), which the
//! default busy query must not take for the database's own work.

use std::sync::Mutex;

#[derive(Debug, Default)]
pub(crate) struct OwnBackends(Mutex<Vec<i32>>);

/// Holds an id in [`OwnBackends`] until dropped.
pub(crate) struct Held<'a> {
    own: &'a OwnBackends,
    id: i32,
}

impl OwnBackends {
    /// The connection `id` (a pid, a MySQL thread id) is torpor's while the guard lives.
    pub(crate) fn hold(&self, id: i32) -> Held<'_> {
        self.lock().push(id);
        Held { own: self, id }
    }

    pub(crate) fn ids(&self) -> Vec<i32> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<i32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut ids = self.own.lock();
        if let Some(at) = ids.iter().position(|i| *i == self.id) {
            ids.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_held_while_its_guard_lives() {
        let own = OwnBackends::default();
        let a = own.hold(7);
        {
            let _b = own.hold(9);
            assert_eq!(own.ids(), vec![7, 9]);
        }
        assert_eq!(own.ids(), vec![7]);
        drop(a);
        assert!(own.ids().is_empty());
    }
}
