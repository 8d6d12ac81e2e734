//! Times the snapshot path and causal apply with wall clocks, a few runs
//! each, for an interleaved A/B of two builds on a noisy machine (criterion
//! builds every group's workload before the one asked for; this builds
//! one). BENCHMARKS.md's "Issue 17, fourth session" was measured so.
//!
//! ```text
//! cargo run --profile bench --features testing --example snapshot_timing -- <what> [runs]
//! ```
//!
//! `what`:
//! - `encode`: encode the snapshot of the rounds workload's 1M entities
//!   (64 writers, unsigned);
//! - `load`: decode it, then `from_snapshot` into a fresh engine;
//! - `own`: the same for a signed room's 100k entities in runs of 16, as
//!   a page's cold start loads its own stored snapshot;
//! - `apply`: causal apply of 1M events, 20% displaced (criterion's
//!   `causal_apply` workload);
//! - `digest`: the Merkle digest of 200k entities written locally, from
//!   nothing (what a page computes after a cold start or a large sync);
//! - `c12`: C1.2's 30,000 signed one-write frames through a signed node
//!   (criterion's `many_peers` row "through a signed node"), and the batch
//!   verification of their 30,000 seals alone, its floor;
//! - `c12-thread`: the same frames through a node that hands its seals
//!   out, answered at once with verdicts computed beforehand: the work
//!   left on a page's thread when Web Workers verify.
//! - `heavy-thread`: the same for the run-heavy workload (4 writers,
//!   25,000 updates each in runs of 100);
//! - `relay-thread`: `heavy-thread` through a node that floods what it
//!   takes to 4 more peers (`CPC_LISTENERS=n`: n), as the room peer
//!   relays to its pages;
//! - `write-thread`: a page making 25,000 writes in bursts of 100, signed
//!   and stored, with 4 links (`CPC_LISTENERS=n`: n).
//!
//! The snapshots are written once to the temporary directory and read
//! from there by later runs, so `load` and `own` time nothing but the load.
//!
//! On Linux, `load` and `apply` also print how the time split between
//! the process and the kernel, and the page faults taken: a run that
//! stores a million events touches ~180 MB of fresh memory, and on a
//! virtual machine the kernel's share of faulting it in was 15-20% of
//! causal apply's wall time (2026-12-04).

use std::path::PathBuf;
use std::time::Instant;

use cpc_sync::protocol::seal;
use cpc_sync::protocol::testing::{wire, workload};
use cpc_sync::protocol::{EngineConfig, JsonValue, PeerId, ReconciliationEngine, StateSnapshot};

const NOW: u64 = 1 << 40;

fn engine() -> ReconciliationEngine {
    ReconciliationEngine::new(workload::reader(), EngineConfig::default())
}

/// The state of `n` entities, unsigned or in a signed room.
fn state(n: usize, signed: bool) -> ReconciliationEngine {
    let mut state = engine();
    if signed {
        workload::apply_verified(
            &mut state,
            workload::signed_rounds(n, 64, n as u64, 16, 9),
            NOW,
        );
    } else {
        for event in workload::rounds(n, 64, n as u64, 16, 9) {
            state.receive(event, NOW).expect("taken");
        }
    }
    state
}

/// The snapshot bytes of [`state`], from the temporary directory if an
/// earlier run wrote them.
fn snapshot(n: usize, signed: bool) -> Vec<u8> {
    let file: PathBuf = std::env::temp_dir().join(format!(
        "cpc-snapshot-timing-{n}{}.bin",
        if signed { "-signed" } else { "" }
    ));
    if let Ok(bytes) = std::fs::read(&file) {
        return bytes;
    }
    let bytes = state(n, signed).encode_snapshot();
    std::fs::write(&file, &bytes).expect("writes the temporary file");
    bytes
}

