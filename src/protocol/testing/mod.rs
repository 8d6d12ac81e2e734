//! Test support shared by the integration tests, the native benches and the
//! wasm bench build: a seeded RNG and the benchmark workloads. Compiled
//! only with the `testing` feature (the tests and benches get it through
//! the crate's dev-dependency on itself; `bench` turns it on), so the
//! published library does not carry it.

pub mod blake3_transcript;
pub mod mutate;
mod rng;
pub mod wire;
pub mod workload;

pub use rng::{seeds, Rng};
