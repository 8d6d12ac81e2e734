//! A batch's key table for the encoder: each distinct key's index, in
//! the order keys were first met.
//!
//! A snapshot spells a million keys, nearly all distinct. Looked up one by
//! one in a hash table, each key was a cache miss (and, natively, a miss
//! of the address translation too: the table was 10.7 MB), and they were
//! most of encoding a snapshot's events even with the lookups of the keys
//! to come overlapped. So the table is worked out before the first event
//! is written, by sorting rather than hashing into a table: each key's
//! hash (its high 32 bits) beside its place in the batch, in one word,
//! sorted by the hash with a radix sort that keeps places in order. Equal
//! keys then sit together, first the key's first use; only keys of one
//! hash are compared. Every pass reads and writes in order; what comes
//! out is the list of repeated uses, each with the place of its key's
//! first use.
//!
//! Keys are peers' to choose: the hasher is seeded at random
//! ([`hashing`]), so no peer can aim keys at one hash, where each use
//! would be compared with every distinct key before it. Should one hash
//! still gather more than [`MAX_FIRSTS`] distinct keys (an unseeded
//! process, whose seed anyone can read), the keys past them are spelled
//! again at each use: the batch is larger but decodes the same, and no
//! use is compared more than that many times.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::protocol::{hashing, key_sort};

/// The distinct keys of one hash that later uses are looked up among.
pub const MAX_FIRSTS: usize = 64;

/// Where a key is: its index, and whether it was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Known(u32),
    New(u32),
}

/// The key table of one batch, read use by use in the batch's order.
pub struct KeyTable {
    /// The repeated uses, sorted: a word each, its place in the batch in
    /// the high half and the place of its key's first use in the low.
    repeats: Vec<u64>,
    /// How many of `repeats` are behind the next use, and its place: the
    /// keys spelled before it are the places less the repeats.
    passed: usize,
    at: u32,
}

/// A batch's keys hashed, one word a use in the batch's order, for
/// [`KeyTable::from_words`]: by whoever reads the events before they are
/// encoded (a snapshot's are gathered run by run first), so that the
/// table does not read a million events again for their keys.
pub struct KeyWords {
    hasher: FixedState,
    words: Vec<u64>,
}

impl KeyWords {
    pub fn with_capacity(n: usize) -> Self {
        KeyWords {
            hasher: hashing::state(),
            words: Vec::with_capacity(n),
        }
    }

    /// The next use's key.
    #[inline]
    pub fn push(&mut self, key: &str) {
        let place = self.words.len() as u64;
        self.words.push(word(self.hasher.hash_one(key), place));
    }

    pub(crate) fn len(&self) -> usize {
        self.words.len()
    }
}

/// A use's word: its key's hash in the high half, its place in the low.
fn word(hash: u64, place: u64) -> u64 {
    (hash & !u64::from(u32::MAX)) | place
}