fn load(bytes: &[u8], runs: usize) {
    for _ in 0..runs {
        let cpu = CpuTimes::now();
        let start = Instant::now();
        let decoded = StateSnapshot::decode_shared(bytes).expect("decodes");
        let decode = start.elapsed();
        let decode_cpu = CpuTimes::since(cpu);
        let cpu = CpuTimes::now();
        let loaded =
            ReconciliationEngine::from_snapshot(PeerId(2), EngineConfig::default(), decoded)
                .expect("loads");
        println!(
            "decode {decode:?}{decode_cpu}, decode and load {:?} (the load{})",
            start.elapsed(),
            CpuTimes::since(cpu)
        );
        // Freed untimed: a page keeps its engine.
        drop(loaded);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let runs = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    match what.as_str() {
        "encode" => {
            let state = state(1_000_000, false);
            for _ in 0..runs {
                let start = Instant::now();
                let bytes = state.encode_snapshot();
                println!("encode {:?} ({} bytes)", start.elapsed(), bytes.len());
            }
        }
        "load" => load(&snapshot(1_000_000, false), runs),
        "own" => load(&snapshot(100_000, true), runs),
        "apply" => {
            let events = workload::rounds(1_000_000, 64, 10_000, 16, 7);
            let order = workload::displace(&events, 0.2, 2_000, 8);
            for _ in 0..runs {
                let mut times = Vec::new();
                let mut cpu = String::new();
                // `CPC_APPLY_ONLY=displaced|ordered` times one of the two
                // (for a profile of either alone).
                let only = std::env::var("CPC_APPLY_ONLY").unwrap_or_default();
                let runs = match only.as_str() {
                    "displaced" => vec![order.clone()],
                    "ordered" => vec![events.clone()],
                    _ => vec![order.clone(), events.clone()],
                };
                for events in runs {
                    let before = CpuTimes::now();
                    let start = Instant::now();
                    let mut engine = engine();
                    for event in events {
                        engine.receive(event, NOW).expect("taken");
                    }
                    times.push(start.elapsed());
                    cpu += &CpuTimes::since(before);
                    assert_eq!(engine.stats().applied, 1_000_000);
                    drop(engine);
                }
                println!("causal apply {times:?} (displaced, then in causal order){cpu}");
            }
        }
        "digest" => {
            for _ in 0..runs {
                let mut engine = engine();
                for i in 0..200_000u64 {
                    let value = JsonValue::parse(&format!("{{\"n\":{i},\"name\":\"entity {i}\"}}"))
                        .expect("JSON");
                    engine
                        .set(&format!("key{i}"), value, NOW + i / 100)
                        .expect("a write");
                }
                let start = Instant::now();
                engine.digest();
                let whole = start.elapsed();
                // Then the upkeep: one write, then the root, 1,000 times.
                let start = Instant::now();
                for i in 0..1_000u64 {
                    engine
                        .set(
                            &format!("key{i}"),
                            JsonValue::parse("1").expect("JSON"),
                            NOW + 2_000 + i,
                        )
                        .expect("a write");
                    engine.digest();
                }
                println!(
                    "digest of 200k entities {whole:?}; a root after each of 1,000 writes {:?} each",
                    start.elapsed() / 1_000
                );
            }
        }
        "c12" => {
            let frames = wire::one_write_each(30_000, false);
            let events = workload::one_write_each_signed(30_000, false);
            for _ in 0..runs {
                let start = Instant::now();
                let mut receiver = wire::Receiver::new();
                for frame in &frames {
                    receiver.receive_at(frame, 0).expect("taken");
                }
                receiver.finish(0).expect("taken");
                let node = start.elapsed();
                let events = events.clone();
                let start = Instant::now();
                let (_, refused) = seal::open_seals(events);
                assert!(refused.is_empty());
                println!(
                    "C1.2 through a signed node {node:?}, batch verification alone {:?}",
                    start.elapsed()
                );
                drop(receiver);
            }
        }
        "c12-thread" | "heavy-thread" | "relay-thread" => {
            // What stays on a page's thread when workers verify: the node
            // hands its seals out, and each batch is answered with the
            // verdicts a first, untimed pass computed (the same batches
            // come out each time). C1.2, or run-heavy at the side-by-side
            // sizes.
            let frames = if what == "c12-thread" {
                wire::one_write_each(30_000, false)
            } else {
                wire::run_heavy(4, 25_000, 10_000, 100)
            };
            let mut verdicts = std::collections::HashMap::new();
            let listeners = std::env::var("CPC_LISTENERS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(4);
            for timed in std::iter::once(false).chain(std::iter::repeat_n(true, runs)) {
                let start = Instant::now();
                let (_, node) = match what.as_str() {
                    "relay-thread" => wire::relay_thread(listeners, &frames, &mut verdicts),
                    _ => wire::page_thread(&frames, &mut verdicts),
                }
                .expect("taken");
                if timed {
                    println!("{what}: the page thread's work {:?}", start.elapsed());
                }
                drop(node);
            }
        }
        "write-thread" => {
            // A page writing run-heavy's 25,000 updates in bursts of 100,
            // stored, to `CPC_LISTENERS` links (4).
            let links = std::env::var("CPC_LISTENERS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(4);
            for _ in 0..runs {
                let start = Instant::now();
                let node = wire::write_thread(links, 25_000, 100);
                println!("write-thread: {links} links {:?}", start.elapsed());
                drop(node);
            }
        }
        _ => {
            eprintln!(
                "usage: snapshot_timing encode|load|own|apply|digest|c12|c12-thread|heavy-thread|relay-thread|write-thread [runs]"
            );
            std::process::exit(2);
        }
    }
}

/// The process's time in itself and in the kernel, and its minor page
/// faults, from `/proc/self/stat` (Linux; `None` elsewhere).
#[derive(Clone, Copy)]
struct CpuTimes {
    faults: u64,
    user_ticks: u64,
    kernel_ticks: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command's closing parenthesis, from the
        // state (field 3): minflt is field 10, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let field = |n: usize| rest.split(' ').nth(n - 3)?.parse().ok();
        Some(CpuTimes {
            faults: field(10)?,
            user_ticks: field(14)?,
            kernel_ticks: field(15)?,
        })
    }

    /// What passed since `before`, as text to print after a timing
    /// (nothing where it cannot be read).
    fn since(before: Option<CpuTimes>) -> String {
        let (Some(before), Some(now)) = (before, CpuTimes::now()) else {
            return String::new();
        };
        // Clock ticks are a hundredth of a second on Linux (USER_HZ).
        format!(
            " [user {} ms, kernel {} ms, {} page faults]",
            (now.user_ticks - before.user_ticks) * 10,
            (now.kernel_ticks - before.kernel_ticks) * 10,
            now.faults - before.faults
        )
    }
}
