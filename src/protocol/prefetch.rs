//! Asks the processor for memory ahead of its use.
//!
//! Encoding a snapshot of a million entities reads, per event, a slot of a
//! key table far larger than the caches and, where the event's clocks have
//! more than one entry, their vectors on the heap: cache misses, each
//! costing more than the rest of the event's work. Asked for a group of
//! events ahead, their misses overlap.
//!
//! On x86_64 this is the processor's prefetch, which neither faults nor
//! waits. A load whose value is kept (`std::hint::black_box`) also
//! overlaps misses, and is what wasm, which has no prefetch, still does
//! (`KeyTable::warm`, the encoder's key table);
//! natively such loads held up the work behind them, and the encoding of
//! a million entities took 9% longer with them than with prefetches
//! (BENCHMARKS.md, "Issue 17, nineteenth session").

/// Whether [`prefetch`] does anything on this target.
pub const AVAILABLE: bool = cfg!(target_arch = "x86_64");

/// Asks for the cache line holding `data`; elsewhere than x86_64, nothing.
#[inline(always)]
pub fn prefetch<T>(data: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads no memory the program sees and cannot
    // fault, whatever the address; SSE is in every x86_64 processor.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(data.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
