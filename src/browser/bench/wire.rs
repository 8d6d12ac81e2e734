//! The side-by-side workloads on the path a browser peer runs: frames made
//! by signed writers, taken by a signed node through `receive_frame`
//! ([`BenchNode`]), and the engine alone on the same frames
//! ([`BenchReplica`], a labelled second row).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{now_ms, result, NOW};
use crate::browser::verify::Verifiers;
use crate::protocol::room::RoomSecret;
use crate::protocol::sync::wire::{self, Decoded, Message};
use crate::protocol::sync::Refusal;
use crate::protocol::testing::wire::{self as workload, Receiver};
use crate::protocol::testing::workload::settle;
use crate::protocol::{EngineConfig, ReconciliationEngine};

fn frames(frames: Vec<Vec<u8>>) -> Array {
    frames
        .iter()
        .map(|f| JsValue::from(Uint8Array::from(f.as_slice())))
        .collect()
}

/// The frames of B3.1 (`sameKey`) or C1.2: `n` signed writers writing once.
#[wasm_bindgen(js_name = oneWriteEach)]
pub fn one_write_each(n: u32, same_key: bool) -> Array {
    frames(workload::one_write_each(n as u64, same_key))
}

/// The frames of the run-heavy workload: `writers` writers, `updates` each
/// over `keys` keys, in bursts of `burst`.
#[wasm_bindgen(js_name = runHeavy)]
pub fn run_heavy(writers: u32, updates: u32, keys: u32, burst: u32) -> Array {
    frames(workload::run_heavy(
        writers as u64,
        updates as u64,
        keys as u64,
        burst.max(1) as u64,
    ))
}

/// What stays on a page's thread when Workers verify the seals: the
/// frames of `workload` (`"b31"`, `"c12"`, `"run_heavy"`: the side-by-side
/// sizes) through a signed node that hands its seals out, each batch
/// answered at once with the verdicts an untimed first pass computed (the
/// same batches come out each run). `{ ms, digest }` of the last of
/// `runs` timed runs (ms: each run's, comma-separated).
#[wasm_bindgen(js_name = pageThread)]
pub fn page_thread(workload: &str, runs: u32) -> Result<JsValue, JsError> {
    let frames = match workload {
        "b31" => workload::one_write_each(1_540, true),
        "c12" => workload::one_write_each(30_000, false),
        "run_heavy" => workload::run_heavy(4, 25_000, 10_000, 100),
        other => return Err(JsError::new(&format!("no workload {other}"))),
    };
    let mut verdicts = std::collections::HashMap::new();
    let mut times = Vec::new();
    let mut digest = String::new();
    for timed in std::iter::once(false).chain(std::iter::repeat_n(true, runs as usize)) {
        let start = super::now_ms();
        let (root, node) = workload::page_thread(&frames, &mut verdicts)
            .map_err(|r| JsError::new(&r.to_string()))?;
        if timed {
            times.push(format!("{:.1}", super::now_ms() - start));
        }
        digest = root;
        drop(node);
    }
    let out = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&out, &"ms".into(), &times.join(",").into());
    let _ = js_sys::Reflect::set(&out, &"digest".into(), &digest.into());
    Ok(out.into())
}

/// A signed browser peer's node, fed frames from JS as its data channel
/// feeds them.
#[wasm_bindgen]
pub struct BenchNode {
    receiver: Rc<RefCell<Receiver>>,
    /// When the first frame came (the node's clock runs from there).
    start_ms: Rc<Cell<Option<f64>>>,
    /// Workers verifying the seals ([`BenchNode::with_workers`]), as a
    /// page's peer has them.
    verifiers: Option<Verifiers>,
    failed: Rc<RefCell<Option<String>>>,
    /// Called once the last batch out is settled ([`BenchNode::when_settled`]).
    settled: Rc<RefCell<Option<js_sys::Function>>>,
}

/// Milliseconds since the first frame, by the page's clock.
fn elapsed_ms(start: &Cell<Option<f64>>) -> u64 {
    let now = js_sys::Date::now();
    let first = start.get().unwrap_or(now);
    start.set(Some(first));
    (now - first) as u64
}

/// Calls the waiting [`BenchNode::when_settled`] callback, once.
fn notify(settled: &RefCell<Option<js_sys::Function>>) {
    let callback = settled.borrow_mut().take();
    if let Some(callback) = callback {
        let _ = callback.call0(&JsValue::NULL);
    }
}

#[wasm_bindgen]
impl BenchNode {
    #[wasm_bindgen(constructor)]
    pub fn new() -> BenchNode {
        BenchNode {
            receiver: Rc::new(RefCell::new(Receiver::new())),
            start_ms: Rc::default(),
            verifiers: None,
            failed: Rc::default(),
            settled: Rc::default(),
        }
    }

