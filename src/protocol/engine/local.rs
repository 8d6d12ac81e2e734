use super::policy::room_policy_key;
use super::{
    ConflictPolicy, ReconciliationEngine, MAX_RESOLUTION_BYTES, MAX_RUN_BYTES, MAX_WRITE_BYTES,
};
use crate::protocol::entity::EntityState;
use crate::protocol::error::WriteError;
use crate::protocol::event::{CounterOp, EventId, Kind, Operation, P2PEvent, RegisterOp, SetOp};
use crate::protocol::identity::Identity;
use crate::protocol::seal::{self, MAX_RUN};
use crate::protocol::value::JsonValue;

/// App keys are any keys outside the room's own namespace.
fn user_key(key: &str) -> Result<(), WriteError> {
    if super::policy::is_reserved(key) {
        return Err(WriteError::ReservedKey {
            key: key.to_string(),
        });
    }
    Ok(())
}

/// A write of the app's (DESIGN.md's JS API, one variant a method), as
/// [`ReconciliationEngine::perform`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalWrite {
    /// Writes a register (on a conflicted key, over every sibling).
    Set { key: String, value: JsonValue },
    /// Deletes whatever the key holds, as far as this peer has seen it.
    Delete { key: String },
    /// Adds `by` to a counter.
    Increment { key: String, by: i64 },
    /// Adds a member to a set.
    Add { key: String, member: JsonValue },
    /// Removes a member from a set (a concurrent add wins).
    Remove { key: String, member: JsonValue },
    /// Writes `value` over every concurrent value of a conflicted key.
    Resolve { key: String, value: JsonValue },
    /// Sets the room's conflict policy for keys under `prefix` (replicated
    /// room state, see [`set_room_policy`](ReconciliationEngine::set_room_policy)).
    Policy {
        prefix: String,
        policy: ConflictPolicy,
    },
}

/// Local operations. Each one makes an event, applies it here, and returns it
/// for the caller to persist and send. Keys of the room's own state
/// ([`super::RESERVED_PREFIX`]) are refused with
/// [`WriteError::ReservedKey`].
impl ReconciliationEngine {
    /// Makes the app's write `write` (an event applied here and kept in the
    /// log, where sealing and sending find it) and returns its id, or `None`
    /// when there was nothing to write (a delete of an absent key, a remove
    /// of an absent member). The methods below do the same and hand back a
    /// copy of the event; a peer's own writes come this way, with no copy.
    pub fn perform(
        &mut self,
        write: LocalWrite,
        now_ms: u64,
    ) -> Result<Option<EventId>, WriteError> {
        let (key, op) = match write {
            LocalWrite::Set { key, value } | LocalWrite::Resolve { key, value } => {
                user_key(&key)?;
                let op = self.register_write(&key, value, false)?;
                (key, Some(op))
            }
            LocalWrite::Delete { key } => {
                user_key(&key)?;
                let op = self.erasure(&key);
                (key, op)
            }
            LocalWrite::Increment { key, by } => {
                user_key(&key)?;
                let op = self.increment_by(&key, by)?;
                (key, Some(op))
            }
            LocalWrite::Add { key, member } => {
                user_key(&key)?;
                let op = self.addition(&key, member)?;
                (key, Some(op))
            }
            LocalWrite::Remove { key, member } => {
                user_key(&key)?;
                let op = self.removal(&key, member)?;
                (key, op)
            }
            LocalWrite::Policy { prefix, policy } => {
                let key = room_policy_key(&prefix)?;
                let op = self.register_write(&key, policy.to_value(), false)?;
                (key, Some(op))
            }
        };
        op.map(|op| self.make(&key, op, now_ms, |e| e.id))
            .transpose()
    }

    /// Writes a register. On a `multi-value` or `reconcile` key with siblings,
    /// this resolves them: the write observes every sibling.
    pub fn set(
        &mut self,
        key: &str,
        value: JsonValue,
        now_ms: u64,
    ) -> Result<P2PEvent, WriteError> {
        user_key(key)?;
        self.write(key, value, false, now_ms)
    }

    /// A register write, reserved keys included; `resolution` marks the
    /// reconciliation exchange's own writes.
    pub(super) fn write(
        &mut self,
        key: &str,
        value: JsonValue,
        resolution: bool,
        now_ms: u64,
    ) -> Result<P2PEvent, WriteError> {
        let op = self.register_write(key, value, resolution)?;
        self.local(key, op, now_ms)
    }

    fn register_write(
        &self,
        key: &str,
        value: JsonValue,
        resolution: bool,
    ) -> Result<Operation, WriteError> {
        let observed = match self.shown(key, Kind::Register)? {
            Some(EntityState::Register(r)) => r.observed(),
            _ => Default::default(),
        };
        Ok(Operation::Register(RegisterOp::Write {
            value,
            observed,
            resolution,
        }))
    }

