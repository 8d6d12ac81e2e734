//! A key's state joined from two replicas' evidence under equal clocks
//! (a Merkle leaf's repair).
//!
//! Equal clocks with different states follow a lie: someone left a value
//! out of a snapshot or leaf, or marked a superseded one live. The
//! version-vector join cannot tell which side was lied to (each has seen
//! what the other holds alone), and taking the intersection let any member
//! delete any value room-wide with a leaf copy that left it out. So the
//! join goes by evidence: a value either side holds stays unless a signed
//! event either side shows supersedes it. Its price: a value whose
//! superseding events neither copy carries comes back (a deleted key's
//! first write, which every copy carries as the key's first operation).
//! Losing a value was judged worse; docs/DECISIONS.md ("A leaf's repair
//! joins by evidence") says what was tried against it and what would do.

use super::Entity;
use crate::protocol::clock::PeerId;
use crate::protocol::event::{Operation, P2PEvent, SetOp};
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
        let outlived = Outlived::new(events);
        let mut by_id: Vec<&Held<'_>> = events.iter().collect();
        heap_sort_by_key(&mut by_id, |h| h.event.id);
        surviving.retain(
            |dot| match by_id.binary_search_by_key(dot, |h| h.event.id) {
                Ok(at) => {
                    let held = by_id[at];
                    (held.ours && held.theirs) || !outlived.by_origin(held.event)
                }
                // Not an event of the key's (a counter's dot is its
                // contribution's event): not flagged, so not applied.
                Err(_) => true,
            },
        );
        heap_sort_by_key(&mut surviving, |&dot| dot);
        Self::apply_in_order(&flagged, Some(&surviving))
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
