//! Entry points of `bench/browser/workloads.mjs` ("workloads users ask
//! about"): a document of keys written by one signed peer, encoded as a
//! snapshot and loaded again with verification, as a browser peer does.
//! The public `Peer` has no call that encodes or loads a snapshot alone (it
//! folds its log into storage and sends snapshots to peers), so that
//! workload goes through here; the memory workload also measures this
//! engine alone, beside the `Peer`, to show what the engine itself holds.

use wasm_bindgen::prelude::*;

use crate::protocol::{
    EngineConfig, Identity, JsonValue, ReconciliationEngine, StateSnapshot, Trust,
};

/// Wall time of every write: the engine's hybrid clock counts on from it.
const NOW: u64 = 2_000_000_000_000;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A document held by one engine: written here by one signed peer, or
/// loaded from a snapshot.
#[wasm_bindgen]
pub struct WorkloadDoc {
    engine: ReconciliationEngine,
    identity: Identity,
}

#[wasm_bindgen]
impl WorkloadDoc {
    /// An empty document of one signed writer.
    #[wasm_bindgen(constructor)]
    pub fn new() -> WorkloadDoc {
        let identity = Identity::from_seed(17);
        let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
        WorkloadDoc { engine, identity }
    }

    /// Keys `from..to` (`key{i}` = i) as one burst: sealed as a page's
    /// `Peer.set` calls of one task are (runs of at most 1,024 events).
    pub fn write(&mut self, from: u32, to: u32) -> Result<(), JsError> {
        let sealed = self.engine.clock().get(self.identity.peer());
        for i in from..to {
            let value = JsonValue::parse(&i.to_string()).map_err(js_error)?;
            self.engine
                .set(&format!("key{i}"), value, NOW)
                .map_err(js_error)?;
        }
        self.engine.seal_own(Some(&self.identity), sealed);
        Ok(())
    }

    /// The snapshot a peer stores and sends: every live event with its
    /// run's seal, and the version vector.
    pub fn encode(&self) -> Vec<u8> {
        self.engine.encode_snapshot()
    }

    /// What a newcomer does with a snapshot: decode it, verify every seal
    /// and the clock against the events, and rebuild the entities.
    pub fn load(bytes: &[u8]) -> Result<WorkloadDoc, JsError> {
        let snapshot = StateSnapshot::decode(bytes).map_err(js_error)?;
        // A newcomer: another identity than the writer's.
        let identity = Identity::from_seed(18);
        let mut engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
        let trust = Trust {
            signed: true,
            now_ms: Some(NOW),
        };
        engine.load_snapshot(snapshot, trust).map_err(js_error)?;
        Ok(WorkloadDoc { engine, identity })
    }

    /// One key's value as JSON text (the first read after a load).
    #[wasm_bindgen(js_name = getJson)]
    pub fn get_json(&self, key: &str) -> Option<String> {
        self.engine.get_json(key)
    }

    /// The whole state as JSON text, `{ key: value, ... }`.
    #[wasm_bindgen(js_name = stateJson)]
    pub fn state_json(&self) -> String {
        self.engine.state_json()
    }

    /// The Merkle root of the state, as hex.
    pub fn digest(&mut self) -> String {
        self.engine.digest().to_string()
    }
}
