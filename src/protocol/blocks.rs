//! A map of sorted blocks of at most [`BLOCK`] entries each, in key
//! order: the entries of a large clock, and a set's members. A lookup is
//! a search for the block, then one within it (from where a peer id's
//! value puts it, natively; see [`Place`]); a new key moves at
//! most a block's entries, not the map's (a room of 30,000 writers adds
//! them in no order). It does what a `BTreeMap` did here, in a fraction of
//! the wasm each `BTreeMap` type took with its node code and the sort of
//! its `FromIterator`. The clock serializes, compares and prints itself
//! by its entries, so this has none of that.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::sorted_map;

/// Entries a block holds at most; a fuller block splits in two.
const BLOCK: usize = 256;

/// Sorted by key across blocks, each key once, no block empty.
#[derive(Clone)]
pub struct Blocks<K, V> {
    blocks: Vec<Vec<(K, V)>>,
    /// Each block's first key, side by side: the search for a block reads
    /// this one array, not the first entry of a block at a time (each its
    /// own allocation, a cache miss a step in a clock of 30,000 peers).
    firsts: Vec<K>,
    len: usize,
    /// Where the last lookup ended (block, index): tried first by the
    /// next. An event's origin is looked up several times in a row in a
    /// room's version vector (is it new, its bound, then observed), and
    /// a clock of 30,000 peers made each a search of ~15 probes, most of
    /// them cache misses.
    last: Last,
}

/// A place (block, index) kept by a lookup through `&self`: atomic only
/// so that a clock may be shared between threads (a `static` empty one
/// is); any place is a correct one to try, so no ordering is needed. A
/// relaxed load or store is a plain one, natively and in the wasm.
#[derive(Default)]
struct Last(AtomicU64);

impl Last {
    fn get(&self) -> (usize, usize) {
        let both = self.0.load(Relaxed);
        ((both >> 32) as usize, both as u32 as usize)
    }

    fn set(&self, (b, i): (usize, usize)) {
        self.0.store(((b as u64) << 32) | i as u64, Relaxed);
    }
}

impl Clone for Last {
    fn clone(&self) -> Self {
        Last(AtomicU64::new(self.0.load(Relaxed)))
    }
}

impl<K, V> Default for Blocks<K, V> {
    fn default() -> Self {
        Blocks {
            blocks: Vec::new(),
            firsts: Vec::new(),
            len: 0,
            last: Last::default(),
        }
    }
}

/// A key whose value says about where it falls among others: keys spread
/// evenly over a line of `u64`s, as peer ids (hashes of keys, or random)
/// are. What a key's [`place`](Place::place) says is only a guess: any
/// order of places is correct, and only slower when it is not the keys'.
pub trait Place: Ord {
    fn place(&self) -> Option<u64> {
        None
    }

    /// Whether a lookup tries first where the last one ended (see
    /// [`Blocks::find`]): for keys looked up several times in a row.
    const AGAIN: bool = false;
}

/// Where a key at `place` is guessed to be among `len` sorted keys from
/// `first` to `last`: on the straight line between them.
fn guess<K: Place>(place: u64, first: Option<&K>, last: Option<&K>, len: usize) -> usize {
    let (Some(first), Some(last)) = (first.and_then(Place::place), last.and_then(Place::place))
    else {
        return len / 2;
    };
    if place <= first || last <= first {
        return 0;
    }
    if place >= last {
        return len.saturating_sub(1);
    }
    // To the nearest, in `f64`: exact enough for a guess.
    let share = (place - first) as f64 / (last - first) as f64;
    (share * len.saturating_sub(1) as f64 + 0.5) as usize
}

