//! What snapshots being taken in may hold of memory at once, shared by
//! every node given the same [`IntakeBudget`].
//!
//! A snapshot's offer names its length, and its decoded events take
//! ~160 bytes each where the bytes may spell one in a byte: a member's
//! offer of a few KB gzipped makes a node hold up to
//! [`max_snapshot`](super::SyncConfig::max_snapshot) inflated and
//! [`max_snapshot_events`](super::SyncConfig::max_snapshot_events)
//! decoded, over a GB, before anything but its form can be checked. One
//! node, one snapshot at a time, holds that much at most; the room peer
//! runs every room in one process, and each room's node may take a
//! snapshot at once. Its nodes share one budget: a snapshot that does not
//! fit in what is left is not taken now (a later offer is).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes that snapshots being taken in may hold at once, shared by its
/// clones. A node's default is one of its own of [`DEFAULT_INTAKE_BYTES`].
#[derive(Clone, Debug)]
pub struct IntakeBudget(Arc<AtomicU64>);

/// A node's own budget: a snapshot of a million keys (~20 MB, its events
/// ~160 MB decoded) fits several times over.
pub const DEFAULT_INTAKE_BYTES: u64 = 1 << 30;

impl Default for IntakeBudget {
    fn default() -> Self {
        IntakeBudget::new(DEFAULT_INTAKE_BYTES)
    }
}

impl IntakeBudget {
    /// A budget of `bytes`, shared by its clones.
    pub fn new(bytes: u64) -> Self {
        IntakeBudget(Arc::new(AtomicU64::new(bytes)))
    }

    /// What is left.
    pub fn left(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// `bytes` of what is left, held until the reservation is dropped;
    /// `None` when less is left.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    fn take(&self, bytes: u64) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

/// Bytes held of an [`IntakeBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: IntakeBudget,
    bytes: u64,
}

impl Reservation {
    /// Holds `bytes` more; returns whether they were left (else nothing
    /// more is held).
    pub fn grow(&mut self, bytes: u64) -> bool {
        let taken = self.budget.take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }

    /// What it holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.0.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_back_what_they_hold() {
        let budget = IntakeBudget::new(100);
        let shared = budget.clone();
        let mut a = budget.reserve(60).expect("60 of 100");
        assert!(shared.reserve(50).is_none(), "40 are left");
        assert!(!a.grow(41));
        assert_eq!(a.bytes(), 60, "a refused growth holds nothing more");
        assert!(a.grow(40));
        assert_eq!(budget.left(), 0);
        drop(a);
        assert_eq!(shared.left(), 100);
        assert!(shared.reserve(100).is_some());
        assert_eq!(budget.left(), 100, "dropped at once, given back");
    }
}
