//! The entries of a large clock: sorted blocks of at most [`BLOCK`]
//! entries each, in peer order. A lookup is a binary search for the block,
//! then one within it; a new peer moves at most a block's entries, not the
//! clock's (a room of 30,000 writers adds them in no order). It does what
//! a `BTreeMap<PeerId, u64>` did here, in a fraction of the wasm that type
//! took with its node code and the sort of its `FromIterator`.

use super::PeerId;

/// Entries a block holds at most; a fuller block splits in two.
const BLOCK: usize = 256;

type Entry = (PeerId, u64);

/// Sorted by peer across blocks, each peer once, no block empty.
#[derive(Clone, Default)]
pub(super) struct Blocks {
    blocks: Vec<Vec<Entry>>,
    len: usize,
}

impl Blocks {
    /// Entries sorted by peer, each once: half-full blocks, room to grow.
    pub fn from_sorted(entries: &[Entry]) -> Self {
        Blocks {
            blocks: entries.chunks(BLOCK / 2).map(<[Entry]>::to_vec).collect(),
            len: entries.len(),
        }
    }

    /// The block `peer` is in or belongs in: the last whose first peer is
    /// at or before it (the first block for a peer before them all).
    fn block_of(&self, peer: PeerId) -> usize {
        self.blocks
            .partition_point(|b| b.first().is_some_and(|&(p, _)| p <= peer))
            .saturating_sub(1)
    }

    pub fn get(&self, peer: PeerId) -> Option<u64> {
        let block = self.blocks.get(self.block_of(peer))?;
        let i = block.binary_search_by_key(&peer, |&(p, _)| p).ok()?;
        Some(block[i].1)
    }

    /// Sets `peer`'s entry to `value(old)` (`None` when absent).
    pub fn upsert(&mut self, peer: PeerId, value: impl FnOnce(Option<u64>) -> u64) {
        if self.blocks.is_empty() {
            self.blocks.push(Vec::new());
        }
        let b = self.block_of(peer);
        let block = &mut self.blocks[b];
        match block.binary_search_by_key(&peer, |&(p, _)| p) {
            Ok(i) => block[i].1 = value(Some(block[i].1)),
            Err(i) => {
                block.insert(i, (peer, value(None)));
                self.len += 1;
                if block.len() > BLOCK {
                    let upper = block.split_off(block.len() / 2);
                    self.blocks.insert(b + 1, upper);
                }
            }
        }
    }

    pub fn remove(&mut self, peer: PeerId) {
        let b = self.block_of(peer);
        let Some(block) = self.blocks.get_mut(b) else {
            return;
        };
        if let Ok(i) = block.binary_search_by_key(&peer, |&(p, _)| p) {
            block.remove(i);
            self.len -= 1;
            if block.is_empty() {
                self.blocks.remove(b);
            }
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&PeerId, &mut u64) -> bool) {
        for block in &mut self.blocks {
            block.retain_mut(|(p, v)| keep(p, v));
        }
        self.blocks.retain(|b| !b.is_empty());
        self.len = self.blocks.iter().map(Vec::len).sum();
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> BlocksIter<'_> {
        BlocksIter {
            blocks: self.blocks.iter(),
            front: [].iter(),
            back: [].iter(),
            left: self.len,
        }
    }
}

/// The entries of [`Blocks`] in peer order, from either end.
pub struct BlocksIter<'a> {
    blocks: std::slice::Iter<'a, Vec<Entry>>,
    front: std::slice::Iter<'a, Entry>,
    back: std::slice::Iter<'a, Entry>,
    left: usize,
}

impl Iterator for BlocksIter<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            if let Some(&e) = self.front.next() {
                self.left -= 1;
                return Some(e);
            }
            match self.blocks.next() {
                Some(block) => self.front = block.iter(),
                None => {
                    let &e = self.back.next()?;
                    self.left -= 1;
                    return Some(e);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for BlocksIter<'_> {}

impl DoubleEndedIterator for BlocksIter<'_> {
    fn next_back(&mut self) -> Option<Entry> {
        loop {
            if let Some(&e) = self.back.next_back() {
                self.left -= 1;
                return Some(e);
            }
            match self.blocks.next_back() {
                Some(block) => self.back = block.iter(),
                None => {
                    let &e = self.front.next_back()?;
                    self.left -= 1;
                    return Some(e);
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
            match step % 7 {
                0..=3 => {
                    blocks.upsert(peer, |old| old.unwrap_or(0) + step);
                    *model.entry(peer).or_insert(0) += step;
                }
                4 | 5 => {
                    blocks.remove(peer);
                    model.remove(&peer);
                }
                _ if step % 1_000 == 6 => {
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
            assert_eq!(blocks.get(peer), model.get(&peer).copied());
            assert_eq!(blocks.len(), model.len());
            assert!(blocks
                .blocks
                .iter()
                .all(|b| !b.is_empty() && b.len() <= BLOCK));
            if step % 500 == 0 {
                assert!(blocks.iter().eq(model.iter().map(|(&p, &v)| (p, v))));
                assert!(blocks
                    .iter()
                    .rev()
                    .eq(model.iter().rev().map(|(&p, &v)| (p, v))));
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
                assert!(seen.into_iter().eq(model.iter().map(|(&p, &v)| (p, v))));
            }
        }
        blocks.retain(|_, _| false);
        assert_eq!((blocks.len(), blocks.iter().next()), (0, None));
        blocks.upsert(PeerId(1), |_| 5);
        assert_eq!(blocks.get(PeerId(1)), Some(5));
    }
}
