//! What an engine holds per key, counted by the allocator: the live heap
//! after writing `n` keys locally (`key{i}` set to `i`, as the browser's
//! memory workload writes them), after the digest is computed, and after
//! the log is folded (what a page holds once it compacts).
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

use cpc_sync::protocol::{EngineConfig, JsonValue, PeerId, ReconciliationEngine};

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
    let mut engine = ReconciliationEngine::new(PeerId(1), EngineConfig::default());
    for i in 0..n {
        let value = JsonValue::parse(&i.to_string()).expect("a number");
        engine
            .set(&format!("key{i}"), value, 1 << 40)
            .expect("a write");
    }
    report("written", base, n);
    engine.digest();
    report("digest computed", base, n);
    let applied = engine.clock().clone();
    engine.compact(&applied);
    report("log folded", base, n);
    std::hint::black_box(&engine);
}
