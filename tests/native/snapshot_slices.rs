//! A snapshot taken a slice at a time (`SyncConfig::snapshot_slice`): a
//! newcomer decodes the snapshot it receives, and loads it, a slice at
//! each timer, so a page's thread is never held for the whole of either.
//! Taken in slices it is the same state as taken at once; a defect found
//! in a late slice refuses it whole; writes and events that come while it
//! loads are kept; no other snapshot is taken meanwhile.

use crate::common;

use common::{engine, for_seeds, json, peer, register_write, signed_node, Rng};
use cpc_sync::protocol::seal::verify_packed;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{
    LocalWrite, Output, Persist, Refusal, SyncConfig, SyncNode, CHANGES_AT_ONCE,
};
use cpc_sync::protocol::testing::workload;
use cpc_sync::protocol::{
    ConflictPolicy, EngineConfig, EventId, PeerId, ReconciliationEngine, SnapshotError,
    StateSnapshot, Timestamp, Trust,
};

const NOW: u64 = 1_700_000_000_000;

/// Events a slice takes in these tests: a snapshot of a few thousand
/// events takes several.
const SLICE: usize = 500;

/// Loaded through `begin_load`, steps of `slice` and `finish_load`, or
/// by `load_snapshot` at once: the same state, clock, digest and held
/// events applied, whatever the slices.
#[test]
fn a_load_in_slices_is_the_load_at_once() {
    for_seeds(
        "a_load_in_slices_is_the_load_at_once",
        "CPC_CASES",
        12,
        |seed| {
            let mut rng = Rng::new(seed);
            let events = workload::rounds(4_000, 6, 300, 8, seed);
            let mut host = engine(1);
            // Concurrent writes under a multi-value policy stay conflicts.
            host.set_room_policy("key1", ConflictPolicy::MultiValue, NOW)
                .expect("a policy");
            for event in events {
                host.receive(event, NOW).expect("taken");
            }
            // Two writers' concurrent writes to a key under the policy: a
            // conflict whatever the seed (the rounds leave none in ~0.2% of
            // seeds).
            for writer in [100, 101] {
                let id = EventId::new(peer(writer), 1);
                let write = register_write(id, "key1/both", &writer.to_string(), NOW);
                host.receive(write, NOW).expect("taken");
            }
            host.increment("counter", 3, NOW).expect("a write");
            host.add("set", json("\"member\""), NOW).expect("a write");
            let bytes = host.encode_snapshot();
            // An event written after the snapshot reaches the newcomer first:
            // held until the load.
            let later = host
                .set("key1", json("\"after\""), NOW + 1)
                .expect("a write");

            let mut at_once = ReconciliationEngine::new(PeerId(9), EngineConfig::default());
            at_once.receive(later.clone(), NOW + 2).expect("held");
            let snapshot = StateSnapshot::decode(&bytes).expect("decodes");
            at_once
                .load_snapshot(snapshot.clone(), Trust::from_peer(NOW + 2))
                .expect("loads");

            let mut sliced = ReconciliationEngine::new(PeerId(9), EngineConfig::default());
            sliced.receive(later, NOW + 2).expect("held");
            let mut load = sliced
                .begin_load(snapshot, Trust::from_peer(NOW + 2))
                .expect("checks");
            let slice = 1 + rng.below(3_000);
            // Now and then the finish comes before the steps are done: it
            // does the rest.
            let stop = rng.below(4) == 0;
            let mut steps = 1;
            while !sliced.load_step(&mut load, slice).expect("a step") {
                steps += 1;
                if stop && steps == 3 {
                    break;
                }
            }
            if !stop {
                // Checked, keyed, rebuilt and split: four passes over the
                // events (or their entities).
                assert!(steps >= 2 * load.len() / slice, "{steps} steps of {slice}");
            }
            assert!(sliced.clock().is_empty(), "nothing taken before the finish");
            sliced.finish_load(load).expect("loads");

            assert!(sliced.state_json() == at_once.state_json());
            assert!(sliced.state_json() == host.state_json());
            assert_eq!(sliced.clock(), at_once.clock());
            assert_eq!(sliced.digest(), at_once.digest());
            assert_eq!(sliced.digest(), host.digest());
            assert!(sliced.holding().is_empty(), "the held event applied");
            assert_eq!(sliced.stats(), at_once.stats());
            // The room's policy, the conflicts and the changes reported.
            assert_eq!(sliced.room_policy("key1"), Some(ConflictPolicy::MultiValue));
            assert!(!sliced.conflicts().is_empty(), "concurrent writes conflict");
            assert_eq!(sliced.conflicts(), at_once.conflicts());
            let mut changes = (sliced.take_changes(), at_once.take_changes());
            changes.0.sort();
            changes.1.sort();
            assert!(changes.0 == changes.1, "the same keys reported changed");
            assert_eq!(
                changes.0.len() + 1,
                sliced.keys().count(),
                "all but the policy"
            );
        },
    );
}

