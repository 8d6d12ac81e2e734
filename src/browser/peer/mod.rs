//! `Peer`: the JS API of DESIGN.md, a thin facade over [`SyncNode`]. It
//! checks and converts arguments, calls the node, and carries out the
//! node's outputs (`io`, `commit`); the protocol lives in the core.
//!
//! State is kept in IndexedDB (`storage: "indexeddb"`, the default) or in
//! memory; other peers are reached over WebRTC (see `transport`).

mod commit;
mod events;
mod io;
mod open;
mod options;
mod timer;
mod warm;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use self::commit::Commits;
use self::events::Listeners;
use self::io::{dispatch, schedule_writes};
use self::options::Options;
use self::timer::{Now, Timer};
use super::convert::{from_json, to_js, to_json};
use super::error::{Code, PeerError};
use super::identity::Slot;
use super::storage::Storage;
use super::transport::{SignalCodec, Transport, TransportConfig};
use super::verify::Verifiers;
use crate::protocol::sync::{LocalWrite, MeshConfig, PeerReport, SyncNode};
use crate::protocol::Text;

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
  /** Open links at most (default 8, at most 64). A room of more peers
   * keeps a partial view: each peer links to a few near and random ones,
   * knows more, and events reach the rest by relay. */
  maxConnections?: number;
  /** How long a WebRTC connection may take to open before the attempt has
   * failed and is retried (default 15,000 ms; 1,000 to 120,000). In a room
   * with a secret, a peer whose attempts fail twice is reached through
   * the server's sealed relay instead. */
  connectTimeoutMs?: number;
  /** The room's secret: only peers that know it can join or read the
   * room; signaling goes encrypted under an opaque room id. Use a long
   * random string, not a password. */
  secret?: string;
  /** Warm the code that takes frames in while the page is idle after
   * opening (default true): a throwaway sync of ~4,000 events between
   * two scratch nodes, in tasks of a few ms, so a newcomer's first
   * frames do not run cold (long tasks); and start the verifier workers
   * (`verifyWorkers`). */
  warmUp?: boolean;
  /** Web Workers verifying the seals of received events (default: one per
   * core the browser reports, at most 4; at most 8; 0: on the page's
   * thread). Batches of 4 seals or more go to them (a newcomer's
   * catch-up, a burst of writes, a flood); a lone write's seal is verified
   * in place. Started at open with
   * `warmUp`, else when the first such batch comes. Each runs this page's
   * wasm, from a `blob:` script: where a page's CSP forbids that, the peer
   * verifies on its own thread. */
  verifyWorkers?: number;
}
/** A value of the shared state: JSON, as it was written (a set's value is
 * the array of its members). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** A version vector: each origin's id and how many of its events. */
export type Clock = Record<string, number>;
/** What an event does, tagged by its entity's kind and then its action. */
export type OperationJson =
  | { register: { write: { value: JsonValue; observed: Clock; resolution: boolean } } | { delete: { observed: Clock } } }
  | { counter: { increment: { by: number; sum: number } } | { delete: { observed: { peer: string; seq: number; sum: number }[] } } }
  | { set: { add: { member: JsonValue; observed: Clock } } | { remove: { member: JsonValue; observed: Clock } } | { delete: { observed: Clock } } };
/** An event in the spec's JSON shape, as reconciliation messages carry it. */
export interface EventJson {
  id: { peer: string; seq: number };
  key: string;
  op: OperationJson;
  /** The entries of the origin's version vector that grew since its previous event. */
  deps: Clock;
  /** Its hybrid logical timestamp. */
  hlc: number;
  /** On the last event of a signed run: its first sequence number, the origin's public key and the signature, as bytes. */
  seal: { first: number; key: number[]; signature: number[] } | null;
}
/** A reconciliation message, in the spec's JSON shape. */
export type ReconciliationMessage =
  | { type: "RECONCILIATION_REQUEST"; source_peer_id: string; target_peer_id: string; key: string; conflicting_events: EventJson[] }
  | { type: "RECONCILIATION_RESPONSE"; source_peer_id: string; target_peer_id: string; resolution_events: EventJson[] };
