//! A key's state joined from two replicas' evidence under equal clocks
//! (a Merkle leaf's repair).
//!
//! Equal clocks with different states follow a lie: someone left a value
//! out of a snapshot or leaf, or marked a superseded one live. The
//! version-vector join cannot tell which side was lied to (each has seen
//! what the other holds alone), and taking the intersection let any member
//! delete any value room-wide with a leaf copy that left it out. So the
//! join goes by evidence: a value either side holds stays unless a signed
//! event either side shows covers it (observed it, in any order of their
//! timestamps). Every copy carries, besides the events its live values
//! rest on, the dominating superseders of its keys (`engine/evidence.rs`),
//! so a value superseded since this build kept them cannot be marked live
//! again; docs/DECISIONS.md ("A leaf's repair joins by evidence", "What
//! superseded a value travels with it") says what was tried.

use super::Entity;
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::event::{Operation, P2PEvent, Scope, SetOp};
use crate::protocol::heap_sort::{heap_sort_by, heap_sort_by_key};
use crate::protocol::value::JsonValue;

/// One event of a key's evidence, and which sides hold it live.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub event: &'a P2PEvent,
    pub ours: bool,
    pub theirs: bool,
}

impl Entity {
    /// The entity both replicas end with, from the events of one key
    /// either sent (each once; runs bring them, live or not). Every event
    /// is applied in `(hlc, dot)` order, as [`rebuild`](Self::rebuild)
    /// does: a dot none of them supersedes survives. A dot only one side
    /// holds must also outlive its origin's own later operations on the
    /// same state (a writer's later write observed what it held), since a
    /// chain of writers may have superseded it through events neither side
    /// still keeps. Symmetric in the sides, so both converge.
    pub fn join(events: &mut [Held<'_>]) -> Entity {
        heap_sort_by_key(events, |h| (h.event.hlc, h.event.id));
        let flagged: Vec<(&P2PEvent, bool)> = events
            .iter()
            .map(|h| (h.event, h.ours || h.theirs))
            .collect();
        let mut surviving = Vec::new();
        Self::apply_in_order(&flagged, None).for_each_dot(|dot| surviving.push(dot));
        // Covered by any of them, whatever the timestamps say: nothing
        // checks an event's timestamp against what it observed, and a
        // delete dated before its value is applied first in that order.
        let covered = Coverage::new(events.iter().map(|h| h.event));
        let outlived = Outlived::new(events);
        let mut by_id: Vec<&Held<'_>> = events.iter().collect();
        heap_sort_by_key(&mut by_id, |h| h.event.id);
        surviving.retain(
            |dot| match by_id.binary_search_by_key(dot, |h| h.event.id) {
                Ok(at) => {
                    let held = by_id[at];
                    !covered.covers(held.event)
                        && ((held.ours && held.theirs) || !outlived.by_origin(held.event))
                }
                // Not an event of the key's (a counter's dot is its
                // contribution's event): not flagged, so not applied.
                Err(_) => true,
            },
        );
        heap_sort_by_key(&mut surviving, |&dot| dot);
        Self::apply_in_order(&flagged, Some(&surviving))
    }

    /// Whether `held`, an event whose dot a replica holds, survives
    /// `evidence` (another replica's events of its key, live or not): none
    /// of them covers its dot, nor does its own origin operate later on
    /// the same state (see `Outlived::by_origin`).
    pub fn outlives(held: &P2PEvent, evidence: &[&P2PEvent]) -> bool {
        let others = || evidence.iter().copied().filter(|e| e.id != held.id);
        if Coverage::new(others()).covers(held) {
            return false;
        }
        let all: Vec<Held<'_>> = others()
            .chain([held])
            .map(|event| Held {
                event,
                ours: false,
                theirs: true,
            })
            .collect();
        !Outlived::new(&all).by_origin(held)
    }
}

/// What a key's events observed, by scope: an event removes the dots of
/// its register, its set member or its whole set up to its observed
/// clock's entry for their origin, so a dot is superseded by them if and
/// only if their joined clock of its scope covers it.
struct Coverage<'a> {
    register: VectorClock,
    set: VectorClock,
    /// Sorted by member.
    members: Vec<(&'a JsonValue, &'a VectorClock)>,
}

