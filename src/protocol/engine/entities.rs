//! The entity table: every key's [`Slot`] in one vector, in the order the
//! keys were first seen, found by key through a hash table of indices.
//!
//! A key's index never changes (entities are never removed: a deleted key
//! keeps its tombstone), so the engine's books name entities by index, not
//! by a clone of the key. The hash table holds 4 bytes a key rather than
//! the key and its slot, so it stays small enough to sit in cache, and
//! walking every entity (a snapshot, the digest) reads one vector in order.

use crate::protocol::text::Text;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::hash_table::{Entry, HashTable};

use super::Slot;

#[derive(Debug)]
pub(super) struct Entities {
    slots: Vec<Slot>,
    /// Indices into `slots`, hashed by their slot's key.
    index: HashTable<u32>,
    /// Seeded per engine, so a peer cannot aim keys at one bucket.
    hasher: FixedState,
}

impl Entities {
    pub(super) fn with_seed(seed: u64) -> Self {
        Entities {
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(seed),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .reserve(additional, |&i| hasher.hash_one(&*slots[i as usize].key));
    }

    /// Gives back the slots' spare room when over half of it is unused (a
    /// [`reserve`](Self::reserve) for more keys than came).
    pub(super) fn shrink(&mut self) {
        if self.slots.capacity() > self.slots.len() * 2 {
            self.slots.shrink_to_fit();
        }
    }

    /// The index of `key`'s slot.
    pub(super) fn find(&self, key: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| *self.slots[i as usize].key == *key)
            .copied()
    }

    pub(super) fn get(&self, key: &str) -> Option<&Slot> {
        self.find(key).map(|i| &self.slots[i as usize])
    }

    /// The slot at `index` (one [`find`](Self::find) or an insert gave).
    pub(super) fn at(&mut self, index: u32) -> &mut Slot {
        &mut self.slots[index as usize]
    }

    /// The index of `key`'s slot, and whether `make` made it now.
    pub(super) fn find_or_insert(
        &mut self,
        key: &Text,
        make: impl FnOnce(Text) -> Slot,
    ) -> (u32, bool) {
        let hash = self.hasher.hash_one(&**key);
        let (slots, hasher) = (&mut self.slots, &self.hasher);
        match self.index.entry(
            hash,
            |&i| *slots[i as usize].key == **key,
            |&i| hasher.hash_one(&*slots[i as usize].key),
        ) {
            Entry::Occupied(found) => (*found.get(), false),
            Entry::Vacant(vacant) => {
                let at = slots.len() as u32;
                slots.push(make(key.clone()));
                vacant.insert(at);
                (at, true)
            }
        }
    }

    /// Adds a slot whose key the table does not hold (the caller knows:
    /// a fresh engine loading a snapshot's entities, each key once), with
    /// no comparison of keys.
    pub(super) fn insert_new(&mut self, slot: Slot) -> u32 {
        let hash = self.hasher.hash_one(&*slot.key);
        let at = self.slots.len() as u32;
        self.slots.push(slot);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, at, |&i| hasher.hash_one(&*slots[i as usize].key));
        at
    }

    pub(super) fn values(&self) -> std::slice::Iter<'_, Slot> {
        self.slots.iter()
    }

    pub(super) fn values_mut(&mut self) -> std::slice::IterMut<'_, Slot> {
        self.slots.iter_mut()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &Text> {
        self.slots.iter().map(|s| &s.key)
    }
}
