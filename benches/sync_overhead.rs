//! Anti-entropy cost: two peers holding 1M events that differ by d events.
//! Measures bytes each way beyond the missing events' own bytes, round
//! trips, and time to settle. `cargo bench --bench sync_overhead`
//! (`CPC_BENCH_EVENTS=n` for another size).

use std::time::Instant;

use cpc_sync::protocol::testing::workload::{history, node_with, settle};

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
    println!("| d | bytes a->b | bytes b->a | event batches' bytes | per event | beyond the batches a->b | b->a | round trips | time |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for d in [0usize, 1, 100, 10_000] {
        let mut a = node_with(&events, 0xA);
        // b lacks the last d events (the newest of every origin).
        let mut b = node_with(&events[..total - d], 0xB);
        let start = Instant::now();
        let o = settle(&mut a, &mut b);
        let micros = start.elapsed().as_micros();
        assert_eq!(a.engine().clock(), b.engine().clock(), "settled");
        // Digests cross in round 1, events come back in round 2: the answer
        // to one digest is one round trip.
        let round_trips = o.rounds.div_ceil(2);
        let per_event = if d == 0 {
            0.0
        } else {
            o.bytes[0] as f64 / d as f64
        };
        println!(
            "| {d} | {} | {} | {} | {per_event:.1} B | {} B | {} B | {round_trips} | {:.2} ms |",
            o.bytes[0],
            o.bytes[1],
            o.event_bytes,
            o.bytes[0] - o.event_bytes,
            o.bytes[1],
            micros as f64 / 1000.0
        );
    }
    println!(
        "goal: one round trip; overhead <= 64 B + 12 B x {origins} origins = {} B each way",
        64 + 12 * origins
    );
}