/// An engine that took events since its load began is no longer fresh:
/// the snapshot is checked again and joined with what it took, as a load
/// at once would.
#[test]
fn an_engine_that_took_events_meanwhile_joins_the_snapshot() {
    let mut host = engine(1);
    for i in 0..2_000 {
        host.set(&format!("key{i}"), json(&i.to_string()), NOW)
            .expect("a write");
    }
    let snapshot = StateSnapshot::decode(&host.encode_snapshot()).expect("decodes");
    let mut other = engine(2);
    let concurrent = other
        .set("key7", json("\"other\""), NOW + 5)
        .expect("a write");
    let alone = other.set("theirs", json("1"), NOW + 6).expect("a write");

    let mut new = engine(9);
    let mut load = new
        .begin_load(snapshot.clone(), Trust::from_peer(NOW + 10))
        .expect("checks");
    assert!(!new.load_step(&mut load, 100).expect("a step"));
    new.receive(concurrent.clone(), NOW + 10).expect("applied");
    new.receive(alone.clone(), NOW + 10).expect("applied");
    new.set("mine", json("true"), NOW + 11).expect("a write");
    new.finish_load(load).expect("joined");

    let mut reference = engine(9);
    reference.receive(concurrent, NOW + 10).expect("applied");
    reference.receive(alone, NOW + 10).expect("applied");
    reference
        .set("mine", json("true"), NOW + 11)
        .expect("a write");
    reference
        .load_snapshot(snapshot, Trust::from_peer(NOW + 10))
        .expect("joined");
    assert!(new.state_json() == reference.state_json());
    assert_eq!(new.digest(), reference.digest());
    assert_eq!(new.get("mine"), Some(serde_json::json!(true)));
    assert_eq!(new.get("key1"), Some(serde_json::json!(1)));
}

/// A snapshot that claims what it cannot back is refused when its load
/// begins, before any slice, and counted.
#[test]
fn a_lying_snapshot_is_refused_before_any_slice() {
    let mut host = engine(1);
    for i in 0..50 {
        host.set(&format!("key{i}"), json("1"), NOW)
            .expect("a write");
    }
    let mut snapshot = StateSnapshot::decode(&host.encode_snapshot()).expect("decodes");
    // It claims events of its origin it does not carry.
    snapshot.version_vector.observe(PeerId(1), 500);
    let mut new = engine(9);
    assert!(new.begin_load(snapshot, Trust::from_peer(NOW)).is_err());
    assert_eq!(new.stats().refused_state, 1);
    assert!(new.clock().is_empty());
}

