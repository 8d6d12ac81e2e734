//! A key's state joined from two replicas' evidence under equal clocks
//! (a Merkle leaf's repair).
//!
//! Equal clocks with different states follow a lie: someone left a value
//! out of a snapshot or leaf, or marked a superseded one live. The
//! version-vector join cannot tell which side was lied to (each has seen
//! what the other holds alone), and taking the intersection let any member
//! delete any value room-wide with a leaf copy that left it out; taking
//! the union let it bring back any value whose superseders the copies do
//! not carry (a deleted key's first write, which every copy carries).
//!
//! Signed events settle what they can: a value either side holds stays
//! unless an event either side sent supersedes it. The rest is settled by
//! who knows first hand. A peer that applied an event itself knows
//! whether its dot lives: it ran the operations. One that has it from a
//! snapshot has only the sender's word (the live marks are claims). So
//! each side trusts its own first-hand knowledge, defers to the other's
//! where its own is second hand, and where neither applied the event
//! keeps the value (losing one is worse than an old one shown again).
//! A liar then reaches only what its victim knows second hand, and a
//! peer that applied the events heals what it was told.
use super::Entity;
use crate::protocol::clock::PeerId;
use crate::protocol::event::{EventId, Operation, P2PEvent, SetOp};
use crate::protocol::heap_sort::{heap_sort_by, heap_sort_by_key};
use crate::protocol::value::JsonValue;

/// One event of a key's evidence, and which sides hold it live.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub event: &'a P2PEvent,
    pub ours: bool,
    pub theirs: bool,
}

/// Which sides applied an event themselves (rather than having its state
/// from a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hands {
    pub ours: bool,
    pub theirs: bool,
}

impl Entity {
    /// The entity we end with, from the events of one key either side
    /// sent (each once; runs bring them, live or not), and `hands`: which
    /// sides applied an event themselves. Every event is applied in
    /// `(hlc, dot)` order, as [`rebuild`](Self::rebuild) does: a dot none
    /// of them supersedes survives. A dot only one side holds must also
    /// outlive its own origin's later operations on the same state (a
    /// writer's later write observed what it held: a chain of writers may
    /// have superseded it through events neither side keeps), and then:
    /// held by us, it stays if we applied it ourselves or they did not; held
    /// by them, it is taken unless we applied it ourselves. The other side
    /// decides alike, so two honest peers end with the same leaf.
    pub fn join(events: &mut [Held<'_>], hands: impl Fn(EventId) -> Hands) -> Entity {
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
                    if held.ours && held.theirs {
                        return true;
                    }
                    if outlived.by_origin(held.event) {
                        return false;
                    }
                    let hands = hands(held.event.id);
                    match held.ours {
                        true => hands.ours || !hands.theirs,
                        false => !hands.ours,
                    }
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