/** A key of the state, as a table shows it. */
export interface Entry {
  key: string;
  kind: "register" | "counter" | "set";
  value: JsonValue;
  /** The winning write's origin (registers), else the last origin applied. */
  writer: string | null;
  /** Concurrent values wait to be resolved (multi-value, reconcile). */
  conflicted: boolean;
}
/** A known peer and its connection. */
export interface PeerInfo {
  id: string;
  /** "closed": known (in a big room, in the partial view's reserve) but
   * not linked now. */
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
  /** The room's server peer: cpc-signal's, which keeps the room on disk, reached over the signaling socket. */
  server?: true;
  /** Linked through the signaling server's relay, sealed end to end (a room with a secret whose WebRTC failed). */
  relayed?: true;
}
/** A conflicted key and its concurrent values. */
export interface Conflict {
  key: string;
  candidates: { value: JsonValue; peer: string }[];
}
/** How registers under a prefix show concurrent writes; `setPolicy` sets it
 * for the whole room (replicated: every peer follows the room's). */
export type ConflictPolicy = "lww" | "multi-value" | "reconcile";
/** Who is here (`presence()`), this peer included: what each set with
 * `setPresence`, and when it last refreshed it (this peer's clock, ms). */
export interface PresenceEntry {
  id: string;
  value: JsonValue;
  lastSeen: number;
}
/** What a listener of each event receives. */
export interface PeerEventMap {
  /** Every key changed since the last "change", each once, in the order
   * they changed. */
  change: { type: "change"; keys: string[] };
  /** Among the changed keys: those left in conflict, with their
   * candidates, and those whose conflict (told before, or there when the
   * listener was added) ended. */
  conflict: { type: "conflict"; conflicts: Conflict[]; resolved: string[] };
  peer: { type: "peer"; peer: string; state: "connecting" | "open" | "closed" };
  /** A reconciliation message sent or received, in the spec's JSON shape. */
  message: { type: "message"; peer: string; outgoing: boolean; message: ReconciliationMessage };
  /** `received` of `total` bytes of a snapshot arriving from `peer` (as
   * sent: gzipped between pages); `dropped`: the transfer was given up
   * where it stood (its source went quiet or away, or the state came
   * otherwise), and a later offer is taken. */
  snapshot: { type: "snapshot"; peer: string; received: number; total: number; dropped: boolean };
  /** Who is here, as `presence()` gives it. */
  presence: { type: "presence"; presence: PresenceEntry[] };
  /** A failure no call of the app's can catch: a commit to IndexedDB, a
   * connection (`peer`), the signaling server. */
  error: { type: "error"; error: PeerError; peer?: string };
}
export type PeerEventType = keyof PeerEventMap;
/** What a listener receives: one of `PeerEventMap`'s, told apart by `type`. */
export type PeerEvent = PeerEventMap[PeerEventType];
export interface Peer {
  /** Listens to one event; the listener receives that event's fields
   * (`PeerEventMap`). Throws an `INVALID_ARGUMENT` `TypeError` for another
   * name or a listener that is not a function. */
  addEventListener<K extends PeerEventType>(type: K, listener: (event: PeerEventMap[K]) => void): void;
  removeEventListener<K extends PeerEventType>(type: K, listener: (event: PeerEventMap[K]) => void): void;
}
"#;

struct Inner {
    node: SyncNode,
    room: String,
    listeners: Listeners,
    /// Whether its state is kept in IndexedDB (`storage` is taken at close).
    durable: bool,
    /// `None` with memory storage.
    storage: Option<Rc<Storage>>,
    commits: Commits,
    /// While this task's writes are due to leave (one seal for all of
    /// them): the time the first was made, which the rest of the burst
    /// takes as theirs (a burst is one run; its clock still ticks per
    /// write), rather than a `Date.now()` each.
    burst_ms: Option<u64>,
    transport: Option<Transport>,
    /// Held while open; dropping it releases the slot.
    slot: Option<Slot>,
    /// The one timer, armed for the node's next wake-up; the one that last
    /// fired, dropped at the next.
    timer: Option<(u64, Timer)>,
    spent_timer: Option<Timer>,
    /// The channel that wakes the node when it is due at once.
    now: Option<Now>,
    /// The workers verifying received seals, once a batch needed them, and
    /// how many to start (0: none, or they failed: the node verifies in
    /// place).
    verifiers: Option<Verifiers>,
    verify_workers: usize,
    closed: bool,
    /// `close()` was called: its last commit is on its way.
    closing: bool,
}

