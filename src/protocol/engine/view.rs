use crate::protocol::text::Text;

use serde::Serialize;

use super::{is_reserved, ConflictPolicy, ReconciliationEngine};
use crate::protocol::clock::PeerId;
use crate::protocol::entity::{EntityState, Register};
use crate::protocol::heap_sort::heap_sort_by;
use crate::protocol::key_sort;
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
    crate::protocol::json::write_str(out, s);
}

impl ReconciliationEngine {
    /// App keys whose entity is present (not deleted), sorted: room state
    /// (reserved keys) is not the app's.
    fn present_keys(&self) -> Vec<Text> {
        let mut keys: Vec<Text> = self
            .entities
            .values()
            .filter(|slot| slot.entity.is_present() && !is_reserved(&slot.key))
            .map(|slot| slot.key.clone())
            .collect();
        key_sort::sort_strs(&mut keys);
        keys
    }

    /// The shared state as JSON text: `{ key: value, ... }`, keys sorted,
    /// deleted keys absent.
    pub fn state_json(&self) -> String {
        let keys = self.present_keys();
        let mut out = String::with_capacity(keys.len() * 16 + 2);
        out.push('{');
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, key);
            out.push(':');
            if let Some(slot) = self.entities.get(key) {
                write_shown(&mut out, slot.entity.shown());
            }
        }
        out.push('}');
        out
    }

    /// The state as a table shows it, as JSON text: `[{ key, kind, value,
    /// writer, conflicted }]` by key, for present keys. `writer` is the
    /// winning write's origin for a register, else the origin of the last
    /// event this peer applied to the key (`null` when unknown, after a
    /// snapshot); `conflicted` is whether concurrent values wait to be
    /// resolved (under `multi-value` and `reconcile` policies).
    pub fn entries_json(&self) -> String {
        let keys = self.present_keys();
        let mut out = String::with_capacity(keys.len() * 64 + 2);
        out.push('[');
        for (i, key) in keys.iter().enumerate() {
            let Some(slot) = self.entities.get(key) else {
                continue;
            };
            let shown = slot.entity.shown();
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"key\":");
            push_json_string(&mut out, key);
            out.push_str(",\"kind\":\"");
            out.push_str(&shown.kind().to_string());
            out.push_str("\",\"value\":");
            write_shown(&mut out, shown);
            let writer = match shown {
                EntityState::Register(r) => r.winner().map(|s| s.dot.peer),
                _ => None,
            }
            .or(slot.last_writer);
            out.push_str(",\"writer\":");
            match writer {
                Some(peer) => {
                    out.push('"');
                    out.push_str(&peer.to_string());
                    out.push('"');
                }
                None => out.push_str("null"),
            }
            let conflicted =
                self.books.conflicted.contains(key) && self.policy(key) != ConflictPolicy::Lww;
            out.push_str(if conflicted {
                ",\"conflicted\":true}"
            } else {
                ",\"conflicted\":false}"
            });
        }
        out.push(']');
        out
    }

    /// The shared state as a JSON value.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.state_json()).unwrap_or_default()
    }

    /// The value `key` shows, as JSON text; `None` when absent or deleted,
    /// and for room state (see [`room_policies`](Self::room_policies)).
    pub fn get_json(&self, key: &str) -> Option<String> {
        if is_reserved(key) {
            return None;
        }
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
        self.conflicts_of(self.books.conflicted.iter().map(|k| &**k))
    }

    /// The conflicts of `keys` (as [`conflicts`](Self::conflicts) lists
    /// them, by key): what a page tells with a change of those keys. Name
    /// each key once: one named twice is listed twice. A key's lookup is
    /// one probe of the conflicted keys, so a change of a few keys in a
    /// room of many conflicts builds none of the others.
    pub fn conflicts_of<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<Conflict> {
        if self.books.conflicted.is_empty() {
            return Vec::new();
        }
        let mut conflicts = keys
            .filter_map(|key| {
                Some(Conflict {
                    key: key.to_string(),
                    candidates: candidates(self.conflicted(key)?),
                })
            })
            .collect::<Vec<_>>();
        heap_sort_by(&mut conflicts, |a, b| a.key < b.key);
        conflicts
    }

    /// Whether `key` is in a conflict [`conflicts`](Self::conflicts)
    /// lists.
    pub fn in_conflict(&self, key: &str) -> bool {
        self.conflicted(key).is_some()
    }

    /// `key`'s register, if it shows a conflict.
    fn conflicted(&self, key: &str) -> Option<&Register> {
        if !self.books.conflicted.contains(key) || self.policy(key) == ConflictPolicy::Lww {
            return None;
        }
        match self.entity(key)?.shown() {
            EntityState::Register(r) => Some(r),
            _ => None,
        }
    }

    /// Keys in the state (present or deleted, room state included),
    /// unordered.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entities.keys().map(|k| &**k)
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::engine::{ConflictPolicy, EngineConfig, ReconciliationEngine};
    use crate::protocol::{JsonValue, PeerId};

    /// Two engines whose "doc/" keys are multi-value.
    fn two_writers() -> (ReconciliationEngine, ReconciliationEngine) {
        let mut a = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
        let mut b = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
        for e in [&mut a, &mut b] {
            e.set_policy("doc/", ConflictPolicy::MultiValue);
        }
        (a, b)
    }

    fn json(text: &str) -> JsonValue {
        JsonValue::parse(text).unwrap()
    }

    #[test]
    fn entries_show_kind_writer_and_conflicts() {
        let (mut a, mut b) = two_writers();
        let x = a.set("doc/x", json("1"), 10).unwrap();
        let y = b.set("doc/x", json("2"), 11).unwrap();
        let n = b.increment("n", 3, 12).unwrap();
        a.receive(y, 20).unwrap();
        a.receive(n, 20).unwrap();
        b.receive(x, 20).unwrap();
        let entries: serde_json::Value = serde_json::from_str(&a.entries_json()).unwrap();
        assert_eq!(
            entries,
            serde_json::json!([
                {"key": "doc/x", "kind": "register", "value": 2,
                 "writer": PeerId(2).to_string(), "conflicted": true},
                {"key": "n", "kind": "counter", "value": 3,
                 "writer": PeerId(2).to_string(), "conflicted": false},
            ])
        );
    }

    /// The conflicts of some keys: those of them in a conflict the room's
    /// policy shows, by key, as `conflicts` lists them.
    #[test]
    fn conflicts_of_some_keys_are_those_conflicts_lists() {
        let (mut a, mut b) = two_writers();
        // Concurrent writes: "doc/" keys conflict, "lww/y" keeps siblings
        // but shows no conflict.
        let mut theirs = Vec::new();
        for key in ["doc/z", "doc/x", "lww/y", "doc/w"] {
            a.set(key, json("1"), 10).unwrap();
            theirs.push(b.set(key, json("2"), 11).unwrap());
        }
        for event in theirs {
            a.receive(event, 20).unwrap();
        }
        let keys = |c: Vec<crate::protocol::engine::Conflict>| -> Vec<String> {
            c.into_iter().map(|c| c.key).collect()
        };
        assert_eq!(keys(a.conflicts()), ["doc/w", "doc/x", "doc/z"]);
        let some = ["lww/y", "doc/z", "nope", "doc/x"].into_iter();
        assert_eq!(a.conflicts_of(some.clone()), {
            let mut all = a.conflicts();
            all.retain(|c| c.key != "doc/w");
            all
        });
        assert_eq!(keys(a.conflicts_of(some)), ["doc/x", "doc/z"]);
        assert!(a.in_conflict("doc/w") && !a.in_conflict("lww/y") && !a.in_conflict("nope"));
        assert!(
            b.conflicts_of(["doc/x"].into_iter()).is_empty(),
            "b has not heard a"
        );
    }
}
