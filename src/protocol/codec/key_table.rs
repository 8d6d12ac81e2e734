//! A batch's key table for the encoder: each distinct key's index, in
//! the order keys were first met.
//!
//! A snapshot spells a million keys, nearly all distinct, and a table of
//! that size is far larger than the caches: each lookup is a cache miss,
//! and they were most of encoding a snapshot's events. So the table is
//! one word a slot (half the key's hash beside its index), found in one
//! probe where a general hash table takes two (its control bytes, then
//! its slot), and the encoder [warms](KeyTable::warm) the slots of the
//! keys to come a group at a time, so their misses overlap instead of
//! following one another.
//!
//! Keys are peers' to choose: the hasher is seeded at random
//! ([`hashing`]), and the table is kept at most three quarters full, so
//! no key probes far (a probe walks on to the next slot, in the same
//! cache line most of the time). Its size is not rounded up to a power of
//! two: a million keys take 10.7 MB of table, as many as the general
//! table took.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::protocol::{hashing, prefetch};

pub struct KeyTable<'a> {
    /// 0 is empty; else the hash's low 32 bits, then the index plus one.
    /// A key's first slot comes from the hash's high bits.
    slots: Vec<u64>,
    /// The keys, by index.
    keys: Vec<&'a str>,
    hasher: FixedState,
}

/// Where a key is: its index, and whether it was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Known(u32),
    New(u32),
}

impl<'a> KeyTable<'a> {
    /// A table for about `keys` distinct keys (it grows past them).
    pub fn with_capacity(keys: usize) -> Self {
        KeyTable {
            slots: vec![0; slots_for(keys)],
            keys: Vec::with_capacity(keys),
            hasher: hashing::state(),
        }
    }

    pub fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Brings in the slot where a key of `hash` is looked up first. Where
    /// the target has no prefetch it returns the slot's word, which the
    /// caller folds with the words of several keys into one value it keeps
    /// (`std::hint::black_box`), so their loads are issued together.
    pub fn warm(&self, hash: u64) -> u64 {
        let slot = &self.slots[self.home(hash)];
        if prefetch::AVAILABLE {
            prefetch::prefetch(slot);
            0
        } else {
            *slot
        }
    }

    /// `key`'s index (`hash` is [`hash`](Self::hash)'s), taking the next
    /// one if it is new. `None` past `u32::MAX - 1` distinct keys.
    pub fn find_or_insert(&mut self, key: &'a str, hash: u64) -> Option<Found> {
        let tag = tag(hash);
        let mut at = self.home(hash);
        loop {
            match self.slots[at] {
                0 => break,
                word if word & !u64::from(u32::MAX) == tag => {
                    let index = (word as u32) - 1;
                    if self.keys[index as usize] == key {
                        return Some(Found::Known(index));
                    }
                }
                _ => {}
            }
            at = self.after(at);
        }
        let index = u32::try_from(self.keys.len())
            .ok()
            .filter(|&i| i < u32::MAX)?;
        self.slots[at] = tag | u64::from(index + 1);
        self.keys.push(key);
        if self.keys.len() * 4 > self.slots.len() * 3 {
            self.grow();
        }
        Some(Found::New(index))
    }

    /// The slot a key of `hash` is looked up in first: the hash's high
    /// bits scaled to the table's size.
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    fn after(&self, at: usize) -> usize {
        if at + 1 == self.slots.len() {
            0
        } else {
            at + 1
        }
    }

    /// Twice the slots, every key placed anew.
    fn grow(&mut self) {
        self.slots = vec![0; self.slots.len() * 2];
        for (index, key) in self.keys.iter().enumerate() {
            let hash = self.hasher.hash_one(key);
            let mut at = self.home(hash);
            while self.slots[at] != 0 {
                at = self.after(at);
            }
            self.slots[at] = tag(hash) | (index as u64 + 1);
        }
    }
}

/// A slot's high half: the hash's low 32 bits.
fn tag(hash: u64) -> u64 {
    hash << 32
}

/// Room for `keys` keys at three quarters full (and at least 16 slots).
fn slots_for(keys: usize) -> usize {
    keys.saturating_mul(4).div_ceil(3).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert<'a>(table: &mut KeyTable<'a>, key: &'a str) -> Found {
        let hash = table.hash(key);
        table.find_or_insert(key, hash).expect("room")
    }

    #[test]
    fn keys_take_indices_in_order_first_met() {
        let mut table = KeyTable::with_capacity(0);
        assert_eq!(insert(&mut table, "a"), Found::New(0));
        assert_eq!(insert(&mut table, "b"), Found::New(1));
        assert_eq!(insert(&mut table, "a"), Found::Known(0));
        assert_eq!(insert(&mut table, ""), Found::New(2));
        assert_eq!(insert(&mut table, ""), Found::Known(2));
    }

    #[test]
    fn growing_keeps_every_index() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("key {i}")).collect();
        let mut table = KeyTable::with_capacity(3);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(insert(&mut table, key), Found::New(i as u32));
        }
        for (i, key) in keys.iter().enumerate().rev() {
            assert_eq!(insert(&mut table, key), Found::Known(i as u32));
        }
        assert!(table.slots.len() * 3 >= 4 * keys.len());
    }

    #[test]
    fn keys_whose_hashes_share_a_tag_or_a_slot_stay_apart() {
        // Every key in one slot with one tag: only the comparison of the
        // keys themselves tells them apart.
        let mut table = KeyTable::with_capacity(4);
        let keys = ["x", "y", "z"];
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.find_or_insert(key, 7), Some(Found::New(i as u32)));
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.find_or_insert(key, 7), Some(Found::Known(i as u32)));
        }
    }
}
