use serde::Serialize;

use super::{ConflictPolicy, ReconciliationEngine};
use crate::protocol::clock::PeerId;
use crate::protocol::entity::{EntityState, Register};
use crate::protocol::value::JsonValue;

/// One concurrent value of a conflicted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub value: JsonValue,
    pub peer: PeerId,
}

/// A key whose concurrent writes the app should see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub key: String,
    pub candidates: Vec<Candidate>,
}

pub(super) fn candidates(register: &Register) -> Vec<Candidate> {
    register
        .siblings()
        .iter()
        .map(|s| Candidate {
            value: s.value.clone(),
            peer: s.dot.peer,
        })
        .collect()
}

/// Writes the JSON an entity shows: a register's (LWW) value, a counter's
/// number, a set's sorted members.
fn write_shown(out: &mut String, state: &EntityState) {
    match state {
        EntityState::Register(r) => out.push_str(r.winner().map_or("null", |s| s.value.as_str())),
        EntityState::Counter(c) => out.push_str(&c.value().to_string()),
        EntityState::Set(s) => {
            out.push('[');
            for (i, member) in s.members().into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(member.as_str());
            }
            out.push(']');
        }
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

impl ReconciliationEngine {
    /// The shared state as JSON text: `{ key: value, ... }`, keys sorted,
    /// deleted keys absent.
    pub fn state_json(&self) -> String {
        let mut keys: Vec<&str> = self
            .entities
            .iter()
            .filter(|(_, slot)| slot.entity.is_present())
            .map(|(k, _)| &**k)
            .collect();
        keys.sort_unstable();
        let mut out = String::with_capacity(keys.len() * 16 + 2);
        out.push('{');
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, key);
            out.push(':');
            if let Some(slot) = self.entities.get(*key) {
                write_shown(&mut out, slot.entity.shown());
            }
        }
        out.push('}');
        out
    }

    /// The shared state as a JSON value.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.state_json()).unwrap_or_default()
    }

    /// The value `key` shows, as JSON text; `None` when absent or deleted.
    pub fn get_json(&self, key: &str) -> Option<String> {
        let entity = self.entity(key).filter(|e| e.is_present())?;
        let mut out = String::new();
        write_shown(&mut out, entity.shown());
        Some(out)
    }

    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        self.get_json(key)
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// Conflicts on `multi-value` and `reconcile` keys, by key. `lww` keys
    /// keep siblings too, but show the winner and no conflict.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut conflicts = self
            .books
            .conflicted
            .iter()
            .filter(|key| self.policies.get(key) != ConflictPolicy::Lww)
            .filter_map(|key| match self.entity(key)?.shown() {
                EntityState::Register(r) => Some(Conflict {
                    key: key.to_string(),
                    candidates: candidates(r),
                }),
                _ => None,
            })
            .collect::<Vec<_>>();
        conflicts.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        conflicts
    }

    /// Keys in the state (present or deleted), unordered.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entities.keys().map(|k| &**k)
    }
}
