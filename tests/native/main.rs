//! The native integration tests, one module per subject, in one test binary:
//! the crate and the shared helpers are compiled and linked once, not once
//! per file (`cargo test --test native <module>::` runs one subject, e.g.
//! `cargo test --test native simulator::`).
//!
//! The modules that start a real `cpc-signal` process need the `server`
//! feature, which builds it: `cargo test --features server`.

mod common;
mod sim;

mod adversaries;
mod alike;
mod answer_slices;
mod batch_verification;
mod circles;
mod clock_set_back;
mod codec;
mod continuous_writer;
mod durability;
mod fold_join;
mod forward;
mod fuzz;
mod fuzz_handshake;
mod fuzz_penalty;
mod fuzz_signal;
mod fuzz_snapshot;
mod handshake;
mod json_compat;
mod matrix;
mod member_costs;
mod multi_peer;
mod offline_fold;
mod offline_reopen;
mod overlay;
mod overlay_attacks;
mod policy;
mod presence;
mod properties;
mod reconciliation;
mod relay;
mod simulator;
mod snapshot;
mod snapshot_gzip;
mod snapshot_slices;
mod snapshot_verification;
mod sync;
mod wire_workload;

#[cfg(feature = "server")]
mod server;

#[cfg(feature = "server")]
mod fuzz_keep;
#[cfg(feature = "server")]
mod keep;
#[cfg(feature = "server")]
mod secret_relay;
#[cfg(feature = "server")]
mod signal_ops;
#[cfg(feature = "server")]
mod signal_server;