impl Inner {
    /// Has the node list changed keys only while a "change" or "conflict"
    /// listener would hear of them (`emit_changes` reads them for both).
    fn tell_changes(&mut self) {
        let heard = self.listeners.heard("change") || self.listeners.heard("conflict");
        if !heard {
            self.listeners.forget_changes();
        }
        self.node.want_changes(heard);
    }
}

/// A peer of a room: the shared state, its writes and its events.
#[wasm_bindgen]
pub struct Peer {
    inner: Rc<RefCell<Inner>>,
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn reject(error: PeerError) -> Promise {
    Promise::reject(&error.into())
}

/// A string argument (a key, a prefix, a policy), or an `INVALID_ARGUMENT`
/// `TypeError` saying so (`message`, naming the method). Taken as any JS
/// value: a parameter typed `String` is read by the generated glue without
/// a check, and a number there trapped the wasm (`memory access out of
/// bounds`).
#[inline(never)]
fn text_arg(value: &JsValue, message: &'static str) -> Result<String, PeerError> {
    let text =
        (value.as_string()).ok_or_else(|| PeerError::type_error(Code::InvalidArgument, message))?;
    // A lone surrogate (half of an emoji cut by `slice`) comes out as
    // U+FFFD: two keys would be one (a review).
    if !crate::browser::convert::well_formed(value, &text) {
        let method = message.split(':').next().unwrap_or(message);
        return Err(PeerError::type_error(
            Code::InvalidArgument,
            format!("{method}: the string holds a lone surrogate (half of a character)"),
        ));
    }
    Ok(text)
}

/// A function argument, or an `INVALID_ARGUMENT` `TypeError`.
#[inline(never)]
fn function_arg(value: JsValue, message: &'static str) -> Result<Function, PeerError> {
    (value.dyn_into::<Function>())
        .map_err(|_| PeerError::type_error(Code::InvalidArgument, message))
}

/// The events a peer tells (`addEventListener`).
const EVENT_KINDS: [&str; 7] = [
    "change", "peer", "conflict", "message", "snapshot", "presence", "error",
];

/// A JS value as JSON, or an `INVALID_JSON` `TypeError` naming the method.
fn json(value: &JsValue, method: &str) -> Result<crate::protocol::JsonValue, PeerError> {
    to_json(value).map_err(|e| PeerError {
        message: format!("{method}: {}", e.message),
        ..e
    })
}

#[wasm_bindgen]
impl Peer {
    /// Opens a peer of `options.room`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Peer>")]
    pub fn open(#[wasm_bindgen(unchecked_param_type = "PeerOptions")] options: JsValue) -> Promise {
        // An open waits for this page's earlier opens of the room to
        // settle, and so for the app to close what they opened: React's
        // StrictMode closes a peer once its open resolves
        // (`opening.then((p) => p.close())`) and opens again at once, and
        // that second open took another identity slot, which the tab then
        // remembered, so reloads went back and forth between two peers
        // and their stored states (a review). What the next open waits
        // for is a promise of its own, settled as this open ends and
        // resolved to nothing: the page's list of opens keeps no peer
        // alive once the app lets it go.
        let room = js_sys::Reflect::get(&options, &"room".into())
            .ok()
            .and_then(|r| r.as_string());
        let mut settle = None;
        let done = Promise::new(&mut |resolve, _| settle = Some(resolve));
        let earlier = room
            .as_deref()
            .and_then(|room| super::identity::opening(room, &done));
        future_to_promise(async move {
            super::identity::after(earlier).await;
            let created = Peer::create(&options)
                .await
                .map(JsValue::from)
                .map_err(JsValue::from);
            if let Some(settle) = settle {
                let _ = settle.call0(&JsValue::UNDEFINED);
            }
            created
        })
    }

