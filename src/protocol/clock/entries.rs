//! A small clock's entries: one held in place, more in a vector.
//!
//! Most clocks are an event's `deps` and `observed`, with none or one
//! entry. One entry is held in place (no allocation), none is an empty
//! vector (no allocation either), and the whole is as large as a vector:
//! 24 bytes, where a `SmallVec` of one entry took 24 and the clock's
//! form beside it 8 more, in every event twice.

use std::ops::{Deref, DerefMut};

/// A clock entry: a peer and its sequence number.
pub type Entry = (super::PeerId, u64);

#[derive(Clone, Debug)]
pub enum Entries {
    One([Entry; 1]),
    /// Any number, none included.
    Many(Vec<Entry>),
}

impl Default for Entries {
    fn default() -> Self {
        Entries::new()
    }
}

impl Entries {
    pub const fn new() -> Self {
        Entries::Many(Vec::new())
    }

    pub const fn one(entry: Entry) -> Self {
        Entries::One([entry])
    }

    /// Room for `capacity` entries (one needs none).
    pub fn with_capacity(capacity: usize) -> Self {
        match capacity {
            0 | 1 => Entries::new(),
            _ => Entries::Many(Vec::with_capacity(capacity)),
        }
    }

    /// The entries of `entries`; one is held in place, its vector freed.
    pub fn from_vec(entries: Vec<Entry>) -> Self {
        match entries[..] {
            [entry] => Entries::one(entry),
            _ => Entries::Many(entries),
        }
    }

    /// The entries as a vector, for changes of their number (one held in
    /// place moves to the heap).
    pub fn vec(&mut self) -> &mut Vec<Entry> {
        if let Entries::One([entry]) = *self {
            *self = Entries::Many(vec![entry]);
        }
        match self {
            Entries::Many(entries) => entries,
            Entries::One(_) => unreachable!("moved to a vector above"),
        }
    }

    pub fn push(&mut self, entry: Entry) {
        match self {
            Entries::Many(entries) if entries.capacity() == 0 => *self = Entries::one(entry),
            _ => self.vec().push(entry),
        }
    }

    pub fn insert(&mut self, index: usize, entry: Entry) {
        match self {
            Entries::Many(entries) if entries.capacity() == 0 && index == 0 => {
                *self = Entries::one(entry)
            }
            _ => self.vec().insert(index, entry),
        }
    }

    pub fn remove(&mut self, index: usize) -> Entry {
        self.vec().remove(index)
    }
}

impl Deref for Entries {
    type Target = [Entry];

    #[inline]
    fn deref(&self) -> &[Entry] {
        match self {
            Entries::One(entry) => entry,
            Entries::Many(entries) => entries,
        }
    }
}

impl DerefMut for Entries {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Entry] {
        match self {
            Entries::One(entry) => entry,
            Entries::Many(entries) => entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::clock::PeerId;

    fn e(peer: u64, seq: u64) -> Entry {
        (PeerId(peer), seq)
    }

    #[test]
    fn one_entry_is_held_in_place_and_more_move_to_a_vector() {
        let mut entries = Entries::new();
        entries.push(e(1, 1));
        assert!(matches!(entries, Entries::One(_)));
        entries.push(e(2, 5));
        entries.insert(0, e(0, 3));
        assert_eq!(&entries[..], &[e(0, 3), e(1, 1), e(2, 5)]);
        assert_eq!(entries.remove(1), e(1, 1));
        entries.vec().retain(|&(p, _)| p == PeerId(2));
        assert_eq!(&entries[..], &[e(2, 5)]);
        let mut one = Entries::new();
        one.insert(0, e(4, 4));
        assert!(matches!(one, Entries::One(_)));
        assert_eq!(one.remove(0), e(4, 4));
        assert!(one.is_empty());
        assert!(matches!(Entries::from_vec(vec![e(1, 1)]), Entries::One(_)));
        assert_eq!(Entries::from_vec(vec![e(1, 1), e(2, 2)]).len(), 2);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_clock_is_as_large_as_a_vector() {
        assert_eq!(std::mem::size_of::<Entries>(), 24);
        assert_eq!(std::mem::size_of::<crate::protocol::VectorClock>(), 24);
    }
}