    /// Deletes whatever the key holds, as far as this peer has seen it: an
    /// update concurrent with the delete survives it. `None` when there is
    /// nothing to delete.
    pub fn delete(&mut self, key: &str, now_ms: u64) -> Result<Option<P2PEvent>, WriteError> {
        user_key(key)?;
        self.erase(key, now_ms)
    }

    /// [`delete`](Self::delete), reserved keys included.
    pub(super) fn erase(&mut self, key: &str, now_ms: u64) -> Result<Option<P2PEvent>, WriteError> {
        self.erasure(key)
            .map(|op| self.local(key, op, now_ms))
            .transpose()
    }

    fn erasure(&self, key: &str) -> Option<Operation> {
        let e = self.entity(key).filter(|e| e.is_present())?;
        Some(match e.shown() {
            EntityState::Register(r) => Operation::Register(RegisterOp::Delete {
                observed: r.observed(),
            }),
            EntityState::Counter(c) => Operation::Counter(CounterOp::Delete {
                observed: c.shares(),
            }),
            EntityState::Set(s) => Operation::Set(SetOp::Delete {
                observed: s.observed_all(),
            }),
        })
    }

    pub fn increment(&mut self, key: &str, by: i64, now_ms: u64) -> Result<P2PEvent, WriteError> {
        user_key(key)?;
        let op = self.increment_by(key, by)?;
        self.local(key, op, now_ms)
    }

    fn increment_by(&self, key: &str, by: i64) -> Result<Operation, WriteError> {
        let sum = match self.shown(key, Kind::Counter)? {
            Some(EntityState::Counter(c)) => c.contribution(self.peer).checked_add(by),
            _ => Some(by),
        };
        let sum = sum.ok_or_else(|| WriteError::CounterOverflow {
            key: key.to_string(),
            by,
        })?;
        Ok(Operation::Counter(CounterOp::Increment { by, sum }))
    }

    pub fn add(
        &mut self,
        key: &str,
        member: JsonValue,
        now_ms: u64,
    ) -> Result<P2PEvent, WriteError> {
        user_key(key)?;
        let op = self.addition(key, member)?;
        self.local(key, op, now_ms)
    }

    fn addition(&self, key: &str, member: JsonValue) -> Result<Operation, WriteError> {
        let observed = match self.shown(key, Kind::Set)? {
            Some(EntityState::Set(s)) => s.observed(&member),
            _ => Default::default(),
        };
        Ok(Operation::Set(SetOp::Add { member, observed }))
    }

    /// `None` when the member is not in the set.
    pub fn remove(
        &mut self,
        key: &str,
        member: JsonValue,
        now_ms: u64,
    ) -> Result<Option<P2PEvent>, WriteError> {
        user_key(key)?;
        self.removal(key, member)?
            .map(|op| self.local(key, op, now_ms))
            .transpose()
    }

    fn removal(&self, key: &str, member: JsonValue) -> Result<Option<Operation>, WriteError> {
        Ok(match self.shown(key, Kind::Set)? {
            Some(EntityState::Set(s)) if s.contains(&member) => {
                let observed = s.observed(&member);
                Some(Operation::Set(SetOp::Remove { member, observed }))
            }
            _ => None,
        })
    }

    /// Writes `value` over every sibling of `key`: the app's resolution of a
    /// conflict. The same as [`set`](Self::set); named for what it means.
    pub fn resolve(
        &mut self,
        key: &str,
        value: JsonValue,
        now_ms: u64,
    ) -> Result<P2PEvent, WriteError> {
        self.set(key, value, now_ms)
    }

    /// `key`'s state of kind `kind`; an error while the key shows another
    /// kind.
    fn shown(&self, key: &str, kind: Kind) -> Result<Option<&EntityState>, WriteError> {
        match self.entity(key) {
            Some(e) if e.is_present() && e.kind() != kind => Err(WriteError::KindMismatch {
                key: key.to_string(),
                actual: e.kind(),
                attempted: kind,
            }),
            Some(e) => Ok(e.state_of(kind)),
            None => Ok(None),
        }
    }

    /// This peer's events after `after`, in the log: sealed by `identity`
    /// in runs of at most [`MAX_RUN`] events and [`MAX_RUN_BYTES`] when
    /// there is one, so relays keep the seals and each run travels in one
    /// message. The caller persists and sends them.
    pub fn seal_own(&mut self, identity: Option<&Identity>, after: u64) -> Vec<&P2PEvent> {
        let (peer, upto) = (self.peer, self.applied.get(self.peer));
        if let Some(identity) = identity {
            debug_assert_eq!(identity.peer(), peer, "the engine's id is the identity's");
            let mut first = after.saturating_add(1).max(self.log.first_seq(peer));
            while first <= upto {
                let last = upto.min(first + MAX_RUN as u64 - 1);
                let events = self.log.run_mut(peer, first, last);
                let len = within_run_bytes(events);
                let run = &mut events[..len];
                if run.is_empty() {
                    break;
                }
                seal::seal(identity, run);
                first += run.len() as u64;
            }
        }
        self.logged(&[(peer, after, upto)])
    }

