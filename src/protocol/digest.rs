//! The state digest: a Merkle tree over entity hashes.
//!
//! Keys fall into 4,096 leaves by the first 12 bits of their blake3 hash; a
//! leaf hashes its `(key, entity hash)` pairs in key order; inner nodes hash
//! their 16 children. Two peers compare roots in one message, and descend
//! level by level to the leaves that differ. An empty subtree hashes to zero,
//! so the tree costs nothing where there are no keys.

use crate::protocol::text::Text;

use super::event::Hash32;
use super::sorted_map::SortedMap;
use crate::protocol::blake3;

pub const FANOUT: usize = 16;
/// Depth of the leaves: root is depth 0, leaves are depth 3.
pub const LEAF_DEPTH: u32 = 3;
pub const LEAVES: usize = FANOUT * FANOUT * FANOUT;

/// The leaf a key belongs to.
pub fn leaf_of(key: &str) -> u16 {
    let h = blake3::hash(key.as_bytes());
    let b = h.as_bytes();
    ((b[0] as u16) << 4) | (b[1] as u16 >> 4)
}

#[derive(Debug, Clone)]
pub struct MerkleDigest {
    /// Each leaf's pairs, indexed by leaf: empty until the first key, then
    /// all 4,096 (a map per leaf, kept in one vector rather than a map of
    /// maps: less code in the wasm, no search for the leaf). A leaf holds
    /// one 4,096th of the keys (a room of a million keys, ~250 a leaf), so
    /// a sorted vector: a `BTreeMap` of this type was 6-8 KB of the wasm.
    leaves: Vec<SortedMap<LeafKey, Hash32>>,
    /// The leaves changed since the last root, a bit each.
    stale: [u64; LEAVES / 64],
    any_stale: bool,
    /// Node hashes by depth: 1, 16, 256 and 4,096 of them.
    levels: [Vec<Hash32>; 4],
}

impl Default for MerkleDigest {
    fn default() -> Self {
        MerkleDigest {
            leaves: Vec::new(),
            stale: [0; LEAVES / 64],
            any_stale: false,
            levels: [1, FANOUT, FANOUT * FANOUT, LEAVES].map(|n| vec![Hash32::default(); n]),
        }
    }
}

/// A key in its leaf, ordered as the key is, with its first 16 bytes
/// inline: a leaf's binary search settles nearly every comparison there,
/// rather than reading each key's text from wherever it was allocated (a
/// cache miss each; they were most of building the digest of a large
/// state).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LeafKey {
    /// The key's first 16 bytes, big-endian, zero-padded: ordered as the
    /// keys are wherever it differs, and equal only when the keys agree
    /// that far (then `key` decides).
    prefix: u128,
    key: Text,
}

impl LeafKey {
    fn new(key: &Text) -> Self {
        let mut head = [0u8; 16];
        let len = key.len().min(16);
        head[..len].copy_from_slice(&key.as_bytes()[..len]);
        LeafKey {
            prefix: u128::from_be_bytes(head),
            key: key.clone(),
        }
    }
}

fn hash_children(children: &[Hash32]) -> Hash32 {
    if children.iter().all(|h| *h == Hash32::default()) {
        return Hash32::default();
    }
    let mut hasher = blake3::Hasher::new();
    for child in children {
        hasher.update(&child.0);
    }
    Hash32(*hasher.finalize().as_bytes())
}

impl MerkleDigest {
    /// Records the current hash of `key`'s entity.
    pub fn update(&mut self, key: &Text, hash: Hash32) {
        let leaf = leaf_of(key) as usize;
        if self.leaves.is_empty() {
            self.leaves.resize_with(LEAVES, SortedMap::new);
        }
        self.leaves[leaf].insert(LeafKey::new(key), hash);
        self.stale[leaf / 64] |= 1 << (leaf % 64);
        self.any_stale = true;
    }

    pub fn clear(&mut self) {
        *self = MerkleDigest::default();
    }

    /// The root, recomputing only what changed since the last call.
    pub fn root(&mut self) -> Hash32 {
        if !std::mem::take(&mut self.any_stale) {
            return self.levels[0][0];
        }
        // The nodes above the changed leaves, level by level: in order and
        // each once, as the leaves are visited in order.
        let mut changed: Vec<usize> = Vec::new();
        // A leaf's pairs are hashed as one input: a hasher's update per
        // piece cost more than the hashing in the size-optimized wasm.
        let mut bytes = Vec::new();
        for (word, bits) in self.stale.iter_mut().enumerate() {
            let mut bits = std::mem::take(bits);
            while bits != 0 {
                let leaf = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if changed.last() != Some(&(leaf / FANOUT)) {
                    changed.push(leaf / FANOUT);
                }
                bytes.clear();
                for (LeafKey { key, .. }, hash) in
                    self.leaves.get(leaf).into_iter().flat_map(SortedMap::iter)
                {
                    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
                    bytes.extend_from_slice(key.as_bytes());
                    bytes.extend_from_slice(&hash.0);
                }
                self.levels[3][leaf] = Hash32(*blake3::hash(&bytes).as_bytes());
            }
        }
        for depth in (0..3).rev() {
            let (upper, lower) = self.levels.split_at_mut(depth + 1);
            for &i in &changed {
                upper[depth][i] = hash_children(&lower[0][i * FANOUT..(i + 1) * FANOUT]);
            }
            for i in &mut changed {
                *i /= FANOUT;
            }
            changed.dedup();
        }
        self.levels[0][0]
    }

