//! Benchmark entry points, compiled only with the `bench` feature into a
//! separate package (`target/bench/pkg`) for `npm run bench`, which runs
//! the same workloads against Yjs, Automerge and Loro in one browser.
//!
//! What a library's users do is measured from JS (apply an encoded update
//! per call); workloads too large to cross the boundary event by event
//! (1M events) are generated, applied and timed inside wasm.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::protocol::room::RoomSecret;
use crate::protocol::seal;
use crate::protocol::snapshot::Checks;
use crate::protocol::testing::workload;
use crate::protocol::{EngineConfig, P2PEvent, ReconciliationEngine, StateSnapshot, Trust};

mod gzip;
mod wire;
mod workloads;

pub use wire::{BenchNode, BenchReplica};

const NOW: u64 = 2_000_000_000_000;

fn now_ms() -> f64 {
    js_sys::Date::now()
}

fn engine(index: u32) -> ReconciliationEngine {
    ReconciliationEngine::new(workload::peer(index as u64), EngineConfig::default())
}

/// Sealing `runs` runs of `len` events, then verifying them:
/// `{ sign_ms, verify_ms }` in all.
#[wasm_bindgen(js_name = sealCost)]
pub fn seal_cost(len: u32, runs: u32) -> JsValue {
    let (identity, mut all) = workload::runs_to_seal(len as usize, runs as usize);
    let start = now_ms();
    for run in &mut all {
        seal::seal(&identity, run);
    }
    let sign_ms = now_ms() - start;
    let start = now_ms();
    let verified = all
        .iter()
        .filter(|run| seal::verify_run(run).is_ok())
        .count();
    let verify_ms = now_ms() - start;
    result(&[
        ("sign_ms", sign_ms),
        ("verify_ms", verify_ms),
        ("verified", verified as f64),
    ])
}

/// Batch verification alone, the floor under the signed path: `n` lone
/// seals of `n` writers (one event each, as in B3.1), their digests made
/// first, verified in chunks of 256 as a node does: `{ verify_ms,
/// signatures }`.
#[wasm_bindgen(js_name = batchVerifyCost)]
pub fn batch_verify_cost(n: u32) -> JsValue {
    use crate::protocol::signature;
    let signed: Vec<(crate::protocol::identity::PublicKey, [u8; 32], _)> =
        workload::one_write_each_signed(u64::from(n), true)
            .into_iter()
            .filter_map(|e| {
                let seal = e.seal.as_deref()?;
                let digest = seal::digest(e.id.peer, seal.first, std::slice::from_ref(&e));
                Some((*seal.key(), digest, seal.signature))
            })
            .collect();
    let items: Vec<signature::Item> = signed.iter().map(|(k, m, s)| (k, &m[..], s)).collect();
    let start = now_ms();
    let valid = items.chunks(256).all(signature::verify_batch);
    let verify_ms = now_ms() - start;
    result(&[
        ("verify_ms", if valid { verify_ms } else { f64::NAN }),
        ("signatures", items.len() as f64),
    ])
}

/// The seals of `n` lone writers (as in C1.2), packed as a node hands
/// them to its Workers ([`seal::pack`]): per seal its key, the run's digest
/// and the signature.
#[wasm_bindgen(js_name = sealItems)]
pub fn seal_items(n: u32) -> Vec<u8> {
    let batch = seal::check_runs(workload::one_write_each_signed(u64::from(n), true));
    seal::pack(std::slice::from_ref(&batch))
}

/// Verifies packed seals as a Worker does ([`seal::verify_packed`]):
/// whether every one verifies.
#[wasm_bindgen(js_name = verifySealItems)]
pub fn verify_seal_items(bytes: &[u8]) -> bool {
    bytes.len() % seal::PACKED_SEAL == 0 && seal::verify_packed(bytes).iter().all(|&v| v == 1)
}

fn result(fields: &[(&str, f64)]) -> JsValue {
    let out = Object::new();
    for (name, value) in fields {
        let _ = Reflect::set(&out, &(*name).into(), &(*value).into());
    }
    out.into()
}

