//! Deterministic workloads for the core benchmarks, built directly as
//! events (what 64 live engines would send, without running them), and the
//! anti-entropy exchange between two sync nodes. Shared by the native
//! benches and the wasm bench build (`src/browser/bench.rs`); each uses
//! part of it.

use super::Rng;
use crate::protocol::event::RegisterOp;
use crate::protocol::seal;
use crate::protocol::sync::wire::{self, Decoded, Message};
use crate::protocol::sync::{Output, SyncConfig, SyncNode};
use crate::protocol::{
    EngineConfig, EventId, Identity, JsonValue, Operation, P2PEvent, PeerId, ReconciliationEngine,
    Timestamp, VectorClock,
};

/// The `i`th writer's id: spread out, as real ids are.
pub fn peer(i: u64) -> PeerId {
    PeerId(0x1000_0000_0000 + i * 0x9E37_79B9)
}

/// A peer that writes in none of these workloads, to take them in.
pub fn reader() -> PeerId {
    PeerId(1)
}

fn write(
    id: EventId,
    key: &str,
    value: u64,
    observed: VectorClock,
    deps: VectorClock,
    ms: u64,
) -> P2PEvent {
    P2PEvent {
        id,
        key: key.into(),
        op: Operation::Register(RegisterOp::Write {
            value: JsonValue::parse(&value.to_string()).expect("number"),
            observed,
            resolution: false,
        }),
        deps,
        hlc: Timestamp::new(ms, 0),
        seal: None,
    }
}

/// `total` register writes from `peers` writers over `keys` keys, in rounds:
/// every writer writes `per_round` events, then hears every other writer's
/// round. So events carry real dependencies (the others' previous round) and
/// real observed siblings, and writes of one round to one key are concurrent.
/// Returned in causal order. `keys == total as u64` writes every key once.
pub fn rounds(total: usize, peers: u64, keys: u64, per_round: usize, seed: u64) -> Vec<P2PEvent> {
    let every_key_once = keys == total as u64;
    let mut rng = Rng::new(seed);
    let mut events = Vec::with_capacity(total);
    let mut seq = vec![0u64; peers as usize];
    // Per key: the siblings every writer knows at the start of a round.
    let mut siblings: Vec<Vec<EventId>> = vec![Vec::new(); keys as usize];
    // Per key: the dots written this round, emptied at its end (the keys
    // written listed in `touched`: a fresh vector a round was a million
    // empty vectors a round, most of building a 1M-key workload).
    let mut written: Vec<Vec<EventId>> = vec![Vec::new(); keys as usize];
    let mut touched = Vec::new();
    let mut round = 0u64;
    while events.len() < total {
        let start_seq = seq.clone();
        for (w, next) in seq.iter_mut().enumerate() {
            for i in 0..per_round {
                if events.len() == total {
                    break;
                }
                let k = if every_key_once {
                    events.len()
                } else {
                    (rng.next_u64() % keys) as usize
                };
                *next += 1;
                let id = EventId::new(peer(w as u64), *next);
                let mut observed: VectorClock =
                    siblings[k].iter().map(|d| (d.peer, d.seq)).collect();
                if let Some(own) = written[k].iter().rev().find(|d| d.peer == id.peer) {
                    observed.observe(own.peer, own.seq);
                }
                // The first event of a round depends on everyone's last round.
                let deps: VectorClock = if i == 0 && round > 0 {
                    (0..peers as usize)
                        .filter(|&o| o != w && start_seq[o] > 0)
                        .map(|o| (peer(o as u64), start_seq[o]))
                        .collect()
                } else {
                    VectorClock::new()
                };
                let ms = 1_000_000 + events.len() as u64;
                events.push(write(
                    id,
                    &format!("key{k}"),
                    rng.next_u64() % 1000,
                    observed,
                    deps,
                    ms,
                ));
                if written[k].is_empty() {
                    touched.push(k);
                }
                written[k].retain(|d| d.peer != id.peer);
                written[k].push(id);
            }
        }
        for k in touched.drain(..) {
            siblings[k] = std::mem::take(&mut written[k]);
        }
        round += 1;
    }
    events
}

