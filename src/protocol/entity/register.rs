use hashbrown::{HashMap, HashSet};
use std::borrow::Cow;

use foldhash::fast::FixedState;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::protocol::clock::{Timestamp, VectorClock};
use crate::protocol::codec::{content, varint};
use crate::protocol::event::{EventId, RegisterOp};
use crate::protocol::hashing;
use crate::protocol::heap_sort::heap_sort_by_key;
use crate::protocol::value::JsonValue;

/// One concurrent value of a register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    pub dot: EventId,
    pub hlc: Timestamp,
    pub value: JsonValue,
    pub resolution: bool,
}

/// A multi-value register: it keeps every concurrent write as a sibling until
/// a write that observed them all. Policies only change how it is *shown*:
/// `lww` shows [`Register::winner`] and hides the siblings, `multi-value` and
/// `reconcile` surface them as a conflict. So the replicated state is the
/// same whatever policy each peer configured.
#[derive(Debug, Clone, Default)]
pub struct Register {
    /// One sibling inline: a register is rarely in conflict.
    siblings: SmallVec<[Sibling; 1]>,
    /// Siblings are appended in arrival order (1,540 concurrent writers cost
    /// no sorted inserts) and sorted by dot only where an order is needed.
    sorted: bool,
}

impl Register {
    pub fn apply(&mut self, dot: EventId, hlc: Timestamp, op: &RegisterOp) {
        match op {
            RegisterOp::Write {
                value,
                observed,
                resolution,
            } => {
                self.supersede(observed);
                let in_order = self.siblings.last().is_none_or(|last| last.dot < dot);
                self.sorted = (self.sorted || self.siblings.is_empty()) && in_order;
                self.siblings.push(Sibling {
                    dot,
                    hlc,
                    value: value.clone(),
                    resolution: *resolution,
                });
            }
            RegisterOp::Delete { observed } => self.supersede(observed),
        }
    }

    fn supersede(&mut self, observed: &VectorClock) {
        if !observed.is_empty() {
            self.siblings
                .retain(|s| s.dot.seq > observed.get(s.dot.peer));
        }
    }

    /// The value shown: Last-Write-Wins by `(hlc, peer)`, except that when
    /// every sibling is a reconciliation result the lowest resolver id wins,
    /// so concurrent resolutions settle without another round.
    pub fn winner(&self) -> Option<&Sibling> {
        if self.siblings.len() > 1 && self.siblings.iter().all(|s| s.resolution) {
            return self.siblings.iter().min_by_key(|s| s.dot);
        }
        self.last_written(|_| true)
    }

    /// The last written of the siblings `keep` keeps, by `(hlc, peer)`.
    pub fn last_written(&self, keep: impl Fn(&Sibling) -> bool) -> Option<&Sibling> {
        self.siblings
            .iter()
            .filter(|s| keep(s))
            .max_by_key(|s| (s.hlc, s.dot.peer, s.dot.seq))
    }

    /// Concurrent values that the app should see (and may resolve).
    pub fn is_conflicted(&self) -> bool {
        self.siblings.len() > 1 && !self.siblings.iter().all(|s| s.resolution)
    }

    pub fn is_present(&self) -> bool {
        !self.siblings.is_empty()
    }

    /// The writes the siblings rest on.
    pub fn dots(&self) -> impl Iterator<Item = EventId> + '_ {
        self.siblings.iter().map(|s| s.dot)
    }

    /// Siblings ordered by dot: the canonical order for hashing and snapshots.
    pub fn siblings(&self) -> Cow<'_, [Sibling]> {
        if self.sorted || self.siblings.len() < 2 {
            Cow::Borrowed(&self.siblings)
        } else {
            let mut sorted = self.siblings.to_vec();
            heap_sort_by_key(&mut sorted, |s| s.dot);
            Cow::Owned(sorted)
        }
    }

    /// postcard's encoding of [`siblings`](Self::siblings) (see
    /// `Entity::append_bytes`).
    pub fn append_bytes(&self, out: &mut Vec<u8>) {
        let siblings = self.siblings();
        varint::put(out, siblings.len() as u64);
        for s in siblings.iter() {
            content::dot(out, s.dot);
            varint::put(out, s.hlc.0);
            content::text(out, s.value.as_str());
            out.push(u8::from(s.resolution));
        }
    }

    /// The entity clock a superseding write attaches: every sibling's dot.
    pub fn observed(&self) -> VectorClock {
        self.siblings
            .iter()
            .map(|s| (s.dot.peer, s.dot.seq))
            .collect()
    }

    /// State-based join with another replica's register. `ours` and
    /// `theirs` are the two replicas' version vectors: a sibling only one side
    /// holds survives unless the other side has seen its event (and so
    /// superseded it).
    pub fn merge(&mut self, other: &Register, ours: &VectorClock, theirs: &VectorClock) {
        // The holding queue's hasher type (the wasm holds one set of ids),
        // seeded at random: dots are peers' to choose.
        let mut mine: HashSet<EventId, FixedState> = HashSet::with_hasher(hashing::state());
        mine.extend(self.siblings.iter().map(|s| s.dot));
        let mut their_dots: HashMap<EventId, &Sibling, FixedState> =
            HashMap::with_hasher(hashing::state());
        their_dots.extend(other.siblings.iter().map(|s| (s.dot, s)));
        self.siblings
            .retain(|s| their_dots.contains_key(&s.dot) || s.dot.seq > theirs.get(s.dot.peer));
        // Two replicas disagree on one dot's content only after a fault (or a
        // forger); both keep the larger, so they still converge.
        for s in self.siblings.iter_mut() {
            if let Some(t) = their_dots.get(&s.dot) {
                if (&t.value, t.hlc, t.resolution) > (&s.value, s.hlc, s.resolution) {
                    *s = (*t).clone();
                }
            }
        }
        let fresh = other
            .siblings
            .iter()
            .filter(|o| !mine.contains(&o.dot) && o.dot.seq > ours.get(o.dot.peer));
        self.siblings.extend(fresh.cloned());
        heap_sort_by_key(&mut self.siblings, |s| s.dot);
        self.sorted = true;
    }

    pub fn from_siblings(mut siblings: Vec<Sibling>) -> Self {
        heap_sort_by_key(&mut siblings, |s| s.dot);
        siblings.dedup_by_key(|s| s.dot);
        Register {
            siblings: siblings.into(),
            sorted: true,
        }
    }
}

