//! Anti-entropy cost: two peers holding 1M events that differ by d events.
//! Measures bytes each way beyond the missing events' own bytes, round
//! trips, and time to settle. `cargo bench --bench sync_overhead`
//! (`CPC_BENCH_EVENTS=n` for another size).

use std::time::Instant;

/// Wall time for the nodes: after every event's timestamp.
const NOW: u64 = 1 << 40;

use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, JsonValue, P2PEvent, PeerId, ReconciliationEngine};

fn config() -> SyncConfig {
    SyncConfig {
        compact_after: usize::MAX,
        ..SyncConfig::default()
    }
}

/// `total` events from `ORIGINS` writers over 10k keys, in causal order.
fn history(total: usize, origins: u64) -> Vec<P2PEvent> {
    let mut writers: Vec<ReconciliationEngine> = (1..=origins)
        .map(|p| ReconciliationEngine::new(PeerId(p * 0x1111_1111), EngineConfig::default()))
        .collect();
    let mut events = Vec::with_capacity(total);
    let mut i = 0;
    while events.len() < total {
        let w = i % origins as usize;
        let value = JsonValue::parse(&(i % 1000).to_string()).expect("number");
        events.push(
            writers[w]
                .set(&format!("key{}", i % 10_000), value, 1_000 + i as u64)
                .expect("set"),
        );
        i += 1;
    }
    events
}

fn node_with(events: &[P2PEvent], id: u64) -> SyncNode {
    let mut engine = ReconciliationEngine::new(PeerId(id), EngineConfig::default());
    for e in events {
        engine.receive(e.clone(), u64::MAX / 2).expect("taken");
    }
    engine.digest();
    SyncNode::new(engine, config())
}

struct Outcome {
    bytes: [usize; 2],
    event_bytes: usize,
    rounds: usize,
    micros: u128,
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

/// Connects two nodes and moves frames until both go quiet.
fn settle(a: &mut SyncNode, b: &mut SyncNode) -> Outcome {
    let start = Instant::now();
    a.connect(b.peer(), NOW);
    b.connect(a.peer(), NOW);
    let mut out = Outcome {
        bytes: [0; 2],
        event_bytes: 0,
        rounds: 0,
        micros: 0,
    };
    loop {
        let (to_b, to_a) = (sends(a), sends(b));
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        out.rounds += 1;
        for (dir, frames) in [(0, &to_b), (1, &to_a)] {
            for f in frames {
                out.bytes[dir] += f.len();
                if let Ok(Decoded::Message(Message::Events(events))) = wire::decode(f) {
                    out.event_bytes += events.iter().map(|e| e.encode().len()).sum::<usize>();
                }
            }
        }
        for f in &to_b {
            b.receive_frame(a.peer(), f, NOW);
        }
        for f in &to_a {
            a.receive_frame(b.peer(), f, NOW);
        }
    }
    out.micros = start.elapsed().as_micros();
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total: usize = std::env::var("CPC_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    for origins in [2u64, 16] {
        run(total, origins);
    }
}

fn run(total: usize, origins: u64) {
    let events = history(total, origins);
    println!("\n{total} events from {origins} origins over 10k keys");
    println!("| d | bytes a->b | bytes b->a | missing events' bytes | overhead a->b | overhead b->a | round trips | time |");
    println!("|---|---|---|---|---|---|---|---|");
    for d in [0usize, 1, 100, 10_000] {
        let mut a = node_with(&events, 0xA);
        // b lacks the last d events (the newest of every origin).
        let mut b = node_with(&events[..total - d], 0xB);
        let o = settle(&mut a, &mut b);
        assert_eq!(a.engine().clock(), b.engine().clock(), "settled");
        // Digests cross in round 1, events come back in round 2: the answer
        // to one digest is one round trip.
        let round_trips = o.rounds.div_ceil(2);
        println!(
            "| {d} | {} | {} | {} | {} B | {} B | {round_trips} | {:.2} ms |",
            o.bytes[0],
            o.bytes[1],
            o.event_bytes,
            o.bytes[0] - o.event_bytes,
            o.bytes[1],
            o.micros as f64 / 1000.0
        );
    }
    println!(
        "goal: one round trip; overhead <= 64 B + 12 B x {origins} origins = {} B each way",
        64 + 12 * origins
    );
}