/// [`rounds`] in a signed room: each writer is an identity (its peer id
/// derived from its key, in every id, dependency and observed dot), and each
/// writer's events of one round are one sealed run of `per_round` events.
pub fn signed_rounds(
    total: usize,
    peers: u64,
    keys: u64,
    per_round: usize,
    seed: u64,
) -> Vec<P2PEvent> {
    let identities: Vec<Identity> = (0..peers).map(|i| Identity::from_seed(900 + i)).collect();
    let ids: std::collections::HashMap<PeerId, usize> =
        (0..peers).map(|i| (peer(i), i as usize)).collect();
    let map = |p: PeerId| identities[ids[&p]].peer();
    let remap =
        |clock: &VectorClock| -> VectorClock { clock.iter().map(|(p, n)| (map(p), n)).collect() };
    let mut events: Vec<P2PEvent> = rounds(total, peers, keys, per_round, seed)
        .into_iter()
        .map(|mut e| {
            e.id.peer = map(e.id.peer);
            e.deps = remap(&e.deps);
            if let Operation::Register(RegisterOp::Write { observed, .. }) = &mut e.op {
                *observed = remap(observed);
            }
            e
        })
        .collect();
    // Each writer's events of a round are consecutive in the stream.
    let mut start = 0;
    while start < events.len() {
        let origin = events[start].id.peer;
        let mut end = start + 1;
        while end < events.len() && events[end].id.peer == origin && end - start < per_round {
            end += 1;
        }
        let identity = &identities[identities
            .iter()
            .position(|i| i.peer() == origin)
            .expect("a writer")];
        seal::seal(identity, &mut events[start..end]);
        start = end;
    }
    events
}

/// `events` in causal order with a fraction displaced later (by up to
/// `reach` positions): those arrive before their dependencies' successors
/// are in, so part of the stream goes through the holding queue.
pub fn displace(events: &[P2PEvent], fraction: f64, reach: usize, seed: u64) -> Vec<P2PEvent> {
    let mut rng = Rng::new(seed);
    let mut keyed: Vec<(usize, &P2PEvent)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let late = rng.chance(fraction);
            let at = if late {
                i + 1 + (rng.next_u64() as usize % reach)
            } else {
                i
            };
            (at, e)
        })
        .collect();
    keyed.sort_by_key(|(at, _)| *at);
    keyed.into_iter().map(|(_, e)| e.clone()).collect()
}

/// `n` peers each writing once: to its own key, or all to one key.
pub fn one_write_each(n: u64, same_key: bool) -> Vec<P2PEvent> {
    (0..n)
        .map(|i| {
            let key = if same_key {
                "shared".to_string()
            } else {
                format!("key{i}")
            };
            write(
                EventId::new(peer(i), 1),
                &key,
                i,
                VectorClock::new(),
                VectorClock::new(),
                1_000_000 + i,
            )
        })
        .collect()
}

/// [`one_write_each`] in a signed room: each write sealed by its origin,
/// whose id is its key's.
pub fn one_write_each_signed(n: u64, same_key: bool) -> Vec<P2PEvent> {
    one_write_each(n, same_key)
        .into_iter()
        .zip(0..)
        .map(|(event, i)| {
            let identity = Identity::from_seed(i);
            let mut run = [P2PEvent {
                id: EventId::new(identity.peer(), 1),
                ..event
            }];
            seal::seal(&identity, &mut run);
            let [event] = run;
            event
        })
        .collect()
}

/// Verifies every run's seal, then applies the events: what a peer of a
/// signed room does with what it receives.
pub fn apply_verified(engine: &mut ReconciliationEngine, events: Vec<P2PEvent>, now: u64) {
    let (verified, refused) = seal::open_seals(events);
    assert!(refused.is_empty(), "{refused:?}");
    let _ = engine.receive_runs(verified, now);
}

/// `runs` runs of `len` consecutive events of one origin, unsealed, and
/// the identity to seal them with.
pub fn runs_to_seal(len: usize, runs: usize) -> (Identity, Vec<Vec<P2PEvent>>) {
    let identity = Identity::from_seed(42);
    let all: Vec<Vec<P2PEvent>> = (0..runs)
        .map(|r| {
            (0..len)
                .map(|i| {
                    let seq = (r * len + i) as u64 + 1;
                    write(
                        EventId::new(identity.peer(), seq),
                        &format!("key{}", seq % 10_000),
                        seq,
                        VectorClock::new(),
                        VectorClock::new(),
                        1_000_000 + seq,
                    )
                })
                .collect()
        })
        .collect();
    (identity, all)
}

