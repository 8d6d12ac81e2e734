//! The state digest: a Merkle tree over entity hashes.
//!
//! Keys fall into 4,096 leaves by the first 12 bits of their blake3 hash; a
//! leaf hashes its `(key, entity hash)` pairs in key order; inner nodes hash
//! their 16 children. Two peers compare roots in one message, and descend
//! level by level to the leaves that differ. An empty subtree hashes to zero;
//! below depth 1, one is not stored.

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
    /// The leaves in groups of 16, the children of one node at depth 2,
    /// indexed by that node: empty until the first key, then 256 slots,
    /// each group allocated with its first key. A room of a few keys
    /// holds a few groups; all 4,096 leaves and the levels above them
    /// were ~230 KiB for every engine, half a small room's memory on the
    /// room peer.
    groups: Vec<Option<Box<Group>>>,
    /// The leaves changed since the last root, a bit each.
    stale: [u64; LEAVES / 64],
    any_stale: bool,
    /// The root and the 16 nodes at depth 1 (as of the last root).
    root: Hash32,
    tops: [Hash32; FANOUT],
}

impl Default for MerkleDigest {
    fn default() -> Self {
        MerkleDigest {
            groups: Vec::new(),
            stale: [0; LEAVES / 64],
            any_stale: false,
            root: Hash32::default(),
            tops: [Hash32::default(); FANOUT],
        }
    }
}

/// A node at depth 2 and its 16 leaves.
#[derive(Debug, Clone, Default)]
struct Group {
    hash: Hash32,
    /// The leaves' hashes, side by side: the node's children.
    hashes: [Hash32; FANOUT],
    /// Each leaf's pairs. A leaf holds one 4,096th of the keys (a room of
    /// a million keys, ~250 a leaf), so a sorted vector: a `BTreeMap` of
    /// this type was 6-8 KB of the wasm.
    pairs: [SortedMap<LeafKey, Hash32>; FANOUT],
}

impl Group {
    /// Hashes the leaves marked in `changed` (a bit each), then the node.
    fn rehash(&mut self, changed: u16, bytes: &mut Vec<u8>) {
        for leaf in 0..FANOUT {
            if changed & (1 << leaf) == 0 {
                continue;
            }
            // A leaf's pairs are hashed as one input: a hasher's update per
            // piece cost more than the hashing in the size-optimized wasm.
            bytes.clear();
            for (LeafKey { key, .. }, hash) in self.pairs[leaf].iter() {
                bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
                bytes.extend_from_slice(key.as_bytes());
                bytes.extend_from_slice(&hash.0);
            }
            self.hashes[leaf] = Hash32(*blake3::hash(bytes).as_bytes());
        }
        self.hash = hash_children(&self.hashes);
    }
}

