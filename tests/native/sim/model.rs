//! An independent model of what the healed state must hold, computed from
//! the acknowledged operations and their causal pasts alone (the writer's
//! clock just before each write), not from the engine's entities.
//!
//! One rule gives every kind's semantics (DESIGN.md, `src/protocol/entity`):
//! an operation on a key supersedes exactly the operations on that key in
//! its causal past, and nothing concurrent with it or after it.
//! - register: the siblings are the writes that no later write or delete
//!   followed (multi-value; LWW only picks the one shown);
//! - counter: an increment counts unless a delete followed it;
//! - set (add-wins observed-remove): a member is present while some add of
//!   it was followed by no remove of it and no delete.
//!
//! The node also writes by itself: resolutions of keys under `reconcile`
//! (locally, or by the room's policy). Their
//! pasts come from the writer's apply journal ([`own_pasts`]).
//!
//! Every other write the sim makes is acknowledged once its node says it is
//! durable; a write committed just before a crash (its acknowledgement lost
//! with it) is acknowledged when its node restarts with it, and one that
//! never committed was never sent, so it is nowhere. A sibling, member or
//! increment the model does not know is therefore an error.

use std::collections::BTreeMap;

use cpc_sync::protocol::entity::EntityState;
use cpc_sync::protocol::event::RegisterOp;
use cpc_sync::protocol::{
    EventId, JournalEntry, JsonValue, Kind, Operation, ReconciliationEngine, Timestamp, VectorClock,
};
use serde_json::Value;

/// What a local operation did, as the sim asked for it.
#[derive(Debug, Clone)]
pub enum Op {
    /// A register write of this value.
    Write(JsonValue),
    Increment(i64),
    Add(JsonValue),
    Remove(JsonValue),
    /// Deletes whatever the key holds (each key holds one kind here).
    Delete,
}

/// An acknowledged operation: its write returned and its outputs (persist
/// first) were carried out.
#[derive(Debug, Clone)]
pub struct Acked {
    pub key: String,
    pub op: Op,
    pub dot: EventId,
    pub hlc: Timestamp,
    /// The writer's clock just before the write: what the op follows.
    pub past: VectorClock,
}

/// Whether the event `dot` is in the causal past `past`.
fn follows(past: &VectorClock, dot: EventId) -> bool {
    past.get(dot.peer) >= dot.seq
}

fn parsed(value: &JsonValue) -> Value {
    serde_json::from_str(value.as_str()).unwrap_or_default()
}

/// Every acknowledged operation, by key.
#[derive(Default)]
pub struct Acknowledged {
    by_key: BTreeMap<String, Vec<Acked>>,
}

impl Acknowledged {
    /// `op` can no longer be lost.
    pub fn acknowledge(&mut self, op: Acked) {
        self.by_key.entry(op.key.clone()).or_default().push(op);
    }

    /// Checks the healed state of the honest `engines` (`state`, parsed:
    /// the same on each) against the model. Panics listing every
    /// difference.
    pub fn check(&self, engines: &[&ReconciliationEngine], state: &Value) {
        let engine = engines[0];
        // Resolutions are the nodes' own writes: their pasts come from their
        // writers' journals, or, for one written before its writer's last
        // restart, from what the event itself says it followed.
        let mut pasts = BTreeMap::new();
        for e in engines {
            own_pasts(e, &mut pasts);
        }
        let past_of = |dot| {
            pasts
                .get(&dot)
                .cloned()
                .or_else(|| followed_by(engines, dot))
        };
        let mut wrong = Vec::new();
        for (key, ops) in &self.by_key {
            let shown = &state[key.as_str()];
            match ops
                .iter()
                .find(|o| !matches!(o.op, Op::Delete))
                .map(|o| &o.op)
            {
                Some(Op::Write(_)) => check_register(key, ops, engine, shown, &past_of, &mut wrong),
                Some(Op::Increment(_)) => check_counter(key, ops, shown, &mut wrong),
                Some(Op::Add(_) | Op::Remove(_)) => check_set(key, ops, shown, &mut wrong),
                // Only deletes acknowledged: whatever they deleted was not.
                Some(Op::Delete) | None => {}
            }
        }
        assert!(
            wrong.is_empty(),
            "the state differs from the model of the acknowledged writes:\n{}",
            wrong.join("\n")
        );
    }
}

