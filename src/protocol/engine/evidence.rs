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
//!   snapshot carries that we had not seen covers it
//!   ([`keep_unsuperseded`](ReconciliationEngine::keep_unsuperseded));
//! - a leaf's join keeps a dot only if no event either copy carries
//!   covers it, whatever their timestamps say (`Entity::join`).
//!
//! Coverage, not the order of timestamps: a member's delete dated before
//! the value it deletes (nothing checks an event's timestamp against what
//! it observed) still covers it. Only events we had not seen are taken
//! as evidence from a snapshot, or noted as ours from one, and none from
//! a leaf's copy: an event within our clock that we never applied may be
//! a version its signer re-signed after every peer folded the first. What
//! is left, and what each rule costs: docs/DECISIONS.md, "What superseded
//! a value travels with it".

use hashbrown::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;

use super::ReconciliationEngine;
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::digest;
use crate::protocol::entity::Entity;
use crate::protocol::event::{self, EventId, P2PEvent};
use crate::protocol::heap_sort::{heap_sort_by, heap_sort_by_key};
use crate::protocol::snapshot::StateSnapshot;
use crate::protocol::text::Text;
use crate::protocol::value::JsonValue;

/// What a superseding event removes dots of ([`event::Scope`], its
/// member owned: kept for good).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Register,
    Member(JsonValue),
    Set,
}

impl From<event::Scope<'_>> for Scope {
    fn from(scope: event::Scope<'_>) -> Self {
        match scope {
            event::Scope::Register => Scope::Register,
            event::Scope::Member(member) => Scope::Member(member.clone()),
            event::Scope::Set => Scope::Set,
        }
    }
}

/// An origin, the most of it an event observed, and that event.
type Observed = (PeerId, u64, EventId);

/// The dominating superseders of every key, scope and origin among the
/// events [`note`](Dominators::note)d (folded, or loaded from a snapshot
/// beyond our clock), never forgotten: what folds keep and, with the log's, every
/// snapshot and leaf copy carries. A state whose keys were each written
/// once has none.
#[derive(Debug)]
pub(super) struct Dominators {
    /// Where each key and scope's list is in `scopes`, by a seeded hash
    /// of the two (the next hash up on a collision): a table of the type
    /// the engine has already, rather than one more table's code in the
    /// wasm (a table keyed by the key and scope themselves was 0.6 KB of
    /// it gzipped).
    index: HashMap<PeerId, u64, FixedState>,
    hasher: FixedState,
    /// Per key and scope: its Merkle leaf, the key and scope, and per
    /// origin its observed clocks name (sorted by origin), the most of it
    /// one observed and which event that was.
    scopes: Vec<(u16, Text, Scope, Vec<Observed>)>,
}

impl Dominators {
    /// Hashing with the engine's seed
    /// ([`EngineConfig::hash_seed`](super::EngineConfig::hash_seed)), as
    /// its other tables keyed by what peers send.
    pub fn new(seed: u64) -> Self {
        Dominators {
            index: HashMap::with_hasher(FixedState::with_seed(seed)),
            hasher: FixedState::with_seed(seed ^ 0xd0d0),
            scopes: Vec::new(),
        }
    }

    /// Takes `event` into account, if it superseded anything: its observed
    /// clock merged into its scope's list, both sorted by origin, so an
    /// event observing thousands of origins costs as many steps, not their
    /// square.
    pub fn note(&mut self, event: &P2PEvent) {
        let Some((scope, observed)) = event.op.observed_scope() else {
            return;
        };
        if observed.is_empty() {
            return;
        }
        let scope = Scope::from(scope);
        let key = event.key.as_str();
        let mut hash = self.hasher.hash_one((key, &scope));
        let at = loop {
            match self.index.get(&PeerId(hash)) {
                Some(&at)
                    if self.scopes[at as usize].1.as_str() == key
                        && self.scopes[at as usize].2 == scope =>
                {
                    break at as usize;
                }
                Some(_) => hash = hash.wrapping_add(1),
                None => {
                    let at = self.scopes.len();
                    self.index.insert(PeerId(hash), at as u64);
                    let leaf = digest::leaf_of(key);
                    self.scopes
                        .push((leaf, event.key.clone(), scope, Vec::new()));
                    break at;
                }
            }
        };
        let list = &mut self.scopes[at].3;
        let old = std::mem::take(list);
        let mut merged = Vec::with_capacity(old.len().max(observed.len()));
        let mut old = old.into_iter().peekable();
        for (peer, seq) in observed.iter() {
            while let Some(&kept) = old.peek().filter(|kept| kept.0 < peer) {
                merged.push(kept);
                old.next();
            }
            let ours = (peer, seq, event.id);
            match old.next_if(|kept| kept.0 == peer) {
                Some(kept) if (kept.1, kept.2) >= (seq, event.id) => merged.push(kept),
                _ => merged.push(ours),
            }
        }
        merged.extend(old);
        *list = merged;
    }

    /// Every dominating superseder, sorted by id, each once.
    pub fn ids(&self) -> Vec<EventId> {
        let mut ids: Vec<EventId> = (self.scopes.iter())
            .flat_map(|(_, _, _, list)| list.iter().map(|&(_, _, id)| id))
            .collect();
        heap_sort_by_key(&mut ids, |&id| id);
        ids.dedup();
        ids
    }

