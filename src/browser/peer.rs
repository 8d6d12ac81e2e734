//! `Peer`: the JS API of DESIGN.md, a thin facade over [`SyncNode`]. It
//! converts values and calls the core; the protocol lives in the core.
//!
//! State is kept in IndexedDB (`storage: "indexeddb"`, the default) or in
//! memory. There is no transport yet: `peers()` is empty until the WebRTC
//! layer lands.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use gloo::timers::callback::Interval;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::convert::{error, from_json, to_js, to_json};
use super::identity::{self, Slot};
use super::storage::Storage;
use crate::protocol::engine::ConflictPolicy;
use crate::protocol::sync::{Output, SyncConfig, SyncNode};
use crate::protocol::{EngineConfig, EngineError, P2PEvent, PeerId, ReconciliationEngine};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `Peer.open`. */
export interface PeerOptions {
  room: string;
  signaling?: string;
  storage?: "indexeddb" | "memory";
}
/** A conflicted key and its concurrent values. */
export interface Conflict {
  key: string;
  candidates: { value: any; peer: string }[];
}
export type ConflictPolicy = "lww" | "multi-value" | "reconcile";
export type PeerEventType = "change" | "peer" | "conflict" | "message";
/** What a listener receives: `keys` on "change", `conflicts` on
 * "conflict", a reconciliation message in the spec's JSON shape on
 * "message". */
export interface PeerEvent {
  type: PeerEventType;
  keys?: string[];
  conflicts?: Conflict[];
  peer?: string;
  outgoing?: boolean;
  message?: any;
}
"#;

struct Inner {
    node: SyncNode,
    room: String,
    listeners: HashMap<String, Vec<Function>>,
    /// `None` with memory storage.
    storage: Option<Rc<Storage>>,
    /// Events made or learned and not yet committed, and a snapshot to write.
    unsaved: Vec<P2PEvent>,
    unsaved_snapshot: Option<Vec<u8>>,
    /// The commit this tick's writes share, while it is being scheduled.
    flush: Option<Promise>,
    /// Held while open; dropping them releases the slot and stops the timer.
    slot: Option<Slot>,
    timer: Option<Interval>,
    closed: bool,
}

/// A peer of a room: the shared state, its writes and its events.
#[wasm_bindgen]
pub struct Peer {
    inner: Rc<RefCell<Inner>>,
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// 64 random bits from the browser's CSPRNG.
fn random_peer_id() -> Result<PeerId, JsValue> {
    let mut bytes = [0u8; 8];
    let crypto = web_sys::window()
        .ok_or_else(|| error("no window"))?
        .crypto()?;
    crypto.get_random_values_with_u8_array(&mut bytes)?;
    Ok(PeerId(u64::from_le_bytes(bytes)))
}

fn option_string(options: &JsValue, name: &str) -> Option<String> {
    Reflect::get(options, &JsValue::from_str(name))
        .ok()
        .and_then(|v| v.as_string())
}

#[wasm_bindgen]
impl Peer {
    /// Opens a peer of `options.room`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Peer>")]
    pub fn open(#[wasm_bindgen(unchecked_param_type = "PeerOptions")] options: JsValue) -> Promise {
        future_to_promise(async move { Peer::create(&options).await.map(JsValue::from) })
    }