impl<'a> Coverage<'a> {
    fn new(events: impl Iterator<Item = &'a P2PEvent>) -> Self {
        let mut coverage = Coverage {
            register: VectorClock::new(),
            set: VectorClock::new(),
            members: Vec::new(),
        };
        for event in events {
            match event.op.observed_scope() {
                Some((Scope::Register, observed)) => coverage.register.merge(observed),
                Some((Scope::Set, observed)) => coverage.set.merge(observed),
                Some((Scope::Member(member), observed)) if !observed.is_empty() => {
                    coverage.members.push((member, observed))
                }
                _ => {}
            }
        }
        heap_sort_by(&mut coverage.members, |a, b| a.0 < b.0);
        coverage
    }

    /// Whether these events supersede `event`'s dot (a counter's is
    /// settled by its origin's latest contribution, not here).
    fn covers(&self, event: &P2PEvent) -> bool {
        let (peer, seq) = (event.id.peer, event.id.seq);
        match &event.op {
            Operation::Register(_) => self.register.get(peer) >= seq,
            Operation::Set(SetOp::Add { member, .. }) => {
                let start = self.members.partition_point(|(m, _)| *m < member);
                self.set.get(peer) >= seq
                    || self.members[start..]
                        .iter()
                        .take_while(|(m, _)| *m == member)
                        .any(|(_, observed)| observed.get(peer) >= seq)
            }
            _ => false,
        }
    }
}

/// Each origin's last operation on a key's register, on its set as a
/// whole, and on each member: what its earlier dots there did not outlive.
struct Outlived<'a> {
    register: Vec<(PeerId, u64)>,
    set: Vec<(PeerId, u64)>,
    members: Vec<(PeerId, &'a JsonValue, u64)>,
}

impl<'a> Outlived<'a> {
    fn new(events: &[Held<'a>]) -> Self {
        let mut outlived = Outlived {
            register: Vec::new(),
            set: Vec::new(),
            members: Vec::new(),
        };
        for held in events {
            let (peer, seq) = (held.event.id.peer, held.event.id.seq);
            match &held.event.op {
                Operation::Register(_) => outlived.register.push((peer, seq)),
                Operation::Set(SetOp::Delete { .. }) => outlived.set.push((peer, seq)),
                Operation::Set(SetOp::Add { member, .. } | SetOp::Remove { member, .. }) => {
                    outlived.members.push((peer, member, seq))
                }
                Operation::Counter(_) => {}
            }
        }
        heap_sort_by_key(&mut outlived.register, |&e| e);
        heap_sort_by_key(&mut outlived.set, |&e| e);
        heap_sort_by(&mut outlived.members, |a, b| a < b);
        outlived
    }

    /// Whether `event`'s origin operated later on the state its dot is
    /// part of. An honest origin's later register write or delete
    /// observed every sibling it held, its own earlier write among them
    /// unless something had superseded that already; its later add or
    /// remove of a member (or delete of the whole set) the same for its
    /// earlier add. A counter's contributions need no such rule: an
    /// origin's latest one counts.
    fn by_origin(&self, event: &P2PEvent) -> bool {
        let (peer, seq) = (event.id.peer, event.id.seq);
        match &event.op {
            Operation::Register(_) => last(&self.register, peer) > seq,
            Operation::Set(SetOp::Add { member, .. }) => {
                let at = self
                    .members
                    .partition_point(|&(p, m, _)| (p, m) <= (peer, member));
                let member_last = match at.checked_sub(1).map(|i| self.members[i]) {
                    Some((p, m, last)) if p == peer && m == member => last,
                    _ => 0,
                };
                member_last > seq || last(&self.set, peer) > seq
            }
            _ => false,
        }
    }
}

/// `peer`'s largest sequence in `entries` (sorted), or 0.
fn last(entries: &[(PeerId, u64)], peer: PeerId) -> u64 {
    let at = entries.partition_point(|&(p, _)| p <= peer);
    match at.checked_sub(1).map(|i| entries[i]) {
        Some((p, seq)) if p == peer => seq,
        _ => 0,
    }
}