    /// Those of one Merkle leaf's keys, in no order, some twice: a walk
    /// of every scope's leaf (a map by leaf cost the wasm a hash table's
    /// code for a lookup that is rare: leaf copies are made after a lie).
    pub fn of_leaf(&self, leaf: u16) -> Vec<EventId> {
        (self.scopes.iter())
            .filter(|(l, _, _, _)| *l == leaf)
            .flat_map(|(_, _, _, list)| list.iter().map(|&(_, _, id)| id))
            .collect()
    }
}

impl ReconciliationEngine {
    /// Notes the superseders among the events that left the log (`pieces`,
    /// in id order; a fold, or a snapshot's skip). Not as each is applied:
    /// that cost causal apply half as much again on overwrites. Found by
    /// the log's list of its superseding events, so a fold of writes that
    /// superseded nothing reads none of them. The log's dominators are
    /// found again from what stays.
    pub(super) fn note_unlogged(&mut self, pieces: &[Vec<P2PEvent>]) {
        let log = &self.log;
        let (stay, mut left): (Vec<EventId>, Vec<EventId>) =
            (self.logged_superseders.iter()).partition(|&&id| log.get(id).is_some());
        self.logged_superseders = stay;
        self.log_dominators = (0, Dominators::new(self.config.hash_seed));
        let total: usize = pieces.iter().map(Vec::len).sum();
        if left.len() * 8 > total {
            // Mostly superseders: a walk of them all is cheaper than a
            // sort and a search for each.
            for event in pieces.iter().flatten() {
                self.dominators.note(event);
            }
            return;
        }
        heap_sort_by_key(&mut left, |&id| id);
        let mut at = 0;
        for id in left {
            while pieces
                .get(at)
                .is_some_and(|p| p.last().is_none_or(|e| e.id < id))
            {
                at += 1;
            }
            let Some(piece) = pieces.get(at) else {
                break;
            };
            if let Ok(i) = piece.binary_search_by_key(&id, |e| e.id) {
                self.dominators.note(&piece[i]);
            }
        }
    }

    /// The superseders a snapshot of ours carries: the folded ones' and
    /// the log's dominators (each a dominator of its own part, so a few
    /// more than the whole's, never fewer).
    pub(super) fn superseders(&self) -> Vec<EventId> {
        let mut logged = Dominators::new(self.config.hash_seed);
        for &id in &self.logged_superseders {
            if let Some(event) = self.log.get(id) {
                logged.note(event);
            }
        }
        let mut ids = self.dominators.ids();
        ids.extend(logged.ids());
        heap_sort_by_key(&mut ids, |&id| id);
        ids.dedup();
        ids
    }

    /// Those of one Merkle leaf's keys. The log's are noted as asked for,
    /// each superseding event once (a peer may ask for many small leaves
    /// between events, and each walk of the log was of all of it).
    pub(super) fn leaf_superseders(&mut self, leaf: u16) -> Vec<EventId> {
        let (noted, logged) = &mut self.log_dominators;
        for &id in &self.logged_superseders[*noted..] {
            if let Some(event) = self.log.get(id) {
                logged.note(event);
            }
        }
        *noted = self.logged_superseders.len();
        let mut ids = self.dominators.of_leaf(leaf);
        ids.extend(logged.of_leaf(leaf));
        heap_sort_by_key(&mut ids, |&id| id);
        ids.dedup();
        ids
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
    /// key in `snapshot` new to us (beyond `ours`, our clock before the
    /// load) covers: the snapshot left it out with nothing to show for
    /// it. Each is counted
    /// ([`EngineStats::kept_unsuperseded`](super::EngineStats::kept_unsuperseded)).
    ///
    /// Only new events count: one we applied that covered a dot of ours
    /// removed it then, so a version within our clock that covers a dot we
    /// still hold is not the one we applied (a member re-signing one of
    /// its own events every peer has folded away, as a delete of any
    /// value, had nothing to be compared with). A dot we hold only on
    /// another snapshot's word is settled by a leaf's repair.
    pub(super) fn keep_unsuperseded(
        &mut self,
        dropped: Vec<(Text, Vec<EventId>)>,
        snapshot: &StateSnapshot,
        ours: &VectorClock,
    ) {
        // The snapshot's events of each key, by a search of the keys
        // (sorted): a few keys, and no hash table's code in the wasm.
        let mut dropped = dropped;
        heap_sort_by(&mut dropped, |a, b| a.0 < b.0);
        let mut theirs: Vec<Vec<&P2PEvent>> = vec![Vec::new(); dropped.len()];
        for event in &snapshot.events {
            if event.id.seq <= ours.get(event.id.peer) || self.is_equivocated(event.id) {
                continue;
            }
            if let Ok(at) = dropped.binary_search_by(|(key, _)| key.as_str().cmp(&event.key)) {
                theirs[at].push(event);
            }
        }
        for ((key, dots), evidence) in dropped.iter().zip(&theirs) {
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