    async fn create(options: &JsValue) -> Result<Peer, JsValue> {
        let room =
            option_string(options, "room").ok_or_else(|| error("Peer.open needs { room }"))?;
        let mut seed = [0u8; 8];
        if let Some(w) = web_sys::window() {
            w.crypto()?.get_random_values_with_u8_array(&mut seed)?;
        }
        let config = EngineConfig {
            hash_seed: u64::from_le_bytes(seed),
            ..EngineConfig::default()
        };
        let (node, storage, slot) = match option_string(options, "storage").as_deref() {
            Some("memory") => {
                let engine = ReconciliationEngine::new(random_peer_id()?, config);
                (SyncNode::new(engine, SyncConfig::default()), None, None)
            }
            None | Some("indexeddb") => {
                let slot = identity::claim(&room).await?;
                let storage = Storage::open(&format!("cpc-sync:{room}:slot:{}", slot.index))
                    .await
                    .map_err(error)?;
                let persisted = storage.load().await.map_err(error)?;
                let peer = match persisted.identity.as_deref().map(str::parse::<PeerId>) {
                    Some(Ok(peer)) => peer,
                    _ => {
                        let peer = random_peer_id()?;
                        storage
                            .save_identity(&peer.to_string())
                            .await
                            .map_err(error)?;
                        peer
                    }
                };
                let node = SyncNode::restore(
                    peer,
                    config,
                    SyncConfig::default(),
                    persisted.snapshot.as_deref(),
                    persisted.events,
                )
                .map_err(error)?;
                (node, Some(Rc::new(storage)), Some(slot))
            }
            Some(other) => {
                return Err(error(format!(
                    "unknown storage {other:?}: use \"indexeddb\" or \"memory\""
                )))
            }
        };
        let inner = Rc::new(RefCell::new(Inner {
            node,
            room,
            listeners: HashMap::new(),
            storage,
            unsaved: Vec::new(),
            unsaved_snapshot: None,
            flush: None,
            slot,
            timer: None,
            closed: false,
        }));
        let weak = Rc::downgrade(&inner);
        let interval = SyncConfig::default().gossip_interval_ms as u32;
        inner.borrow_mut().timer = Some(Interval::new(interval, move || tick(&weak)));
        Ok(Peer { inner })
    }

    /// This peer's id (16 hex digits).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.inner.borrow().node.peer().to_string()
    }

    /// The room this peer is in.
    #[wasm_bindgen(getter)]
    pub fn room(&self) -> String {
        self.inner.borrow().room.clone()
    }