/// How many of `0..len` are `below` (all of them come before the rest),
/// found from a guess `at` by galloping: a step, two, four... away until
/// the boundary is passed, then a binary search between the last two
/// steps (`O(log d)` probes for a boundary `d` away from `at`).
fn partition_from(len: usize, at: usize, below: impl Fn(usize) -> bool) -> usize {
    if len == 0 {
        return 0;
    }
    let at = at.min(len - 1);
    // The boundary is in `low..=high`.
    let (mut low, mut high);
    if below(at) {
        (low, high) = (at + 1, len);
        let mut step = 1;
        while low < high {
            let probe = (at + step).min(high - 1);
            if below(probe) {
                low = probe + 1;
                step *= 2;
            } else {
                high = probe;
                break;
            }
        }
    } else {
        (low, high) = (0, at);
        let mut step = 1;
        while low < high {
            let probe = at.saturating_sub(step).max(low);
            if below(probe) {
                low = probe + 1;
                break;
            }
            high = probe;
            step *= 2;
        }
    }
    while low < high {
        let mid = low + (high - low) / 2;
        if below(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

impl<K: Place + Clone, V> Blocks<K, V> {
    /// Entries sorted by key, each once: half-full blocks, room to grow.
    pub fn from_sorted(entries: &[(K, V)]) -> Self
    where
        V: Clone,
    {
        let blocks: Vec<Vec<(K, V)>> = entries.chunks(BLOCK / 2).map(<[(K, V)]>::to_vec).collect();
        Blocks {
            firsts: blocks.iter().map(|b| b[0].0.clone()).collect(),
            blocks,
            len: entries.len(),
            last: Last::default(),
        }
    }

    /// The block `key` is in or belongs in: the last whose first key is
    /// at or before it (the first block for a key before them all), and
    /// where in it.
    ///
    /// First where the last lookup ended ([`at_last`](Self::at_last)),
    /// for keys whose [`Place::AGAIN`] says so (peer ids: C1.2 looks each
    /// new writer up about five times in a row). Then keys
    /// with a [`Place`] (peer ids: spread evenly over 64 bits) are
    /// looked for where a straight line between the ends puts them, and
    /// galloped to from there; others by binary search. A clock of 30,000
    /// peers is 480 KB, so a random probe misses the first-level cache,
    /// and C1.2's version vector is searched several times an event: a
    /// guess is a step or two from the key, a binary search ~16 steps
    /// (natively 98 -> 60 ns a lookup). Keys crowded together (ids a peer
    /// chose) make a guess wrong, and cost at most twice a binary
    /// search's steps.
    ///
    /// The binary searches ([`search`](Self::search)) are written out: in
    /// the size-optimized wasm the standard library's called their
    /// closure for every probe. The guessed path takes closures; it is
    /// native only (peer ids have no place in the wasm: see `PeerId`'s).
    fn find(&self, key: &K) -> (usize, Result<usize, usize>) {
        if K::AGAIN {
            if let Some(found) = self.at_last(key) {
                return found;
            }
        }
        let found = self.look_up(key);
        let (b, Ok(i) | Err(i)) = found;
        self.last.set((b, i));
        found
    }

    /// [`find`](Self::find)'s answer if it is where the last lookup
    /// ended: `key` there, or belonging there (between the entries either
    /// side, in the block `find` would pick).
    #[inline]
    fn at_last(&self, key: &K) -> Option<(usize, Result<usize, usize>)> {
        let (b, i) = self.last.get();
        let block = self.blocks.get(b)?;
        if let Some((k, _)) = block.get(i) {
            if k == key {
                return Some((b, Ok(i)));
            }
            if k < key {
                return None;
            }
        } else if i != block.len() || self.firsts.get(b + 1).is_some_and(|next| next <= key) {
            return None;
        }
        // `key` is before entry `i` (or past the block, and before the
        // next block): it belongs at `i` if it is after entry `i - 1`.
        match i.checked_sub(1).and_then(|p| block.get(p)) {
            Some((before, _)) if before < key => Some((b, Err(i))),
            None if b == 0 => Some((b, Err(0))),
            _ => None,
        }
    }

    /// [`find`](Self::find) without the last lookup's place.
    fn look_up(&self, key: &K) -> (usize, Result<usize, usize>) {
        let Some(place) = key.place() else {
            return self.search(key);
        };
        let firsts = &self.firsts;
        let at = guess(place, firsts.first(), firsts.last(), firsts.len());
        let b = partition_from(firsts.len(), at, |i| {
            firsts.get(i).is_some_and(|k| k <= key)
        })
        .saturating_sub(1);
        let Some(block) = self.blocks.get(b) else {
            return (b, Err(0));
        };
        let (first, last) = (block.first().map(|e| &e.0), block.last().map(|e| &e.0));
        let at = guess(place, first, last, block.len());
        let p = partition_from(block.len(), at, |i| {
            block.get(i).is_some_and(|e| e.0 <= *key)
        });
        match p.checked_sub(1).and_then(|i| block.get(i)) {
            Some(e) if e.0 == *key => (b, Ok(p - 1)),
            _ => (b, Err(p)),
        }
    }

    /// [`find`](Self::find) by binary searches, for keys without a place.
    fn search(&self, key: &K) -> (usize, Result<usize, usize>) {
        let (mut low, mut high) = (0, self.firsts.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.firsts.get(mid) {
                Some(k) if k <= key => low = mid + 1,
                _ => high = mid,
            }
        }
        let b = low.saturating_sub(1);
        let at = self
            .blocks
            .get(b)
            .map_or(Err(0), |block| sorted_map::search(block, key));
        (b, at)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        match self.find(key) {
            (b, Ok(i)) => Some(&self.blocks[b][i].1),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.find(key) {
            (b, Ok(i)) => Some(&mut self.blocks[b][i].1),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).1.is_ok()
    }

    /// Puts a new entry at `i` of block `b` (as `find` placed it), and
    /// says where it is once a full block has split.
    fn insert_at(&mut self, b: usize, i: usize, key: K, value: V) -> (usize, usize) {
        let (b, i) = self.put_at(b, i, key, value);
        self.last.set((b, i));
        (b, i)
    }

    fn put_at(&mut self, b: usize, i: usize, key: K, value: V) -> (usize, usize) {
        if self.blocks.is_empty() {
            self.blocks.push(Vec::new());
            self.firsts.push(key.clone());
        }
        if i == 0 {
            self.firsts[b] = key.clone();
        }
        self.blocks[b].insert(i, (key, value));
        self.len += 1;
        let half = self.blocks[b].len() / 2;
        if self.blocks[b].len() <= BLOCK {
            return (b, i);
        }
        let upper = self.blocks[b].split_off(half);
        self.firsts.insert(b + 1, upper[0].0.clone());
        self.blocks.insert(b + 1, upper);
        if i < half {
            (b, i)
        } else {
            (b + 1, i - half)
        }
    }

    /// `key`'s value, made by `make` if it has none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let (b, i) = match self.find(&key) {
            (b, Ok(i)) => (b, i),
            (b, Err(i)) => self.insert_at(b, i, key, make()),
        };
        &mut self.blocks[b][i].1
    }

    /// The value `key` had, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            (b, Ok(i)) => Some(std::mem::replace(&mut self.blocks[b][i].1, value)),
            (b, Err(i)) => {
                self.insert_at(b, i, key, value);
                None
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (b, Ok(i)) = self.find(key) else {
            return None;
        };
        let (_, value) = self.blocks[b].remove(i);
        self.len -= 1;
        match self.blocks[b].first() {
            None => {
                self.blocks.remove(b);
                self.firsts.remove(b);
            }
            Some((first, _)) if i == 0 => self.firsts[b] = first.clone(),
            Some(_) => {}
        }
        Some(value)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for block in &mut self.blocks {
            block.retain_mut(|(k, v)| keep(k, v));
        }
        self.blocks.retain(|b| !b.is_empty());
        self.firsts = self.blocks.iter().map(|b| b[0].0.clone()).collect();
        self.len = self.blocks.iter().map(Vec::len).sum();
    }
}

impl<K, V> Blocks<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> BlocksIter<'_, K, V> {
        BlocksIter {
            blocks: self.blocks.iter(),
            front: [].iter(),
            back: [].iter(),
            left: self.len,
        }
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.iter().map(|(_, v)| v)
    }
}