    async fn create(options: &JsValue) -> Result<Peer, PeerError> {
        let options = Options::parse(options)?;
        let opened = open::open(&options).await?;
        let inner = Rc::new(RefCell::new(Inner {
            node: opened.node,
            room: options.room,
            listeners: Listeners::default(),
            durable: opened.storage.is_some(),
            storage: opened.storage,
            commits: Commits::default(),
            burst_ms: None,
            transport: None,
            slot: opened.slot,
            timer: None,
            spent_timer: None,
            now: None,
            verifiers: None,
            verify_workers: options.verify_workers,
            closed: false,
            closing: false,
        }));
        // No listener yet: no keys listed until one comes.
        inner.borrow_mut().tell_changes();
        let weak = Rc::downgrade(&inner);
        let transport = Transport::new(
            opened.identity,
            TransportConfig {
                room: opened.public_room,
                codec: SignalCodec(opened.secret),
                signaling: options.signaling,
                ice_servers: options.ice_servers,
                mesh: {
                    let default = MeshConfig::default();
                    MeshConfig {
                        max_connections: options.max_connections.unwrap_or(default.max_connections),
                        connect_timeout_ms: options
                            .connect_timeout_ms
                            .unwrap_or(default.connect_timeout_ms),
                        ..default
                    }
                },
            },
            Rc::new(move |event| io::on_transport(&weak, event)),
        );
        inner.borrow_mut().transport = Some(transport);
        dispatch(&inner);
        if options.warm_up {
            warm::start(Rc::downgrade(&inner));
            io::start_verifiers(&inner);
        }
        Ok(Peer { inner })
    }

    /// This peer's id (16 hex digits).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> Result<String, PeerError> {
        Ok(self.inner()?.node.peer().to_string())
    }

    /// The room this peer is in.
    #[wasm_bindgen(getter)]
    pub fn room(&self) -> Result<String, PeerError> {
        Ok(self.inner()?.room.clone())
    }

    /// Where this peer keeps its state: `"indexeddb"`, or `"memory"`
    /// (asked for, or where the browser refused Web Locks or IndexedDB,
    /// which only the console says otherwise).
    #[wasm_bindgen(getter, unchecked_return_type = "\"indexeddb\" | \"memory\"")]
    pub fn storage(&self) -> Result<String, PeerError> {
        let durable = self.inner()?.durable;
        Ok(if durable { "indexeddb" } else { "memory" }.to_string())
    }

