//! Entity kinds and the conflict resolution matrix.
//!
//! | kind (operation)            | concurrent updates resolve by          |
//! |-----------------------------|----------------------------------------|
//! | register (`set`)            | siblings; shown by LWW, or as conflict |
//! | counter (`increment`)       | PN-counter                             |
//! | set (`add`, `remove`)       | add-wins observed-remove set           |
//! | delete vs concurrent update | update wins (delete removes observed)  |

mod counter;
mod join;
mod or_set;
mod register;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

pub use counter::Counter;
pub use join::Held;
pub use or_set::OrSet;
pub use register::{Register, Sibling};

use super::clock::{Timestamp, VectorClock};
use super::event::{EventId, Hash32, Kind, Operation, P2PEvent};
use crate::protocol::blake3;
use crate::protocol::codec::{content, varint};
use crate::protocol::heap_sort::{heap_sort_by, heap_sort_by_key};

/// The replicated state of one key, of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityState {
    Register(Register),
    Counter(Counter),
    Set(OrSet),
}

impl EntityState {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Register => EntityState::Register(Register::default()),
            Kind::Counter => EntityState::Counter(Counter::default()),
            Kind::Set => EntityState::Set(OrSet::default()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            EntityState::Register(_) => Kind::Register,
            EntityState::Counter(_) => Kind::Counter,
            EntityState::Set(_) => Kind::Set,
        }
    }

    pub fn is_present(&self) -> bool {
        match self {
            EntityState::Register(r) => r.is_present(),
            EntityState::Counter(c) => c.is_present(),
            EntityState::Set(s) => s.is_present(),
        }
    }

    fn merge(&mut self, other: &EntityState, ours: &VectorClock, theirs: &VectorClock) {
        match (self, other) {
            (EntityState::Register(a), EntityState::Register(b)) => a.merge(b, ours, theirs),
            (EntityState::Counter(a), EntityState::Counter(b)) => a.merge(b),
            (EntityState::Set(a), EntityState::Set(b)) => a.merge(b, ours, theirs),
            // Entity::merge pairs states of the same kind.
            _ => {}
        }
    }

    fn apply(&mut self, dot: EventId, hlc: Timestamp, op: &Operation) {
        match (self, op) {
            (EntityState::Register(r), Operation::Register(op)) => r.apply(dot, hlc, op),
            (EntityState::Counter(c), Operation::Counter(op)) => c.apply(dot, op),
            (EntityState::Set(s), Operation::Set(op)) => s.apply(dot, op),
            // Entity::apply picks the state of the operation's kind.
            _ => {}
        }
    }
}

/// One kind's state on a key, with the earliest operation of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    first: (Timestamp, EventId),
    state: EntityState,
}

/// A key's replicated state.
///
/// A key's kind is fixed by its first operation, and while the key holds a
/// value a local operation of another kind is refused (once deleted, the key
/// may be reused for any kind). Two peers can still write different kinds to a
/// new key concurrently. Refusing the remote event would stall its origin and
/// leave peers disagreeing, so every kind written is kept and the key shows
/// the kind whose first operation has the smallest `(hlc, dot)`: the same
/// pick on every peer, and nothing lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entity {
    /// One claim inline: a key is almost always of one kind.
    #[serde(serialize_with = "as_slice")]
    claims: SmallVec<[Claim; 1]>,
}

/// Decoding checks the invariants `apply` keeps: at least one claim, one per
/// kind, earliest first.
impl<'de> Deserialize<'de> for Entity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut claims: SmallVec<[Claim; 1]> = Vec::<Claim>::deserialize(deserializer)?.into();
        heap_sort_by_key(&mut claims, |c| c.first);
        let mut kinds: Vec<Kind> = claims.iter().map(|c| c.state.kind()).collect();
        heap_sort_by(&mut kinds, |a, b| a < b);
        kinds.dedup();
        if claims.is_empty() || kinds.len() != claims.len() {
            return Err(serde::de::Error::custom(
                "entity needs one state per kind, at least one",
            ));
        }
        Ok(Entity { claims })
    }
}

fn as_slice<S: serde::Serializer>(claims: &[Claim], serializer: S) -> Result<S::Ok, S::Error> {
    claims.serialize(serializer)
}

impl Entity {
    pub fn new(event: &P2PEvent) -> Self {
        let mut entity = Entity {
            claims: SmallVec::new(),
        };
        entity.apply(event);
        entity
    }

    /// No kind was ever written (only an [`empty`](Self::empty) one is).
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// An entity with no state yet, to [`merge`](Self::merge) into.
    pub(crate) fn empty() -> Self {
        Entity {
            claims: SmallVec::new(),
        }
    }

