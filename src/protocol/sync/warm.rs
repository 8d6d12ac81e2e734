//! Warming the receive path: two scratch nodes run a small sync between
//! them, so that a page's wasm code has been called, compiled and tiered
//! up before the first real frames come.
//!
//! Why: a newcomer's first frames are decoded, hashed, verified and applied
//! by code the engine (V8's, SpiderMonkey's) has not optimized yet. The
//! same frame that takes 10-20 ms a few frames later takes 50-110 ms then,
//! a long task the page's user feels; a second ingest in the same page has
//! none. A [`WarmUp`] does that first ingest in small steps (each a task of
//! a few milliseconds even while the code is cold) while the page is idle
//! after it opens.
//!
//! The nodes are throwaway: their identities come from fixed seeds, they
//! are never connected to anything but each other, and their state is
//! dropped when the warm-up ends.

use super::{LocalWrite, Output, SyncConfig, SyncNode, VERIFY_WINDOW_MS};
use crate::protocol::{EngineConfig, Identity, JsonValue, ReconciliationEngine};

/// Writes a step makes: one sealed run, one frame. Small enough that a
/// step is short while the code is cold.
pub const WRITES_PER_STEP: u64 = 64;

/// Steps of a warm-up: enough work (~4,000 events) for the engine to tier
/// up the receive path's hot functions.
pub const STEPS: u32 = 64;

/// Steps between two digest refreshes (the last step refreshes too).
const DIGEST_EVERY: u32 = 4;

/// Keys the scratch writer cycles through: each step writes new keys and
/// overwrites old ones, as a room's traffic does.
const KEYS: u64 = 1_000;

/// The seeds of the scratch identities (not a real peer's).
const WRITER_SEED: u64 = 0x7761_726d_0001;
const RECEIVER_SEED: u64 = 0x7761_726d_0002;

/// Two scratch nodes and the steps left of their sync.
pub struct WarmUp {
    writer: SyncNode,
    receiver: SyncNode,
    now_ms: u64,
    step: u32,
}

impl std::fmt::Debug for WarmUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmUp").field("step", &self.step).finish()
    }
}

impl WarmUp {
    /// Scratch nodes as a page's: signed, the receiver durable and verifying
    /// seals in windows. `now_ms` is the page's wall time.
    pub fn new(now_ms: u64) -> Self {
        let node = |seed: u64, durable: bool| {
            let identity = Identity::from_seed(seed);
            let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
            SyncNode::new(
                engine,
                SyncConfig {
                    identity: Some(identity),
                    durable,
                    verify_window_ms: durable.then_some(VERIFY_WINDOW_MS),
                    ..SyncConfig::default()
                },
            )
        };
        let mut writer = node(WRITER_SEED, false);
        let mut receiver = node(RECEIVER_SEED, true);
        writer.connect(receiver.peer(), now_ms);
        receiver.connect(writer.peer(), now_ms);
        writer.take_outputs();
        receiver.take_outputs();
        WarmUp {
            writer,
            receiver,
            now_ms,
            step: 0,
        }
    }

    /// One step: the writer makes a burst of writes, the receiver takes its
    /// frame, verifies the seal when its window ends and stores (at once);
    /// every few steps it brings a slice of its digest up to date. Returns
    /// whether steps are left.
    pub fn step(&mut self) -> bool {
        if self.is_done() {
            return false;
        }
        let first = u64::from(self.step) * WRITES_PER_STEP;
        for i in first..first + WRITES_PER_STEP {
            let write = LocalWrite::Set {
                key: format!("warm/{}", i % KEYS),
                value: JsonValue::from_canonical(i.to_string()),
            };
            // A scratch node with room for every write: nothing to refuse.
            let _ = self.writer.apply(write, self.now_ms);
        }
        let to = self.receiver.peer();
        let from = self.writer.peer();
        for output in self.writer.take_outputs() {
            if let Output::Send { to: peer, frame } = output {
                if peer == to {
                    self.receiver.receive_frame(from, &frame, self.now_ms);
                }
            }
        }
        self.now_ms += VERIFY_WINDOW_MS;
        self.receiver.verify_received(self.now_ms);
        // A slice of the digest every few steps: its fixed cost per
        // refresh was half the warm-up's when paid every step.
        if self.step % DIGEST_EVERY == DIGEST_EVERY - 1 {
            self.receiver.refresh_digest();
        }
        for output in self.receiver.take_outputs() {
            if let Output::Persist { token, .. } = output {
                self.receiver.persisted(token);
            }
        }
        self.step += 1;
        !self.is_done()
    }

    pub fn is_done(&self) -> bool {
        self.step >= STEPS
    }

    /// Whether the receiver holds everything the writer wrote (it does once
    /// every step ran; a test checks it).
    pub fn converged(&self) -> bool {
        self.receiver.engine().clock() == self.writer.engine().clock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warm_up_syncs_its_scratch_nodes_in_its_steps() {
        let mut warm = WarmUp::new(1_700_000_000_000);
        let mut steps = 1;
        while warm.step() {
            steps += 1;
        }
        assert_eq!(steps, STEPS);
        assert!(warm.is_done());
        assert!(!warm.step(), "a finished warm-up does nothing more");
        assert!(warm.converged());
        let writer = warm.writer.peer();
        assert_eq!(
            warm.receiver.engine().clock().get(writer),
            u64::from(STEPS) * WRITES_PER_STEP
        );
        assert_eq!(
            warm.receiver.engine().state_json(),
            warm.writer.engine().state_json()
        );
    }
}
