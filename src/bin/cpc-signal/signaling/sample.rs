//! Who hears of whom in a big room: a joining peer is told of a bounded
//! random sample of the members, and a bounded random sample of them is
//! told of it, so a join costs the server O(`SAMPLE`) messages, not O(n),
//! and no page is sent a list of a thousand peers. The partial view of each
//! page (`protocol/sync/mesh`) learns the rest by shuffles. A room of at
//! most `SAMPLE + 1` peers is still told everything: a full mesh needs it.

/// Peers named to a joining peer, and told of it, at most: a few times the
/// links a page keeps (8) and within its passive view (64).
pub const SAMPLE: usize = 32;

/// A uniform random sample of at most `k` of `items`, in no set order
/// (reservoir sampling), drawn from `seed`: all of them when they fit.
pub fn sample<T>(items: impl IntoIterator<Item = T>, k: usize, seed: u64) -> Vec<T> {
    let mut state = seed;
    let mut picked = Vec::with_capacity(k);
    for (seen, item) in items.into_iter().enumerate() {
        if picked.len() < k {
            picked.push(item);
            continue;
        }
        // Keep the (seen + 1)-th item with probability k / (seen + 1).
        let j = (splitmix64(&mut state) % (seen as u64 + 1)) as usize;
        if j < k {
            picked[j] = item;
        }
    }
    picked
}

/// A seed for [`sample`] from the operating system (a fixed one if it has
/// none: the sample is then predictable, never wrong).
pub fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_room_is_named_whole() {
        let mut all = sample(0..10, SAMPLE, 7);
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_big_room_is_sampled_evenly_without_repeats() {
        let seed = std::env::var("CPC_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(seed);
        println!("seed {seed} (replay with CPC_SEED={seed})");
        let mut hits = vec![0u32; 1000];
        for round in 0..2000u64 {
            let mut picked = sample(0..1000usize, SAMPLE, seed ^ round);
            assert_eq!(picked.len(), SAMPLE, "seed {seed}");
            picked.sort_unstable();
            picked.dedup();
            assert_eq!(picked.len(), SAMPLE, "a repeat, seed {seed}");
            for p in picked {
                hits[p] += 1;
            }
        }
        // Each member is picked 2000 * 32 / 1000 = 64 times on average;
        // none is left out or favored several times over.
        let (min, max) = (hits.iter().min().unwrap(), hits.iter().max().unwrap());
        assert!(
            *min >= 25 && *max <= 120,
            "min {min} max {max}, seed {seed}"
        );
    }
}