    /// Up to where this peer's own events are sealed (with `signed`), or
    /// all of them (unsigned): where a new node starts flushing.
    pub fn sealed_own(&self, signed: bool) -> u64 {
        let applied = self.applied.get(self.peer);
        if !signed {
            return applied;
        }
        let logged = self.log.range(self.peer, 0, applied);
        let sealed = logged
            .iter()
            .rev()
            .find_map(|part| part.iter().rfind(|e| e.seal.is_some()));
        match (sealed, logged.first()) {
            (Some(last), _) => last.id.seq,
            // Nothing of ours sealed in the log: seal whatever is there.
            (None, Some(part)) => part[0].id.seq - 1,
            (None, None) => applied,
        }
    }

    /// Makes, applies and hands back an event of ours.
    fn local(&mut self, key: &str, op: Operation, now_ms: u64) -> Result<P2PEvent, WriteError> {
        self.make(key, op, now_ms, P2PEvent::clone)
    }

    /// Makes the event of `op` on `key` and applies it (into the log); what
    /// `keep` takes of it is returned.
    fn make<T>(
        &mut self,
        key: &str,
        op: Operation,
        now_ms: u64,
        keep: impl FnOnce(&P2PEvent) -> T,
    ) -> Result<T, WriteError> {
        let bytes = key.len() + op.value_len();
        let limit = match op {
            Operation::Register(RegisterOp::Write {
                resolution: true, ..
            }) => MAX_RESOLUTION_BYTES,
            _ => MAX_WRITE_BYTES,
        };
        if bytes > limit {
            return Err(WriteError::TooLarge { bytes, limit });
        }
        // Only a lie could bring our own count near the end (nothing remote
        // may raise it), but a wrap would reuse sequence 0: refuse instead.
        let seq = self
            .applied
            .get(self.peer)
            .checked_add(1)
            .ok_or(WriteError::SequenceExhausted)?;
        let event = P2PEvent {
            id: EventId::new(self.peer, seq),
            key: key.into(),
            op,
            deps: self.unsent.take(&self.applied),
            hlc: self.clock.tick(now_ms),
            seal: None,
        };
        let kept = keep(&event);
        // What waits on it (a key holder may name our next event before
        // we write it) is released with it: others' events, noted
        // (`mark_applied`) for the node to store before this write, which
        // may rest on them, and to pass on.
        if !self.holding.is_empty() {
            self.keep_marking();
        }
        // Our write is dated ahead by our clock only as far as the time we
        // read: a stamp past it was borrowed from a peer's, taken within
        // the skew (a step of our clock back then told a false alarm).
        let own_stamp = self.own_stamp.max(event.hlc.millis().min(now_ms));
        if self.apply_and_release(event) > 1 {
            self.released = true;
        }
        self.own_stamp = own_stamp;
        Ok(kept)
    }
}

/// How many of `events` (a run's worth of ours, in order) one run takes:
/// all, or those before their bytes would pass [`MAX_RUN_BYTES`]; one at
/// least (a write is at most [`MAX_WRITE_BYTES`]). An event over that (a
/// resolution copying another's large value, up to
/// [`MAX_RESOLUTION_BYTES`]) is a run of its own: `approx_size` is an
/// estimate, and what rides with it would be what tips it over a message.
fn within_run_bytes(events: &[P2PEvent]) -> usize {
    let mut bytes = 0;
    for (i, e) in events.iter().enumerate() {
        let size = e.approx_size();
        let alone = size > MAX_WRITE_BYTES;
        if i > 0 && (alone || bytes + size > MAX_RUN_BYTES) {
            return i;
        }
        if alone {
            return 1;
        }
        bytes += size;
    }
    events.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::clock::PeerId;
    use crate::protocol::event::sample;

    /// Runs are cut before their bytes pass a run's, and an event over a
    /// write's bound (a resolution's copy of a large value) goes alone.
    #[test]
    fn a_run_is_cut_by_bytes_and_a_large_event_goes_alone() {
        let value = |bytes: usize| format!("\"{}\"", "v".repeat(bytes));
        let events = |sizes: &[usize]| -> Vec<P2PEvent> {
            (sizes.iter().enumerate())
                .map(|(i, &n)| sample(PeerId(1), i as u64 + 1, &value(n)))
                .collect()
        };
        assert_eq!(within_run_bytes(&events(&[10, 10, 10])), 3);
        let big = MAX_WRITE_BYTES + 1;
        assert_eq!(within_run_bytes(&events(&[10, big, 10])), 1);
        assert_eq!(within_run_bytes(&events(&[big, 10])), 1);
        let half = MAX_RUN_BYTES / 2;
        assert_eq!(within_run_bytes(&events(&[half, half, 10])), 1);
        assert_eq!(within_run_bytes(&events(&[half / 2, half / 2, half])), 2);
        assert_eq!(within_run_bytes(&events(&[half / 2, half, 10])), 3);
    }
}
