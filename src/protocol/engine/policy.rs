//! Conflict policies: the room's (replicated) and this peer's own
//! defaults.
//!
//! The room's policies are state like any other: one Last-Write-Wins
//! register per prefix, under a reserved key ([`POLICY_PREFIX`] followed by
//! the prefix), holding the policy's name as a JSON string. So they sync,
//! persist (log and snapshots), count in the digest and converge like every
//! register, with no new entity kind or message. One register per prefix
//! (not one holding the whole table) so that two peers setting policies of
//! different prefixes at once do not overwrite each other.
//!
//! Precedence, for a key: reserved keys are always `lww` (room state never
//! shows a conflict); else the room's policy of the longest matching prefix
//! among the prefixes the room has set; else this peer's local default of
//! the longest matching prefix ([`ReconciliationEngine::set_policy`]); else
//! `lww`. A room policy of any matching prefix wins over every local
//! default, even one of a longer prefix: whatever the room decided, every
//! peer shows alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ReconciliationEngine;
use crate::protocol::entity::EntityState;
use crate::protocol::error::{quoted_key, ReceiveError, WriteError};
use crate::protocol::event::{Operation, P2PEvent, RegisterOp};
use crate::protocol::sorted_map::SortedMap;
use crate::protocol::value::JsonValue;

/// The namespace of the room's own state. App keys cannot start with it:
/// writes to them are refused ([`WriteError::ReservedKey`]), and reads
/// (`get`, `state_json`, `entries_json`, `conflicts`, change reports) never
/// show them. A NUL character first: no app key worth keeping starts so.
pub const RESERVED_PREFIX: &str = "\u{0}cpc/";

/// Where the room's policies live: this, then the policy's key prefix.
pub const POLICY_PREFIX: &str = "\u{0}cpc/policy/";

/// Whether `key` belongs to the room's own state. (Asked of every key
/// applied or loaded: the first byte, NUL, settles nearly all of them
/// inline.)
#[inline(always)]
pub fn is_reserved(key: &str) -> bool {
    key.as_bytes().first() == Some(&0) && key.starts_with(RESERVED_PREFIX)
}

/// The key holding the room's policy for `prefix`.
pub fn policy_key(prefix: &str) -> String {
    format!("{POLICY_PREFIX}{prefix}")
}

/// The register holding the room's policy for `prefix`: refused for a
/// prefix inside the room's own namespace.
pub(super) fn room_policy_key(prefix: &str) -> Result<String, WriteError> {
    if is_reserved(prefix) {
        return Err(WriteError::ReservedKey {
            key: prefix.to_string(),
        });
    }
    Ok(policy_key(prefix))
}

/// How a register shows concurrent writes (see the conflict matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Last-Write-Wins by hybrid logical clock; no conflict shown.
    #[default]
    Lww,
    /// Siblings kept and shown until a write resolves them.
    MultiValue,
    /// Siblings kept, and the resolver peer settles them through the
    /// reconciliation exchange.
    Reconcile,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown conflict policy {0:?}: use \"lww\", \"multi-value\" or \"reconcile\"")]
pub struct UnknownPolicy(pub String);

impl FromStr for ConflictPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lww" => Ok(ConflictPolicy::Lww),
            "multi-value" => Ok(ConflictPolicy::MultiValue),
            "reconcile" => Ok(ConflictPolicy::Reconcile),
            _ => Err(UnknownPolicy(s.to_string())),
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictPolicy::Lww => "lww",
            ConflictPolicy::MultiValue => "multi-value",
            ConflictPolicy::Reconcile => "reconcile",
        })
    }
}

impl ConflictPolicy {
    /// The policy a room-state value names: a JSON string of a policy's
    /// name, nothing else.
    fn of_value(value: &JsonValue) -> Option<Self> {
        value.to_json().as_str()?.parse().ok()
    }

    pub(super) fn to_value(self) -> JsonValue {
        JsonValue::string(&self.to_string())
    }
}

/// Policies by key prefix; the longest matching prefix wins.
///
/// Sorted by prefix, so a lookup costs a few ordered searches whatever the
/// number of prefixes (a peer may set thousands of room policies; every
/// conflicted key is looked up on every tick).
#[derive(Debug, Clone, Default)]
pub struct Policies(SortedMap<String, ConflictPolicy>);

impl Policies {
    pub fn set(&mut self, prefix: &str, policy: ConflictPolicy) {
        self.0.insert(prefix.to_string(), policy);
    }

    /// Forgets `prefix`'s policy; returns it.
    pub fn remove(&mut self, prefix: &str) -> Option<ConflictPolicy> {
        self.0.remove(prefix)
    }

    /// The policy of the longest prefix of `key` set here, or the default.
    pub fn get(&self, key: &str) -> ConflictPolicy {
        self.lookup(key).unwrap_or_default()
    }

