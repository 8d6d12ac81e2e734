//! `Peer`: the JS API of DESIGN.md, a thin facade over [`SyncNode`]. It
//! converts values and calls the core; the protocol lives in the core.
//!
//! State is kept in IndexedDB (`storage: "indexeddb"`, the default) or in
//! memory; other peers are reached over WebRTC (see `transport`).

mod io;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use gloo::timers::callback::Interval;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use self::io::{dispatch, flush, schedule_writes, tick};
use super::convert::{error, from_json, to_js, to_json};
use super::identity::{self, Slot};
use super::storage::Storage;
use super::transport::{SignalCodec, Transport, TransportConfig};
use crate::protocol::engine::ConflictPolicy;
use crate::protocol::room::RoomSecret;
use crate::protocol::sync::{SyncConfig, SyncNode};
use crate::protocol::{
    EngineConfig, EngineError, Identity, P2PEvent, PeerId, ReconciliationEngine,
};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `Peer.open`. */
export interface PeerOptions {
  room: string;
  /** URL of a `cpc-signal` server's `/signal` (ws:, wss:, http:, https:
   * or a path on this origin); absent or "none": tabs of this browser only,
   * over BroadcastChannel. */
  signaling?: string;
  storage?: "indexeddb" | "memory";
  /** `RTCConfiguration.iceServers`, for peers beyond one network. */
  iceServers?: RTCIceServer[];
  /** Log length at which the log is folded into the snapshot. */
  compactAfter?: number;
  /** The room's secret: only peers that know it can join or read the
   * room; signaling goes encrypted under an opaque room id. Use a long
   * random string, not a password. */
  secret?: string;
}
/** A key of the state, as a table shows it. */
export interface Entry {
  key: string;
  kind: "register" | "counter" | "set";
  value: any;
  /** The winning write's origin (registers), else the last origin applied. */
  writer: string | null;
  /** Concurrent values wait to be resolved (multi-value, reconcile). */
  conflicted: boolean;
}
/** A known peer and its connection. */
export interface PeerInfo {
  id: string;
  state: "connecting" | "open" | "closed";
  /** Smoothed round-trip time of sync messages, ms. */
  rtt?: number;
  /** Frames or events from it that were refused, and the last reason. */
  rejected: number;
  lastError?: string;
  bytesIn: number;
  bytesOut: number;
  /** Bytes waiting to be sent to it. */
  buffered: number;
  /** What it last said it has (once synced): version vector, Merkle root. */
  clock?: Record<string, number>;
  digest?: string;
  /** How it stands against this peer (once synced). */
  standing?: "in sync" | "syncing" | "behind" | "ahead" | "concurrent";
}
/** A conflicted key and its concurrent values. */
export interface Conflict {
  key: string;
  candidates: { value: any; peer: string }[];
}
/** How registers under a prefix show concurrent writes; `setPolicy` sets it
 * for the whole room (replicated: every peer follows the room's). */
export type ConflictPolicy = "lww" | "multi-value" | "reconcile";
export type PeerEventType = "change" | "peer" | "conflict" | "message" | "snapshot";
/** What a listener receives: `keys` on "change"; `conflicts` on
 * "conflict"; `peer` and its `state` on "peer"; a reconciliation message in
 * the spec's JSON shape on "message"; `received` of `total` bytes on
 * "snapshot" while a snapshot arrives from `peer`. */
export interface PeerEvent {
  type: PeerEventType;
  keys?: string[];
  conflicts?: Conflict[];
  peer?: string;
  state?: "connecting" | "open" | "closed";
  outgoing?: boolean;
  message?: any;
  received?: number;
  total?: number;
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
    /// Keys changed since the last "change" event, and whether one is
    /// scheduled.
    changed: Vec<Arc<str>>,
    change_scheduled: bool,
    /// Whether this tick's writes are already due to leave (one seal for
    /// all of them).
    writes_scheduled: bool,
    /// Frames that wait for the commit of `unsaved` (persist before send).
    held: Vec<(PeerId, Vec<u8>)>,
    /// The commit this tick's writes share, while it is being scheduled.
    flush: Option<Promise>,
    transport: Option<Transport>,
    /// Held while open; dropping them releases the slot and stops the timer.
    slot: Option<Slot>,
    timer: Option<Interval>,
    hashing: Option<Interval>,
    closed: bool,
}

/// A peer of a room: the shared state, its writes and its events.
#[wasm_bindgen]
pub struct Peer {
    inner: Rc<RefCell<Inner>>,
}