fn check_register(
    key: &str,
    ops: &[Acked],
    engine: &ReconciliationEngine,
    shown: &Value,
    past_of: &impl Fn(EventId) -> Option<VectorClock>,
    wrong: &mut Vec<String>,
) {
    let siblings = match engine
        .entity_debug(key)
        .and_then(|e| e.state_of(Kind::Register))
    {
        Some(EntityState::Register(r)) => r.siblings().into_owned(),
        _ => Vec::new(),
    };
    let known: BTreeMap<EventId, &Acked> = ops.iter().map(|o| (o.dot, o)).collect();
    // The pasts of the writes the model does not know, where known.
    let unknown_pasts: Vec<(EventId, Option<VectorClock>)> = siblings
        .iter()
        .filter(|s| !known.contains_key(&s.dot))
        .map(|s| (s.dot, past_of(s.dot)))
        .collect();
    let followed_by_known = |dot| ops.iter().any(|o| follows(&o.past, dot));
    let followed = |dot| {
        followed_by_known(dot)
            || unknown_pasts
                .iter()
                .any(|(_, past)| past.as_ref().is_some_and(|p| follows(p, dot)))
    };
    for op in ops {
        let Op::Write(value) = &op.op else { continue };
        let sibling = siblings.iter().find(|s| s.dot == op.dot);
        match (sibling, followed(op.dot)) {
            (None, false) => wrong.push(format!(
                "{key}: lost write {} of {value} (hlc {:?}; siblings {:?})",
                op.dot,
                op.hlc,
                siblings.iter().map(|s| s.dot).collect::<Vec<_>>()
            )),
            (Some(_), true) => wrong.push(format!(
                "{key}: write {} of {value} still shown after a later write or delete",
                op.dot
            )),
            (Some(s), false) if &s.value != value => wrong.push(format!(
                "{key}: write {} shows {} instead of {value}",
                op.dot, s.value
            )),
            _ => {}
        }
    }
    for (dot, past) in &unknown_pasts {
        let sibling = siblings.iter().find(|s| s.dot == *dot);
        // The only writes the sim did not make are the resolutions of keys
        // the room put under `reconcile` (`rc/`, and `m/` or `rc/` by a room
        // policy some peer set).
        if !sibling.is_some_and(|s| s.resolution) {
            wrong.push(format!("{key}: sibling {dot} was never written"));
        } else if followed_by_known(*dot) {
            wrong.push(format!(
                "{key}: resolution {dot} still shown after a later write or delete"
            ));
        } else if past.is_none() {
            wrong.push(format!("{key}: resolution {dot}: its past is unknown"));
        }
    }
    // The key shows one of its siblings (LWW: the latest by (hlc, peer,
    // seq) of the writes the model knows), or nothing.
    let values: Vec<Value> = siblings.iter().map(|s| parsed(&s.value)).collect();
    if siblings.is_empty() != shown.is_null() || (!siblings.is_empty() && !values.contains(shown)) {
        wrong.push(format!("{key}: shows {shown}, siblings {values:?}"));
    }
    let lww = key.starts_with("r/") || key.starts_with("big/");
    let latest = siblings
        .iter()
        .map(|s| {
            known
                .get(&s.dot)
                .map(|o| (o.hlc, o.dot.peer, o.dot.seq, &o.op))
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|mut w| {
            w.sort_by_key(|(hlc, peer, seq, _)| (*hlc, *peer, *seq));
            w.pop()
        });
    if let (true, Some((_, _, _, Op::Write(value)))) = (lww, latest) {
        if *shown != parsed(value) {
            wrong.push(format!("{key}: shows {shown}, the latest write is {value}"));
        }
    }
}

fn check_counter(key: &str, ops: &[Acked], shown: &Value, wrong: &mut Vec<String>) {
    let deletes: Vec<&Acked> = ops.iter().filter(|o| matches!(o.op, Op::Delete)).collect();
    let surviving: Vec<(EventId, i64)> = ops
        .iter()
        .filter_map(|o| match o.op {
            Op::Increment(by) if !deletes.iter().any(|d| follows(&d.past, o.dot)) => {
                Some((o.dot, by))
            }
            _ => None,
        })
        .collect();
    let expected = if surviving.is_empty() {
        Value::Null
    } else {
        Value::from(surviving.iter().map(|(_, by)| by).sum::<i64>())
    };
    if *shown != expected {
        wrong.push(format!(
            "{key}: counter shows {shown}, expected {expected} from increments {surviving:?} \
             ({} deletes)",
            deletes.len()
        ));
    }
}

fn check_set(key: &str, ops: &[Acked], shown: &Value, wrong: &mut Vec<String>) {
    let members: Vec<Value> = shown.as_array().cloned().unwrap_or_default();
    // By the member's JSON text, normalized.
    let mut expected: BTreeMap<String, bool> = BTreeMap::new();
    for add in ops {
        let Op::Add(member) = &add.op else { continue };
        let removed = ops.iter().any(|o| match &o.op {
            Op::Remove(m) => m == member && follows(&o.past, add.dot),
            Op::Delete => follows(&o.past, add.dot),
            _ => false,
        });
        *expected.entry(parsed(member).to_string()).or_default() |= !removed;
    }
    for (member, present) in &expected {
        let value: Value = serde_json::from_str(member).unwrap_or_default();
        match (present, members.contains(&value)) {
            (true, false) => wrong.push(format!("{key}: lost {member}")),
            (false, true) => wrong.push(format!("{key}: {member} back after its removal")),
            _ => {}
        }
    }
    for member in &members {
        if !expected.contains_key(&member.to_string()) {
            wrong.push(format!("{key}: {member} was never added"));
        }
    }
}

/// Part of the causal past of `dot`, from the event as some engine keeps
/// it: what it observed, its dependencies, and its writer's previous event
/// (each with everything before it).
fn followed_by(engines: &[&ReconciliationEngine], dot: EventId) -> Option<VectorClock> {
    let find = |id: EventId| {
        engines.iter().find_map(|e| {
            e.log().get(id).cloned().or_else(|| {
                e.archive()
                    .run_of(id)
                    .and_then(|run| run.iter().find(|x| x.id == id).cloned())
            })
        })
    };
    // What an event names as its past: its dependencies, what it observed
    // (a register write), and its origin's previous event.
    let direct = |event: &cpc_sync::protocol::P2PEvent| {
        let mut past = event.deps.clone();
        if let Operation::Register(RegisterOp::Write { observed, .. }) = &event.op {
            past.merge(observed);
        }
        past.observe(event.id.peer, event.id.seq - 1);
        past
    };
    // Closed over: the pasts of every event in it, as far as the logs and
    // archives still hold them (a resolution written before its writer's
    // restart observes the siblings it settled, not what those observed).
    let mut past = direct(&find(dot)?);
    let mut done = VectorClock::new();
    loop {
        let mut grew = false;
        let todo: Vec<(cpc_sync::protocol::PeerId, u64)> = past.iter().collect();
        for (peer, upto) in todo {
            for seq in done.get(peer) + 1..=upto {
                if let Some(event) = find(EventId::new(peer, seq)) {
                    let before = past.clone();
                    past.merge(&direct(&event));
                    grew |= past != before;
                }
            }
            done.observe(peer, upto);
        }
        if !grew {
            return Some(past);
        }
    }
}

/// The causal past of each event `engine`'s peer wrote since it began
/// recording its apply order (since its last restart): the clock it had
/// just before.
fn own_pasts(engine: &ReconciliationEngine, into: &mut BTreeMap<EventId, VectorClock>) {
    let mut have = VectorClock::new();
    for entry in engine.apply_order() {
        match entry {
            JournalEntry::Loaded(clock) => have.merge(clock),
            JournalEntry::Applied(id) => {
                if id.peer == engine.peer() {
                    into.insert(*id, have.clone());
                }
                have.observe(id.peer, id.seq);
            }
        }
    }
}
