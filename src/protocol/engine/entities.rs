//! The entity table: every key's [`Slot`] in chunks of [`CHUNK`], in the
//! order the keys were first seen, found by key through a hash table of
//! indices.
//!
//! A key's index never changes (entities are never removed: a deleted key
//! keeps its tombstone), so the engine's books name entities by index, not
//! by a clone of the key. The hash table holds 4 bytes a key rather than
//! the key and its slot, so it stays small enough to sit in cache, and
//! walking every entity (a snapshot, the digest) reads the chunks in order.
//!
//! Chunks rather than one vector: a vector of a million slots (168 MB)
//! copied itself to grow, and the wasm's memory, which never shrinks,
//! kept the peak of both copies.

use crate::protocol::text::Text;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::hash_table::{Entry, HashTable};

use super::Slot;

/// Slots a chunk holds: a chunk is made whole when the one before it is
/// full (the first grows as a vector does, so a small room holds no more
/// than its keys need). A power of two: an index splits with a shift.
const CHUNK: usize = 4096;

#[derive(Debug)]
pub(super) struct Entities {
    /// Slot `i` is `chunks[i / CHUNK][i % CHUNK]`.
    chunks: Vec<Vec<Slot>>,
    len: usize,
    /// Indices of slots, hashed by their slot's key.
    index: HashTable<u32>,
    /// Seeded per engine, so a peer cannot aim keys at one bucket.
    hasher: FixedState,
}

/// Slot `i`'s chunk, and its place in it.
fn place(i: u32) -> (usize, usize) {
    let i = i as usize;
    (i / CHUNK, i % CHUNK)
}

/// The key of slot `i` (the hash table's view of the chunks).
fn key_of(chunks: &[Vec<Slot>], i: u32) -> &str {
    let (chunk, at) = place(i);
    &chunks[chunk][at].key
}

