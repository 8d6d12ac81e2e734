//! A map of sorted blocks of at most [`BLOCK`] entries each, in key
//! order: the entries of a large clock, and a set's members. A lookup is
//! a binary search for the block, then one within it; a new key moves at
//! most a block's entries, not the map's (a room of 30,000 writers adds
//! them in no order). It does what a `BTreeMap` did here, in a fraction of
//! the wasm each `BTreeMap` type took with its node code and the sort of
//! its `FromIterator`. The clock serializes, compares and prints itself
//! by its entries, so this has none of that.

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
}

impl<K, V> Default for Blocks<K, V> {
    fn default() -> Self {
        Blocks {
            blocks: Vec::new(),
            firsts: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone, V> Blocks<K, V> {
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
        }
    }

    /// The block `key` is in or belongs in: the last whose first key is
    /// at or before it (the first block for a key before them all), and
    /// where in it.
    ///
    /// Both searches are written out: in the size-optimized wasm the
    /// standard library's called their closure for every probe (C1.2's
    /// version vector of 30,000 peers is searched several times an event).
    fn find(&self, key: &K) -> (usize, Result<usize, usize>) {
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
    use super::{Blocks, BLOCK};
    use crate::protocol::clock::PeerId;
    use std::collections::BTreeMap;

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