/// How often a slice of changed entities is hashed into the digest.
const DIGEST_SLICE_MS: u32 = 50;

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// 64 random bits from the browser's CSPRNG.
/// A new identity from the browser's CSPRNG.
fn new_identity() -> Result<Identity, JsValue> {
    let mut secret = [0u8; 32];
    let crypto = web_sys::window()
        .ok_or_else(|| error("no window"))?
        .crypto()?;
    crypto.get_random_values_with_u8_array(&mut secret)?;
    Ok(Identity::from_secret(&secret))
}

fn option(options: &JsValue, name: &str) -> JsValue {
    Reflect::get(options, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn option_string(options: &JsValue, name: &str) -> Option<String> {
    option(options, name).as_string()
}

/// The WebSocket URL of a `signaling` option: `ws:`/`wss:` as is, `http:`/
/// `https:` switched over, a path resolved against this page; `None` for
/// absent or `"none"`.
fn signaling_url(option: Option<String>) -> Result<Option<String>, JsValue> {
    let Some(url) = option.filter(|u| !u.is_empty() && u != "none") else {
        return Ok(None);
    };
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return Ok(Some(url));
    }
    if let Some(rest) = url.strip_prefix("http://") {
        return Ok(Some(format!("ws://{rest}")));
    }
    if let Some(rest) = url.strip_prefix("https://") {
        return Ok(Some(format!("wss://{rest}")));
    }
    if url.starts_with('/') {
        let location = web_sys::window()
            .ok_or_else(|| error("no window"))?
            .location();
        let scheme = if location.protocol()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        return Ok(Some(format!("{scheme}://{}{url}", location.host()?)));
    }
    Err(error(format!(
        "signaling must be a ws:, wss:, http: or https: URL, a path, or \"none\"; got {url:?}"
    )))
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
        let mut nonce_seed = [0u8; 32];
        if let Some(w) = web_sys::window() {
            w.crypto()?.get_random_values_with_u8_array(&mut seed)?;
            w.crypto()?
                .get_random_values_with_u8_array(&mut nonce_seed)?;
        }
        // A room with a secret goes by an opaque id everywhere outside its
        // peers: signaling, the BroadcastChannel, storage, the slot locks.
        let secret = match option(options, "secret") {
            v if v.is_undefined() || v.is_null() => None,
            v => match v.as_string() {
                Some(s) if !s.is_empty() => Some(Rc::new(RoomSecret::new(&room, &s))),
                _ => return Err(error("secret takes a non-empty string")),
            },
        };
        let public_room = secret
            .as_ref()
            .map_or_else(|| room.clone(), |s| s.room_id().to_string());
        let config = EngineConfig {
            hash_seed: u64::from_le_bytes(seed),
            ..EngineConfig::default()
        };
        let mut sync = SyncConfig {
            room: secret.as_deref().cloned(),
            nonce_seed,
            ..SyncConfig::default()
        };
        if let Some(n) = option(options, "compactAfter").as_f64() {
            if !(n >= 1.0 && n.fract() == 0.0) {
                return Err(error("compactAfter takes a positive integer"));
            }
            sync.compact_after = n as usize;
        }
        let signaling = signaling_url(option_string(options, "signaling"))?;
        let ice_servers = option(options, "iceServers");
        let (node, storage, slot) = match option_string(options, "storage").as_deref() {
            Some("memory") => {
                let identity = new_identity()?;
                let engine = ReconciliationEngine::new(identity.peer(), config);
                sync.identity = Some(identity);
                (SyncNode::new(engine, sync), None, None)
            }
            None | Some("indexeddb") => {
                let slot = identity::claim(&public_room).await?;
                let storage = Storage::open(&format!("cpc-sync:{public_room}:slot:{}", slot.index))
                    .await
                    .map_err(error)?;
                let persisted = storage.load().await.map_err(error)?;
                let identity = match &persisted.identity {
                    Some(secret) => Identity::from_secret(secret),
                    None => {
                        let identity = new_identity()?;
                        storage
                            .save_identity(&identity.secret())
                            .await
                            .map_err(error)?;
                        identity
                    }
                };
                let peer = identity.peer();
                sync.identity = Some(identity);
                let node = SyncNode::restore(
                    peer,
                    config,
                    sync,
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
            changed: Vec::new(),
            change_scheduled: false,
            writes_scheduled: false,
            held: Vec::new(),
            flush: None,
            transport: None,
            slot,
            timer: None,
            hashing: None,
            closed: false,
        }));
        let weak = Rc::downgrade(&inner);
        let interval = SyncConfig::default().gossip_interval_ms as u32;
        let timer = Interval::new(interval, move || tick(&weak));
        // A burst of remote events is hashed into the digest in slices of a
        // few milliseconds, not in one long pause.
        let weak = Rc::downgrade(&inner);
        let hashing = Interval::new(DIGEST_SLICE_MS, move || {
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().node.refresh_digest();
            }
        });
        let weak = Rc::downgrade(&inner);
        let me = inner.borrow().node.peer();
        let transport = Transport::new(
            me,
            TransportConfig {
                room: public_room,
                codec: SignalCodec(secret),
                signaling,
                ice_servers,
            },
            Rc::new(move |event| io::on_transport(&weak, event)),
        );
        {
            let mut i = inner.borrow_mut();
            i.timer = Some(timer);
            i.hashing = Some(hashing);
            i.transport = Some(transport);
        }
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

    /// Sets the room's policy for keys under `prefix`: how their registers
    /// show concurrent writes. Replicated room state: every peer of the
    /// room follows it (the longest matching prefix wins; concurrent
    /// settings of one prefix settle by Last-Write-Wins). Resolves once
    /// the write is durable.
    #[wasm_bindgen(js_name = setPolicy, unchecked_return_type = "Promise<void>")]
    pub fn set_policy(
        &self,
        prefix: String,
        #[wasm_bindgen(unchecked_param_type = "ConflictPolicy")] policy: String,
    ) -> Promise {
        let policy: ConflictPolicy = match policy.parse() {
            Ok(policy) => policy,
            Err(e) => return Promise::reject(&error(e)),
        };
        self.write(|e, now| {
            Ok(Some(
                e.set_room_policy(&prefix, policy, now).map_err(engine)?,
            ))
        })
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

    /// The state as a table shows it: `[{ key, kind, value, writer,
    /// conflicted }]`, by key.
    #[wasm_bindgen(unchecked_return_type = "Entry[]")]
    pub fn entries(&self) -> JsValue {
        from_json(&self.inner.borrow().node.engine().entries_json())
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

    /// Known peers: `[{ id, state, rtt?, rejected, lastError?, bytesIn,
    /// bytesOut, buffered }]`.
    #[wasm_bindgen(unchecked_return_type = "PeerInfo[]")]
    pub fn peers(&self) -> JsValue {
        // Mutable: comparing Merkle roots may bring ours up to date.
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let list = Array::new();
        let Some(transport) = &inner.transport else {
            return list.into();
        };
        for (peer, state, buffered) in transport.links() {
            let entry = Object::new();
            let set = |name: &str, value: JsValue| {
                let _ = Reflect::set(&entry, &name.into(), &value);
            };
            set("id", peer.to_string().into());
            set("state", state.as_str().into());
            let stats = inner.node.stats(peer).cloned().unwrap_or_default();
            if let Some(rtt) = stats.rtt_ms {
                set("rtt", rtt.into());
            }
            set("rejected", (stats.rejected as f64).into());
            if let Some(e) = stats.last_error {
                set("lastError", e.into());
            }
            set("bytesIn", (stats.bytes_in as f64).into());
            set("bytesOut", (stats.bytes_out as f64).into());
            set("buffered", (buffered as f64).into());
            if let Some((clock, root)) = inner.node.remote_view(peer) {
                set("clock", to_js(clock));
                if let Some(root) = root {
                    set("digest", root.to_string().into());
                }
            }
            if let Some(standing) = inner.node.standing(peer) {
                set("standing", standing.as_str().into());
            }
            list.push(&entry);
        }
        list.into()
    }

    /// Drops every connection and stops finding peers, until `goOnline()`.
    /// Writes go on locally and sync once back.
    #[wasm_bindgen(js_name = goOffline)]
    pub fn go_offline(&self) {
        if let Some(transport) = &self.inner.borrow().transport {
            transport.go_offline();
        }
    }

    /// Finds the room's peers again and reconnects.
    #[wasm_bindgen(js_name = goOnline)]
    pub fn go_online(&self) {
        if let Some(transport) = &self.inner.borrow().transport {
            transport.go_online();
        }
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

    /// Closes the peer: folds its log into a snapshot (so the next start is
    /// quick), waits for unsaved writes, then releases its storage,
    /// its identity slot, its timer and its listeners.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        if !self.inner.borrow().closed && self.inner.borrow().storage.is_some() {
            self.inner.borrow_mut().node.fold();
            dispatch(&self.inner);
        }
        let saved = flush(&self.inner);
        let inner = self.inner.clone();
        future_to_promise(async move {
            JsFuture::from(saved).await?;
            let mut inner = inner.borrow_mut();
            inner.closed = true;
            inner.timer = None;
            inner.hashing = None;
            inner.transport = None;
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
        schedule_writes(&self.inner);
        flush(&self.inner)
    }
}