    /// Writes a register. Resolves once the write is durable.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn set(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        value: JsValue,
    ) -> Promise {
        self.write(
            text_arg(&key, "set: the key must be a string")
                .and_then(|key| json(&value, "set").map(|value| LocalWrite::Set { key, value })),
        )
    }

    /// Deletes whatever `key` holds (as far as this peer has seen it).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue) -> Promise {
        self.write(
            text_arg(&key, "delete: the key must be a string")
                .map(|key| LocalWrite::Delete { key }),
        )
    }

    /// Adds `by` (an integer, may be negative) to a counter.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn increment(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] by: JsValue,
    ) -> Promise {
        let by = match by.as_f64() {
            None => Err(PeerError::type_error(
                Code::InvalidArgument,
                "increment takes a number",
            )),
            Some(by)
                if by.fract() != 0.0 || !by.is_finite() || by.abs() > 9_007_199_254_740_991.0 =>
            {
                Err(PeerError::range_error(
                    Code::InvalidArgument,
                    "increment takes a safe integer",
                ))
            }
            Some(by) => Ok(by as i64),
        };
        let key = text_arg(&key, "increment: the key must be a string");
        self.write(key.and_then(|key| by.map(|by| LocalWrite::Increment { key, by })))
    }

    /// Adds a member to a set.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn add(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        member: JsValue,
    ) -> Promise {
        self.write(
            text_arg(&key, "add: the key must be a string")
                .and_then(|key| json(&member, "add").map(|member| LocalWrite::Add { key, member })),
        )
    }

    /// Removes a member from a set (a concurrent add wins).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn remove(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        member: JsValue,
    ) -> Promise {
        self.write(
            text_arg(&key, "remove: the key must be a string").and_then(|key| {
                json(&member, "remove").map(|member| LocalWrite::Remove { key, member })
            }),
        )
    }

    /// Writes `value` over every concurrent value of `key`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn resolve(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        value: JsValue,
    ) -> Promise {
        self.write(
            text_arg(&key, "resolve: the key must be a string").and_then(|key| {
                json(&value, "resolve").map(|value| LocalWrite::Resolve { key, value })
            }),
        )
    }

    /// Sets the room's policy for keys under `prefix`: how their registers
    /// show concurrent writes. Replicated room state: every peer of the
    /// room follows it (the longest matching prefix wins; concurrent
    /// settings of one prefix settle by Last-Write-Wins). Resolves once
    /// the write is durable.
    #[wasm_bindgen(js_name = setPolicy, unchecked_return_type = "Promise<void>")]
    pub fn set_policy(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] prefix: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ConflictPolicy")] policy: JsValue,
    ) -> Promise {
        let write = || {
            let prefix = text_arg(&prefix, "setPolicy: the prefix must be a string")?;
            let policy = text_arg(&policy, "setPolicy: the policy must be a string")?;
            let policy = (policy.parse())
                .map_err(|e| PeerError::range_error(Code::InvalidArgument, format!("{e}")))?;
            Ok(LocalWrite::Policy { prefix, policy })
        };
        self.write(write())
    }

    /// Sets what this peer shows the room about itself while it is here
    /// (any small JSON value: a name, a color, a cursor; `null` clears
    /// it). Ephemeral: signed, relayed, never stored nor in the state;
    /// refreshed while the peer is open, gone from the others' `presence()`
    /// when it closes, or 30 s after they last heard it. Throws a
    /// `RangeError` past 1 KiB of JSON.
    #[wasm_bindgen(js_name = setPresence)]
    pub fn set_presence(&self, value: JsValue) -> Result<(), PeerError> {
        let value = json(&value, "setPresence")?;
        {
            let mut i = self.inner_mut()?;
            if i.closed || i.closing {
                return Err(PeerError::closed());
            }
            i.node.set_presence(value.as_str(), now_ms()).map_err(|e| {
                PeerError::range_error(Code::InvalidArgument, format!("setPresence: {e}"))
            })?;
        }
        dispatch(&self.inner);
        Ok(())
    }

    /// Who is here: `[{ id, value, lastSeen }]`, this peer included once
    /// it has set a presence.
    #[wasm_bindgen(unchecked_return_type = "PresenceEntry[]")]
    pub fn presence(&self) -> Result<JsValue, PeerError> {
        Ok(presence_list(&self.inner()?.node))
    }

    /// The value of `key`, or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "JsonValue | undefined")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
    ) -> Result<JsValue, PeerError> {
        let key = text_arg(&key, "get: the key must be a string")?;
        Ok(match self.inner()?.node.engine().get_json(&key) {
            Some(text) => from_json(&text),
            None => JsValue::UNDEFINED,
        })
    }

    /// The shared state as plain JSON: `{ key: value, ... }`.
    #[wasm_bindgen(unchecked_return_type = "Record<string, JsonValue>")]
    pub fn state(&self) -> Result<JsValue, PeerError> {
        Ok(from_json(&self.inner()?.node.engine().state_json()))
    }

    /// The state as a table shows it: `[{ key, kind, value, writer,
    /// conflicted }]`, by key.
    #[wasm_bindgen(unchecked_return_type = "Entry[]")]
    pub fn entries(&self) -> Result<JsValue, PeerError> {
        Ok(from_json(&self.inner()?.node.engine().entries_json()))
    }

    /// This peer's version vector: `{ peerId: counter, ... }`.
    #[wasm_bindgen(unchecked_return_type = "Record<string, number>")]
    pub fn clock(&self) -> Result<JsValue, PeerError> {
        Ok(to_js(self.inner()?.node.engine().clock()))
    }

    /// The Merkle root of the state, as hex.
    pub fn digest(&self) -> Result<String, PeerError> {
        Ok(self.inner_mut()?.node.digest().to_string())
    }

    /// Keys with concurrent values on `multi-value` and `reconcile` policies.
    #[wasm_bindgen(unchecked_return_type = "Conflict[]")]
    pub fn conflicts(&self) -> Result<JsValue, PeerError> {
        Ok(to_js(&self.inner()?.node.engine().conflicts()))
    }

    /// The app's reconcile handler: `(key, candidates) => value`. It runs on
    /// the resolver peer, while the peer is at work: it answers at once
    /// (a promise is no answer), and the peer's methods called from it
    /// throw `REENTRANT`. Returning `undefined` (or throwing, a promise,
    /// what is not JSON) picks the Last-Write-Wins value.
    #[wasm_bindgen(js_name = onReconcile)]
    pub fn on_reconcile(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(key: string, candidates: Conflict[\"candidates\"]) => unknown"
        )]
        handler: JsValue,
    ) -> Result<(), PeerError> {
        let handler = function_arg(handler, "onReconcile: the handler must be a function")?;
        self.inner_mut()?
            .node
            .set_reconcile_handler(Box::new(move |key, candidates| {
                let answered =
                    handler.call2(&JsValue::NULL, &JsValue::from_str(key), &to_js(candidates));
                reconciled(key, answered)
            }));
        Ok(())
    }

    /// Known peers: `[{ id, state, rtt?, rejected, lastError?, bytesIn,
    /// bytesOut, buffered, clock?, digest?, standing?, server?, relayed? }]`.
    #[wasm_bindgen(unchecked_return_type = "PeerInfo[]")]
    pub fn peers(&self) -> Result<JsValue, PeerError> {
        let mut guard = self.inner_mut()?;
        let inner = &mut *guard;
        let Some(transport) = &inner.transport else {
            return Ok(js_sys::Array::new().into());
        };
        let keeper = transport.keeper();
        let reports: Vec<PeerReport> = transport
            .links()
            .into_iter()
            .map(|(peer, state, buffered)| PeerReport {
                server: Some(peer) == keeper,
                relayed: transport.is_relayed(peer),
                ..inner.node.report(peer, state, buffered as u64)
            })
            .collect();
        Ok(to_js(&reports))
    }

    /// Drops every connection and stops finding peers, until `goOnline()`.
    /// Writes go on locally and sync once back.
    #[wasm_bindgen(js_name = goOffline)]
    pub fn go_offline(&self) -> Result<(), PeerError> {
        {
            let mut inner = self.inner_mut()?;
            if let Some(transport) = &inner.transport {
                transport.go_offline();
            }
            inner.node.forget_presence();
        }
        dispatch(&self.inner);
        Ok(())
    }

    /// Finds the room's peers again and reconnects.
    #[wasm_bindgen(js_name = goOnline)]
    pub fn go_online(&self) -> Result<(), PeerError> {
        if let Some(transport) = &self.inner()?.transport {
            transport.go_online();
        }
        Ok(())
    }

    /// Listens to `"change"` (the event's `keys`), `"peer"`, `"conflict"`,
    /// `"message"`, `"snapshot"`, `"presence"` or `"error"`. Throws an
    /// `INVALID_ARGUMENT` `TypeError` for another name (a typo would
    /// otherwise listen for good to an event that never comes) or a
    /// listener that is not a function.
    // Typed per event by the `Peer` interface above (`PeerEventMap`).
    #[wasm_bindgen(js_name = addEventListener, skip_typescript)]
    pub fn add_event_listener(&self, kind: JsValue, listener: JsValue) -> Result<(), PeerError> {
        let kind = text_arg(&kind, "addEventListener: the event's name must be a string")?;
        if !EVENT_KINDS.contains(&kind.as_str()) {
            return Err(PeerError::type_error(
                Code::InvalidArgument,
                format!(
                    "addEventListener: no event is called \"{kind}\"; a peer tells change, \
                     peer, conflict, message, snapshot, presence and error"
                ),
            ));
        }
        let listener = function_arg(
            listener,
            "addEventListener: the listener must be a function",
        )?;
        let mut guard = self.inner_mut()?;
        let inner = &mut *guard;
        if kind == "conflict" && !inner.listeners.heard("conflict") {
            // The conflicts of now, as if told: their end is told too.
            let conflicts = inner.node.engine().conflicts();
            let keys = conflicts.iter().map(|c| Text::from(c.key.as_str()));
            inner.listeners.told_conflicts.clear();
            inner.listeners.note_told(keys, &[]);
        }
        inner.listeners.add(kind, listener);
        inner.tell_changes();
        Ok(())
    }

    // Typed per event by the `Peer` interface above (`PeerEventMap`).
    #[wasm_bindgen(js_name = removeEventListener, skip_typescript)]
    pub fn remove_event_listener(&self, kind: JsValue, listener: JsValue) -> Result<(), PeerError> {
        // As the DOM's: what was never added is removed without a word.
        let (Some(kind), Ok(listener)) = (kind.as_string(), listener.dyn_into::<Function>()) else {
            return Ok(());
        };
        let mut inner = self.inner_mut()?;
        inner.listeners.remove(&kind, &listener);
        inner.tell_changes();
        Ok(())
    }

    /// Closes the peer: folds its log into a snapshot (so the next start is
    /// quick), waits for unsaved writes, then releases its storage, its
    /// identity slot, its timer and its listeners. Rejects (`STORAGE`) if
    /// the last commit failed; the peer is closed all the same.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let saved = {
            let closing = match self.inner() {
                Ok(i) => !i.closed && i.storage.is_some(),
                Err(e) => return reject(e),
            };
            if !self.inner.borrow().closed {
                // The others drop our presence now, not after its timeout.
                let _ = self.inner.borrow_mut().node.set_presence("null", now_ms());
            }
            if closing {
                self.inner.borrow_mut().node.fold();
            }
            dispatch(&self.inner);
            let mut inner = self.inner.borrow_mut();
            // A write from here on is refused (`CLOSED`): it was taken, and
            // never settled nor stored (a review).
            inner.closing = true;
            inner.commits.drained()
        };
        let inner = self.inner.clone();
        let held = self
            .inner
            .borrow()
            .slot
            .as_ref()
            .map(|slot| slot.room.clone());
        let closed = future_to_promise(async move {
            let saved = JsFuture::from(saved).await;
            let mut inner = inner.borrow_mut();
            inner.closed = true;
            inner.timer = None;
            inner.now = None;
            inner.transport = None;
            inner.verifiers = None;
            inner.listeners.clear();
            inner.slot = None;
            if let Some(storage) = inner.storage.take() {
                storage.close();
            }
            saved.map(|_| JsValue::UNDEFINED)
        });
        if let Some(room) = held {
            super::identity::closing(&room, closed.clone());
        }
        closed
    }
}

