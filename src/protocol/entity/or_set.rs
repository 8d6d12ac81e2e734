use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::blocks::{Blocks, Place};
use crate::protocol::clock::VectorClock;
use crate::protocol::codec::{content, varint};
use crate::protocol::event::{EventId, SetOp};
use crate::protocol::heap_sort::{heap_sort_by, heap_sort_by_key};
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::value::JsonValue;

/// Members are found by binary search: their text says nothing of where
/// they fall.
impl Place for JsonValue {}

/// An add-wins observed-remove set: a member is present while some add of it
/// is not covered by a remove (or delete) that observed it. A set with no
/// members does not exist, so a delete and removing every member agree.
///
/// Members are kept in sorted blocks ([`Blocks`]), as a large clock's
/// entries are: a set grows with the data, so a sorted vector would move
/// its tail at each insert, and a `BTreeMap` of its own cost the wasm
/// ~4 KB gzipped of node code (BENCHMARKS.md, forty-sixth session).
#[derive(Clone, Default)]
pub struct OrSet {
    members: Blocks<JsonValue, Vec<EventId>>,
}

impl PartialEq for OrSet {
    fn eq(&self, other: &OrSet) -> bool {
        self.members.len() == other.members.len() && self.members.iter().eq(other.members.iter())
    }
}

impl Eq for OrSet {}

impl fmt::Debug for OrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.members.iter()).finish()
    }
}

/// The form the `BTreeMap` it replaced had: a map of member to dots.
impl Serialize for OrSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.members.iter())
    }
}

impl<'de> Deserialize<'de> for OrSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs: Vec<(JsonValue, Vec<EventId>)> =
            SortedMap::deserialize(deserializer)?.into_iter().collect();
        Ok(OrSet {
            members: Blocks::from_sorted(&pairs),
        })
    }
}

fn retain_unobserved(dots: &mut Vec<EventId>, observed: &VectorClock) {
    dots.retain(|d| d.seq > observed.get(d.peer));
}

impl OrSet {
    /// postcard's encoding of the members, each with its dots (see
    /// `Entity::append_bytes`).
    pub fn append_bytes(&self, out: &mut Vec<u8>) {
        varint::put(out, self.members.len() as u64);
        for (member, dots) in self.members.iter() {
            content::text(out, member.as_str());
            varint::put(out, dots.len() as u64);
            for &dot in dots {
                content::dot(out, dot);
            }
        }
    }

    pub fn apply(&mut self, dot: EventId, op: &SetOp) {
        match op {
            SetOp::Add { member, observed } => {
                let dots = self.members.get_or_insert_with(member.clone(), Vec::new);
                retain_unobserved(dots, observed);
                let at = dots.partition_point(|d| *d < dot);
                dots.insert(at, dot);
            }
            SetOp::Remove { member, observed } => {
                if let Some(dots) = self.members.get_mut(member) {
                    retain_unobserved(dots, observed);
                    if dots.is_empty() {
                        self.members.remove(member);
                    }
                }
            }
            SetOp::Delete { observed } => self.members.retain(|_, dots| {
                retain_unobserved(dots, observed);
                !dots.is_empty()
            }),
        }
    }

    /// State-based join; see [`Register::merge`](super::Register::merge).
    pub fn merge(&mut self, other: &OrSet, ours: &VectorClock, theirs: &VectorClock) {
        let keys: Vec<JsonValue> = self
            .members
            .keys()
            .chain(other.members.keys())
            .cloned()
            .collect();
        for member in keys {
            let mine = self.members.get(&member).cloned().unwrap_or_default();
            let their = other.members.get(&member).cloned().unwrap_or_default();
            let mut dots: Vec<EventId> = mine
                .iter()
                .filter(|d| their.contains(d) || d.seq > theirs.get(d.peer))
                .chain(
                    their
                        .iter()
                        .filter(|d| !mine.contains(d) && d.seq > ours.get(d.peer)),
                )
                .copied()
                .collect();
            heap_sort_by_key(&mut dots, |d| *d);
            if dots.is_empty() {
                self.members.remove(&member);
            } else {
                self.members.insert(member, dots);
            }
        }
    }

