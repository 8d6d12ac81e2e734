//! What carrying the superseders costs a snapshot and a fold: the rounds
//! workload of `protocol::testing::workload` (seed 7) applied unsigned,
//! everything folded, then the snapshot encoded five times (the best
//! kept). BENCHMARKS.md's "Issue 17, fifty-ninth session" was measured
//! so, against the build before (51df18b).
//!
//! ```text
//! cargo run --profile bench --features testing --example evidence_cost
//! ```

use std::time::Instant;

use cpc_sync::protocol::testing::workload;
use cpc_sync::protocol::{EngineConfig, ReconciliationEngine, StateSnapshot};

fn main() {
    // (writes, writers, keys): keys written once; a few writers a key;
    // every key overwritten by 64 writers.
    let states = [
        (1_000_000, 64, 1_000_000),
        (100_000, 4, 1_000),
        (100_000, 4, 100),
        (1_000_000, 64, 10_000),
    ];
    for (writes, writers, keys) in states {
        let mut engine = ReconciliationEngine::new(workload::reader(), EngineConfig::default());
        for event in workload::rounds(writes, writers, keys, 5, 7) {
            engine.receive(event, 1 << 40).expect("taken");
        }
        let all = engine.clock().clone();
        let started = Instant::now();
        engine.compact(&all);
        let fold = started.elapsed().as_secs_f64() * 1e3;
        let mut encode = f64::MAX;
        let mut bytes = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            bytes = engine.encode_snapshot();
            encode = encode.min(started.elapsed().as_secs_f64() * 1e3);
        }
        let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
        let live = snapshot.live.iter().filter(|l| **l).count();
        println!(
            "{writes} writes, {writers} writers, {keys} keys: snapshot {} B, {} events ({live} live), \
             fold {fold:.1} ms, encode (best of 5) {encode:.1} ms",
            bytes.len(),
            snapshot.events.len(),
        );
    }
}