impl KeyTable {
    /// The table of the `n` keys `key(0..n)` (the keys of a batch, in its
    /// order), hashed by the process's seeded hasher.
    pub fn new<'k>(n: usize, key: impl Fn(usize) -> &'k str) -> Self {
        let mut words = KeyWords::with_capacity(n);
        (0..n).for_each(|i| words.push(key(i)));
        Self::from_words(words, key)
    }

    /// The table of the keys `key(0..n)` whose words are `words`
    /// ([`KeyWords`], pushed in that order).
    pub fn from_words<'k>(words: KeyWords, key: impl Fn(usize) -> &'k str) -> Self {
        Self::sorted(words.words, key)
    }

    #[cfg(test)]
    fn with_hash<'k>(n: usize, key: impl Fn(usize) -> &'k str, hash: impl Fn(&str) -> u64) -> Self {
        let words = (0..n).map(|i| word(hash(key(i)), i as u64)).collect();
        Self::sorted(words, key)
    }

    /// The table of the uses `words` stand for.
    fn sorted<'k>(mut words: Vec<u64>, key: impl Fn(usize) -> &'k str) -> Self {
        let mut repeats = Vec::new();
        // Places must fit a half word; past them (no batch comes near)
        // every key is spelled, which still decodes.
        if words.len() < u32::MAX as usize {
            key_sort::sort_words_above(&mut words, 32);
            let mut firsts: Vec<(&str, u64)> = Vec::new();
            let mut run = 0;
            while run < words.len() {
                let high = words[run] >> 32;
                let end = run + words[run..].iter().take_while(|w| *w >> 32 == high).count();
                if end - run > 1 {
                    // Places come in order: a key's first use is met first.
                    firsts.clear();
                    for &word in &words[run..end] {
                        let place = word & u64::from(u32::MAX);
                        let this = key(place as usize);
                        match firsts.iter().find(|(k, _)| *k == this) {
                            Some(&(_, first)) => repeats.push(place << 32 | first),
                            None if firsts.len() < MAX_FIRSTS => firsts.push((this, place)),
                            // Spelled at this use.
                            None => {}
                        }
                    }
                }
                run = end;
            }
            key_sort::sort_words(&mut repeats);
        }
        KeyTable {
            repeats,
            passed: 0,
            at: 0,
        }
    }

    /// Where the next use's key is: new (spelled, taking the next index)
    /// or known (the index its first use took). A spelled key's index is
    /// the keys spelled before it: its place less the repeats before it.
    pub fn next(&mut self) -> Found {
        let at = u64::from(self.at);
        self.at = self.at.saturating_add(1);
        match self.repeats.get(self.passed) {
            Some(&word) if word >> 32 == at => {
                self.passed += 1;
                let first = word & u64::from(u32::MAX);
                let before = self.repeats[..self.passed].partition_point(|w| w >> 32 < first);
                Found::Known((first - before as u64) as u32)
            }
            _ => Found::New((at - self.passed as u64) as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::Rng;

    fn uses(keys: &[&str]) -> Vec<Found> {
        let mut table = KeyTable::new(keys.len(), |i| keys[i]);
        keys.iter().map(|_| table.next()).collect()
    }

    /// What a hash map of keys to first indices says.
    fn expected(keys: &[&str]) -> Vec<Found> {
        let mut seen = hashbrown::HashMap::with_hasher(crate::protocol::hashing::state());
        keys.iter()
            .map(|k| {
                let next = seen.len() as u32;
                match seen.entry(*k) {
                    hashbrown::hash_map::Entry::Occupied(e) => Found::Known(*e.get()),
                    hashbrown::hash_map::Entry::Vacant(e) => {
                        e.insert(next);
                        Found::New(next)
                    }
                }
            })
            .collect()
    }

    #[test]
    fn keys_take_indices_in_order_first_met() {
        assert_eq!(
            uses(&["a", "b", "a", "", ""]),
            [
                Found::New(0),
                Found::New(1),
                Found::Known(0),
                Found::New(2),
                Found::Known(2)
            ]
        );
        assert_eq!(uses(&[]), []);
    }

    #[test]
    fn many_keys_keep_every_index() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("key {i}")).collect();
        let mut batch: Vec<&str> = keys.iter().map(String::as_str).collect();
        batch.extend(keys.iter().rev().map(String::as_str));
        let found = uses(&batch);
        for i in 0..10_000 {
            assert_eq!(found[i], Found::New(i as u32));
            assert_eq!(found[19_999 - i], Found::Known(i as u32));
        }
    }

    #[test]
    fn keys_hashed_elsewhere_make_the_same_table() {
        let keys: Vec<String> = (0..3_000).map(|i| format!("k{}", i % 700)).collect();
        let key = |i: usize| keys[i].as_str();
        let mut words = KeyWords::with_capacity(keys.len());
        keys.iter().for_each(|k| words.push(k));
        let (mut hashed, mut here) = (
            KeyTable::from_words(words, key),
            KeyTable::new(keys.len(), key),
        );
        for _ in &keys {
            assert_eq!(hashed.next(), here.next());
        }
    }

    #[test]
    fn keys_of_one_hash_stay_apart() {
        // Every key of one hash: only the comparison of the keys
        // themselves tells them apart.
        let keys = ["x", "y", "x", "z", "y", "y"];
        let mut table = KeyTable::with_hash(keys.len(), |i| keys[i], |_| 7 << 32);
        let found: Vec<Found> = keys.iter().map(|_| table.next()).collect();
        assert_eq!(found, expected(&keys));
    }

    #[test]
    fn many_keys_of_one_hash_are_found_up_to_the_cap() {
        // 100 distinct keys of one hash, each used three times: the first
        // `MAX_FIRSTS` are found again, the others spelled at every use.
        let keys: Vec<String> = (0..300).map(|i| format!("k{}", i % 100)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut table = KeyTable::with_hash(keys.len(), |i| keys[i], |_| 7 << 32);
        let found: Vec<Found> = keys.iter().map(|_| table.next()).collect();
        let mut spelled = 0;
        let mut first = hashbrown::HashMap::with_hasher(crate::protocol::hashing::state());
        for (place, (key, found)) in keys.iter().zip(&found).enumerate() {
            let distinct = place % 100;
            match *found {
                Found::New(index) => {
                    assert_eq!(index, spelled, "indices are taken in order");
                    spelled += 1;
                    assert!(place < 100 || distinct >= MAX_FIRSTS, "{key} at {place}");
                    first.entry(*key).or_insert(index);
                }
                Found::Known(index) => {
                    assert!(distinct < MAX_FIRSTS && place >= 100);
                    assert_eq!(first[key], index);
                }
            }
        }
        assert_eq!(spelled as usize, 100 + 2 * (100 - MAX_FIRSTS));
    }

    #[test]
    fn uses_match_a_hash_map() {
        let mut rng = Rng::from_env("uses_match_a_hash_map");
        for _ in 0..200 {
            let n = rng.below(300);
            let distinct = 1 + rng.below(40);
            let keys: Vec<String> = (0..n)
                .map(|_| format!("k{}", rng.below(distinct)))
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            assert_eq!(uses(&keys), expected(&keys), "{keys:?}");
            // And with hashes that collide often (four values).
            let mut table =
                KeyTable::with_hash(keys.len(), |i| keys[i], |k| (k.len() as u64 % 4) << 32);
            let found: Vec<Found> = keys.iter().map(|_| table.next()).collect();
            assert_eq!(found, expected(&keys), "{keys:?}");
        }
    }
}