impl Entities {
    pub(super) fn with_seed(seed: u64) -> Self {
        Entities {
            chunks: Vec::new(),
            len: 0,
            index: HashTable::new(),
            hasher: FixedState::with_seed(seed),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Room for `additional` more keys: the hash table's, and the chunks
    /// their slots will fill (made now, each whole, so none grows).
    pub(super) fn reserve(&mut self, additional: usize) {
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index
            .reserve(additional, |&i| hasher.hash_one(key_of(chunks, i)));
        let total = self.len + additional;
        let start = self.chunks.len().saturating_sub(1) * CHUNK;
        if let Some(last) = self.chunks.last_mut() {
            // The last chunk made so far, topped up to its share of `total`.
            let room = CHUNK.min(total.saturating_sub(start));
            last.reserve_exact(room.saturating_sub(last.len()));
        }
        while self.chunks.len() < total.div_ceil(CHUNK) {
            let room = CHUNK.min(total - self.chunks.len() * CHUNK);
            self.chunks.push(Vec::with_capacity(room));
        }
    }

    /// Gives back the room a [`reserve`](Self::reserve) made for more keys
    /// than came: the chunks left empty, and the last one's spare room.
    pub(super) fn shrink(&mut self) {
        self.chunks.truncate(self.len.div_ceil(CHUNK));
        if let Some(last) = self.chunks.last_mut() {
            if last.capacity() > last.len() * 2 {
                last.shrink_to_fit();
            }
        }
    }

    /// The index of `key`'s slot.
    pub(super) fn find(&self, key: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| key_of(&self.chunks, i) == key)
            .copied()
    }

    pub(super) fn get(&self, key: &str) -> Option<&Slot> {
        let (chunk, at) = place(self.find(key)?);
        Some(&self.chunks[chunk][at])
    }

    /// The slot at `index` (one [`find`](Self::find) or an insert gave).
    pub(super) fn at(&mut self, index: u32) -> &mut Slot {
        let (chunk, at) = place(index);
        &mut self.chunks[chunk][at]
    }

    /// Appends `slot`: its index. (Inlined: a slot passed to a call is
    /// copied, 168 bytes, which was a fifth of loading a snapshot.)
    #[inline(always)]
    fn push(chunks: &mut Vec<Vec<Slot>>, len: &mut usize, slot: Slot) -> u32 {
        let at = *len / CHUNK;
        if at == chunks.len() {
            // The first chunk grows as a vector does; later ones are whole.
            let capacity = if chunks.is_empty() { 0 } else { CHUNK };
            chunks.push(Vec::with_capacity(capacity));
        }
        let chunk = &mut chunks[at];
        if chunk.len() == chunk.capacity() {
            // Doubling, but never past a chunk's worth (a chunk a reserve
            // or a shrink left short would otherwise double beyond it).
            let room = (2 * chunk.len()).clamp(4, CHUNK);
            chunk.reserve_exact(room - chunk.len());
        }
        chunk.push(slot);
        *len += 1;
        (*len - 1) as u32
    }

    /// The index of `key`'s slot, and whether `make` made it now.
    pub(super) fn find_or_insert(
        &mut self,
        key: &Text,
        make: impl FnOnce(Text) -> Slot,
    ) -> (u32, bool) {
        let hash = self.hasher.hash_one(&**key);
        let (chunks, len, hasher) = (&mut self.chunks, &mut self.len, &self.hasher);
        match self.index.entry(
            hash,
            |&i| key_of(chunks, i) == &**key,
            |&i| hasher.hash_one(key_of(chunks, i)),
        ) {
            Entry::Occupied(found) => (*found.get(), false),
            Entry::Vacant(vacant) => {
                let at = Self::push(chunks, len, make(key.clone()));
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
        let at = Self::push(&mut self.chunks, &mut self.len, slot);
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index
            .insert_unique(hash, at, |&i| hasher.hash_one(key_of(chunks, i)));
        at
    }

    /// Every slot, in index order.
    pub(super) fn values(&self) -> Slots<'_> {
        Slots {
            chunks: self.chunks.iter().flatten(),
            left: self.len,
        }
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.chunks.iter_mut().flatten()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &Text> {
        self.values().map(|s| &s.key)
    }
}

/// [`Entities::values`]: knows its length, so what collects from it is
/// sized once.
pub(super) struct Slots<'a> {
    chunks: std::iter::Flatten<std::slice::Iter<'a, Vec<Slot>>>,
    left: usize,
}

impl<'a> Iterator for Slots<'a> {
    type Item = &'a Slot;

    fn next(&mut self) -> Option<&'a Slot> {
        let slot = self.chunks.next()?;
        self.left -= 1;
        Some(slot)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Slots<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::clock::PeerId;
    use crate::protocol::entity::Entity;
    use crate::protocol::event::sample;

    fn slot(key: Text) -> Slot {
        Slot::new(key, Entity::new(&sample(PeerId(1), 1, "1")), None)
    }

    /// Keys past a chunk's worth are found at the index they were given,
    /// walked in that order, and no chunk is made larger than `CHUNK`: the
    /// table grows without moving a slot.
    #[test]
    fn slots_fill_whole_chunks_and_keep_their_indices() {
        let mut table = Entities::with_seed(3);
        let n = 2 * CHUNK + 17;
        for i in 0..n {
            let (index, new) = table.find_or_insert(&Text::from(format!("k{i}").as_str()), slot);
            assert_eq!((index as usize, new), (i, true));
        }
        let (again, new) = table.find_or_insert(&Text::from("k5"), slot);
        assert_eq!((again, new), (5, false));
        let first_slot = &table.chunks[1][0] as *const Slot;
        table.find_or_insert(&Text::from("one more"), slot);
        assert_eq!(
            &table.chunks[1][0] as *const Slot, first_slot,
            "no slot moved"
        );
        assert_eq!(table.chunks.len(), 3);
        assert!(table.chunks.iter().all(|c| c.len() <= CHUNK));
        assert_eq!(table.values().len(), n + 1);
        let keys: Vec<String> = table.keys().take(3).map(|k| k.to_string()).collect();
        assert_eq!(keys, ["k0", "k1", "k2"]);
        assert_eq!(table.find(&format!("k{}", n - 1)), Some(n as u32 - 1));
        assert_eq!(table.get("k4097").map(|s| &*s.key), Some("k4097"));
        assert_eq!(table.find("absent"), None);
    }

    /// A reserve makes the chunks whole up front; a shrink gives back
    /// those fewer keys than reserved left empty.
    #[test]
    fn reserve_makes_chunks_and_shrink_gives_back_the_unused() {
        let mut table = Entities::with_seed(3);
        table.reserve(3 * CHUNK);
        assert_eq!(table.chunks.len(), 3);
        assert!(table.chunks.iter().all(|c| c.capacity() >= CHUNK));
        for i in 0..CHUNK + 10 {
            table.insert_new(slot(Text::from(format!("k{i}").as_str())));
        }
        table.shrink();
        assert_eq!(table.chunks.len(), 2);
        assert!(table.chunks[1].capacity() < CHUNK);
        for i in (0..CHUNK + 10).step_by(97) {
            assert_eq!(table.find(&format!("k{i}")), Some(i as u32));
        }
        // Pushes after the shrink fill the short chunk up to a chunk's
        // worth, not past it.
        for i in CHUNK + 10..2 * CHUNK + 5 {
            table.insert_new(slot(Text::from(format!("k{i}").as_str())));
        }
        assert_eq!(table.chunks.len(), 3);
        assert!(table.chunks.iter().all(|c| c.capacity() <= CHUNK));
        assert_eq!(
            table.find(&format!("k{}", 2 * CHUNK + 4)),
            Some(2 * CHUNK as u32 + 4)
        );
    }
}
