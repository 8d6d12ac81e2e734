//! Synchronization between engines: the wire format, and (sans-IO) the
//! per-peer anti-entropy session.

pub mod wire;
