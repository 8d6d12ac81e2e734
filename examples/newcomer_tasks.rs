//! The work a newcomer does in one go when it takes a signed room's
//! snapshot, natively: each call into its node (a frame in, its timer, a
//! batch of verdicts in) is what a page runs as one task. The room is `n` keys
//! written in bursts of `burst` (a sealed run each) and folded, so the
//! newcomer gets one snapshot of `n / burst` seals; `offload` hands them
//! out as a page with verifier Workers does (answered here, untimed);
//! `durable` gives the newcomer storage (a page's IndexedDB), acknowledged
//! at once.
//!
//! ```text
//! cargo run --profile bench --features testing --example newcomer_tasks -- [n] [burst] [offload|inplace] [durable]
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
    let offload = args.next().is_some_and(|a| a == "offload");
    let durable = args.next().is_some_and(|a| a == "durable");
    let mut host = node(1, false, false);
    for i in 0..n {
        let write = LocalWrite::Set {
            key: format!("key{i}"),
            value: JsonValue::parse(&i.to_string()).expect("JSON"),
        };
        host.apply(write, NOW).expect("a write");
        if (i + 1) % burst == 0 {
            host.take_outputs();
        }
    }
    host.fold();
    host.take_outputs();
    let mut new = node(2, offload, durable);
    host.connect(new.peer(), NOW);
    new.connect(host.peer(), NOW);
    // The newcomer's calls, longest first: (time, what).
    let mut calls: Vec<(Duration, &str)> = Vec::new();
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
                        if to_new {
                            calls.push((start.elapsed(), "a frame"));
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
    println!(
        "{n} keys in bursts of {burst}, seals {}: the newcomer's longest calls {:?}",
        if offload {
            "handed out"
        } else {
            "verified in place"
        },
        &calls[..calls.len().min(3)]
    );
}
