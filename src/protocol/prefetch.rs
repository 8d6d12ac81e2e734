//! Asks the processor for memory ahead of its use.
//!
//! Encoding a snapshot reads, for each event whose clocks have more than
//! one entry, their vectors on the heap: a cache miss each, which the
//! encoder asks for some events ahead so that it is not waited for.
//!
//! On x86_64 this is the processor's prefetch, which neither faults nor
//! waits. Elsewhere (wasm has no prefetch) it does nothing.

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