    /// The policy of the longest prefix of `key` set here, if any.
    ///
    /// Every set prefix of `key` sorts at or before `key`; the greatest
    /// entry at or before it is either a prefix of it (the longest one) or
    /// shares a common prefix `c` with it, and then every set prefix of
    /// `key` is a prefix of `c` too: search again below `c`.
    pub fn lookup(&self, key: &str) -> Option<ConflictPolicy> {
        let mut bound = key;
        loop {
            let (prefix, policy) = self.0.last_at_or_before(bound)?;
            if key.starts_with(prefix.as_str()) {
                return Some(*policy);
            }
            let mut common = prefix
                .bytes()
                .zip(bound.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            while !bound.is_char_boundary(common) {
                common -= 1;
            }
            // `prefix` is not a prefix of `bound`, so `common` is shorter
            // than `bound`: the loop ends.
            bound = &bound[..common];
        }
    }

    pub fn get_exact(&self, prefix: &str) -> Option<ConflictPolicy> {
        self.0.get(prefix).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, ConflictPolicy)> {
        self.0.iter().map(|(p, c)| (p.as_str(), *c))
    }
}

/// Checks an event that touches the room's own state: only a register
/// write of a policy's name (or a delete) under [`POLICY_PREFIX`], for a
/// prefix outside the reserved namespace. No honest peer writes anything
/// else there, so anything else is refused, the same way on every peer.
///
/// Stateless, like [`P2PEvent::check`]: it runs on remote events, on
/// replays from storage and on the events of snapshots and Merkle leaves.
pub(super) fn check_room_state(event: &P2PEvent) -> Result<(), ReceiveError> {
    if !is_reserved(&event.key) {
        return Ok(());
    }
    let refuse = |reason: &str| {
        Err(ReceiveError::InvalidRoomState {
            id: event.id,
            reason: format!("{reason} (key {})", quoted_key(&event.key)),
        })
    };
    let Some(prefix) = event.key.strip_prefix(POLICY_PREFIX) else {
        return refuse("no room state lives under this reserved key");
    };
    if is_reserved(prefix) {
        return refuse("a policy for reserved keys (they are always lww)");
    }
    match &event.op {
        Operation::Register(RegisterOp::Write {
            value, resolution, ..
        }) => {
            if *resolution {
                return refuse("a room policy is never reconciled");
            }
            if ConflictPolicy::of_value(value).is_none() {
                return refuse("a room policy must be \"lww\", \"multi-value\" or \"reconcile\"");
            }
            Ok(())
        }
        Operation::Register(RegisterOp::Delete { .. }) => Ok(()),
        _ => refuse("a room policy is a register"),
    }
}

/// Policies: the room's, this peer's defaults, and the lookup that picks.
impl ReconciliationEngine {
    /// Sets this peer's **local default** for keys under `prefix`: used
    /// only where the room has no policy of a matching prefix (see the
    /// precedence in [`policy`](Self::policy)). Not replicated; for Rust
    /// callers and tests. Apps set the room's policy with
    /// [`set_room_policy`](Self::set_room_policy).
    pub fn set_policy(&mut self, prefix: &str, policy: ConflictPolicy) {
        self.policies.set(prefix, policy);
        self.policy_changed(prefix);
    }

    /// The policy `key` follows: for a reserved key `lww`; else the room's
    /// policy of the longest matching prefix the room has set; else this
    /// peer's local default of the longest matching prefix; else `lww`.
    pub fn policy(&self, key: &str) -> ConflictPolicy {
        if is_reserved(key) {
            return ConflictPolicy::Lww;
        }
        self.room_policies
            .lookup(key)
            .or_else(|| self.policies.lookup(key))
            .unwrap_or_default()
    }

    /// The room's policy for exactly `prefix`, if the room set one.
    pub fn room_policy(&self, prefix: &str) -> Option<ConflictPolicy> {
        self.room_policies.get_exact(prefix)
    }

    /// Every policy the room has set, by prefix.
    pub fn room_policies(&self) -> Vec<(String, ConflictPolicy)> {
        self.room_policies
            .iter()
            .map(|(p, c)| (p.to_string(), c))
            .collect()
    }

    /// Sets the **room's** policy for keys under `prefix`: a local write
    /// (an event to persist and send, like [`set`](Self::set)) of the
    /// register holding that prefix's policy. Concurrent settings of one
    /// prefix settle by Last-Write-Wins. Every peer follows it once the
    /// event reaches it, whatever its local defaults.
    pub fn set_room_policy(
        &mut self,
        prefix: &str,
        policy: ConflictPolicy,
        now_ms: u64,
    ) -> Result<P2PEvent, WriteError> {
        self.write(&room_policy_key(prefix)?, policy.to_value(), false, now_ms)
    }

