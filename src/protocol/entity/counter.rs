use serde::{Deserialize, Serialize};

use crate::protocol::clock::PeerId;
use crate::protocol::codec::content;
use crate::protocol::codec::varint::{self, zigzag};
use crate::protocol::event::{CounterOp, CounterShare, EventId};
use crate::protocol::sorted_map::SortedMap;

/// A PN-counter with observed-reset delete: every increment counts once; a
/// delete cancels exactly the contributions its writer had seen, so an
/// increment concurrent with the delete survives it ("update wins").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Per origin: (its latest contributing event, its running sum).
    contributions: SortedMap<PeerId, (u64, i64)>,
    /// Per origin: the latest contribution some delete has cancelled, and
    /// the delete that did (the event a verified snapshot needs for it).
    cancelled: SortedMap<PeerId, (u64, i64, EventId)>,
}

impl Counter {
    /// postcard's encoding of both maps (see `Entity::append_bytes`).
    pub fn append_bytes(&self, out: &mut Vec<u8>) {
        varint::put(out, self.contributions.len() as u64);
        for (&peer, &(seq, sum)) in self.contributions.iter() {
            content::peer(out, peer);
            varint::put(out, seq);
            varint::put(out, zigzag(sum));
        }
        varint::put(out, self.cancelled.len() as u64);
        for (&peer, &(seq, sum, by)) in self.cancelled.iter() {
            content::peer(out, peer);
            varint::put(out, seq);
            varint::put(out, zigzag(sum));
            content::dot(out, by);
        }
    }

    pub fn apply(&mut self, dot: EventId, op: &CounterOp) {
        match op {
            CounterOp::Increment { sum, .. } => {
                let entry = self.contributions.get_or_insert_with(dot.peer, || (0, 0));
                if dot.seq > entry.0 {
                    *entry = (dot.seq, *sum);
                }
            }
            CounterOp::Delete { observed } => {
                for share in observed {
                    let entry = self
                        .cancelled
                        .get_or_insert_with(share.peer, || (0, 0, EventId::new(PeerId(0), 0)));
                    if (share.seq, share.sum, dot) > *entry {
                        *entry = (share.seq, share.sum, dot);
                    }
                }
            }
        }
    }

    /// State-based join: per origin, the later contribution and the later
    /// cancellation.
    pub fn merge(&mut self, other: &Counter) {
        // Equal sequences with different sums only follow a fault; the
        // larger wins on both sides.
        for (&peer, &theirs) in other.contributions.iter() {
            let entry = self.contributions.get_or_insert_with(peer, || (0, 0));
            *entry = theirs.max(*entry);
        }
        for (&peer, &theirs) in other.cancelled.iter() {
            let entry = self
                .cancelled
                .get_or_insert_with(peer, || (0, 0, EventId::new(PeerId(0), 0)));
            *entry = theirs.max(*entry);
        }
    }

    /// The total, held at the range of a 64-bit integer: summed in 128
    /// bits, so totals past it stop there rather than wrap around and
    /// change sign (each origin's own total is bounded by its increments,
    /// [`WriteError::CounterOverflow`](crate::protocol::WriteError)).
    pub fn value(&self) -> i64 {
        let total: i128 = self.contributions.values().map(|c| i128::from(c.1)).sum();
        let gone: i128 = self.cancelled.values().map(|c| i128::from(c.1)).sum();
        // (`max`/`min`, not `clamp`: its assert formats an `i128`, 1.9 KB
        // of wasm where it is not inlined.)
        (total - gone).max(i64::MIN.into()).min(i64::MAX.into()) as i64
    }

    /// Present while some contribution is not cancelled.
    pub fn is_present(&self) -> bool {
        self.contributions
            .iter()
            .any(|(p, c)| c.0 > self.cancelled.get(p).map_or(0, |x| x.0))
    }

    /// This origin's running total, for its next increment.
    pub fn contribution(&self, peer: PeerId) -> i64 {
        self.contributions.get(&peer).map_or(0, |c| c.1)
    }

