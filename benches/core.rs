//! Native benchmarks of the protocol core (criterion): causal apply, many
//! peers (also with every update verified), seals, snapshots. Sizes are printed once, before the timings.
//! `cargo bench --bench core`.

use std::io::Write;
use std::time::Duration;

use cpc_sync::protocol::seal;
use cpc_sync::protocol::snapshot::Checks;
use cpc_sync::protocol::testing::{wire, workload};
use cpc_sync::protocol::{
    EngineConfig, P2PEvent, PeerId, ReconciliationEngine, StateSnapshot, Trust,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const NOW: u64 = 1 << 40;

fn engine() -> ReconciliationEngine {
    ReconciliationEngine::new(PeerId(1), EngineConfig::default())
}

fn apply(events: Vec<P2PEvent>) -> ReconciliationEngine {
    let mut e = engine();
    for event in events {
        e.receive(event, NOW).expect("taken");
    }
    e
}

fn causal_apply(c: &mut Criterion) {
    let events = workload::rounds(1_000_000, 64, 10_000, 16, 7);
    let order = workload::displace(&events, 0.2, 2_000, 8);
    let check = apply(order.clone());
    let held = check.stats().held;
    assert!(check.holding().is_empty());
    assert_eq!(
        check.state_json(),
        apply(events.clone()).state_json(),
        "order does not matter"
    );
    println!("causal_apply: 1M events, 64 peers, 10k keys, 20% displaced; {held} went through the holding queue");
    let mut group = c.benchmark_group("causal_apply");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("1M events, 20% out of causal order", |b| {
        b.iter_batched(|| order.clone(), apply, BatchSize::PerIteration)
    });
    group.bench_function("1M events, in causal order", |b| {
        b.iter_batched(|| events.clone(), apply, BatchSize::PerIteration)
    });
    group.finish();
}

fn many_peers(c: &mut Criterion) {
    let c12 = workload::one_write_each(30_000, false);
    let b31 = workload::one_write_each(1_540, true);
    let per_update = b31
        .iter()
        .map(|e| P2PEvent::encode_batch(std::slice::from_ref(e)).len())
        .sum::<usize>() as f64
        / b31.len() as f64;
    let merged = apply(c12.clone());
    let vv = postcard::to_allocvec(merged.clock())
        .expect("encodes")
        .len();
    println!("B3.1: {per_update:.1} bytes per update; C1.2: version vector of 30,000 peers encodes to {vv} bytes");
    let mut group = c.benchmark_group("many_peers");
    group.sample_size(20);
    group.bench_function("C1.2: 30,000 peers set one key each", |b| {
        b.iter_batched(|| c12.clone(), apply, BatchSize::PerIteration)
    });
    group.bench_function("B3.1: 1,540 peers set the same key", |b| {
        b.iter_batched(|| b31.clone(), apply, BatchSize::PerIteration)
    });
    // The same in a signed room: every update's seal verified first.
    let c12 = workload::one_write_each_signed(30_000, false);
    let b31 = workload::one_write_each_signed(1_540, true);
    let verified = |events| {
        let mut e = engine();
        workload::apply_verified(&mut e, events, NOW);
        e
    };
    group.bench_function("C1.2 verified: 30,000 peers set one key each", |b| {
        b.iter_batched(|| c12.clone(), verified, BatchSize::PerIteration)
    });
    group.bench_function("B3.1 verified: 1,540 peers set the same key", |b| {
        b.iter_batched(|| b31.clone(), verified, BatchSize::PerIteration)
    });
    // The path the browser benchmark's signed row runs: frames through a
    // signed node (decode, checksum, seal checks, batch verification,
    // apply, persist and digest), all frames arriving at once.
    let c12 = wire::one_write_each(30_000, false);
    let through_node = |frames: &[Vec<u8>]| {
        let mut receiver = wire::Receiver::new();
        for frame in frames {
            receiver.receive_at(frame, 0).expect("taken");
        }
        receiver.finish(0).expect("taken")
    };
    group.bench_function("C1.2 through a signed node: 30,000 frames", |b| {
        b.iter(|| through_node(&c12))
    });
    group.finish();
}

/// Seals: signing and verifying runs of 1 and of 1,024 events.
fn seals(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    for len in [1, 1024] {
        let (identity, runs) = workload::runs_to_seal(len, 1);
        let run = runs.into_iter().next().expect("one run");
        group.bench_function(format!("sign a run of {len}"), |b| {
            b.iter_batched(
                || run.clone(),
                |mut run| seal::seal(&identity, &mut run),
                BatchSize::SmallInput,
            )
        });
        let mut sealed = run.clone();
        seal::seal(&identity, &mut sealed);
        group.bench_function(format!("verify a run of {len}"), |b| {
            b.iter(|| seal::verify_run(&sealed).expect("verifies"))
        });
    }
    // B3.1's shape: 256 writers, one sealed event each, in one frame.
    let frame: Vec<P2PEvent> = workload::one_write_each_signed(256, true);
    group.bench_function("verify 256 lone seals one by one", |b| {
        b.iter(|| {
            frame
                .iter()
                .all(|e| seal::verify_run(std::slice::from_ref(e)).is_ok())
        })
    });
    group.bench_function("verify 256 lone seals as one frame (batched)", |b| {
        b.iter_batched(
            || frame.clone(),
            |events| assert!(seal::open_seals(events).1.is_empty()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).expect("in memory");
    z.finish().expect("in memory").len()
}

fn snapshot(c: &mut Criterion) {
    let events = workload::rounds(1_000_000, 64, 1_000_000, 16, 9);
    let state = apply(events);
    let bytes = state.encode_snapshot();
    let json = state.state_json();
    println!(
        "snapshot of {} entities: {} bytes; state JSON {} bytes, gzipped {} bytes",
        state.keys().count(),
        bytes.len(),
        json.len(),
        gzip_len(json.as_bytes())
    );
    let mut group = c.benchmark_group("snapshot");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("encode 1M entities", |b| b.iter(|| state.encode_snapshot()));
    group.bench_function("decode 1M entities", |b| {
        b.iter(|| StateSnapshot::decode(&bytes).expect("decodes"))
    });
    group.bench_function("decode to ready (from_snapshot)", |b| {
        b.iter(|| {
            let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
            ReconciliationEngine::from_snapshot(PeerId(2), EngineConfig::default(), snapshot)
                .expect("loads")
        })
    });
    // The same without freeing the engine inside the timing.
    group.bench_function("decode to ready, engine dropped untimed", |b| {
        b.iter_with_large_drop(|| {
            let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
            ReconciliationEngine::from_snapshot(PeerId(2), EngineConfig::default(), snapshot)
                .expect("loads")
        })
    });
    group.finish();
}

/// Issue 13's figure: a verified snapshot of 100k entities from 64 signed
/// origins (runs of 16 events, and of 1,024), against the unverifiable
/// entity-only encoding the snapshot used to be.
fn verified_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("verified snapshot");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for run in [16, 1024] {
        let events = workload::signed_rounds(100_000, 64, 100_000, run, 9);
        let mut state = engine();
        workload::apply_verified(&mut state, events, NOW);
        let bytes = state.encode_snapshot();
        let decoded = StateSnapshot::decode(&bytes).expect("decodes");
        let mut loaded = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
        let trust = Trust {
            signed: true,
            now_ms: Some(NOW),
        };
        loaded
            .load_snapshot(decoded.clone(), trust)
            .expect("verifies");
        assert_eq!(
            loaded.state_json(),
            state.state_json(),
            "loaded state differs"
        );
        let entities = decoded.rebuild(EngineConfig::default().hash_seed);
        let old = postcard::to_allocvec(&(state.clock(), &entities)).expect("encodes");
        println!(
            "verified snapshot, 100k entities, 64 origins, runs of {run}: {} bytes ({} gzipped); entity-only encoding {} bytes ({} gzipped)",
            bytes.len(),
            gzip_len(&bytes),
            old.len(),
            gzip_len(&old)
        );
        let checks = Checks {
            me: PeerId(2),
            own_seq: 0,
            signed: true,
            heads: true,
            max_origins: 1024,
        };
        group.bench_function(format!("encode (runs of {run})"), |b| {
            b.iter(|| state.encode_snapshot())
        });
        group.bench_function(format!("decode (runs of {run})"), |b| {
            b.iter(|| StateSnapshot::decode(&bytes).expect("decodes"))
        });
        group.bench_function(format!("verify (runs of {run})"), |b| {
            b.iter(|| decoded.verify(&checks).expect("verifies"))
        });
        group.bench_function(format!("decode, verify, load (runs of {run})"), |b| {
            b.iter(|| {
                let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
                let mut fresh = ReconciliationEngine::new(PeerId(2), EngineConfig::default());
                let trust = Trust {
                    signed: true,
                    now_ms: Some(NOW),
                };
                fresh.load_snapshot(snapshot, trust).expect("verifies");
                fresh
            })
        });
        // A page's cold start: its own stored snapshot, not verified again.
        group.bench_function(format!("decode, load our own (runs of {run})"), |b| {
            b.iter(|| {
                let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
                ReconciliationEngine::from_snapshot(PeerId(2), EngineConfig::default(), snapshot)
                    .expect("loads")
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    many_peers,
    seals,
    causal_apply,
    snapshot,
    verified_snapshot
);
criterion_main!(benches);