/// The entries of [`Blocks`] in key order, from either end.
pub struct BlocksIter<'a, K, V> {
    blocks: std::slice::Iter<'a, Vec<(K, V)>>,
    front: std::slice::Iter<'a, (K, V)>,
    back: std::slice::Iter<'a, (K, V)>,
    left: usize,
}

impl<'a, K, V> Iterator for BlocksIter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.front.next() {
                self.left -= 1;
                return Some((k, v));
            }
            match self.blocks.next() {
                Some(block) => self.front = block.iter(),
                None => {
                    let (k, v) = self.back.next()?;
                    self.left -= 1;
                    return Some((k, v));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<K, V> ExactSizeIterator for BlocksIter<'_, K, V> {}

impl<K, V> DoubleEndedIterator for BlocksIter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.back.next_back() {
                self.left -= 1;
                return Some((k, v));
            }
            match self.blocks.next_back() {
                Some(block) => self.back = block.iter(),
                None => {
                    let (k, v) = self.front.next_back()?;
                    self.left -= 1;
                    return Some((k, v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{guess, partition_from, Blocks, BLOCK};
    use crate::protocol::clock::PeerId;
    use crate::protocol::testing::{seeds, Rng};
    use std::cell::Cell;
    use std::collections::BTreeMap;

    #[test]
    fn a_boundary_is_found_from_any_guess_in_few_probes() {
        for len in 0..70usize {
            // Binary search's probes, ceil(log2(len + 1)).
            let log = usize::BITS - len.leading_zeros();
            for boundary in 0..=len {
                for at in 0..len + 3 {
                    let probes = Cell::new(0u32);
                    let found = partition_from(len, at, |i| {
                        assert!(i < len, "probe {i} of {len}");
                        probes.set(probes.get() + 1);
                        i < boundary
                    });
                    assert_eq!(found, boundary, "len {len}, guess {at}");
                    assert!(
                        probes.get() <= 2 * log + 1,
                        "{} probes for len {len}, boundary {boundary}, guess {at}",
                        probes.get()
                    );
                    // A right guess costs a probe or two.
                    if at == boundary || at + 1 == boundary {
                        assert!(probes.get() <= 2, "len {len}, boundary {boundary}");
                    }
                }
            }
        }
    }

    /// Evenly spread ids are guessed where they are: a lookup's search
    /// starts at the key, not half a clock away.
    #[test]
    fn evenly_spread_ids_are_guessed_in_place() {
        let ids: Vec<PeerId> = (0..1_000u64)
            .map(|i| PeerId(5 + i * (u64::MAX / 1_000)))
            .collect();
        let (first, last) = (ids.first(), ids.last());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(guess(id.0, first, last, ids.len()), i, "id {i}");
        }
        assert_eq!(guess(0, first, last, ids.len()), 0);
        assert_eq!(guess(u64::MAX, first, last, ids.len()), 999);
        assert_eq!(guess(7, first, first, 1), 0);
        assert_eq!(guess(7, None::<&PeerId>, None, 0), 0);
    }

    /// Ids a lying peer may choose (all crowded in a corner, at the ends
    /// of the line, in clusters) are found as evenly spread ones are:
    /// the guess from an id's value is only where a search starts.
    #[test]
    fn ids_are_found_however_they_crowd() {
        for seed in seeds("ids_are_found_however_they_crowd", "CPC_BLOCKS_SEEDS", 40) {
            let mut rng = Rng::new(seed);
            let shape = seed % 5;
            let id = |rng: &mut Rng| {
                let x = rng.next_u64();
                PeerId(match shape {
                    0 => x,
                    1 => x >> 40,              // crowded near 0
                    2 => u64::MAX - (x >> 44), // crowded at the top
                    3 => (x & 1) * (u64::MAX - 5_000) + (x >> 1) % 5_000, // both ends
                    _ => (x % 16) << 60 | (x >> 50), // sixteen clusters
                })
            };
            let start: Vec<(PeerId, u64)> = {
                let mut model = BTreeMap::new();
                for _ in 0..rng.below(3_000) {
                    model.insert(id(&mut rng), rng.next_u64());
                }
                model.into_iter().collect()
            };
            let mut blocks = Blocks::from_sorted(&start);
            let mut model: BTreeMap<PeerId, u64> = start.into_iter().collect();
            let mut known: Vec<PeerId> = model.keys().copied().collect();
            let mut last = PeerId(0);
            for step in 0..6_000u64 {
                let peer = match known.len() {
                    // The last key's neighbours: a lookup starts where
                    // the last one ended.
                    _ if rng.chance(0.3) => {
                        PeerId(last.0.wrapping_add(rng.below(5) as u64).wrapping_sub(2))
                    }
                    0 => id(&mut rng),
                    n if rng.chance(0.5) => known[rng.below(n)],
                    _ => id(&mut rng),
                };
                last = peer;
                match rng.below(6) {
                    0 | 1 => {
                        assert_eq!(blocks.insert(peer, step), model.insert(peer, step));
                        known.push(peer);
                    }
                    2 => assert_eq!(blocks.remove(&peer), model.remove(&peer)),
                    _ => {}
                }
                assert_eq!(
                    blocks.get(&peer),
                    model.get(&peer),
                    "seed {seed}, step {step}"
                );
                assert_eq!(blocks.contains_key(&peer), model.contains_key(&peer));
            }
            assert!(blocks.iter().eq(model.iter()), "seed {seed}");
        }
    }

    #[test]
    fn behaves_as_a_btree_map() {
        let start: Vec<(PeerId, u64)> = (0..300u64).map(|p| (PeerId(p * 7), p + 1)).collect();
        let mut blocks = Blocks::from_sorted(&start);
        let mut model: BTreeMap<PeerId, u64> = start.iter().copied().collect();
        let mut x: u64 = 9;
        for step in 0..20_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let peer = PeerId((x >> 33) % 5_000);
            match step % 9 {
                0..=2 => *blocks.get_or_insert_with(peer, || 0) += step,
                3 | 4 => assert_eq!(blocks.insert(peer, step), model.insert(peer, step)),
                5 | 6 => assert_eq!(blocks.remove(&peer), model.remove(&peer)),
                7 => {
                    if let Some(v) = blocks.get_mut(&peer) {
                        *v += 1;
                    }
                    if let Some(v) = model.get_mut(&peer) {
                        *v += 1;
                    }
                }
                _ if step % 1_000 == 8 => {
                    blocks.retain(|p, v| {
                        *v += 1;
                        p.0 % 3 != 0
                    });
                    model.retain(|p, v| {
                        *v += 1;
                        p.0 % 3 != 0
                    });
                }
                _ => {}
            }
            if step % 9 <= 2 {
                *model.entry(peer).or_insert(0) += step;
            }
            assert_eq!(blocks.get(&peer), model.get(&peer));
            assert_eq!(blocks.contains_key(&peer), model.contains_key(&peer));
            assert_eq!(blocks.len(), model.len());
            assert!(blocks
                .blocks
                .iter()
                .all(|b| !b.is_empty() && b.len() <= BLOCK));
            // The index of first keys is each block's first key.
            assert!(blocks
                .firsts
                .iter()
                .eq(blocks.blocks.iter().map(|b| &b[0].0)));
            if step % 500 == 0 {
                assert!(blocks.iter().eq(model.iter()));
                assert!(blocks.iter().rev().eq(model.iter().rev()));
                assert!(blocks.keys().eq(model.keys()) && blocks.values().eq(model.values()));
                // From both ends at once, meeting in the middle.
                let mut it = blocks.iter();
                let mut seen = Vec::new();
                while let Some(front) = it.next() {
                    seen.push(front);
                    assert_eq!(it.len(), model.len() - seen.len());
                    if let Some(back) = it.next_back() {
                        seen.push(back);
                    }
                }
                seen.sort_unstable_by_key(|e| e.0);
                assert!(seen.into_iter().eq(model.iter()));
            }
        }
        blocks.retain(|_, _| false);
        assert!(blocks.is_empty() && blocks.iter().next().is_none());
        assert_eq!(blocks.insert(PeerId(1), 5), None);
        assert_eq!(blocks.get(&PeerId(1)), Some(&5));
    }
}