/// Causal apply: `total` events from `peers` writers over `keys` keys,
/// `displaced` of them (a fraction) moved up to 2,000 positions later.
/// Returns `{ ms, applied, in_order_ms, in_order_applied }`.
///
/// The applying engine is none of the writers (`workload::reader`): an
/// engine refuses events that claim to be its own, and the refusals, and
/// the holds of everything after them, are quicker than applying.
#[wasm_bindgen(js_name = causalApply)]
pub fn causal_apply(total: u32, peers: u32, keys: u32, displaced: f64) -> JsValue {
    let events = workload::rounds(total as usize, peers as u64, keys as u64, 16, 7);
    let order = workload::displace(&events, displaced, 2_000, 8);
    let run = |events: Vec<P2PEvent>| {
        let mut e = ReconciliationEngine::new(workload::reader(), EngineConfig::default());
        let start = now_ms();
        for event in events {
            let _ = e.receive(event, NOW);
        }
        (now_ms() - start, e.stats().applied)
    };
    let (ms, applied) = run(order);
    let (in_order_ms, in_order_applied) = run(events);
    result(&[
        ("ms", ms),
        ("applied", applied as f64),
        ("in_order_ms", in_order_ms),
        ("in_order_applied", in_order_applied as f64),
    ])
}

/// A verified snapshot of `entities` keys from 64 signed origins writing
/// in runs of `run` events (the path a browser peer runs): `{ encode_ms,
/// decode_ms, verify_ms, ready_ms, bytes, entity_bytes }` (`ready_ms`:
/// decode, verify and load into a fresh engine; `entity_bytes`: the
/// unverifiable entity-only encoding snapshots used to be), and the state's
/// JSON text for the caller to compare against (`json`).
#[wasm_bindgen(js_name = snapshot)]
pub fn snapshot(entities: u32, run: u32) -> JsValue {
    let events = workload::signed_rounds(entities as usize, 64, entities as u64, run as usize, 9);
    let mut state = engine(0);
    workload::apply_verified(&mut state, events, NOW);
    let start = now_ms();
    let bytes = state.encode_snapshot();
    let encode_ms = now_ms() - start;
    let start = now_ms();
    let decoded = StateSnapshot::decode(&bytes).ok();
    let decode_ms = now_ms() - start;
    let checks = Checks {
        me: workload::peer(1),
        own_seq: 0,
        signed: true,
        heads: true,
        max_origins: 1024,
    };
    let start = now_ms();
    let verified = decoded.as_ref().is_some_and(|s| s.verify(&checks).is_ok());
    let verify_ms = now_ms() - start;
    let entity_bytes = decoded.as_ref().map_or(0, |s| {
        postcard::to_allocvec(&(state.clock(), s.rebuild(EngineConfig::default().hash_seed)))
            .map_or(0, |b| b.len())
    });
    let start = now_ms();
    let ready = StateSnapshot::decode(&bytes).ok().and_then(|s| {
        let mut fresh = ReconciliationEngine::new(workload::peer(1), EngineConfig::default());
        let trust = Trust {
            signed: true,
            now_ms: Some(NOW),
        };
        fresh.load_snapshot(s, trust).ok().map(|()| fresh)
    });
    let ready_ms = now_ms() - start;
    let out = result(&[
        ("encode_ms", encode_ms),
        ("decode_ms", decode_ms),
        ("verify_ms", if verified { verify_ms } else { f64::NAN }),
        ("ready_ms", ready_ms),
        ("bytes", bytes.len() as f64),
        ("entity_bytes", entity_bytes as f64),
        // Only a load that ends in the writer's exact state counts.
        (
            "entities",
            ready
                .filter(|e| e.state_json() == state.state_json())
                .map_or(0, |e| e.keys().count()) as f64,
        ),
    ]);
    let _ = Reflect::set(&out, &"json".into(), &state.state_json().into());
    out
}

/// A page's cold start without the browser: our own stored snapshot of
/// `entities` entities in runs of `run` (a signed room), decoded and
/// loaded as `Peer.open` does (`SyncNode::restore`: checked as our own,
/// its seals not verified again), `times` times in one process:
/// `{ first_decode_ms, first_ready_ms, best_decode_ms, best_ready_ms }`
/// (the first with cold code, as a page has it). `ready`: decode and load.
#[wasm_bindgen(js_name = ownSnapshotLoad)]
pub fn own_snapshot_load(entities: u32, run: u32, times: u32) -> JsValue {
    let events = workload::signed_rounds(entities as usize, 64, entities as u64, run as usize, 9);
    let mut state = engine(0);
    workload::apply_verified(&mut state, events, NOW);
    let bytes = state.encode_snapshot();
    let expected = state.state_json();
    drop(state);
    let mut runs = Vec::new();
    for _ in 0..times.max(1) {
        let start = now_ms();
        let decoded = StateSnapshot::decode_shared(&bytes).expect("our own snapshot decodes");
        let decode_ms = now_ms() - start;
        let loaded = ReconciliationEngine::from_snapshot(
            workload::peer(0),
            EngineConfig::default(),
            decoded,
        )
        .expect("our own snapshot loads");
        let ready_ms = now_ms() - start;
        assert_eq!(
            loaded.state_json(),
            expected,
            "the load is the writer's state"
        );
        runs.push((decode_ms, ready_ms));
    }
    let best = |f: fn(&(f64, f64)) -> f64| runs.iter().map(f).fold(f64::INFINITY, f64::min);
    result(&[
        ("first_decode_ms", runs[0].0),
        ("first_ready_ms", runs[0].1),
        ("best_decode_ms", best(|r| r.0)),
        ("best_ready_ms", best(|r| r.1)),
    ])
}