/// An event too far in the future, the snapshot's last: found by the
/// step that checks it, not before; the snapshot is refused (counted) and
/// nothing of it taken.
#[test]
fn a_defect_in_a_late_event_is_refused_by_the_step_that_checks_it() {
    let mut host = engine(1);
    for i in 0..3_000u64 {
        host.set(&format!("key{i}"), json("1"), NOW + i)
            .expect("a write");
    }
    let mut snapshot = StateSnapshot::decode(&host.encode_snapshot()).expect("decodes");
    let last = snapshot.events.last_mut().expect("events");
    last.hlc = Timestamp::new(NOW + 1_000_000_000, 0);
    let mut new = engine(9);
    let mut load = new
        .begin_load(snapshot, Trust::from_peer(NOW + 3_000))
        .expect("the whole checks pass");
    let mut steps = 0;
    let refused = loop {
        steps += 1;
        match new.load_step(&mut load, 400) {
            Ok(false) => continue,
            Ok(true) => panic!("loaded a snapshot from the future"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(refused, SnapshotError::ClockSkew(_)),
        "{refused:?}"
    );
    assert_eq!(steps, 3_000usize.div_ceil(400), "found by the last check");
    assert_eq!(new.stats().refused_state, 1);
    assert!(new.clock().is_empty());
    assert!(new.state_json() == "{}");
}

/// A host of `keys` keys written in bursts of 16 and folded, so a
/// newcomer is sent a snapshot; signed or not.
fn folded_host(keys: usize, signed: bool) -> SyncNode {
    folded_host_as(1, keys, signed)
}

/// [`folded_host`] as peer `id`.
fn folded_host_as(id: u64, keys: usize, signed: bool) -> SyncNode {
    let config = common::folds_all(SyncConfig::default());
    let mut host = if signed {
        signed_node(id, config)
    } else {
        SyncNode::new(engine(id), config)
    };
    for i in 0..keys {
        let write = LocalWrite::Set {
            key: format!("key{i}"),
            value: json(&i.to_string()),
        };
        host.apply(write, NOW).expect("a write");
        if (i + 1) % 16 == 0 {
            host.take_outputs();
        }
    }
    host.fold();
    host.take_outputs();
    host
}

fn newcomer(signed: bool, offload_seals: bool) -> SyncNode {
    let config = newcomer_config(offload_seals);
    if signed {
        signed_node(2, config)
    } else {
        SyncNode::new(engine(2), config)
    }
}

/// A newcomer's config: slices of [`SLICE`]; seals handed out or not.
fn newcomer_config(offload_seals: bool) -> SyncConfig {
    SyncConfig {
        snapshot_slice: Some(SLICE),
        offload_seals,
        verify_window_ms: offload_seals.then_some(2),
        ..SyncConfig::default()
    }
}

/// What the newcomer did: timer ticks it took while a slice was due, the
/// batches of seals it handed out (answered here at once), its refusals,
/// the keys it reported changed.
#[derive(Default)]
struct Seen {
    ticks: usize,
    refused: Vec<Refusal>,
    /// Keys the newcomer reported changed.
    changed: usize,
}

/// Carries frames between the nodes until all are quiet, the newcomer's
/// timer run whenever it is due at once, its seals verified here.
/// `tamper` may change each frame the host sends it.
fn pump(
    host: &mut SyncNode,
    new: &mut SyncNode,
    seen: &mut Seen,
    tamper: &mut dyn FnMut(Vec<u8>) -> Vec<u8>,
) {
    for _ in 0..2_000 {
        let mut quiet = true;
        if new.next_timer() <= NOW {
            new.tick(NOW);
            seen.ticks += 1;
            quiet = false;
        }
        let sender = host.peer();
        for output in host.take_outputs() {
            if let Output::Send { frame, .. } = output {
                quiet = false;
                new.receive_frame(sender, &tamper(frame), NOW);
            }
        }
        let sender = new.peer();
        for output in new.take_outputs() {
            match output {
                Output::Send { frame, .. } => {
                    quiet = false;
                    host.receive_frame(sender, &frame, NOW);
                }
                Output::Verify { batch, seals } => {
                    quiet = false;
                    new.verified(batch, &verify_packed(&seals), NOW);
                }
                Output::Rejected { refusal, .. } => seen.refused.push(refusal),
                Output::Changed { keys, .. } => seen.changed += keys.len(),
                _ => {}
            }
        }
        if quiet {
            return;
        }
    }
    panic!("the nodes do not go quiet");
}

fn connect(a: &mut SyncNode, b: &mut SyncNode) {
    a.connect(b.peer(), NOW);
    b.connect(a.peer(), NOW);
}

/// Whether `frame` carries a snapshot's last chunk.
fn last_chunk(frame: &[u8]) -> bool {
    matches!(
        wire::decode(frame),
        Ok(Decoded::Message(Message::SnapshotChunk { offset, total, ref bytes, .. }))
            if offset + bytes.len() as u64 == total
    )
}

/// Carries frames between the two, `new`'s timer never run, until the
/// host's snapshot is in whole at `new`; whether it came.
fn until_last_chunk(host: &mut SyncNode, new: &mut SyncNode) -> bool {
    for _ in 0..50 {
        let mut last = false;
        let sender = host.peer();
        for output in host.take_outputs() {
            if let Output::Send { frame, .. } = output {
                last |= last_chunk(&frame);
                new.receive_frame(sender, &frame, NOW);
            }
        }
        let sender = new.peer();
        for output in new.take_outputs() {
            if let Output::Send { frame, .. } = output {
                host.receive_frame(sender, &frame, NOW);
            }
        }
        if last {
            return true;
        }
    }
    false
}

/// A newcomer, signed and unsigned, its seals verified here or handed
/// out: the snapshot arrives whole, is decoded and loaded over several
/// timers (none of them in the task of the last chunk), and the newcomer
/// ends with the host's state.
#[test]
fn a_newcomer_decodes_and_loads_a_snapshot_over_several_timers() {
    for (signed, offload) in [(false, false), (true, false), (true, true)] {
        let keys = 6_000;
        let mut host = folded_host(keys, signed);
        let mut new = newcomer(signed, offload);
        let mut seen = Seen::default();
        connect(&mut host, &mut new);
        // The last chunk's own task leaves the snapshot decoding.
        let mut after_last = None;
        pump(&mut host, &mut new, &mut seen, &mut |frame| {
            if last_chunk(&frame) {
                after_last = Some(());
            }
            frame
        });
        assert!(after_last.is_some(), "a snapshot was sent");
        assert!(seen.refused.is_empty(), "{:?}", seen.refused);
        assert_eq!(new.engine().clock(), host.engine().clock());
        assert!(new.engine().state_json() == host.engine().state_json());
        assert_eq!(new.digest(), host.digest());
        // Decoding and loading 6,000 events 500 at a time: 12 slices each
        // (the first of each in the task that began it).
        let slices = 2 * (keys / SLICE) - 2;
        assert!(
            seen.ticks >= slices,
            "signed {signed}, offloaded {offload}: {} ticks, {slices} slices",
            seen.ticks
        );
    }
}

/// The snapshot is not taken in the task of its last chunk: right after
/// it, nothing is loaded and the timer is due at once.
#[test]
fn the_last_chunk_leaves_the_snapshot_to_the_timer() {
    let mut host = folded_host(3_000, false);
    let mut new = newcomer(false, false);
    connect(&mut host, &mut new);
    // Frames both ways, the newcomer's timer never run.
    assert!(until_last_chunk(&mut host, &mut new));
    assert!(new.engine().clock().is_empty(), "not loaded in that task");
    assert!(new.next_timer() <= NOW, "the timer is due at once");
    let mut ticks = 0;
    while new.engine().clock().is_empty() {
        new.tick(NOW);
        ticks += 1;
        assert!(ticks < 100, "never loaded");
    }
    assert!(ticks >= 2, "{ticks} ticks");
    assert!(new.engine().state_json() == host.engine().state_json());
}

/// A durable newcomer stores the state it loaded at the timer after the
/// one whose slice finished the load: storing is an encode of the whole
/// state, a task of its own, not one more slice's work.
#[test]
fn a_durable_newcomer_stores_the_loaded_state_at_a_timer_of_its_own() {
    let mut host = folded_host(3_000, false);
    let config = SyncConfig {
        durable: true,
        ..newcomer_config(false)
    };
    let mut new = SyncNode::new(engine(2), config);
    connect(&mut host, &mut new);
    assert!(until_last_chunk(&mut host, &mut new));
    let stores = |outputs: Vec<Output>| {
        outputs
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Persist {
                        write: Persist::Snapshot(_),
                        ..
                    }
                )
            })
            .count()
    };
    let mut ticks = 0;
    while new.engine().clock().is_empty() {
        new.tick(NOW);
        assert_eq!(stores(new.take_outputs()), 0, "stored while loading");
        ticks += 1;
        assert!(ticks < 100, "never loaded");
    }
    assert!(new.next_timer() <= NOW, "the store is due at once");
    new.tick(NOW);
    assert_eq!(stores(new.take_outputs()), 1, "stored at the next timer");
}

