//! What superseded a value travels with the state, for good.
//!
//! A snapshot joined into a state of our own (a peer behind its sender,
//! which any member can make us by one write of its own) took the
//! version-vector join: every dot of ours its clock covers and its state
//! lacks was dropped, so a member that left a value out deleted it at
//! every peer it pushed its snapshot to. And a leaf's copy carried only
//! the events its live values rest on, so a member could mark a deleted
//! value's event live and bring it back (`entity/join.rs`).
//!
//! Both want the events that superseded a value, which folds dropped. Not
//! all of them are needed: an event removes exactly the dots of its key
//! (of one set member, or of the whole set) up to its observed clock's
//! entry for their origin, so of the superseding events of one scope,
//! the one observing the most of an origin covers every dot of that origin
//! any of them covers. Those ([`Dominators`], noted as events come)
//! are kept through folds and carried, not live, in every snapshot and
//! leaf copy: at most one an origin for each key, set member and set, and
//! mostly none beyond what the state rests on already (a key's live write
//! observed its predecessors). Then:
//!
//! - a dot of ours a snapshot's join drops stays unless an event the
//!   snapshot carries covers it ([`keep_unsuperseded`](ReconciliationEngine::keep_unsuperseded));
//! - a leaf's join keeps a dot only if no event either copy carries
//!   covers it, whatever their timestamps say (`Entity::join`).
//!
//! Coverage, not the order of timestamps: a member's delete dated before
//! the value it deletes (nothing checks an event's timestamp against what
//! it observed) still covers it. What is left: supersessions folded away
//! before this build kept them (docs/DECISIONS.md, "What superseded a
//! value travels with it").

use std::collections::HashMap;

use foldhash::fast::FixedState;

use super::ReconciliationEngine;
use crate::protocol::clock::PeerId;
use crate::protocol::digest;
use crate::protocol::entity::Entity;
use crate::protocol::event::{EventId, Operation, P2PEvent, SetOp};
use crate::protocol::hashing;
use crate::protocol::heap_sort::heap_sort_by_key;
use crate::protocol::snapshot::StateSnapshot;
use crate::protocol::text::Text;
use crate::protocol::value::JsonValue;

/// What a superseding event removes dots of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Register,
    Member(JsonValue),
    Set,
}

/// An origin, the most of it an event observed, and that event.
type Observed = (PeerId, u64, EventId);

/// The dominating superseders of every key, scope and origin among the
/// events [`note`](Dominators::note)d (folded, loaded, or joined from a
/// leaf), never forgotten: what folds keep and, with the log's, every
/// snapshot and leaf copy carries. A state whose keys were each written
/// once has none.
#[derive(Debug, Default)]
pub(super) struct Dominators {
    /// Per key and scope, per origin its observed clocks name: the most
    /// of it one observed, and which event that was. A few origins a
    /// scope (its writers): a list.
    best: HashMap<(Text, Scope), Vec<Observed>, FixedState>,
    /// Bumped by every change to `best`.
    changes: u64,
    /// `best`'s events by Merkle leaf, as of `changes` (`None`: stale).
    by_leaf: Option<(u64, Vec<(u16, EventId)>)>,
}

impl Dominators {
    /// Takes `event` into account, if it superseded anything.
    pub fn note(&mut self, event: &P2PEvent) {
        let Some(observed) = event.op.observed_clock().filter(|o| !o.is_empty()) else {
            return;
        };
        let scope = match &event.op {
            Operation::Register(_) => Scope::Register,
            Operation::Set(SetOp::Add { member, .. } | SetOp::Remove { member, .. }) => {
                Scope::Member(member.clone())
            }
            Operation::Set(SetOp::Delete { .. }) => Scope::Set,
            Operation::Counter(_) => return,
        };
        if self.best.capacity() == 0 {
            self.best = HashMap::with_hasher(hashing::state());
        }
        let best = self.best.entry((event.key.clone(), scope)).or_default();
        for (peer, seq) in observed.iter() {
            match best.iter_mut().find(|(p, _, _)| *p == peer) {
                Some(entry) if (seq, event.id) > (entry.1, entry.2) => {
                    *entry = (peer, seq, event.id);
                    self.changes += 1;
                }
                Some(_) => {}
                None => {
                    best.push((peer, seq, event.id));
                    self.changes += 1;
                }
            }
        }
    }

    /// Every dominating superseder, sorted by id, each once.
    pub fn ids(&self) -> Vec<EventId> {
        let mut ids: Vec<EventId> = (self.best.values().flatten())
            .map(|&(_, _, id)| id)
            .collect();
        heap_sort_by_key(&mut ids, |&id| id);
        ids.dedup();
        ids
    }