    /// The add events the present members rest on.
    pub fn dots(&self) -> impl Iterator<Item = EventId> + '_ {
        self.members.values().flatten().copied()
    }

    pub fn is_present(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn contains(&self, member: &JsonValue) -> bool {
        self.members.contains_key(member)
    }

    /// Members in display order (see [`JsonValue::display_cmp`]).
    pub fn members(&self) -> Vec<&JsonValue> {
        let mut out: Vec<&JsonValue> = self.members.keys().collect();
        heap_sort_by(&mut out, |a, b| a.display_cmp(b).is_lt());
        out
    }

    /// The dots of one member: what a local remove observes.
    pub fn observed(&self, member: &JsonValue) -> VectorClock {
        self.members
            .get(member)
            .map(|dots| dots.iter().map(|d| (d.peer, d.seq)).collect())
            .unwrap_or_default()
    }

    /// The dots of every member: what a local delete observes.
    pub fn observed_all(&self) -> VectorClock {
        self.members
            .values()
            .flatten()
            .map(|d| (d.peer, d.seq))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::clock::PeerId;

    fn m(s: &str) -> JsonValue {
        JsonValue::parse(s).unwrap()
    }

    #[test]
    fn concurrent_add_wins_over_remove() {
        let mut s = OrSet::default();
        s.apply(
            EventId::new(PeerId(1), 1),
            &SetOp::Add {
                member: m("\"x\""),
                observed: VectorClock::new(),
            },
        );
        let seen = s.observed(&m("\"x\""));
        // Peer 2 re-adds x concurrently with peer 3's remove of what it saw.
        s.apply(
            EventId::new(PeerId(2), 1),
            &SetOp::Add {
                member: m("\"x\""),
                observed: VectorClock::new(),
            },
        );
        s.apply(
            EventId::new(PeerId(3), 1),
            &SetOp::Remove {
                member: m("\"x\""),
                observed: seen,
            },
        );
        assert!(s.contains(&m("\"x\"")));
        let seen = s.observed(&m("\"x\""));
        s.apply(
            EventId::new(PeerId(3), 2),
            &SetOp::Remove {
                member: m("\"x\""),
                observed: seen,
            },
        );
        assert!(!s.is_present());
    }

    #[test]
    fn delete_removes_only_observed_members() {
        let mut s = OrSet::default();
        s.apply(
            EventId::new(PeerId(1), 1),
            &SetOp::Add {
                member: m("1"),
                observed: VectorClock::new(),
            },
        );
        let seen = s.observed_all();
        s.apply(
            EventId::new(PeerId(2), 1),
            &SetOp::Add {
                member: m("2"),
                observed: VectorClock::new(),
            },
        );
        s.apply(
            EventId::new(PeerId(3), 1),
            &SetOp::Delete { observed: seen },
        );
        assert_eq!(s.members(), vec![&m("2")]);
    }

    #[test]
    fn re_adding_replaces_the_old_dot() {
        let mut s = OrSet::default();
        let x = m("\"x\"");
        s.apply(
            EventId::new(PeerId(1), 1),
            &SetOp::Add {
                member: x.clone(),
                observed: VectorClock::new(),
            },
        );
        let seen = s.observed(&x);
        s.apply(
            EventId::new(PeerId(1), 2),
            &SetOp::Add {
                member: x.clone(),
                observed: seen,
            },
        );
        assert_eq!(s.observed(&x).len(), 1);
        assert_eq!(s.observed(&x).get(PeerId(1)), 2);
    }

    /// More members than a block holds (256): the same set whatever the
    /// order of its adds, encoded as the `BTreeMap` it replaced was.
    #[test]
    fn a_large_set_is_the_same_whatever_the_order_of_its_adds() {
        let adds: Vec<(EventId, JsonValue)> = (1..=1_000u64)
            .map(|i| (EventId::new(PeerId(i % 7 + 1), i), m(&i.to_string())))
            .collect();
        let add = |set: &mut OrSet, (dot, member): &(EventId, JsonValue)| {
            let observed = VectorClock::new();
            let member = member.clone();
            set.apply(*dot, &SetOp::Add { member, observed });
        };
        let (mut forward, mut backward) = (OrSet::default(), OrSet::default());
        adds.iter().for_each(|a| add(&mut forward, a));
        adds.iter().rev().for_each(|a| add(&mut backward, a));
        assert_eq!(forward, backward);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        forward.append_bytes(&mut a);
        backward.append_bytes(&mut b);
        assert_eq!(a, b);

        for i in (3..=1_000u64).step_by(3) {
            let member = m(&i.to_string());
            let observed = forward.observed(&member);
            forward.apply(
                EventId::new(PeerId(9), i),
                &SetOp::Remove { member, observed },
            );
        }
        assert_eq!(forward.members().len(), 1_000 - 333);
        assert!(!forward.contains(&m("999")) && forward.contains(&m("998")));

        let model: std::collections::BTreeMap<JsonValue, Vec<EventId>> = forward
            .members
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let bytes = postcard::to_allocvec(&forward).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&model).unwrap());
        assert_eq!(postcard::from_bytes::<OrSet>(&bytes).unwrap(), forward);
    }
}