    pub fn apply(&mut self, event: &P2PEvent) {
        let kind = event.op.kind();
        let first = (event.hlc, event.id);
        let claim = match self.claims.iter_mut().position(|c| c.state.kind() == kind) {
            Some(i) => &mut self.claims[i],
            None => {
                self.claims.push(Claim {
                    first,
                    state: EntityState::new(kind),
                });
                self.claims.last_mut().expect("just pushed")
            }
        };
        claim.first = claim.first.min(first);
        claim.state.apply(event.id, event.hlc, &event.op);
        if self.claims.len() > 1 {
            heap_sort_by_key(&mut self.claims, |c| c.first);
        }
    }

    /// The live events this state rests on: every dot it holds. With
    /// [`firsts`](Self::firsts), what a verified snapshot carries (in their
    /// sealed runs); [`rebuild`](Self::rebuild) gets the same entity back.
    pub fn for_each_dot(&self, mut f: impl FnMut(EventId)) {
        for claim in &self.claims {
            match &claim.state {
                EntityState::Register(r) => r.dots().for_each(&mut f),
                EntityState::Counter(k) => k.dots().for_each(&mut f),
                EntityState::Set(s) => s.dots().for_each(&mut f),
            }
        }
    }

    /// Each kind's first operation (part of the entity's hash).
    pub fn firsts(&self) -> impl Iterator<Item = EventId> + '_ {
        self.claims.iter().map(|c| c.first.1)
    }

    /// A key's entity from the events it rests on, each with whether the
    /// state holds its dot (`live`): live events are applied, the others
    /// only count toward their kind's first operation. Events are taken in
    /// `(hlc, dot)` order, which extends causal order (a hybrid clock
    /// orders whatever an event observed before it).
    pub fn rebuild(events: &mut [(&P2PEvent, bool)]) -> Entity {
        if let [(event, live)] = events {
            // Most keys of a snapshot: one event, one claim, nothing to
            // sort or search (a cold start rebuilds 100k of them).
            let mut state = EntityState::new(event.op.kind());
            if *live {
                state.apply(event.id, event.hlc, &event.op);
            }
            return Entity {
                claims: SmallVec::from_buf([Claim {
                    first: (event.hlc, event.id),
                    state,
                }]),
            };
        }
        // A key's live events and firsts: a few, so the small sort.
        heap_sort_by_key(events, |(e, _)| (e.hlc, e.id));
        // The live flags are not sealed: a sender may set one on an event
        // another of these supersedes (a value overwritten or deleted,
        // brought for its run's seal) and so bring it back. Every event
        // applied in order says which dots survive them all; a flagged dot
        // that does not is left out. (A flag cleared hides a value, as
        // leaving its run out does: README, "Not verified". One set on a
        // dot nothing here supersedes is a state some replica could hold.)
        let mut surviving = Vec::new();
        Self::apply_in_order(events, None).for_each_dot(|dot| surviving.push(dot));
        // A few: the small sort (the standard one costs the wasm 2.5 KB a type).
        heap_sort_by_key(&mut surviving, |&dot| dot);
        Self::apply_in_order(events, Some(&surviving))
    }

    /// The entity of `events` (sorted by `(hlc, dot)`): all of them
    /// applied, or (`surviving`, sorted) those marked live whose dot is
    /// one of these; the others only count toward their kind's first
    /// operation. (One function, not one per closure: each instance
    /// inlines every kind's apply, 2.7 KB of the wasm gzipped.)
    fn apply_in_order(events: &[(&P2PEvent, bool)], surviving: Option<&[EventId]>) -> Entity {
        let mut entity = Entity::empty();
        for &(event, live) in events {
            let kind = event.op.kind();
            let at = match entity.claims.iter().position(|c| c.state.kind() == kind) {
                Some(at) => at,
                None => {
                    entity.claims.push(Claim {
                        first: (event.hlc, event.id),
                        state: EntityState::new(kind),
                    });
                    entity.claims.len() - 1
                }
            };
            let applied = surviving.is_none_or(|s| live && s.binary_search(&event.id).is_ok());
            if applied {
                entity.claims[at]
                    .state
                    .apply(event.id, event.hlc, &event.op);
            }
        }
        heap_sort_by_key(&mut entity.claims, |c| c.first);
        entity
    }

    /// State-based join with another replica's entity for the same key;
    /// `ours` and `theirs` are the replicas' version vectors.
    pub fn merge(&mut self, other: &Entity, ours: &VectorClock, theirs: &VectorClock) {
        for claim in &other.claims {
            let kind = claim.state.kind();
            let Some(mine) = self.claims.iter_mut().find(|c| c.state.kind() == kind) else {
                let mut fresh = Claim {
                    first: claim.first,
                    state: EntityState::new(kind),
                };
                fresh.state.merge(&claim.state, ours, theirs);
                self.claims.push(fresh);
                continue;
            };
            mine.first = mine.first.min(claim.first);
            mine.state.merge(&claim.state, ours, theirs);
        }
        heap_sort_by_key(&mut self.claims, |c| c.first);
    }

    /// The state the key shows: the earliest claimed kind that is present
    /// (a deleted key may be reused for another kind), else the earliest.
    pub fn shown(&self) -> &EntityState {
        let claim = self
            .claims
            .iter()
            .find(|c| c.state.is_present())
            .unwrap_or(&self.claims[0]);
        &claim.state
    }

    /// This key's state of `kind`, if any operation of that kind reached it.
    pub fn state_of(&self, kind: Kind) -> Option<&EntityState> {
        self.claims
            .iter()
            .map(|c| &c.state)
            .find(|s| s.kind() == kind)
    }

    pub fn kind(&self) -> Kind {
        self.shown().kind()
    }

    pub fn is_present(&self) -> bool {
        self.shown().is_present()
    }

    /// Content hash of the whole replicated state of `key` (all kinds).
    pub fn hash(&self, key: &str) -> Hash32 {
        self.hash_with(key, &mut Vec::new())
    }

    /// [`hash`](Self::hash), encoding the entity into `scratch` (cleared
    /// first): one buffer for a whole digest refresh, not one an entity.
    pub fn hash_with(&self, key: &str, scratch: &mut Vec<u8>) -> Hash32 {
        scratch.clear();
        scratch.extend_from_slice(&(key.len() as u64).to_le_bytes());
        scratch.extend_from_slice(key.as_bytes());
        self.append_bytes(scratch);
        Hash32(*blake3::hash(scratch).as_bytes())
    }

    /// postcard's encoding of the entity (its claims, each the earliest
    /// `(hlc, dot)` and the state), written directly as an event's content
    /// is ([`content`]): the digest hashes every changed entity.
    pub fn append_bytes(&self, out: &mut Vec<u8>) {
        varint::put(out, self.claims.len() as u64);
        for claim in &self.claims {
            let (hlc, dot) = claim.first;
            varint::put(out, hlc.0);
            content::dot(out, dot);
            match &claim.state {
                EntityState::Register(r) => {
                    out.push(0);
                    r.append_bytes(out);
                }
                EntityState::Counter(c) => {
                    out.push(1);
                    c.append_bytes(out);
                }
                EntityState::Set(s) => {
                    out.push(2);
                    s.append_bytes(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::clock::{PeerId, Timestamp, VectorClock};
    use crate::protocol::event::{sample, RegisterOp};

    /// A write of `value` by peer 1 (event `seq`, at time `seq`) that
    /// observed peer 1's events up to `observed`.
    fn write(seq: u64, value: &str, observed: u64) -> P2PEvent {
        let mut event = sample(PeerId(1), seq, value);
        event.hlc = Timestamp::new(seq, 0);
        if let Operation::Register(RegisterOp::Write { observed: o, .. }) = &mut event.op {
            *o = std::iter::once((PeerId(1), observed))
                .filter(|e| e.1 > 0)
                .collect();
        }
        event
    }

    fn values(entity: &Entity) -> Vec<String> {
        let mut dots = Vec::new();
        entity.for_each_dot(|d| dots.push(d.seq.to_string()));
        dots
    }

    /// The live marks are not sealed: one set on an event another of the
    /// key's supersedes does not bring its value back; one set on a
    /// value nothing supersedes does, and one left clear does not.
    #[test]
    fn a_live_mark_brings_back_no_value_another_event_supersedes() {
        let (first, second, third) = (write(1, "1", 0), write(2, "2", 1), write(3, "3", 0));
        let delete = {
            let mut e = sample(PeerId(1), 4, "0");
            e.hlc = Timestamp::new(4, 0);
            e.op = Operation::Register(RegisterOp::Delete {
                observed: VectorClock::from_iter([(PeerId(1), 2)]),
            });
            e
        };
        // The four events, marked live as `marks` says.
        let marked = |marks: [bool; 4]| {
            let events = [&first, &second, &third, &delete];
            let mut pairs: Vec<_> = events.into_iter().zip(marks).collect();
            Entity::rebuild(&mut pairs)
        };
        // Honest: 2 overwrote 1, the delete took 2; 3 (which observed
        // nothing: concurrent with them) is live.
        let honest = marked([false, false, true, false]);
        assert_eq!(values(&honest), ["3"]);
        // 1 and 2 marked live: superseded by 2 and by the delete.
        let lying = marked([true, true, true, false]);
        assert_eq!(values(&lying), ["3"]);
        // Without the delete, 2 survives the others: marked live, it is.
        let without = Entity::rebuild(&mut [(&first, true), (&second, true), (&third, true)]);
        assert_eq!(values(&without), ["2", "3"]);
        // A mark cleared hides a value (as leaving its run out would).
        let hidden = Entity::rebuild(&mut [(&second, true), (&third, false)]);
        assert_eq!(values(&hidden), ["2"]);
    }
}
