//! One sort for every sort by a number: event ids, peers, clock entries,
//! times, hashes. Each element type the standard sorts are used with costs
//! the wasm 2-4 KB of pattern-defeating quicksort (or driftsort), and there
//! were a dozen; here the standard unstable sort runs on one type only,
//! `(key, position)`, and the elements follow the sorted positions. The
//! positions are all different, so the unstable sort gives the order of a
//! stable sort by key: what `sort_by_key` gives, and, for keys that order
//! the elements wholly, what `sort_unstable` gives.

use super::heap_sort::heap_sort_by;

/// An element's key and its position before the sort.
type Tagged = (u128, usize);

#[inline(never)]
fn sort_tagged(tagged: &mut [Tagged]) {
    tagged.sort_unstable();
}

/// Sorts `v` stably by `key`, in O(n log n): pdqsort on the keys, then one
/// pass of swaps.
pub fn sort_by_key<T>(v: &mut [T], key: impl Fn(&T) -> u128) {
    if v.len() < 2 {
        return;
    }
    let mut tagged: Vec<Tagged> = v.iter().map(&key).zip(0..).collect();
    sort_tagged(&mut tagged);
    // `from[i]`: the position before the sort of what goes to `i`. Each
    // cycle of the permutation is walked once, one swap a step; a done
    // position points at itself.
    let mut from: Vec<usize> = tagged.into_iter().map(|(_, at)| at).collect();
    for start in 0..from.len() {
        let mut at = start;
        loop {
            let next = from[at];
            from[at] = at;
            if next == start {
                break;
            }
            v.swap(at, next);
            at = next;
        }
    }
}

/// Sorts 64-bit words: a least-significant-digit radix sort, a byte a
/// pass, skipping each byte all the words share (a snapshot's packed event
/// ids vary in three of eight). Written by index: in the size-optimized
/// wasm the comparison sort made a call of every comparison, and a
/// snapshot of 100k entities sorts 200k words.
pub fn sort_words(v: &mut Vec<u64>) {
    sort_words_above(v, 0);
}

/// Sorts 64-bit words by their bits from `bit` up (a multiple of 8),
/// stably: words equal there keep their order. [`sort_words`] is this
/// from bit 0.
pub fn sort_words_above(v: &mut Vec<u64>, bit: u32) {
    assert!(bit % 8 == 0 && bit < 64, "whole bytes of the word");
    let n = v.len();
    if n < 64 {
        // A Merkle leaf's few ids: an insertion sort, without the
        // histograms' fixed cost.
        let v: &mut [u64] = v;
        for i in 1..n {
            let word = v[i];
            let mut j = i;
            while j > 0 && v[j - 1] >> bit > word >> bit {
                v[j] = v[j - 1];
                j -= 1;
            }
            v[j] = word;
        }
        return;
    }
    // Every byte's histogram in one read. Slices, not vectors, are
    // indexed: a vector's `Index` is a call in the size-optimized wasm.
    let low = (bit / 8) as usize;
    let mut counts_vec = vec![0usize; 8 * 256];
    let counts: &mut [usize] = &mut counts_vec;
    for &word in v.iter() {
        for byte in low..8 {
            counts[byte * 256 + ((word >> (8 * byte)) & 0xff) as usize] += 1;
        }
    }
    let mut from_vec = std::mem::take(v);
    let mut to_vec = vec![0u64; n];
    let (mut from, mut to): (&mut [u64], &mut [u64]) = (&mut from_vec, &mut to_vec);
    let mut passes = 0;
    for byte in low..8 {
        let count = &mut counts[byte * 256..(byte + 1) * 256];
        if count[((from[0] >> (8 * byte)) & 0xff) as usize] == n {
            continue;
        }
        // Counts to starting positions.
        let mut at = 0;
        for slot in count.iter_mut() {
            let c = *slot;
            *slot = at;
            at += c;
        }
        for &word in from.iter() {
            let digit = ((word >> (8 * byte)) & 0xff) as usize;
            to[count[digit]] = word;
            count[digit] += 1;
        }
        std::mem::swap(&mut from, &mut to);
        passes += 1;
    }
    // Each pass moved the words to the other vector.
    *v = if passes % 2 == 0 { from_vec } else { to_vec };
}