// Anti-entropy between two sync nodes (the sync-overhead benchmarks).

/// Wall time for sync nodes: after every event's timestamp.
const SYNC_NOW: u64 = 1 << 40;

pub(super) fn sync_config() -> SyncConfig {
    SyncConfig {
        compact_after: usize::MAX,
        ..SyncConfig::default()
    }
}

/// `total` events from `origins` writers over 10k keys, in causal order.
pub fn history(total: usize, origins: u64) -> Vec<P2PEvent> {
    let mut writers: Vec<ReconciliationEngine> = (1..=origins)
        .map(|p| ReconciliationEngine::new(PeerId(p * 0x1111_1111), EngineConfig::default()))
        .collect();
    let mut events = Vec::with_capacity(total);
    let mut i = 0;
    while events.len() < total {
        let w = i % origins as usize;
        // The round number: every write changes its key's value (libraries
        // that skip writes of an unchanged value write as much as we do).
        let value = JsonValue::parse(&(i / 10_000).to_string()).expect("number");
        events.push(
            writers[w]
                .set(&format!("key{}", i % 10_000), value, 1_000 + i as u64)
                .expect("set"),
        );
        i += 1;
    }
    events
}

/// An engine of `peer` that has applied `events`, its digest up to date.
pub(super) fn engine_with(events: &[P2PEvent], peer: PeerId) -> ReconciliationEngine {
    let mut engine = ReconciliationEngine::new(peer, EngineConfig::default());
    for e in events {
        engine.receive(e.clone(), u64::MAX / 2).expect("taken");
    }
    engine.digest();
    engine
}

/// A sync node that has applied `events`.
pub fn node_with(events: &[P2PEvent], id: u64) -> SyncNode {
    SyncNode::new(engine_with(events, PeerId(id)), sync_config())
}

/// What settling two nodes cost: bytes each way (a to b, b to a), the
/// event batches' bytes among them and how many events they carried, and
/// message rounds.
pub struct Outcome {
    pub bytes: [usize; 2],
    pub event_bytes: usize,
    pub events: usize,
    pub rounds: usize,
}

/// The frames a node sends, without the round-trip probes (`Ping`/`Pong`
/// on connect): they measure the link, not anti-entropy.
fn sends(node: &mut SyncNode) -> Vec<Vec<u8>> {
    node.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            _ => None,
        })
        .filter(|f| {
            !matches!(
                wire::decode(f),
                Ok(Decoded::Message(
                    Message::Ping { .. } | Message::Pong { .. }
                ))
            )
        })
        .collect()
}

/// What a node sends now, its timer run while it is due at once (the
/// rest of an answer, a slice a task): back to back, not a round more.
fn sends_now(node: &mut SyncNode) -> Vec<Vec<u8>> {
    let mut frames = sends(node);
    while node.next_timer() <= SYNC_NOW {
        node.tick(SYNC_NOW);
        frames.extend(sends(node));
    }
    frames
}

/// Connects two nodes and moves frames until both go quiet.
pub fn settle(a: &mut SyncNode, b: &mut SyncNode) -> Outcome {
    // Their gossip timers set, as a page's are before a peer connects:
    // a tick at `SYNC_NOW` does only what is due at once.
    a.tick(SYNC_NOW);
    b.tick(SYNC_NOW);
    a.connect(b.peer(), SYNC_NOW);
    b.connect(a.peer(), SYNC_NOW);
    let mut out = Outcome {
        bytes: [0; 2],
        event_bytes: 0,
        events: 0,
        rounds: 0,
    };
    loop {
        let (to_b, to_a) = (sends_now(a), sends_now(b));
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        out.rounds += 1;
        for (dir, frames) in [(0, &to_b), (1, &to_a)] {
            for f in frames {
                out.bytes[dir] += f.len();
                if let Ok(Decoded::Message(Message::Events(events))) = wire::decode(f) {
                    out.event_bytes += P2PEvent::encode_batch(&events).len();
                    out.events += events.len();
                }
            }
        }
        for f in &to_b {
            b.receive_frame(a.peer(), f, SYNC_NOW);
        }
        for f in &to_a {
            a.receive_frame(b.peer(), f, SYNC_NOW);
        }
    }
    out
}
