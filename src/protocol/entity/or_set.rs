use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::clock::VectorClock;
use crate::protocol::codec::{content, varint};
use crate::protocol::event::{EventId, SetOp};
use crate::protocol::heap_sort::{heap_sort_by, heap_sort_by_key};
use crate::protocol::value::JsonValue;

/// An add-wins observed-remove set: a member is present while some add of it
/// is not covered by a remove (or delete) that observed it. A set with no
/// members does not exist, so a delete and removing every member agree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    members: BTreeMap<JsonValue, Vec<EventId>>,
}

fn retain_unobserved(dots: &mut Vec<EventId>, observed: &VectorClock) {
    dots.retain(|d| d.seq > observed.get(d.peer));
}

impl OrSet {
    /// postcard's encoding of the members, each with its dots (see
    /// `Entity::append_bytes`).
    pub fn append_bytes(&self, out: &mut Vec<u8>) {
        varint::put(out, self.members.len() as u64);
        for (member, dots) in &self.members {
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
                let dots = self.members.entry(member.clone()).or_default();
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
}