    /// The events the state rests on: each origin's latest increment, and
    /// the delete behind each cancellation.
    pub fn dots(&self) -> impl Iterator<Item = EventId> + '_ {
        let contributions = self
            .contributions
            .iter()
            .map(|(&peer, &(seq, _))| EventId::new(peer, seq));
        contributions.chain(self.cancelled.values().map(|c| c.2))
    }

    /// What a local delete observes.
    pub fn shares(&self) -> Vec<CounterShare> {
        self.contributions
            .iter()
            .map(|(&peer, &(seq, sum))| CounterShare { peer, seq, sum })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(c: &mut Counter, p: u64, s: u64, by: i64) {
        let sum = c.contribution(PeerId(p)) + by;
        c.apply(
            EventId::new(PeerId(p), s),
            &CounterOp::Increment { by, sum },
        );
    }

    #[test]
    fn every_increment_counts_once() {
        let mut c = Counter::default();
        inc(&mut c, 1, 1, 5);
        inc(&mut c, 2, 1, -2);
        inc(&mut c, 1, 2, 1);
        assert_eq!(c.value(), 4);
    }

    #[test]
    fn delete_cancels_only_what_it_saw() {
        let mut c = Counter::default();
        inc(&mut c, 1, 1, 5);
        let observed = c.shares();
        inc(&mut c, 2, 1, 3); // concurrent with the delete
        c.apply(EventId::new(PeerId(3), 1), &CounterOp::Delete { observed });
        assert_eq!(c.value(), 3);
        assert!(c.is_present());
        let observed = c.shares();
        c.apply(EventId::new(PeerId(3), 2), &CounterOp::Delete { observed });
        assert_eq!(c.value(), 0);
        assert!(!c.is_present());
    }

    fn share(peer: u64, seq: u64, sum: i64) -> CounterShare {
        CounterShare {
            peer: PeerId(peer),
            seq,
            sum,
        }
    }

    fn replay(ops: &[(u64, u64, &CounterOp)]) -> Counter {
        let mut c = Counter::default();
        for &(peer, seq, op) in ops {
            c.apply(EventId::new(PeerId(peer), seq), op);
        }
        c
    }

    /// A delete's sums are its writer's word (docs/DECISIONS.md, "A counter
    /// delete's sums are its writer's word"): Mallory (3) claims Alice's
    /// (1) share was 1,000 where it was 5. Replicas take the lie alike in
    /// any order, it moves the value no further than an increment of
    /// Mallory's own would, and the next delete that sees Alice's later
    /// increment replaces it. (One that sees only her second would not:
    /// at one seq the larger sum stays; DECISIONS says why that is left.)
    #[test]
    fn a_forged_share_moves_the_value_as_an_own_increment_would() {
        let inc = |by, sum| CounterOp::Increment { by, sum };
        let delete = |observed| CounterOp::Delete { observed };
        let (a1, a2, a3) = (inc(2, 2), inc(3, 5), inc(1, 6));
        let forged = delete(vec![share(1, 2, 1_000)]);
        // Alice's third increment is concurrent with the delete.
        let first = replay(&[(1, 1, &a1), (1, 2, &a2), (3, 1, &forged), (1, 3, &a3)]);
        let second = replay(&[(1, 1, &a1), (1, 2, &a2), (1, 3, &a3), (3, 1, &forged)]);
        assert_eq!(first, second);
        assert_eq!(first.value(), 6 - 1_000);
        assert!(first.is_present());

        // Mallory reaches the same value and presence with no lie: the true
        // delete, then her own increment.
        let honest = delete(vec![share(1, 2, 5)]);
        let own = inc(-995, -995);
        let truthful = replay(&[
            (1, 1, &a1),
            (1, 2, &a2),
            (3, 1, &honest),
            (3, 2, &own),
            (1, 3, &a3),
        ]);
        assert_eq!(truthful.value(), first.value());
        assert_eq!(truthful.is_present(), first.is_present());

        // Bob (2) deletes what he sees, Alice's third increment with it: the
        // lie is gone, as Mallory's increment would be.
        for mut c in [first, truthful] {
            let seen = delete(c.shares());
            c.apply(EventId::new(PeerId(2), 1), &seen);
            assert_eq!(c.value(), 0);
            assert!(!c.is_present());
        }
    }
}