impl PartialEq for Register {
    fn eq(&self, other: &Self) -> bool {
        self.siblings() == other.siblings()
    }
}

impl Eq for Register {}

/// A register serializes as its siblings in canonical order.
impl Serialize for Register {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.siblings().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Register {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Sibling>::deserialize(deserializer).map(Register::from_siblings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::clock::PeerId;

    fn dot(p: u64, s: u64) -> EventId {
        EventId::new(PeerId(p), s)
    }

    fn write(value: &str, observed: &[(u64, u64)]) -> RegisterOp {
        RegisterOp::Write {
            value: JsonValue::parse(value).unwrap(),
            observed: observed.iter().map(|&(p, s)| (PeerId(p), s)).collect(),
            resolution: false,
        }
    }

    #[test]
    fn lww_higher_timestamp_wins_tie_breaks_by_peer() {
        let mut r = Register::default();
        r.apply(dot(1, 1), Timestamp::new(10, 0), &write("\"a\"", &[]));
        r.apply(dot(2, 1), Timestamp::new(9, 0), &write("\"b\"", &[]));
        assert_eq!(r.winner().unwrap().value.as_str(), "\"a\"");
        r.apply(dot(0, 1), Timestamp::new(10, 0), &write("\"c\"", &[]));
        assert_eq!(
            r.winner().unwrap().value.as_str(),
            "\"a\"",
            "tie: higher peer id"
        );
        r.apply(dot(3, 1), Timestamp::new(10, 0), &write("\"d\"", &[]));
        assert_eq!(r.winner().unwrap().value.as_str(), "\"d\"");
        assert!(r.is_conflicted());
    }

    #[test]
    fn a_write_that_observed_all_siblings_resolves_them() {
        let mut r = Register::default();
        r.apply(dot(1, 1), Timestamp::new(1, 0), &write("1", &[]));
        r.apply(dot(2, 1), Timestamp::new(1, 0), &write("2", &[]));
        r.apply(
            dot(1, 2),
            Timestamp::new(2, 0),
            &write("3", &[(1, 1), (2, 1)]),
        );
        assert_eq!(r.siblings().len(), 1);
        assert!(!r.is_conflicted());
    }

    #[test]
    fn update_wins_over_concurrent_delete() {
        let mut r = Register::default();
        r.apply(dot(1, 1), Timestamp::new(1, 0), &write("1", &[]));
        // Peer 2 writes, concurrently peer 3 deletes what it saw (1:1).
        r.apply(dot(2, 1), Timestamp::new(2, 0), &write("2", &[(1, 1)]));
        let delete = RegisterOp::Delete {
            observed: [(PeerId(1), 1)].into_iter().collect(),
        };
        r.apply(dot(3, 1), Timestamp::new(9, 0), &delete);
        assert_eq!(r.winner().unwrap().value.as_str(), "2");
    }

    #[test]
    fn concurrent_resolutions_settle_by_lowest_resolver() {
        let mut r = Register::default();
        let res = |v: &str| RegisterOp::Write {
            value: JsonValue::parse(v).unwrap(),
            observed: VectorClock::new(),
            resolution: true,
        };
        r.apply(dot(5, 1), Timestamp::new(9, 0), &res("\"five\""));
        r.apply(dot(2, 1), Timestamp::new(1, 0), &res("\"two\""));
        assert_eq!(r.winner().unwrap().value.as_str(), "\"two\"");
        assert!(!r.is_conflicted());
    }

    #[test]
    fn siblings_come_out_sorted_whatever_the_arrival_order() {
        let mut r = Register::default();
        for p in [5, 1, 3] {
            r.apply(dot(p, 1), Timestamp::new(1, 0), &write("0", &[]));
        }
        let dots: Vec<u64> = r.siblings().iter().map(|s| s.dot.peer.0).collect();
        assert_eq!(dots, [1, 3, 5]);
    }
}