/// A newcomer lists every key of the snapshot it loaded as changed, but
/// not when nobody wants them (a page with no listener): then none, until
/// it wants them again.
#[test]
fn changes_are_listed_only_when_wanted() {
    for wanted in [true, false] {
        let keys = 3_000;
        let mut host = folded_host(keys, false);
        let mut new = newcomer(false, false);
        new.want_changes(wanted);
        let mut seen = Seen::default();
        connect(&mut host, &mut new);
        pump(&mut host, &mut new, &mut seen, &mut |frame| frame);
        assert!(new.engine().state_json() == host.engine().state_json());
        assert_eq!(
            seen.changed,
            if wanted { keys } else { 0 },
            "wanted {wanted}"
        );

        new.want_changes(true);
        let write = LocalWrite::Set {
            key: "later".into(),
            value: json("1"),
        };
        host.apply(write, NOW).expect("a write");
        let mut later = Seen::default();
        pump(&mut host, &mut new, &mut later, &mut |frame| frame);
        assert_eq!(later.changed, 1, "wanted {wanted}: the later write");
    }
}

/// A newcomer to more keys than a report names at once tells of them in
/// parts, a timer each, due at once until the last: every key, once.
#[test]
fn a_large_change_is_reported_in_parts() {
    let keys = CHANGES_AT_ONCE + CHANGES_AT_ONCE / 2;
    let mut host = folded_host(keys, false);
    let mut new = newcomer(false, false);
    connect(&mut host, &mut new);
    assert!(until_last_chunk(&mut host, &mut new));
    let mut parts = Vec::new();
    for _ in 0..1_000 {
        if new.next_timer() > NOW {
            break;
        }
        new.tick(NOW);
        let mut in_batch = 0;
        for output in new.take_outputs() {
            if let Output::Changed { keys, last } = output {
                in_batch += keys.len();
                parts.push((keys, last));
            }
        }
        assert!(
            in_batch <= CHANGES_AT_ONCE,
            "{in_batch} keys between two takes"
        );
    }
    assert!(new.engine().state_json() == host.engine().state_json());
    assert!(!new.changes_pending());
    assert!(parts.len() >= 2, "{} parts", parts.len());
    let ends: Vec<bool> = parts.iter().map(|(_, last)| *last).collect();
    assert_eq!(
        ends.iter().filter(|&&l| l).count(),
        1,
        "one report: {ends:?}"
    );
    assert!(ends.last() == Some(&true), "its last part ends it");
    let mut named: Vec<String> = parts
        .iter()
        .flat_map(|(k, _)| k)
        .map(|k| k.to_string())
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(named.len(), keys);
}