/// Megabytes a second BLAKE3 hashes in the wasm: inputs of `len` bytes,
/// each hashed `times` times (a frame's check takes a few KB, a seal's
/// run digest tens, a snapshot's id megabytes).
#[wasm_bindgen(js_name = hashCost)]
pub fn hash_cost(len: u32, times: u32) -> f64 {
    let input = crate::protocol::testing::blake3_transcript::input(len as usize);
    let start = now_ms();
    for _ in 0..times {
        std::hint::black_box(crate::protocol::blake3::hash(std::hint::black_box(&input)));
    }
    let ms = now_ms() - start;
    f64::from(len) * f64::from(times) / 1e3 / ms.max(1e-3)
}

/// Milliseconds to derive one room's keys from its secret (Argon2id at the
/// default cost): what each guess at a secret costs whoever sees the room
/// id. The median of `times` derivations.
#[wasm_bindgen(js_name = roomKeyCost)]
pub fn room_key_cost(times: u32) -> f64 {
    let mut samples: Vec<f64> = (0..times.max(1))
        .map(|i| {
            let start = now_ms();
            let room = RoomSecret::new("bench", &format!("guess {i}"));
            let took = now_ms() - start;
            std::hint::black_box(room);
            took
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// A whole warm-up of the receive path (`Peer.open`'s `warmUp`), run in
/// one go: `{ ms, longest_step_ms }`. The first call in a page is the cost
/// a page pays (cold code); a second shows the same work warm. A page runs
/// its steps in tasks of ~8 ms, so the longest step is its longest task.
#[wasm_bindgen(js_name = warmUpCost)]
pub fn warm_up_cost() -> JsValue {
    let start = now_ms();
    let mut warm = crate::protocol::sync::warm::WarmUp::new(NOW);
    let mut longest: f64 = 0.0;
    loop {
        let step = now_ms();
        let more = warm.step();
        longest = longest.max(now_ms() - step);
        if !more {
            break;
        }
    }
    let out = Object::new();
    let _ = Reflect::set(&out, &"ms".into(), &(now_ms() - start).into());
    let _ = Reflect::set(&out, &"longest_step_ms".into(), &longest.into());
    out.into()
}

/// The host's side of a newcomer's join, in a fresh page: a signed host
/// of `updates` writes (in bursts of 1,000) answers a newcomer's digest;
/// the milliseconds of its first `tasks` tasks (the digest's, then the
/// wakes that send the rest). `warm`: the page's warm-up (`Peer.open`'s)
/// ran before the join, as it does in a page open for a while.
#[wasm_bindgen(js_name = answerTasks)]
pub fn answer_tasks(updates: u32, warm: bool, tasks: u32) -> Vec<f64> {
    use crate::protocol::sync::{LocalWrite, Output, SyncConfig, SyncNode};
    use crate::protocol::{Identity, JsonValue};
    let node = |seed: u64| {
        let identity = Identity::from_seed(seed);
        let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
        let config = SyncConfig {
            identity: Some(identity),
            ..SyncConfig::default()
        };
        SyncNode::new(engine, config)
    };
    let mut host = node(1);
    for i in 0..updates {
        let write = LocalWrite::Set {
            key: format!("key/{i}"),
            value: JsonValue::from_canonical(i.to_string()),
        };
        let _ = host.apply(write, NOW);
        if (i + 1) % 1_000 == 0 {
            host.take_outputs();
        }
    }
    host.take_outputs();
    if warm {
        let mut warm = crate::protocol::sync::warm::WarmUp::new(NOW);
        while warm.step() {}
    }
    let mut new = node(2);
    host.connect(new.peer(), NOW);
    new.connect(host.peer(), NOW);
    for output in host.take_outputs() {
        if let Output::Send { frame, .. } = output {
            new.receive_frame(host.peer(), &frame, NOW);
        }
    }
    let digests: Vec<Vec<u8>> = new
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    let mut times = Vec::new();
    let start = now_ms();
    for frame in &digests {
        host.receive_frame(new.peer(), frame, NOW);
    }
    host.take_outputs();
    times.push(now_ms() - start);
    while times.len() < tasks as usize && host.next_timer() <= NOW {
        let start = now_ms();
        host.tick(NOW);
        host.take_outputs();
        times.push(now_ms() - start);
    }
    times
}
