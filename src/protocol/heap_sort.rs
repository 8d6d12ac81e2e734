//! An unstable sort for the sorts off the hot path (a register's
//! siblings, an entity's claims, members and conflicts as shown). Each
//! element type `sort_unstable` is used with costs the wasm 3-4 KB of
//! pattern-defeating quicksort; a heap sort is a few hundred bytes, still
//! O(n log n) whatever a peer sends, and as fast at these sizes.

/// Sorts `v` in place by `less`, unstably.
pub fn heap_sort_by<T>(v: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    let mut sift_down = |v: &mut [T], mut node: usize, end: usize| loop {
        let mut child = 2 * node + 1;
        if child >= end {
            break;
        }
        if child + 1 < end && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if !less(&v[node], &v[child]) {
            break;
        }
        v.swap(node, child);
        node = child;
    };
    let len = v.len();
    for node in (0..len / 2).rev() {
        sift_down(v, node, len);
    }
    for end in (1..len).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// Sorts `v` in place by `key`, unstably.
pub fn heap_sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    heap_sort_by(v, |a, b| key(a) < key(b));
}

#[cfg(test)]
mod tests {
    use super::{heap_sort_by, heap_sort_by_key};

    #[test]
    fn sorts_like_sort_unstable() {
        let mut x: u64 = 3;
        for len in 0..200usize {
            let mut v: Vec<u64> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (x >> 33) % (len as u64 / 2 + 1)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_unstable();
            let mut by_key = v.clone();
            heap_sort_by(&mut v, |a, b| a < b);
            heap_sort_by_key(&mut by_key, |a| *a);
            assert_eq!(v, expected);
            assert_eq!(by_key, expected);
        }
    }
}