    /// A node whose seals `workers` Web Workers verify, as a page's peer
    /// does (`verifyWorkers`): settle with [`BenchNode::verifying`] at 0
    /// after [`BenchNode::finish`].
    #[wasm_bindgen(js_name = withWorkers)]
    pub fn with_workers(workers: usize) -> Result<BenchNode, JsValue> {
        if workers == 0 {
            // `undefined` from JS arrives as 0: a harness bug, not a pool.
            return Err(JsError::new("withWorkers: at least one worker").into());
        }
        let receiver = Rc::new(RefCell::new(Receiver::offloading()));
        let start_ms: Rc<Cell<Option<f64>>> = Rc::default();
        let failed: Rc<RefCell<Option<String>>> = Rc::default();
        let settled: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
        let (answered, clock, failures) = (receiver.clone(), start_ms.clone(), failed.clone());
        let (on_settled, on_failed) = (settled.clone(), settled.clone());
        let verifiers = Verifiers::start(
            workers,
            move |batch, verdicts| {
                let elapsed = elapsed_ms(&clock);
                let mut receiver = answered.borrow_mut();
                let _ = receiver.verified(batch, &verdicts, elapsed);
                let idle = receiver.node().verifying() == 0;
                drop(receiver);
                if idle {
                    notify(&on_settled);
                }
            },
            move |reason| {
                *failures.borrow_mut() = Some(reason);
                notify(&on_failed);
            },
        )?;
        Ok(BenchNode {
            receiver,
            start_ms,
            verifiers: Some(verifiers),
            failed,
            settled,
        })
    }

    /// Takes one frame, at the time it comes (seals wait for the rest of
    /// their verification window); a refused one is an error.
    pub fn receive(&mut self, frame: &[u8]) -> Result<(), JsError> {
        let refused = |r: Refusal| JsError::new(&r.to_string());
        let elapsed = elapsed_ms(&self.start_ms);
        self.receiver
            .borrow_mut()
            .tick_at(elapsed)
            .map_err(refused)?;
        // The frame reads the clock after the timer ran, as a page's
        // message task does after its timer task: time spent verifying in
        // the timer is not a pause in the input (which would start the
        // digest's catching up in the middle of a stream).
        let elapsed = elapsed_ms(&self.start_ms);
        self.receiver
            .borrow_mut()
            .frame_at(frame, elapsed)
            .map_err(refused)?;
        self.hand_out()
    }

    /// Batches handed out go to the workers.
    fn hand_out(&self) -> Result<(), JsError> {
        let Some(verifiers) = &self.verifiers else {
            return Ok(());
        };
        for (batch, seals) in self.receiver.borrow_mut().take_verify() {
            verifiers
                .verify(batch, &seals)
                .map_err(|e| JsError::new(&crate::browser::convert::describe(&e)))?;
        }
        Ok(())
    }

    /// Verifies what waits for verification (with workers: hands it out;
    /// once [`BenchNode::verifying`] is 0, a second call gives the final
    /// root), brings the digest up to date; returns its root.
    pub fn finish(&mut self) -> Result<String, JsError> {
        let elapsed = elapsed_ms(&self.start_ms);
        if self.verifiers.is_some() {
            self.receiver
                .borrow_mut()
                .verify_held(elapsed)
                .map_err(|r| JsError::new(&r.to_string()))?;
            self.hand_out()?;
        }
        self.receiver
            .borrow_mut()
            .finish(elapsed)
            .map_err(|r| JsError::new(&r.to_string()))
    }

    /// Whether the workers run (a page that warms up has them running
    /// before its first frames come).
    pub fn ready(&self) -> bool {
        self.verifiers.as_ref().is_none_or(Verifiers::ready)
    }

    /// The workers verifying this node's seals (0: in place).
    pub fn workers(&self) -> usize {
        self.verifiers.as_ref().map_or(0, Verifiers::len)
    }

    /// Batches out with the workers; an error once one failed.
    pub fn verifying(&self) -> Result<usize, JsError> {
        if let Some(reason) = &*self.failed.borrow() {
            return Err(JsError::new(reason));
        }
        Ok(self.receiver.borrow().node().verifying())
    }

    /// Calls `callback` once no batch is out with the workers (at once if
    /// none is, or once one failed): what a page learns from its peer's
    /// change callback, with no timer's clamp on a harness's polling.
    #[wasm_bindgen(js_name = whenSettled)]
    pub fn when_settled(&self, callback: js_sys::Function) {
        let idle = self.failed.borrow().is_some() || self.receiver.borrow().node().verifying() == 0;
        if idle {
            let _ = callback.call0(&JsValue::NULL);
        } else {
            *self.settled.borrow_mut() = Some(callback);
        }
    }