/// Sorts strings as `Ord` orders them (byte by byte), unstably: by their
/// first 16 bytes with the one sort above, then each run of strings whose
/// first 16 bytes are equal by a heap sort. Keys (`note/1`, `note/2`, ...)
/// mostly differ within 16 bytes; when they do not, the heap sort still
/// takes O(n log n).
pub fn sort_strs<T: AsRef<str>>(v: &mut [T]) {
    sort_by_key(v, |s| prefix(s.as_ref()));
    let mut start = 0;
    while start < v.len() {
        let first = prefix(v[start].as_ref());
        let run = v[start..]
            .iter()
            .take_while(|s| prefix(s.as_ref()) == first)
            .count();
        if run > 1 {
            heap_sort_by(&mut v[start..start + run], |a, b| a.as_ref() < b.as_ref());
        }
        start += run;
    }
}

/// The first 16 bytes, zero-padded, big-endian: a shorter string that is a
/// prefix of a longer one ties with it or sorts first, as in `str`'s order.
fn prefix(s: &str) -> u128 {
    let mut bytes = [0u8; 16];
    let n = s.len().min(16);
    bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(bytes)
}

/// An event id as a key, ordered as `EventId` is (origin, then sequence).
pub fn id_key(id: crate::protocol::EventId) -> u128 {
    (u128::from(id.peer.0) << 64) | u128::from(id.seq)
}

#[cfg(test)]
mod tests {
    use super::{sort_by_key, sort_strs};

    #[test]
    fn sorts_strings_like_sort_unstable() {
        let mut x: u64 = 5;
        let mut v: Vec<String> = Vec::new();
        for i in 0..2_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let n = (x >> 40) % 50;
            v.push(match i % 4 {
                0 => format!("note/{n}"),
                1 => format!("a shared prefix of sixteen bytes and more/{n}"),
                2 => format!("note/{n}\0"),
                _ => "é".repeat((n % 20) as usize),
            });
        }
        v.push(String::new());
        v.push("\0".into());
        let mut expected = v.clone();
        expected.sort_unstable();
        sort_strs(&mut v);
        assert_eq!(v, expected);
    }

    #[test]
    fn sorts_words_as_sort_unstable_does() {
        let mut x: u64 = 23;
        for len in (0..300usize).chain([5_000]) {
            // Words that vary in a few bytes (as packed ids do), in all,
            // and not at all.
            for mask in [0x00ff_0000_0000_0fffu64, u64::MAX, 0] {
                let v: Vec<u64> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        (x ^ (x >> 29)) & mask | 0x0100_0000_0000_0000
                    })
                    .collect();
                let mut expected = v.clone();
                expected.sort_unstable();
                let mut sorted = v;
                super::sort_words(&mut sorted);
                assert_eq!(sorted, expected, "{len} words, mask {mask:x}");
            }
        }
    }

    #[test]
    fn sorts_words_above_a_bit_stably() {
        let mut x: u64 = 31;
        for len in (0..300usize).chain([5_000]) {
            for bit in [8, 32, 56] {
                // Few values above the bit, so many ties, whose order the
                // bits below (descending here) must not change.
                let v: Vec<u64> = (0..len)
                    .map(|i| {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        ((x >> 61) << bit) | ((len - i) as u64 & ((1 << bit) - 1))
                    })
                    .collect();
                let mut expected = v.clone();
                expected.sort_by_key(|w| w >> bit);
                let mut sorted = v;
                super::sort_words_above(&mut sorted, bit);
                assert_eq!(sorted, expected, "{len} words above bit {bit}");
            }
        }
    }

    #[test]
    fn sorts_like_a_stable_sort_by_key() {
        let mut x: u64 = 11;
        for len in 0..300usize {
            let v: Vec<(u64, usize)> = (0..len)
                .map(|i| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    ((x >> 33) % (len as u64 / 3 + 1), i)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by_key(|e| e.0);
            let mut sorted = v.clone();
            sort_by_key(&mut sorted, |e| u128::from(e.0));
            assert_eq!(sorted, expected);
            let mut reversed = v;
            expected.sort_by_key(|e| std::cmp::Reverse(e.0));
            sort_by_key(&mut reversed, |e| u128::from(u64::MAX - e.0));
            assert_eq!(reversed, expected);
        }
    }
}
