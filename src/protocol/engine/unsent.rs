//! The origins whose count grew since our last local event: that event's
//! `deps` are their entries of the version vector.

use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::key_sort;

/// Origins noted as their events apply, in no order and perhaps more than
/// once; sorted and made a clock only when we write.
///
/// It used to be that clock itself, kept up to date at every applied
/// event: in a room of thousands of writers a search and an insert into
/// a clock of thousands of entries an event (C1.2's 30,000 lone writers,
/// none of them ever in a local event of the page's), where this is a
/// push.
#[derive(Debug, Default)]
pub(super) struct UnsentDeps {
    /// As `u64`s, for [`key_sort::sort_words`]: a peer id's value.
    origins: Vec<u64>,
    /// Past this many noted, they are sorted and their repeats dropped,
    /// so a page that does not write holds each origin about once.
    compact_at: usize,
}

/// Noted origins kept before the first compaction.
const FIRST_COMPACTION: usize = 1024;

impl UnsentDeps {
    /// `origin`'s count grew (an origin other than ours).
    #[inline]
    pub fn note(&mut self, origin: PeerId) {
        if self.origins.last() == Some(&origin.0) {
            return;
        }
        if self.origins.len() >= self.compact_at.max(FIRST_COMPACTION) {
            self.compact();
            self.compact_at = 2 * self.origins.len();
        }
        self.origins.push(origin.0);
    }

    fn compact(&mut self) {
        key_sort::sort_words(&mut self.origins);
        self.origins.dedup();
    }

    /// The next local event's `deps`: each noted origin's entry of
    /// `applied`, and nothing noted after.
    pub fn take(&mut self, applied: &VectorClock) -> VectorClock {
        self.compact();
        self.compact_at = 0;
        let entries = self
            .origins
            .drain(..)
            .map(|p| (PeerId(p), applied.get(PeerId(p))))
            .collect();
        VectorClock::from_entries(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::UnsentDeps;
    use crate::protocol::clock::{PeerId, VectorClock};
    use crate::protocol::testing::{seeds, Rng};

    /// The deps are the clock the engine kept before: every noted
    /// origin's entry, however many times and in whatever order noted.
    #[test]
    fn the_deps_are_the_entries_of_the_noted_origins() {
        for seed in seeds(
            "the_deps_are_the_entries_of_the_noted_origins",
            "CPC_UNSENT_SEEDS",
            40,
        ) {
            let mut rng = Rng::new(seed);
            let peers = 1 + rng.below(3_000) as u64;
            let (mut applied, mut kept) = (VectorClock::new(), VectorClock::new());
            let mut unsent = UnsentDeps::default();
            for step in 0..rng.below(20_000) {
                let peer =
                    PeerId((rng.below(peers as usize) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let seq = applied.get(peer) + 1;
                applied.set(peer, seq);
                kept.observe(peer, seq);
                unsent.note(peer);
                if rng.chance(0.001) {
                    assert_eq!(unsent.take(&applied), kept, "seed {seed}, step {step}");
                    kept = VectorClock::new();
                }
                assert!(unsent.origins.len() <= (2 * peers as usize).max(1024) + 1);
            }
            assert_eq!(unsent.take(&applied), kept, "seed {seed}");
            assert_eq!(unsent.take(&applied), VectorClock::new(), "seed {seed}");
        }
    }
}
