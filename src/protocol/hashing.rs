//! Seeds for the hash tables keyed by what peers send.
//!
//! Event ids, keys and the peer ids a clock names are a peer's to choose.
//! Hashed with a seed anyone can read, a lying peer could search out
//! inputs that fall into one bucket, and each insert would walk all the
//! others: a room member could stall us with one frame, or make every
//! fold of our snapshot quadratic. So every such table is seeded at
//! random: the engine's from its config ([`EngineConfig::hash_seed`]),
//! the rest (a frame's passing sets, the batch encoder's tables) from one
//! process-wide seed, which the edge draws once ([`seed`]: the browser
//! peer when it opens, the server when it starts).
//!
//! The core draws no randomness of its own: unseeded (tests, benches) the
//! seed is fixed, and every run behaves the same.
//!
//! [`EngineConfig::hash_seed`]: crate::protocol::EngineConfig::hash_seed

use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::FixedState;

static SEED: AtomicU64 = AtomicU64::new(0x5eed);

/// Seeds the tables made from now on (those made before keep theirs).
pub fn seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
}

/// A hasher for a table keyed by what peers send.
pub fn state() -> FixedState {
    FixedState::with_seed(SEED.load(Ordering::Relaxed))
}
