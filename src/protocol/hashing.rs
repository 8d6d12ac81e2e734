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

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use foldhash::fast::FixedState;

    use crate::protocol::clock::PeerId;
    use crate::protocol::event::EventId;

    /// Ids hash as one 128-bit word to spare the wasm its 128-bit shifts;
    /// the tables' hasher gives them the values their derived hashes had
    /// (the fields one after the other), so nothing about what a peer can
    /// aim at a bucket changed.
    #[test]
    fn ids_hash_as_their_fields_did() {
        let ids = [
            (0, 0),
            (1, 1),
            (u64::MAX, 7),
            (0x1234_5678_9abc_def0, u64::MAX),
        ];
        for seed in [0, 1, 0x5eed, u64::MAX] {
            let state = FixedState::with_seed(seed);
            for (peer, seq) in ids {
                let id = EventId::new(PeerId(peer), seq);
                assert_eq!(state.hash_one(id), state.hash_one((peer, seq)));
                assert_eq!(state.hash_one(PeerId(peer)), state.hash_one(peer));
            }
        }
    }
}
