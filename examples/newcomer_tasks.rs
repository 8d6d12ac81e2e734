//! The work a newcomer does in one go when it takes a signed room's
//! snapshot, natively: each call into its node (a frame in, its timer, a
//! batch of verdicts in) is what a page runs as one task. The room is `n` keys
//! written in bursts of `burst` (a sealed run each) and folded, so the
//! newcomer gets one snapshot of `n / burst` seals; `offload` hands them
//! out as a page with verifier Workers does (answered here, untimed);
//! `durable` gives the newcomer storage (a page's IndexedDB), acknowledged
//! at once; `durable-host` gives it to the room's host, which then offers
//! the snapshot its fold stored; `tail=N` has the host write N more keys
//! after its fold, which the newcomer takes from its log. The host's
//! longest calls while it serves the newcomer are printed too.
//!
//! ```text
//! cargo run --profile bench --features testing --example newcomer_tasks -- [n] [burst] [offload|inplace] [durable] [durable-host] [tail=N]
//! ```
//!
//! BENCHMARKS.md's "Issue 17, twentieth session" was measured so.

use std::time::{Duration, Instant};

use cpc_sync::protocol::seal;
use cpc_sync::protocol::sync::{LocalWrite, Output, SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, Identity, JsonValue, ReconciliationEngine};

const NOW: u64 = 1_700_000_000_000;

fn node(seed: u64, offload_seals: bool, durable: bool) -> SyncNode {
    let identity = Identity::from_seed(seed);
    let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let config = SyncConfig {
        identity: Some(identity),
        offload_seals,
        durable,
        ..SyncConfig::default()
    };
    SyncNode::new(engine, config)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let burst: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let flags: Vec<String> = args.collect();
    let flag = |name: &str| flags.iter().any(|f| f == name);
    let (offload, durable) = (flag("offload"), flag("durable"));
    let mut host = node(1, false, flag("durable-host"));
    write_keys(&mut host, 0..n, burst);
    host.fold();
    acknowledge(&mut host);
    // `tail=N`: N more keys written after the fold, which a newcomer takes
    // from the host's log beside the snapshot.
    let tail: u64 = flags
        .iter()
        .find_map(|f| f.strip_prefix("tail=")?.parse().ok())
        .unwrap_or(0);
    write_keys(&mut host, n..n + tail, burst);
    let mut new = node(2, offload, durable);
    host.connect(new.peer(), NOW);
    new.connect(host.peer(), NOW);
    // The newcomer's calls, longest first: (time, what).
    let mut calls: Vec<(Duration, &str)> = Vec::new();
    let mut host_calls: Vec<(Duration, &str)> = Vec::new();
    let mut quiet = false;
    while !quiet {
        quiet = true;
        if new.next_timer() <= NOW {
            // Its timer is due at once while a snapshot's runs wait to be
            // opened: a task of its own in a page.
            quiet = false;
            let start = Instant::now();
            new.tick(NOW);
            calls.push((start.elapsed(), "its timer"));
        }
        for to_new in [true, false] {
            let (from, to) = if to_new {
                (&mut host, &mut new)
            } else {
                (&mut new, &mut host)
            };
            let sender = from.peer();
            for output in from.take_outputs() {
                match output {
                    Output::Send { frame, .. } => {
                        quiet = false;
                        let start = Instant::now();
                        to.receive_frame(sender, &frame, NOW);
                        let took = (start.elapsed(), "a frame");
                        if to_new {
                            calls.push(took);
                        } else {
                            host_calls.push(took);
                        }
                    }
                    // Storage acknowledges at once.
                    Output::Persist { token, .. } => from.persisted(token),
                    Output::Verify { batch, seals } => {
                        quiet = false;
                        let verdicts = seal::verify_packed(&seals);
                        let start = Instant::now();
                        from.verified(batch, &verdicts, NOW);
                        calls.push((start.elapsed(), "a batch's verdicts"));
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(new.engine().clock(), host.engine().clock());
    calls.sort_by_key(|&(time, _)| std::cmp::Reverse(time));
    host_calls.sort_by_key(|&(time, _)| std::cmp::Reverse(time));
    println!(
        "{n} keys in bursts of {burst}, seals {}: the newcomer's longest calls {:?} \
         ({:?} in all); the {} host's {:?}",
        if offload {
            "handed out"
        } else {
            "verified in place"
        },
        &calls[..calls.len().min(3)],
        calls.iter().map(|&(time, _)| time).sum::<Duration>(),
        if flag("durable-host") {
            "durable"
        } else {
            "memory-only"
        },
        &host_calls[..host_calls.len().min(3)]
    );
}

/// Writes `key{i}` = `i` for each `i` of `keys`, sealed in bursts of
/// `burst`.
fn write_keys(host: &mut SyncNode, keys: std::ops::Range<u64>, burst: u64) {
    for i in keys {
        let write = LocalWrite::Set {
            key: format!("key{i}"),
            value: JsonValue::parse(&i.to_string()).expect("JSON"),
        };
        host.apply(write, NOW).expect("a write");
        if (i + 1) % burst == 0 {
            acknowledge(host);
        }
    }
    acknowledge(host);
}

/// Drops a node's outputs, its storage acknowledging each write at once.
fn acknowledge(node: &mut SyncNode) {
    for output in node.take_outputs() {
        if let Output::Persist { token, .. } = output {
            node.persisted(token);
        }
    }
}
