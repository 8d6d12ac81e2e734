//! The map of the small, per-peer tables (sessions, links, routes,
//! negotiations): one sorted vector, looked up by binary search. A
//! `BTreeMap` costs the wasm 3-5 KB of node code for each value type it
//! holds and buys nothing at the size of a room (at most `MAX_ROOM`, 1,024
//! peers); this costs a few hundred bytes. Also the maps bounded by peers
//! or by what an app configures (a counter's contributions, conflict
//! policies), and a digest leaf's keys (a 4,096th of a room's). Maps that
//! grow with the data do not (inserting in the middle of a long vector
//! moves its tail): a clock past 256 entries and a set's members are
//! sorted blocks (`blocks.rs`). No `BTreeMap` is left in the wasm.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::heap_sort::heap_sort_by;

/// Where `key` is in `entries` (sorted by key, each once), or where it
/// would go: the standard library's binary search, written out. In the
/// size-optimized wasm that one called its closure for every probe, and
/// the callers took the slice through a call of their own: more time
/// than the search in causal apply's lookups of clock entries. Used by
/// this map and [`Blocks`](super::blocks::Blocks); a clock's entries,
/// searched far more often, have a branchless search of their own
/// (`vector_clock::lower_bound`).
#[inline(always)]
pub(crate) fn search<K, Q, V>(entries: &[(K, V)], key: &Q) -> Result<usize, usize>
where
    K: Borrow<Q>,
    Q: Ord + ?Sized,
{
    let (mut low, mut high) = (0, entries.len());
    while low < high {
        let mid = low + (high - low) / 2;
        let Some((k, _)) = entries.get(mid) else {
            break;
        };
        match k.borrow().cmp(key) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(low)
}

/// A map ordered by key, kept as a sorted `Vec` of pairs: iteration is in
/// key order, as a `BTreeMap`'s; insertion and removal move the tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Vec::new())
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        search(&self.0, key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// The entry of the greatest key at or before `key`, if any.
    pub fn last_at_or_before<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        let end = self.0.partition_point(|(k, _)| k.borrow() <= key);
        end.checked_sub(1).map(|i| (&self.0[i].0, &self.0[i].1))
    }

    /// The value `key` had, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn pop_first(&mut self) -> Option<(K, V)> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }

    /// `key`'s value, made by `make` if it has none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, make()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// The map of `pairs` as a `BTreeMap` built by inserting them in turn
    /// would be: sorted by key, the last value of a key kept. Pairs
    /// already in order (what `serialize` writes) are taken as they are.
    fn from_pairs(pairs: Vec<(K, V)>) -> Self {
        if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            return SortedMap(pairs);
        }
        let mut tagged: Vec<(usize, (K, V))> = pairs.into_iter().enumerate().collect();
        heap_sort_by(&mut tagged, |a, b| (&a.1 .0, a.0) < (&b.1 .0, b.0));
        let mut out: Vec<(K, V)> = Vec::with_capacity(tagged.len());
        for (_, (k, v)) in tagged {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        SortedMap(out)
    }
}

/// The form of a `BTreeMap` with the same pairs, byte for byte.
impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for SortedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Pairs<K, V> {
            type Value = SortedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Not the length the input claims: it may lie.
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(SortedMap::from_pairs(pairs))
            }
        }
        deserializer.deserialize_map(Pairs(PhantomData))
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::{search, SortedMap};
    use std::collections::BTreeMap;

    #[test]
    fn search_finds_what_the_standard_search_finds() {
        // Every key of sorted vectors of 0 to 40 entries, and every gap
        // between them: found where they are, placed where they go.
        for len in 0..40u64 {
            let entries: Vec<(u64, u64)> = (0..len).map(|i| (3 * i + 1, i)).collect();
            for key in 0..3 * len + 3 {
                assert_eq!(
                    search(&entries, &key),
                    entries.binary_search_by_key(&key, |&(k, _)| k),
                    "key {key} of {len} entries"
                );
            }
        }
    }

    #[test]
    fn behaves_as_a_btree_map() {
        let mut map = SortedMap::new();
        let mut model = BTreeMap::new();
        // A fixed pseudo-random walk of inserts, removals and updates.
        let mut x: u32 = 7;
        for step in 0..2_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let key = (x >> 16) % 64;
            match step % 5 {
                0 | 1 => assert_eq!(map.insert(key, step), model.insert(key, step)),
                2 => assert_eq!(map.remove(&key), model.remove(&key)),
                3 => *map.get_or_insert_with(key, || 0) += 1,
                _ => {
                    map.retain(|k, _| k % 7 != key % 7);
                    model.retain(|k, _| k % 7 != key % 7);
                }
            }
            if step % 5 == 3 {
                *model.entry(key).or_insert(0) += 1;
            }
            assert_eq!(map.len(), model.len());
            assert!(map.iter().eq(model.iter()));
            assert_eq!(map.get(&key), model.get(&key));
        }
        assert_eq!(map.pop_first(), model.pop_first());
        assert!(map.keys().eq(model.keys()));
    }

    #[test]
    fn serializes_as_a_btree_map() {
        let pairs = [(5u64, 1i64), (2, 7), (9, -3), (2, 8), (0, 0)];
        let model: BTreeMap<u64, i64> = pairs.iter().copied().collect();
        let mut map = SortedMap::new();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        let bytes = postcard::to_allocvec(&model).unwrap();
        assert_eq!(postcard::to_allocvec(&map).unwrap(), bytes);
        assert_eq!(
            postcard::from_bytes::<SortedMap<u64, i64>>(&bytes).unwrap(),
            map
        );
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            serde_json::to_string(&model).unwrap()
        );
        // Unsorted and repeated keys, as a BTreeMap reads them: last value wins.
        let unsorted: Vec<u8> = postcard::to_allocvec(&pairs.to_vec()).unwrap();
        let as_map = postcard::from_bytes::<SortedMap<u64, i64>>(&unsorted).unwrap();
        let as_model = postcard::from_bytes::<BTreeMap<u64, i64>>(&unsorted).unwrap();
        assert!(as_map.iter().eq(as_model.iter()));
        assert_eq!(as_map.get(&2), Some(&8));
        assert_eq!(as_map.last_at_or_before(&4), Some((&2, &8)));
        assert_eq!(as_map.last_at_or_before(&100), Some((&9, &-3)));
    }
}
