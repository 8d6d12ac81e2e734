use std::collections::hash_map::Entry;
use std::collections::HashSet;
use std::sync::Arc;

use super::{ReconciliationEngine, Slot};
use crate::protocol::clock::VectorClock;
use crate::protocol::digest;
use crate::protocol::entity::Entity;
use crate::protocol::snapshot::StateSnapshot;

impl ReconciliationEngine {
    /// Encodes the state and version vector ([`StateSnapshot`]).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let entities = self.entities.iter().map(|(k, s)| (&**k, &s.entity));
        StateSnapshot::encode_parts(&self.applied, entities)
    }

    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            version_vector: self.applied.clone(),
            entities: self
                .entities
                .iter()
                .map(|(k, s)| (k.clone(), s.entity.clone()))
                .collect(),
        }
    }

    /// Loads a snapshot: joins its state with this engine's (a fresh engine
    /// simply takes it), then applies whatever held events became ready.
    /// Events this engine had beyond the snapshot stay applied; nothing
    /// either side has is lost.
    pub fn load_snapshot(&mut self, snapshot: StateSnapshot) {
        let theirs = snapshot.version_vector;
        let ours = self.applied.clone();
        if ours.is_empty() && self.entities.is_empty() {
            // A fresh engine: the join with nothing is the snapshot itself.
            self.entities.reserve(snapshot.entities.len());
            for (key, entity) in snapshot.entities {
                self.clock.observe(entity.max_hlc());
                let mut slot = Slot {
                    entity,
                    digest_stale: false,
                    changed: false,
                    last_writer: None,
                };
                self.books.touch(&key, &mut slot);
                self.entities.insert(key, slot);
            }
        } else {
            for (key, entity) in snapshot.entities {
                self.join_entity(key, &entity, &ours, &theirs);
            }
        }
        for (peer, seq) in theirs.iter() {
            if seq > self.applied.get(peer) {
                self.applied.set(peer, seq);
                self.log.skip_to(peer, seq);
                if peer != self.peer {
                    self.unsent_deps.observe(peer, seq);
                }
            }
        }
        if let Some(journal) = &mut self.journal {
            journal.push(super::JournalEntry::Loaded(theirs));
        }
        self.resolve_conflicts();
    }

    /// The entities of one Merkle leaf, for a repair.
    pub fn leaf_entities(&mut self, leaf: u16) -> Vec<(String, Entity)> {
        self.digest();
        self.digest
            .leaf(leaf)
            .filter_map(|(key, _)| Some((key.to_string(), self.entities.get(key)?.entity.clone())))
            .collect()
    }

    /// Repairs one Merkle leaf from a peer's copy of it (clocks agree, roots
    /// do not). A key only one side has joins with an empty entity, so both
    /// sides end with the same leaf.
    pub fn join_leaf(&mut self, leaf: u16, theirs: &VectorClock, entities: Vec<(String, Entity)>) {
        let ours = self.applied.clone();
        let mine: Vec<Arc<str>> = {
            self.digest();
            self.digest.leaf(leaf).map(|(k, _)| k.clone()).collect()
        };
        let their_keys: HashSet<&str> = entities.iter().map(|(k, _)| k.as_str()).collect();
        for key in mine.into_iter().filter(|k| !their_keys.contains(&**k)) {
            self.join_entity(key, &Entity::empty(), &ours, theirs);
        }
        for (key, entity) in entities {
            if digest::leaf_of(&key) == leaf {
                self.join_entity(key.into(), &entity, &ours, theirs);
            }
        }
    }

    fn join_entity(
        &mut self,
        key: Arc<str>,
        entity: &Entity,
        ours: &VectorClock,
        theirs: &VectorClock,
    ) {
        self.clock.observe(entity.max_hlc());
        let slot = match self.entities.entry(key.clone()) {
            Entry::Occupied(o) => {
                let slot = o.into_mut();
                slot.entity.merge(entity, ours, theirs);
                slot
            }
            Entry::Vacant(v) => {
                let mut fresh = Entity::empty();
                fresh.merge(entity, ours, theirs);
                if fresh.is_empty() {
                    return;
                }
                v.insert(Slot {
                    entity: fresh,
                    digest_stale: false,
                    changed: false,
                    last_writer: None,
                })
            }
        };
        self.books.touch(&key, slot);
    }

    /// A new engine with a snapshot's state.
    pub fn from_snapshot(
        peer: crate::protocol::clock::PeerId,
        config: super::EngineConfig,
        snapshot: StateSnapshot,
    ) -> Self {
        let mut engine = ReconciliationEngine::new(peer, config);
        engine.load_snapshot(snapshot);
        engine
    }
}
