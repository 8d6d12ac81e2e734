//! The deterministic RNG of the tests, the simulator and the benches.

/// The seeds a random test runs: `CPC_SEED=n` replays one, the variable
/// `more` (say `CPC_RUNS_SEEDS=n`) runs the first `n` instead of the
/// first `default`. The range is printed first, so a failure replays.
pub fn seeds(test: &str, more: &str, default: u64) -> std::ops::Range<u64> {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let seeds = match env("CPC_SEED") {
        Some(seed) => seed..seed + 1,
        None => 0..env(more).unwrap_or(default),
    };
    println!("{test}: seeds {seeds:?} (replay one with CPC_SEED=n)");
    seeds
}

/// splitmix64: small, fast, and the same everywhere, so a seed replays.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The stream of `seed`: the same numbers on every platform.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The stream of `CPC_SEED` when it is set, else of a fresh seed;
    /// either way the seed is printed first, so a failure replays.
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("CPC_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map_or(1, |d| d.as_nanos() as u64)
            });
        println!("{test}: seed {seed} (replay with CPC_SEED={seed})");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