    #[wasm_bindgen(js_name = stateJson)]
    pub fn state_json(&self) -> String {
        self.receiver.borrow().node().engine().state_json()
    }

    /// The version vector's encoded size, bytes.
    #[wasm_bindgen(js_name = clockBytes)]
    pub fn clock_bytes(&self) -> usize {
        postcard::to_allocvec(self.receiver.borrow().node().engine().clock()).map_or(0, |b| b.len())
    }
}

impl Default for BenchNode {
    fn default() -> Self {
        Self::new()
    }
}

/// The engine alone: decodes a frame and hands its events to the engine,
/// with no seal check and none of the node's outputs. Not a path any
/// browser peer runs; kept as a labelled row beside [`BenchNode`].
#[wasm_bindgen]
pub struct BenchReplica {
    engine: ReconciliationEngine,
}

#[wasm_bindgen]
impl BenchReplica {
    #[wasm_bindgen(constructor)]
    pub fn new() -> BenchReplica {
        BenchReplica {
            engine: ReconciliationEngine::new(workload::neighbour(), EngineConfig::default()),
        }
    }

    pub fn receive(&mut self, frame: &[u8]) -> Result<(), JsError> {
        let Ok(Decoded::Message(Message::Events(events))) = wire::decode(frame) else {
            return Err(JsError::new("not an events frame"));
        };
        for event in events {
            self.engine
                .receive(event, NOW)
                .map_err(|e| JsError::new(&e.to_string()))?;
        }
        Ok(())
    }

    pub fn finish(&mut self) -> String {
        self.engine.digest().to_string()
    }

    #[wasm_bindgen(js_name = stateJson)]
    pub fn state_json(&self) -> String {
        self.engine.state_json()
    }

    #[wasm_bindgen(js_name = clockBytes)]
    pub fn clock_bytes(&self) -> usize {
        postcard::to_allocvec(self.engine.clock()).map_or(0, |b| b.len())
    }
}

impl Default for BenchReplica {
    fn default() -> Self {
        Self::new()
    }
}

/// Anti-entropy as deployed: two signed replicas of `total` writes of one
/// signed writer made in bursts of `burst` (1: a write per task, a seal
/// each), the second lacking the last `d` (the writer's bursts restart
/// there), in a room with a secret if
/// `secret` (its handshake counted): `{ a_to_b, b_to_a, event_bytes,
/// round_trips }`.
#[wasm_bindgen(js_name = syncOverhead)]
pub fn sync_overhead(total: u32, d: u32, burst: u32, secret: bool) -> JsValue {
    let split = (total - d) as u64;
    let events = workload::signed_history(total as u64, burst.max(1) as u64, split);
    let room = || secret.then(|| RoomSecret::new("bench", "a room secret"));
    let mut a = workload::signed_node_with(&events, 0xA, room());
    let mut b = workload::signed_node_with(&events[..(total - d) as usize], 0xB, room());
    let o = settle(&mut a, &mut b);
    let same = a.digest() == b.digest();
    result(&[
        ("a_to_b", o.bytes[0] as f64),
        ("b_to_a", o.bytes[1] as f64),
        ("event_bytes", o.event_bytes as f64),
        ("round_trips", o.rounds.div_ceil(2) as f64),
        ("settled", if same { 1.0 } else { 0.0 }),
    ])
}

/// A snapshot of `megabytes` MB through the wire, as its sender frames
/// its chunks and its receiver reads them (each frame's check included):
/// `{ encode_ms, decode_ms }`.
#[wasm_bindgen(js_name = wireChunks)]
pub fn wire_chunks(megabytes: u32) -> Result<JsValue, JsError> {
    const CHUNK: usize = 60 * 1024;
    let total = megabytes as usize * 1024 * 1024;
    let bytes: Vec<u8> = (0..CHUNK).map(|i| (i * 7) as u8).collect();
    let id = crate::protocol::Hash32([1; 32]);
    let start = now_ms();
    let frames: Vec<Vec<u8>> = (0..total.div_ceil(CHUNK))
        .flat_map(|i| {
            let chunk = Message::SnapshotChunk {
                id,
                offset: (i * CHUNK) as u64,
                total: total as u64,
                bytes: bytes.clone(),
            };
            wire::encode(&chunk, i as u32)
        })
        .collect();
    let encode_ms = now_ms() - start;
    let start = now_ms();
    for frame in &frames {
        match wire::decode(frame).map_err(|e| JsError::new(&e.to_string()))? {
            Decoded::Message(Message::SnapshotChunk { .. }) => {}
            _ => return Err(JsError::new("not a chunk")),
        }
    }
    let decode_ms = now_ms() - start;
    Ok(result(&[
        ("encode_ms", encode_ms),
        ("decode_ms", decode_ms),
    ]))
}