    /// The hash of node `index` at `depth` (as of the last [`root`](Self::root)).
    pub fn node(&self, depth: u32, index: usize) -> Option<Hash32> {
        self.levels.get(depth as usize)?.get(index).copied()
    }

    /// The 16 children of a node above the leaves.
    pub fn children(&self, depth: u32, index: usize) -> Option<&[Hash32]> {
        let lower = self.levels.get(depth as usize + 1)?;
        lower.get(index * FANOUT..(index + 1) * FANOUT)
    }

    /// The `(key, entity hash)` pairs of a leaf.
    pub fn leaf(&self, index: u16) -> impl Iterator<Item = (&Text, &Hash32)> {
        self.leaves
            .get(index as usize)
            .into_iter()
            .flat_map(SortedMap::iter)
            .map(|(k, hash)| (&k.key, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash32 {
        Hash32([n; 32])
    }

    #[test]
    fn root_is_independent_of_insertion_order_and_sensitive_to_content() {
        let keys: Vec<Text> = (0..100).map(|i| format!("k{i}").into()).collect();
        let mut a = MerkleDigest::default();
        let mut b = MerkleDigest::default();
        for (i, k) in keys.iter().enumerate() {
            a.update(k, h(i as u8));
        }
        for (i, k) in keys.iter().enumerate().rev() {
            b.update(k, h(i as u8));
        }
        assert_eq!(a.root(), b.root());
        assert_ne!(a.root(), Hash32::default());
        b.update(&keys[7], h(200));
        assert_ne!(a.root(), b.root());
        b.update(&keys[7], h(7));
        assert_eq!(a.root(), b.root());
    }

    /// A root taken between changes recomputes only the nodes above the
    /// changed leaves: every node must still be what a digest built in
    /// one go has.
    #[test]
    fn a_root_between_changes_is_the_root_of_the_whole() {
        let keys: Vec<Text> = (0..3_000).map(|i| format!("k{i}").into()).collect();
        let mut stepwise = MerkleDigest::default();
        for round in 0..6u8 {
            // Rounds touch from one key to all of them.
            let step = [997, 401, 53, 7, 2, 1][usize::from(round)];
            for (i, k) in keys.iter().enumerate().step_by(step) {
                stepwise.update(k, h(round.wrapping_mul(31).wrapping_add(i as u8)));
            }
            let mut whole = MerkleDigest::default();
            for k in &keys {
                if let Some(hash) = stepwise.leaves[leaf_of(k) as usize].get(&LeafKey::new(k)) {
                    whole.update(k, *hash);
                }
            }
            assert_eq!(stepwise.root(), whole.root(), "round {round}");
            assert_eq!(stepwise.levels[3], whole.levels[3], "round {round}");
            // Every node above the leaves, as hashing all of them says.
            let mut expected = stepwise.levels[3].clone();
            for depth in (0..3).rev() {
                expected = expected.chunks(FANOUT).map(hash_children).collect();
                assert_eq!(
                    stepwise.levels[depth], expected,
                    "round {round}, depth {depth}"
                );
            }
        }
    }

    #[test]
    fn leaf_keys_order_as_their_keys_do() {
        let keys = [
            "",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopqr",
            "abcdefghijklmnoq",
            "b",
            "\u{0}cpc/x",
            "é",
            "key1",
            "key10",
            "key2",
        ];
        for a in keys {
            for b in keys {
                let (x, y): (Text, Text) = (a.into(), b.into());
                assert_eq!(
                    LeafKey::new(&x).cmp(&LeafKey::new(&y)),
                    a.cmp(b),
                    "{a:?} against {b:?}"
                );
            }
        }
    }

    #[test]
    fn descent_finds_the_differing_leaf() {
        let mut a = MerkleDigest::default();
        let mut b = MerkleDigest::default();
        let key: Text = "needle".into();
        for i in 0..50 {
            let k: Text = format!("k{i}").into();
            a.update(&k, h(1));
            b.update(&k, h(1));
        }
        a.update(&key, h(1));
        b.update(&key, h(2));
        a.root();
        b.root();
        let mut index = 0;
        for depth in 0..LEAF_DEPTH {
            let (ca, cb) = (
                a.children(depth, index).unwrap(),
                b.children(depth, index).unwrap(),
            );
            let differing: Vec<usize> = (0..FANOUT).filter(|&i| ca[i] != cb[i]).collect();
            assert_eq!(differing.len(), 1);
            index = index * FANOUT + differing[0];
        }
        assert_eq!(index, leaf_of("needle") as usize);
    }
}
