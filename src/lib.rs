//! cpc-sync: the cpc P2P synchronization and reconciliation protocol.
//!
//! Layers, dependencies pointing down only:
//! - [`protocol`]: the pure-Rust core (vector clocks, events, the
//!   `ReconciliationEngine`, snapshots, digests). No web crate, no clock or RNG
//!   of its own: time and randomness are passed in.
//! - `browser` (wasm32 only): the thin `#[wasm_bindgen]` edge that moves bytes.

pub mod protocol;

#[cfg(target_arch = "wasm32")]
pub mod browser;

/// The engine version, as the crate was built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