/// The value an `onReconcile` handler `answered` for `key`: `None` (the
/// Last-Write-Wins value) for `undefined`, a throw, a promise (the answer
/// is needed now) or what is not JSON, each but `undefined` named in the
/// console, where an app's mistake is looked for.
fn reconciled(key: &str, answered: Result<JsValue, JsValue>) -> Option<crate::protocol::JsonValue> {
    let why = match answered {
        Ok(value) if value.is_undefined() => return None,
        Ok(value) if value.has_type::<Promise>() || is_thenable(&value) => {
            "returned a promise; it must return the value itself".to_string()
        }
        Ok(value) => match to_json(&value) {
            Ok(json) => return Some(json),
            Err(e) => format!("returned what is not JSON: {}", e.message),
        },
        Err(e) => format!("threw {}", crate::browser::convert::describe(&e)),
    };
    web_sys::console::error_1(
        &format!("cpc-sync: the onReconcile handler {why} (key {key:?}); the Last-Write-Wins value is kept").into(),
    );
    None
}

/// Whether `value` has a `then` method.
fn is_thenable(value: &JsValue) -> bool {
    value.is_object()
        && js_sys::Reflect::get(value, &"then".into()).is_ok_and(|then| then.is_function())
}

/// `[{ id, value, lastSeen }]`, values parsed.
pub(super) fn presence_list(node: &crate::protocol::sync::SyncNode) -> JsValue {
    node.presence()
        .into_iter()
        .map(|entry| {
            events::event_object_fields(&[
                ("id", JsValue::from(entry.id)),
                ("value", from_json(&entry.value)),
                ("lastSeen", JsValue::from(entry.last_seen as f64)),
            ])
        })
        .collect::<js_sys::Array>()
        .into()
}