/// Groups: one for each node at depth 2.
const GROUPS: usize = FANOUT * FANOUT;

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
        if self.groups.is_empty() {
            self.groups.resize_with(GROUPS, || None);
        }
        let group = self.groups[leaf / FANOUT].get_or_insert_with(Box::default);
        group.pairs[leaf % FANOUT].insert(LeafKey::new(key), hash);
        self.stale[leaf / 64] |= 1 << (leaf % 64);
        self.any_stale = true;
    }

    pub fn clear(&mut self) {
        *self = MerkleDigest::default();
    }

    fn group(&self, index: usize) -> Option<&Group> {
        self.groups.get(index)?.as_deref()
    }

    /// The hash of the node at depth 2 `index` (zero where no key is).
    fn group_hash(&self, index: usize) -> Hash32 {
        self.group(index).map_or(Hash32::default(), |g| g.hash)
    }

    /// The root, recomputing only what changed since the last call.
    pub fn root(&mut self) -> Hash32 {
        if !std::mem::take(&mut self.any_stale) {
            return self.root;
        }
        // The nodes at depth 1 above the changed leaves, a bit each.
        let mut tops = 0u16;
        let mut bytes = Vec::new();
        // A word of the stale leaves is four groups' 16 bits.
        for (word, bits) in self.stale.iter_mut().enumerate() {
            let bits = std::mem::take(bits);
            if bits == 0 {
                continue;
            }
            for quarter in 0..64 / FANOUT {
                let leaves = (bits >> (quarter * FANOUT)) as u16;
                let index = word * (64 / FANOUT) + quarter;
                if leaves == 0 {
                    continue;
                }
                if let Some(group) = self.groups.get_mut(index).and_then(Option::as_mut) {
                    group.rehash(leaves, &mut bytes);
                }
                tops |= 1 << (index / FANOUT);
            }
        }
        for top in 0..FANOUT {
            if tops & (1 << top) != 0 {
                let children: [Hash32; FANOUT] =
                    std::array::from_fn(|i| self.group_hash(top * FANOUT + i));
                self.tops[top] = hash_children(&children);
            }
        }
        self.root = hash_children(&self.tops);
        self.root
    }

    /// The hash of node `index` at `depth` (as of the last [`root`](Self::root)).
    pub fn node(&self, depth: u32, index: usize) -> Option<Hash32> {
        match depth {
            0 => (index == 0).then_some(self.root),
            1 => self.tops.get(index).copied(),
            2 => (index < GROUPS).then(|| self.group_hash(index)),
            3 => (index < LEAVES).then(|| {
                self.group(index / FANOUT)
                    .map_or(Hash32::default(), |g| g.hashes[index % FANOUT])
            }),
            _ => None,
        }
    }

    /// The 16 children of a node above the leaves.
    pub fn children(&self, depth: u32, index: usize) -> Option<[Hash32; FANOUT]> {
        if depth >= LEAF_DEPTH {
            return None;
        }
        // The node itself in range first: then its children's indices are
        // below 4,096, whatever index a peer sent.
        self.node(depth, index)?;
        let first = index * FANOUT;
        Some(std::array::from_fn(|i| {
            self.node(depth + 1, first + i).unwrap_or_default()
        }))
    }

    /// The `(key, entity hash)` pairs of a leaf.
    pub fn leaf(&self, index: u16) -> impl Iterator<Item = (&Text, &Hash32)> {
        let index = usize::from(index);
        self.group(index / FANOUT)
            .and_then(|g| g.pairs.get(index % FANOUT))
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
            for leaf in 0..LEAVES as u16 {
                for (k, hash) in stepwise.leaf(leaf) {
                    whole.update(k, *hash);
                }
            }
            assert_eq!(stepwise.root(), whole.root(), "round {round}");
            assert_eq!(level(&stepwise, 3), level(&whole, 3), "round {round}");
            // Every node above the leaves, as hashing all of them says.
            let mut expected = level(&stepwise, 3);
            for depth in (0..3).rev() {
                expected = expected.chunks(FANOUT).map(hash_children).collect();
                assert_eq!(
                    level(&stepwise, depth),
                    expected,
                    "round {round}, depth {depth}"
                );
                for (index, children) in level(&stepwise, depth + 1).chunks(FANOUT).enumerate() {
                    assert_eq!(stepwise.children(depth, index).unwrap(), children);
                }
            }
        }
    }

    /// Every node at `depth`, as `node` gives them.
    fn level(digest: &MerkleDigest, depth: u32) -> Vec<Hash32> {
        (0..FANOUT.pow(depth))
            .map(|i| digest.node(depth, i).unwrap())
            .collect()
    }

    /// The hashes are those of the digest's first form, node for node
    /// (all 4,096 leaves and the levels above in vectors): peers of either
    /// compare roots.
    #[test]
    fn roots_are_those_of_the_first_form() {
        let mut d = MerkleDigest::default();
        assert_eq!(d.root(), Hash32::default());
        for i in 0..2_000u32 {
            let k: Text = format!("key{i}").into();
            d.update(&k, Hash32(*blake3::hash(&i.to_le_bytes()).as_bytes()));
        }
        let hex = |h: Hash32| h.to_string();
        assert_eq!(
            hex(d.root()),
            "6e78fcbeec4b07a719691c1fac0d8e1df4133b1f9c81b182cdfcd539dcb878e6"
        );
        d.update(&"key7".into(), Hash32([9; 32]));
        assert_eq!(
            hex(d.root()),
            "e48816ec3ae9fcb56cb00893fead105127bee7fe2d26b46365ddf211be212bda"
        );
        assert_eq!(
            hex(d.node(2, 77).unwrap()),
            "59ed60dbad249b5eddbf2b966e035f105e41b8eba66c9fe9f58513b78135ab79"
        );
        assert_eq!(d.node(3, 1234), Some(Hash32::default()));
    }

    /// An engine's digest allocates nothing until its first key, and a
    /// few keys hold a few groups of leaves, not all 4,096.
    #[test]
    fn a_small_digest_holds_only_the_groups_of_its_keys() {
        let mut d = MerkleDigest::default();
        assert_eq!(d.groups.capacity(), 0);
        let keys: Vec<Text> = (0..3).map(|i| format!("k{i}").into()).collect();
        for k in &keys {
            d.update(k, h(1));
        }
        let mut groups: Vec<usize> = keys.iter().map(|k| leaf_of(k) as usize / FANOUT).collect();
        groups.sort();
        groups.dedup();
        let held: Vec<usize> = (0..GROUPS).filter(|&g| d.group(g).is_some()).collect();
        assert_eq!(held, groups);
        assert_ne!(d.root(), Hash32::default());
        for k in &keys {
            assert_eq!(
                d.leaf(leaf_of(k))
                    .find(|(key, _)| *key == k)
                    .map(|(_, h)| *h),
                Some(h(1))
            );
        }
        assert_eq!(d.node(4, 0), None);
        assert_eq!(d.node(3, LEAVES), None);
        assert_eq!(d.children(3, 0), None);
        assert_eq!(d.children(2, GROUPS), None);
        assert_eq!(d.children(0, 1), None);
        // Any index a peer can send, at every depth: `None`, no overflow
        // (`usize::MAX / 16` is a `u32` on wasm32).
        for depth in 0..=4 {
            for index in [usize::MAX / 16, usize::MAX, u32::MAX as usize, 1 << 28] {
                assert_eq!(d.children(depth, index), None, "{depth} {index}");
                assert_eq!(d.node(depth, index), None, "{depth} {index}");
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