/// A defect in the snapshot's last bytes is found by the slice that
/// reaches it: the snapshot is refused whole, charged to its sender, and
/// the newcomer keeps working and takes the state from an honest peer.
#[test]
fn a_defect_found_in_a_late_slice_refuses_the_snapshot_whole() {
    let mut host = folded_host(4_000, false);
    let mut new = newcomer(false, false);
    let mut seen = Seen::default();
    connect(&mut host, &mut new);
    let mut tampered = false;
    pump(&mut host, &mut new, &mut seen, &mut |frame| {
        let Ok(Decoded::Message(Message::SnapshotChunk {
            id,
            offset,
            total,
            mut bytes,
        })) = wire::decode(&frame)
        else {
            return frame;
        };
        if tampered || offset + bytes.len() as u64 != total {
            return frame;
        }
        tampered = true;
        // The last value's last byte: not UTF-8, found only when the
        // slice that holds it is decoded.
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        let message = Message::SnapshotChunk {
            id,
            offset,
            total,
            bytes,
        };
        wire::encode(&message, 7).remove(0)
    });
    assert!(tampered);
    assert!(
        seen.ticks >= 2,
        "refused in a later slice: {} ticks",
        seen.ticks
    );
    assert!(
        seen.refused.iter().any(|r| matches!(r, Refusal::State(_))),
        "{:?}",
        seen.refused
    );
    assert!(new.engine().clock().is_empty(), "nothing of it loaded");
    // Counted once, as the engine counts what it refuses itself.
    assert_eq!(new.engine().stats().refused_state, 1);
    // An honest peer with the same writes: the newcomer takes its state.
    let mut honest = folded_host_as(3, 4_000, false);
    let mut seen = Seen::default();
    connect(&mut honest, &mut new);
    pump(&mut honest, &mut new, &mut seen, &mut |frame| frame);
    assert!(new.engine().state_json() == honest.engine().state_json());
    new.write(|e| e.set("still-works", json("1"), NOW).map(Some))
        .expect("the newcomer still writes");
}