    /// Those of one Merkle leaf's keys: sorted by leaf once for all the
    /// leaves asked for until the next change (a peer may ask for many
    /// small leaves in an interval).
    pub fn of_leaf(&mut self, leaf: u16) -> Vec<EventId> {
        let changes = self.changes;
        let (_, by_leaf) = match &mut self.by_leaf {
            Some(cached) if cached.0 == changes => cached,
            stale => {
                let mut by_leaf: Vec<(u16, EventId)> = Vec::new();
                for ((key, _), best) in &self.best {
                    let leaf = digest::leaf_of(key);
                    by_leaf.extend(best.iter().map(|&(_, _, id)| (leaf, id)));
                }
                heap_sort_by_key(&mut by_leaf, |&pair| pair);
                by_leaf.dedup();
                stale.insert((changes, by_leaf))
            }
        };
        let start = by_leaf.partition_point(|&(l, _)| l < leaf);
        by_leaf[start..]
            .iter()
            .take_while(|&&(l, _)| l == leaf)
            .map(|&(_, id)| id)
            .collect()
    }
}

impl ReconciliationEngine {
    /// Notes the superseders among events that left the log (a fold) or
    /// arrived whole (a snapshot, a leaf's copy). Not as each is applied:
    /// that cost causal apply half as much again on overwrites.
    pub(super) fn note_dominators(&mut self, events: &[P2PEvent]) {
        for event in events {
            self.dominators.note(event);
        }
    }

    /// [`note_dominators`](Self::note_dominators) of events leaving the log.
    pub(super) fn note_unlogged(&mut self, pieces: &[Vec<P2PEvent>]) {
        for piece in pieces {
            let superseding = piece.iter().filter(|e| e.op.supersedes()).count();
            self.logged_superseders = self.logged_superseders.saturating_sub(superseding);
            self.note_dominators(piece);
        }
    }

    /// The superseders a snapshot of ours carries: the folded ones' and
    /// the log's dominators (each a dominator of its own part, so a few
    /// more than the whole's, never fewer).
    pub(super) fn superseders(&self) -> Vec<EventId> {
        let mut ids = self.dominators.ids();
        ids.extend(self.log_dominators().ids());
        heap_sort_by_key(&mut ids, |&id| id);
        ids.dedup();
        ids
    }

    /// Those of one Merkle leaf's keys; the log's kept between calls while
    /// nothing is applied or folded.
    pub(super) fn leaf_superseders(&mut self, leaf: u16) -> Vec<EventId> {
        let at = (self.stats.applied, self.log.len());
        if self
            .log_dominators
            .as_ref()
            .is_none_or(|(was, _)| *was != at)
        {
            self.log_dominators = Some((at, self.log_dominators()));
        }
        let mut ids = self.dominators.of_leaf(leaf);
        if let Some((_, logged)) = &mut self.log_dominators {
            ids.extend(logged.of_leaf(leaf));
        }
        heap_sort_by_key(&mut ids, |&id| id);
        ids.dedup();
        ids
    }

    /// The dominating superseders among the logged events alone.
    fn log_dominators(&self) -> Dominators {
        let mut logged = Dominators::default();
        if self.logged_superseders > 0 {
            for event in self.log.iter() {
                logged.note(event);
            }
        }
        logged
    }

    /// The dots a key's join with a snapshot dropped: its dots `before`,
    /// not `after`.
    pub(super) fn dropped(before: &[EventId], mut after: Vec<EventId>) -> Vec<EventId> {
        heap_sort_by_key(&mut after, |&dot| dot);
        before
            .iter()
            .copied()
            .filter(|dot| after.binary_search(dot).is_err())
            .collect()
    }

    /// Puts back each dropped dot (`dropped`, by key) that no event of its
    /// key in `snapshot` covers: the snapshot left it out with nothing to
    /// show for it. Each is counted
    /// ([`EngineStats::kept_unsuperseded`](super::EngineStats::kept_unsuperseded)).
    pub(super) fn keep_unsuperseded(
        &mut self,
        dropped: Vec<(Text, Vec<EventId>)>,
        snapshot: &StateSnapshot,
    ) {
        let mut theirs: HashMap<&str, Vec<&P2PEvent>, _> = HashMap::with_hasher(hashing::state());
        for (key, _) in &dropped {
            theirs.insert(key.as_str(), Vec::new());
        }
        for event in &snapshot.events {
            if let Some(events) = theirs.get_mut(event.key.as_str()) {
                events.push(event);
            }
        }
        for (key, dots) in &dropped {
            let evidence = &theirs[key.as_str()];
            let kept: Vec<P2PEvent> = dots
                .iter()
                .filter_map(|&dot| self.kept_event(dot))
                .filter(|held| Entity::outlives(held, evidence))
                .cloned()
                .collect();
            let Some(index) = self.entities.find(key).filter(|_| !kept.is_empty()) else {
                continue;
            };
            for event in &kept {
                self.entities.at(index).entity.apply(event);
            }
            self.stats.kept_unsuperseded += kept.len() as u64;
            self.note_joined(index, key);
        }
    }
}
