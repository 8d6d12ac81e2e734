//! What an engine holds per key, counted by the allocator: the live heap
//! after writing `n` keys locally (`key{i}` set to `i`, sealed in bursts
//! of 1,000 as the browser's memory workload writes them through a
//! `Peer`), after the digest is computed, after the log is folded (what a
//! page holds once it compacts), and the peak of encoding the snapshot a
//! fold persists.
//!
//! ```text
//! cargo run --profile bench --features testing --example memory_per_key -- [n]
//! ```
//!
//! The browser's figure (`bench/browser/workloads.mjs`, memory) is the
//! wasm's linear memory, which only grows: it counts the peak, this counts
//! what is live.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use cpc_sync::protocol::{EngineConfig, Identity, JsonValue, ReconciliationEngine};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live =
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grown = new_size as isize - layout.size() as isize;
        let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn report(what: &str, base: isize, n: usize) {
    let live = LIVE.load(Ordering::Relaxed) - base;
    let peak = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "{what}: live {} B a key, peak so far {} B a key",
        live / n as isize,
        peak / n as isize
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let fold_every: Option<usize> = std::env::var("CPC_FOLD_EVERY")
        .ok()
        .and_then(|n| n.parse().ok());
    let start = std::time::Instant::now();
    let identity = Identity::from_seed(1);
    let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut sealed = 0;
    for i in 0..n {
        let value = JsonValue::parse(&i.to_string()).expect("a number");
        engine
            .set(&format!("key{i}"), value, 1 << 40)
            .expect("a write");
        if (i + 1) % 1_000 == 0 || i + 1 == n {
            engine.seal_own(Some(&identity), sealed);
            sealed = i as u64 + 1;
        }
        // `CPC_FOLD_EVERY=50000` folds as a durable `Peer` does by
        // default: the log into the archive, and the snapshot to store.
        if fold_every.is_some_and(|every| (i + 1) % every == 0) {
            let applied = engine.clock().clone();
            std::hint::black_box(engine.compact_encoded(&applied));
        }
    }
    println!("written in {:?}", start.elapsed());
    report("written", base, n);
    engine.digest();
    report("digest computed", base, n);
    let applied = engine.clock().clone();
    engine.compact(&applied);
    report("log folded", base, n);
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let snapshot = engine.encode_snapshot();
    report(
        &format!("snapshot encoded ({} B a key)", snapshot.len() / n),
        base,
        n,
    );
    drop(snapshot);
    std::hint::black_box(&engine);
}