/// While a snapshot is decoded or loaded, another peer's offer is not
/// taken (no second transfer starts), and a local write made meanwhile
/// is kept: the snapshot is joined with it.
#[test]
fn a_write_while_loading_is_kept_and_no_other_offer_is_taken() {
    let mut host = folded_host(3_000, false);
    let mut other = folded_host_as(3, 3_000, false);
    let mut new = newcomer(false, false);
    connect(&mut host, &mut new);
    // Until the snapshot is in whole, the newcomer's timer not run.
    assert!(until_last_chunk(&mut host, &mut new));
    assert!(new.engine().clock().is_empty());
    assert!(new.next_timer() <= NOW, "slices due");
    // Another peer offers its snapshot: no request for it.
    connect(&mut other, &mut new);
    let sender = other.peer();
    for output in other.take_outputs() {
        if let Output::Send { frame, .. } = output {
            new.receive_frame(sender, &frame, NOW);
        }
    }
    let sender = new.peer();
    for output in new.take_outputs() {
        if let Output::Send { frame, .. } = output {
            other.receive_frame(sender, &frame, NOW);
        }
    }
    let offers: Vec<Vec<u8>> = other
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    for frame in &offers {
        new.receive_frame(sender, frame, NOW);
    }
    let asked: usize = new
        .take_outputs()
        .into_iter()
        .filter(|o| match o {
            Output::Send { to, frame } => {
                *to == other.peer()
                    && matches!(
                        wire::decode(frame),
                        Ok(Decoded::Message(Message::SnapshotRequest { .. }))
                    )
            }
            _ => false,
        })
        .count();
    assert_eq!(asked, 0, "no second transfer while one is taken");
    // A slice or two, then a local write.
    new.tick(NOW);
    new.tick(NOW);
    new.apply(
        LocalWrite::Set {
            key: "mine".into(),
            value: json("\"kept\""),
        },
        NOW,
    )
    .expect("a write");
    let mut seen = Seen::default();
    pump(&mut host, &mut new, &mut seen, &mut |frame| frame);
    assert!(seen.refused.is_empty(), "{:?}", seen.refused);
    assert_eq!(new.engine().get("mine"), Some(serde_json::json!("kept")));
    assert_eq!(new.engine().get("key2999"), Some(serde_json::json!(2999)));
    assert!(new.engine().state_json() == host.engine().state_json());
}

/// `snapshot_slice: None` takes the snapshot in the task of its last
/// chunk, as before slices.
#[test]
fn without_slices_the_last_chunk_loads_the_snapshot() {
    let mut host = folded_host(3_000, false);
    let mut new = SyncNode::new(
        engine(2),
        SyncConfig {
            snapshot_slice: None,
            ..SyncConfig::default()
        },
    );
    connect(&mut host, &mut new);
    assert!(until_last_chunk(&mut host, &mut new));
    assert!(new.engine().state_json() == host.engine().state_json());
}