impl Peer {
    /// The peer's state, unless the peer is at work: its `onReconcile`
    /// handler runs inside it, and a method of the peer called from there
    /// would find it borrowed (a panic, which left the peer unusable).
    fn inner(&self) -> Result<std::cell::Ref<'_, Inner>, PeerError> {
        self.inner.try_borrow().map_err(|_| PeerError::reentrant())
    }

    fn inner_mut(&self) -> Result<std::cell::RefMut<'_, Inner>, PeerError> {
        self.inner
            .try_borrow_mut()
            .map_err(|_| PeerError::reentrant())
    }

    /// Makes a local write and returns its promise: resolved once the write
    /// is durable (at once in memory), rejected with a `PeerError`.
    fn write(&self, write: Result<LocalWrite, PeerError>) -> Promise {
        let write = match write {
            Ok(write) => write,
            Err(e) => return reject(e),
        };
        match self.inner() {
            Err(e) => return reject(e),
            Ok(i) if i.closed || i.closing => return reject(PeerError::closed()),
            Ok(_) => {}
        }
        let (made, first) = {
            let mut i = self.inner.borrow_mut();
            let first = i.burst_ms.is_none();
            let now = *i.burst_ms.get_or_insert_with(now_ms);
            (i.node.apply(write, now), first)
        };
        if first {
            schedule_writes(&self.inner);
        }
        match made {
            Err(e) => reject(e.into()),
            Ok(None) => Promise::resolve(&JsValue::UNDEFINED),
            Ok(Some(seq)) => self.inner.borrow_mut().commits.wait_for(seq),
        }
    }
}
