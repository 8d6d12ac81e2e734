use std::collections::hash_map::Entry;

use super::{ReconciliationEngine, Slot};
use crate::protocol::entity::{Entity, EntityState};
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
        for (key, entity) in snapshot.entities {
            self.clock.observe(entity.max_hlc());
            let slot = match self.entities.entry(key.clone()) {
                Entry::Occupied(o) => {
                    let slot = o.into_mut();
                    slot.entity.merge(&entity, &ours, &theirs);
                    slot
                }
                Entry::Vacant(v) => {
                    let mut fresh = Entity::empty();
                    fresh.merge(&entity, &ours, &theirs);
                    v.insert(Slot {
                        entity: fresh,
                        digest_stale: false,
                        changed: false,
                    })
                }
            };
            if !slot.digest_stale {
                slot.digest_stale = true;
                self.stale.push(key.clone());
            }
            if !slot.changed {
                slot.changed = true;
                self.changed.push(key.clone());
            }
            let conflicted =
                matches!(slot.entity.shown(), EntityState::Register(r) if r.is_conflicted());
            if conflicted {
                self.conflicted.insert(key);
            } else {
                self.conflicted.remove(&key);
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
        self.resolve_conflicts();
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
