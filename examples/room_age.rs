//! What a room costs as it ages: its snapshot (what a page stores and a
//! newcomer downloads), the engine's heap, and a cold start, after `n`
//! writes of one workload. `bench/room-age.mjs` runs the same workloads
//! (the same random stream) through Yjs and Loro.
//!
//! ```text
//! cargo run --profile bench --features testing --example room_age -- <workload> [n] [devices]
//! ```
//!
//! Three signed devices (`devices`) share the room. In turn, a device
//! picked at random writes a burst of 1 to 8 writes (`CPC_BURST`: up to
//! that many), sealed as one run as a page seals a task's writes, and
//! every other device takes it. Each device folds its log every 50,000
//! events (a page's `compactAfter`) against what all have; at the end
//! device 0 folds everything. Workloads:
//! - `overwrite`: 100 keys, each write overwrites one;
//! - `list_keys`: a list kept as keys: `item/<n>` added, the oldest
//!   deleted once 100 are live (half of the writes past that);
//! - `set_unique`: the same list as one set's members, added and removed;
//! - `origin_churn`: `overwrite`, with a new device (a new browser, a
//!   cleared profile) taking the place of an old one every 1,000 writes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use cpc_sync::protocol::testing::Rng;
use cpc_sync::protocol::{
    EngineConfig, Identity, JsonValue, P2PEvent, ReconciliationEngine, StateSnapshot, Trust,
    VectorClock,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; the counter only
// adds up the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Items live at once in the list workloads (more while adds run ahead).
const LIVE_ITEMS: u64 = 100;
/// Keys of the overwrite workloads.
const KEYS: u64 = 100;
/// Events logged between a device's folds.
const COMPACT_AFTER: usize = 50_000;

struct Device {
    identity: Identity,
    engine: ReconciliationEngine,
    sealed: u64,
    since_fold: usize,
}

impl Device {
    fn new(seed: u64) -> Device {
        let identity = Identity::from_seed(seed);
        let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
        Device {
            identity,
            engine,
            sealed: 0,
            since_fold: 0,
        }
    }

    /// Its writes since the last seal, sealed as one run.
    fn seal(&mut self) -> Vec<P2PEvent> {
        let run = (self.engine.seal_own(Some(&self.identity), self.sealed))
            .into_iter()
            .cloned()
            .collect();
        self.sealed = self.engine.clock().get(self.identity.peer());
        run
    }
}

fn json(text: &str) -> JsonValue {
    JsonValue::parse(text).expect("JSON")
}

/// What the writes made: the list workloads' next item and oldest live
/// one, and each overwritten key's last write time. The room's state is
/// checked against it at the end.
#[derive(Default)]
struct List {
    next: u64,
    oldest: u64,
    last: std::collections::BTreeMap<u64, u64>,
}

impl List {
    /// Whether the next write adds an item (else it deletes the oldest).
    fn adds(&self, rng: &mut Rng) -> bool {
        self.next - self.oldest < LIVE_ITEMS || rng.next_u64() % 2 == 0
    }

    /// The state the writes of `workload` should leave, as `state_json`
    /// gives it (a set's members sorted).
    fn state(&self, workload: &str) -> serde_json::Value {
        let live = self.oldest..self.next;
        let state: serde_json::Map<String, serde_json::Value> = match workload {
            "list_keys" => live
                .map(|n| {
                    let item = serde_json::json!({"done": false, "text": format!("buy milk {n}")});
                    (format!("item/{n}"), item)
                })
                .collect(),
            "set_unique" if live.is_empty() => serde_json::Map::new(),
            "set_unique" => {
                let mut members: Vec<String> = live.map(|n| format!("buy milk {n}")).collect();
                members.sort();
                [("list".to_string(), serde_json::json!(members))]
                    .into_iter()
                    .collect()
            }
            _ => (self.last.iter())
                .map(|(key, at)| {
                    let value = serde_json::json!({"text": "some value of a setting", "v": at});
                    (format!("key{key}"), value)
                })
                .collect(),
        };
        serde_json::Value::Object(state)
    }
}

/// `engine`'s state, a set's members sorted.
fn shown(engine: &ReconciliationEngine) -> serde_json::Value {
    let mut state: serde_json::Value = serde_json::from_str(&engine.state_json()).expect("JSON");
    for value in state.as_object_mut().expect("an object").values_mut() {
        if let Some(members) = value.as_array_mut() {
            members.sort_by_key(|m| m.to_string());
        }
    }
    state
}

/// One write of `workload` on `engine`.
fn write(
    engine: &mut ReconciliationEngine,
    workload: &str,
    rng: &mut Rng,
    list: &mut List,
    at: u64,
) {
    match workload {
        "overwrite" | "origin_churn" => {
            let key = rng.next_u64() % KEYS;
            let value = format!(r#"{{"v":{at},"text":"some value of a setting"}}"#);
            engine.set(&format!("key{key}"), json(&value), at).unwrap();
            list.last.insert(key, at);
        }
        "list_keys" if list.adds(rng) => {
            let value = format!(r#"{{"text":"buy milk {}","done":false}}"#, list.next);
            engine
                .set(&format!("item/{}", list.next), json(&value), at)
                .unwrap();
            list.next += 1;
        }
        "list_keys" => {
            engine.delete(&format!("item/{}", list.oldest), at).unwrap();
            list.oldest += 1;
        }
        "set_unique" if list.adds(rng) => {
            let member = json(&format!(r#""buy milk {}""#, list.next));
            engine.add("list", member, at).unwrap();
            list.next += 1;
        }
        "set_unique" => {
            let member = json(&format!(r#""buy milk {}""#, list.oldest));
            engine.remove("list", member, at).unwrap();
            list.oldest += 1;
        }
        other => panic!("no workload {other:?}: overwrite, list_keys, set_unique, origin_churn"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).map_or("overwrite", String::as_str);
    let writes: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let count: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let max_burst: u64 = std::env::var("CPC_BURST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut rng = Rng::new(42);
    let mut devices: Vec<Device> = (1..=count).map(Device::new).collect();
    let mut next_seed = count + 1;
    let mut list = List::default();
    let (mut at, mut written) = (1u64 << 40, 0u64);
    let started = Instant::now();
    while written < writes {
        let d = (rng.next_u64() % devices.len() as u64) as usize;
        let burst = 1 + rng.next_u64() % max_burst;
        for _ in 0..burst.min(writes - written) {
            at += 1_000;
            write(&mut devices[d].engine, workload, &mut rng, &mut list, at);
            written += 1;
        }
        let run = devices[d].seal();
        for (i, device) in devices.iter_mut().enumerate() {
            if i != d {
                for event in &run {
                    device.engine.receive(event.clone(), at).expect("taken");
                }
            }
            device.since_fold += run.len();
        }
        let all = VectorClock::meet(devices.iter().map(|d| d.engine.clock()));
        for device in &mut devices {
            if device.since_fold >= COMPACT_AFTER {
                device.engine.compact_encoded(&all);
                device.since_fold = 0;
            }
        }
        if workload == "origin_churn" && written >= 1_000 && written % 1_000 < burst {
            // A new device takes the room from device 0, and an old one
            // leaves for good.
            let mut fresh = Device::new(next_seed);
            next_seed += 1;
            let snapshot = StateSnapshot::decode(&devices[0].engine.encode_snapshot()).unwrap();
            fresh.engine.load_snapshot(snapshot, Trust::OWN).unwrap();
            for event in devices[0].engine.log().iter() {
                fresh.engine.receive(event.clone(), at).expect("taken");
            }
            devices.remove(1);
            devices.push(fresh);
        }
    }
    let simulated = started.elapsed().as_secs_f64();
    let all = VectorClock::meet(devices.iter().map(|d| d.engine.clock()));
    let mut first = devices.remove(0);
    let snapshot =
        (first.engine.compact_encoded(&all)).unwrap_or_else(|| first.engine.encode_snapshot());
    let expected = list.state(workload);
    assert_eq!(
        shown(&first.engine),
        expected,
        "the room holds what was written"
    );
    let origins = first.engine.clock().iter().count();
    let state = first.engine.state_json().len();
    let events = StateSnapshot::decode(&snapshot).unwrap().events.len();
    let peer = first.identity.peer();
    let before = LIVE.load(Ordering::Relaxed);
    drop(first);
    let heap = before - LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let decoded = StateSnapshot::decode(&snapshot).unwrap();
    let cold = ReconciliationEngine::from_snapshot(peer, EngineConfig::default(), decoded).unwrap();
    let cold_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(shown(&cold), expected, "a cold start holds it too");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&snapshot).unwrap();
    let gzipped = gzip.finish().unwrap().len();
    println!(
        "{workload}, {writes} writes, {count} devices (state checked): the state's JSON {state} B; snapshot {} B, \
         {gzipped} B gzipped, {events} events; {origins} origins; the engine's heap {} KB; \
         cold start {cold_ms:.1} ms ({simulated:.1} s to simulate)",
        snapshot.len(),
        heap / 1024,
    );
}