    /// Takes back the room's policy for `prefix` (as far as this peer has
    /// seen it): keys under it fall back to shorter room prefixes, then to
    /// local defaults. `None` when the room has none for `prefix`.
    pub fn clear_room_policy(
        &mut self,
        prefix: &str,
        now_ms: u64,
    ) -> Result<Option<P2PEvent>, WriteError> {
        self.erase(&room_policy_key(prefix)?, now_ms)
    }

    /// After the entity of reserved `key` changed (an event, a snapshot, a
    /// leaf): the room's policy table follows it.
    pub(super) fn refresh_room_policy(&mut self, key: &str) {
        let Some(prefix) = key.strip_prefix(POLICY_PREFIX) else {
            return;
        };
        let now = match self.entity(key).map(|e| e.shown()) {
            Some(EntityState::Register(r)) => {
                r.winner().and_then(|s| ConflictPolicy::of_value(&s.value))
            }
            _ => None,
        };
        if now == self.room_policies.get_exact(prefix) {
            return;
        }
        match now {
            Some(policy) => self.room_policies.set(prefix, policy),
            None => {
                self.room_policies.remove(prefix);
            }
        }
        self.policy_changed(prefix);
    }

    /// Keys under `prefix` may show differently now: conflicted ones are
    /// reported as changed (their conflict appears or goes), and the
    /// reconcile tick picks up those now under `reconcile` by itself.
    fn policy_changed(&mut self, prefix: &str) {
        let keys: Vec<_> = self
            .books
            .conflicted
            .iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for key in keys {
            if let Some(index) = self.entities.find(&key) {
                self.books.mark_changed(index, self.entities.at(index));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut p = Policies::default();
        p.set("doc/", ConflictPolicy::Reconcile);
        p.set("doc/draft/", ConflictPolicy::MultiValue);
        assert_eq!(p.get("doc/a"), ConflictPolicy::Reconcile);
        assert_eq!(p.get("doc/draft/a"), ConflictPolicy::MultiValue);
        assert_eq!(p.get("other"), ConflictPolicy::Lww);
        assert_eq!("multi-value".parse(), Ok(ConflictPolicy::MultiValue));
        assert!("nope".parse::<ConflictPolicy>().is_err());
    }

    #[test]
    fn lookup_skips_neighbours_that_are_not_prefixes() {
        let mut p = Policies::default();
        p.set("", ConflictPolicy::MultiValue);
        p.set("a/", ConflictPolicy::Reconcile);
        p.set("a/b", ConflictPolicy::Lww);
        p.set("a/bz", ConflictPolicy::MultiValue);
        p.set("é/x", ConflictPolicy::Lww);
        assert_eq!(p.lookup("a/c"), Some(ConflictPolicy::Reconcile));
        assert_eq!(p.lookup("a/b/c"), Some(ConflictPolicy::Lww));
        assert_eq!(p.lookup("a/by"), Some(ConflictPolicy::Lww));
        assert_eq!(p.lookup("a/c/zzz"), Some(ConflictPolicy::Reconcile));
        assert_eq!(p.lookup("é/y"), Some(ConflictPolicy::MultiValue));
        assert_eq!(p.lookup("b"), Some(ConflictPolicy::MultiValue));
        p.remove("");
        assert_eq!(p.lookup("b"), None);
        assert_eq!(p.lookup(""), None);
        // Against a plain scan, over every key of a small alphabet.
        let prefixes = ["", "a", "ab", "b", "ba", "bab", "c"];
        let mut p = Policies::default();
        for (i, prefix) in prefixes.iter().enumerate().skip(1) {
            let policy = [ConflictPolicy::MultiValue, ConflictPolicy::Reconcile][i % 2];
            p.set(prefix, policy);
        }
        for key in [
            "", "a", "aa", "ab", "abb", "b", "ba", "bab", "babz", "bb", "c", "d",
        ] {
            let scan = prefixes[1..]
                .iter()
                .filter(|q| key.starts_with(*q))
                .max_by_key(|q| q.len())
                .and_then(|q| p.get_exact(q));
            assert_eq!(p.lookup(key), scan, "{key:?}");
        }
    }

    #[test]
    fn only_policy_writes_are_room_state() {
        use crate::protocol::event::sample;
        use crate::protocol::PeerId;
        let event = |key: &str, value: &str| {
            let mut e = sample(PeerId(1), 1, value);
            e.key = key.into();
            e
        };
        let ok = |key: &str, value: &str| check_room_state(&event(key, value)).is_ok();
        assert!(ok("anything", "{}"));
        assert!(ok(&policy_key("doc/"), "\"reconcile\""));
        assert!(ok(&policy_key(""), "\"lww\""));
        assert!(!ok(&policy_key("doc/"), "\"sometimes\""));
        assert!(!ok(&policy_key("doc/"), "{\"policy\":\"lww\"}"));
        assert!(!ok(&policy_key(POLICY_PREFIX), "\"multi-value\""));
        assert!(!ok("\u{0}cpc/other", "\"lww\""));
    }
}