    /// Writes a register. Resolves once the write is durable.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn set(&self, key: String, value: JsValue) -> Promise {
        self.write(|e, now| {
            Ok(Some(
                e.set(&key, to_json(&value).map_err(js)?, now)
                    .map_err(engine)?,
            ))
        })
    }

    /// Deletes whatever `key` holds (as far as this peer has seen it).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, key: String) -> Promise {
        self.write(|e, now| e.delete(&key, now).map_err(engine))
    }

    /// Adds `by` (an integer, may be negative) to a counter.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn increment(&self, key: String, by: f64) -> Promise {
        if by.fract() != 0.0 || !by.is_finite() || by.abs() > 9_007_199_254_740_991.0 {
            return Promise::reject(&error("increment takes a safe integer"));
        }
        self.write(|e, now| Ok(Some(e.increment(&key, by as i64, now).map_err(engine)?)))
    }

    /// Adds a member to a set.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn add(&self, key: String, member: JsValue) -> Promise {
        self.write(|e, now| {
            Ok(Some(
                e.add(&key, to_json(&member).map_err(js)?, now)
                    .map_err(engine)?,
            ))
        })
    }

    /// Removes a member from a set (a concurrent add wins).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn remove(&self, key: String, member: JsValue) -> Promise {
        self.write(|e, now| {
            e.remove(&key, to_json(&member).map_err(js)?, now)
                .map_err(engine)
        })
    }

    /// Writes `value` over every concurrent value of `key`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn resolve(&self, key: String, value: JsValue) -> Promise {
        self.write(|e, now| {
            Ok(Some(
                e.resolve(&key, to_json(&value).map_err(js)?, now)
                    .map_err(engine)?,
            ))
        })
    }

    /// Sets how registers under `prefix` show concurrent writes.
    #[wasm_bindgen(js_name = setPolicy)]
    pub fn set_policy(
        &self,
        prefix: String,
        #[wasm_bindgen(unchecked_param_type = "ConflictPolicy")] policy: String,
    ) -> Result<(), JsError> {
        let policy: ConflictPolicy = policy
            .parse()
            .map_err(|e: crate::protocol::engine::UnknownPolicy| JsError::new(&e.to_string()))?;
        self.inner
            .borrow_mut()
            .node
            .engine_mut()
            .set_policy(&prefix, policy);
        Ok(())
    }

    /// The value of `key`, or `undefined`.
    pub fn get(&self, key: String) -> JsValue {
        match self.inner.borrow().node.engine().get_json(&key) {
            Some(text) => from_json(&text),
            None => JsValue::UNDEFINED,
        }
    }

    /// The shared state as plain JSON: `{ key: value, ... }`.
    #[wasm_bindgen(unchecked_return_type = "Record<string, any>")]
    pub fn state(&self) -> JsValue {
        from_json(&self.inner.borrow().node.engine().state_json())
    }

    /// This peer's version vector: `{ peerId: counter, ... }`.
    #[wasm_bindgen(unchecked_return_type = "Record<string, number>")]
    pub fn clock(&self) -> JsValue {
        to_js(self.inner.borrow().node.engine().clock())
    }

    /// The Merkle root of the state, as hex.
    pub fn digest(&self) -> String {
        self.inner
            .borrow_mut()
            .node
            .engine_mut()
            .digest()
            .to_string()
    }

    /// Keys with concurrent values on `multi-value` and `reconcile` policies.
    #[wasm_bindgen(unchecked_return_type = "Conflict[]")]
    pub fn conflicts(&self) -> JsValue {
        to_js(&self.inner.borrow().node.engine().conflicts())
    }

    /// The app's reconcile handler: `(key, candidates) => value`. It runs on
    /// the resolver peer; returning `undefined` (or throwing) picks the
    /// Last-Write-Wins value.
    #[wasm_bindgen(js_name = onReconcile)]
    pub fn on_reconcile(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(key: string, candidates: Conflict[\"candidates\"]) => any"
        )]
        handler: Function,
    ) {
        self.inner
            .borrow_mut()
            .node
            .set_reconcile_handler(Box::new(move |key, candidates| {
                let value = handler
                    .call2(&JsValue::NULL, &JsValue::from_str(key), &to_js(&candidates))
                    .ok()?;
                to_json(&value).ok()
            }));
    }

    /// Connected peers: `[{ id, state, rtt? }]`.
    #[wasm_bindgen(unchecked_return_type = "{ id: string; state: string; rtt?: number }[]")]
    pub fn peers(&self) -> JsValue {
        let inner = self.inner.borrow();
        let list = Array::new();
        for (peer, _) in inner.node.sessions() {
            let entry = Object::new();
            let _ = Reflect::set(&entry, &"id".into(), &peer.to_string().into());
            let _ = Reflect::set(&entry, &"state".into(), &"open".into());
            list.push(&entry);
        }
        list.into()
    }

    /// Listens to `"change"` (detail: `{ keys }`), `"peer"`, `"conflict"`
    /// or `"message"`.
    #[wasm_bindgen(js_name = addEventListener)]
    pub fn add_event_listener(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PeerEventType")] kind: String,
        #[wasm_bindgen(unchecked_param_type = "(event: PeerEvent) => void")] listener: Function,
    ) {
        self.inner
            .borrow_mut()
            .listeners
            .entry(kind)
            .or_default()
            .push(listener);
    }

    #[wasm_bindgen(js_name = removeEventListener)]
    pub fn remove_event_listener(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PeerEventType")] kind: String,
        #[wasm_bindgen(unchecked_param_type = "(event: PeerEvent) => void")] listener: Function,
    ) {
        if let Some(list) = self.inner.borrow_mut().listeners.get_mut(&kind) {
            list.retain(|f| f != &listener);
        }
    }

    /// Closes the peer: waits for unsaved writes, then releases its storage,
    /// its identity slot, its timer and its listeners.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let saved = flush(&self.inner);
        let inner = self.inner.clone();
        future_to_promise(async move {
            JsFuture::from(saved).await?;
            let mut inner = inner.borrow_mut();
            inner.closed = true;
            inner.timer = None;
            inner.listeners.clear();
            inner.slot = None;
            if let Some(storage) = inner.storage.take() {
                storage.close();
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

fn engine(e: EngineError) -> JsValue {
    error(e)
}

fn js(e: JsError) -> JsValue {
    e.into()
}

impl Peer {
    /// Runs a local write, carries out the node's outputs, and tells the
    /// listeners. The promise resolves once the write is durable.
    fn write(
        &self,
        op: impl FnOnce(&mut ReconciliationEngine, u64) -> Result<Option<P2PEvent>, JsValue>,
    ) -> Promise {
        if self.inner.borrow().closed {
            return Promise::reject(&error("the peer is closed"));
        }
        let now = now_ms();
        let mut failure = None;
        let result = self
            .inner
            .borrow_mut()
            .node
            .write(|engine| match op(engine, now) {
                Ok(event) => Ok(event),
                Err(e) => {
                    failure = Some(e);
                    Ok(None)
                }
            });
        if let Some(e) = failure {
            return Promise::reject(&e);
        }
        if let Err(e) = result {
            return Promise::reject(&error(e));
        }
        dispatch(&self.inner);
        flush(&self.inner)
    }
}

/// The timer: gossip, compaction, and what they output.
fn tick(inner: &Weak<RefCell<Inner>>) {
    let Some(inner) = inner.upgrade() else { return };
    inner.borrow_mut().node.tick(now_ms());
    dispatch(&inner);
    let _ = flush(&inner);
}

/// Carries out the node's outputs: what to persist is queued for the next
/// commit; changes go to the listeners.
fn dispatch(inner: &Rc<RefCell<Inner>>) {
    let outputs = inner.borrow_mut().node.take_outputs();
    for output in outputs {
        match output {
            Output::PersistEvents(events) => inner.borrow_mut().unsaved.extend(events),
            Output::PersistSnapshot(bytes) => {
                let mut inner = inner.borrow_mut();
                // The snapshot covers every event so far.
                inner.unsaved.clear();
                inner.unsaved_snapshot = Some(bytes);
            }
            Output::Changed(keys) => {
                emit(inner, "change", &event("change", &[("keys", to_js(&keys))]));
                let conflicts: Vec<_> = {
                    let state = inner.borrow();
                    let all = state.node.engine().conflicts();
                    all.into_iter().filter(|c| keys.contains(&c.key)).collect()
                };
                if !conflicts.is_empty() {
                    emit(
                        inner,
                        "conflict",
                        &event("conflict", &[("conflicts", to_js(&conflicts))]),
                    );
                }
            }
            Output::Reconciliation {
                peer,
                outgoing,
                json,
            } => {
                let fields = [
                    ("peer", JsValue::from(peer.to_string())),
                    ("outgoing", JsValue::from(outgoing)),
                    ("message", from_json(&json)),
                ];
                emit(inner, "message", &event("message", &fields));
            }
            _ => {}
        }
    }
}

/// `{ type, ...fields }`, what a listener receives.
fn event(kind: &str, fields: &[(&str, JsValue)]) -> JsValue {
    let detail = Object::new();
    let _ = Reflect::set(&detail, &"type".into(), &kind.into());
    for (name, value) in fields {
        let _ = Reflect::set(&detail, &(*name).into(), value);
    }
    detail.into()
}

fn emit(inner: &Rc<RefCell<Inner>>, kind: &str, detail: &JsValue) {
    // Clone the list first: a listener may add or remove listeners, or write.
    let listeners = inner
        .borrow()
        .listeners
        .get(kind)
        .cloned()
        .unwrap_or_default();
    for listener in listeners {
        let _ = listener.call1(&JsValue::NULL, detail);
    }
}

/// The commit of everything unsaved, shared by all writes of this tick: the
/// first write schedules it after the current task's microtasks, later ones
/// join it. Resolves once the IndexedDB transaction has committed.
fn flush(inner: &Rc<RefCell<Inner>>) -> Promise {
    let pending = {
        let state = inner.borrow();
        if state.storage.is_none() {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        state.flush.clone()
    };
    if let Some(pending) = pending {
        return pending;
    }
    let shared = inner.clone();
    let commit = future_to_promise(async move {
        // Let the rest of this tick's writes join the batch.
        JsFuture::from(Promise::resolve(&JsValue::UNDEFINED)).await?;
        let (storage, events, snapshot) = {
            let mut state = shared.borrow_mut();
            state.flush = None;
            (
                state.storage.clone(),
                std::mem::take(&mut state.unsaved),
                state.unsaved_snapshot.take(),
            )
        };
        let Some(storage) = storage else {
            return Ok(JsValue::UNDEFINED);
        };
        if let Some(bytes) = snapshot {
            storage.write_snapshot(&bytes).await.map_err(error)?;
        }
        if !events.is_empty() {
            storage.append(&events).await.map_err(error)?;
        }
        Ok(JsValue::UNDEFINED)
    });
    inner.borrow_mut().flush = Some(commit.clone());
    commit
}
