//! The benchmarks' real-path workloads (`protocol::testing::wire`): the
//! frames the writers make carry what they should, and the receiving node
//! checks them as a browser peer does (a tampered frame is refused).

use cpc_sync::protocol::testing::wire::{self, Receiver};

fn apply_all(frames: &[Vec<u8>]) -> Receiver {
    let mut receiver = Receiver::new();
    for frame in frames {
        receiver.receive(frame).expect("an honest frame is taken");
    }
    receiver.finish(0).expect("the last frames are taken");
    receiver
}

#[test]
fn one_write_each_lands_every_key() {
    let frames = wire::one_write_each(50, false);
    assert_eq!(frames.len(), 50, "one frame per writer");
    let receiver = apply_all(&frames);
    let state: serde_json::Value =
        serde_json::from_str(&receiver.node().engine().state_json()).expect("json");
    let expected: serde_json::Map<String, serde_json::Value> =
        (0..50u64).map(|i| (format!("key{i}"), i.into())).collect();
    assert_eq!(state, serde_json::Value::Object(expected));
    assert_eq!(receiver.node().engine().clock().iter().count(), 50);
}

#[test]
fn one_shared_key_keeps_every_writer() {
    let receiver = apply_all(&wire::one_write_each(20, true));
    assert_eq!(receiver.node().engine().clock().iter().count(), 20);
    assert_eq!(receiver.node().engine().keys().count(), 1);
    // Last-writer-wins: the latest timestamp, the last writer's.
    assert_eq!(receiver.node().engine().state_json(), r#"{"shared":19}"#);
}

#[test]
fn run_heavy_ends_in_each_keys_last_write() {
    let (writers, updates, keys) = (4, 300, 100);
    let frames = wire::run_heavy(writers, updates, keys, 25);
    let receiver = apply_all(&frames);
    let state: serde_json::Value =
        serde_json::from_str(&receiver.node().engine().state_json()).expect("json");
    let mut expected = serde_json::Map::new();
    for j in 0..updates {
        for w in 0..writers {
            let (key, value) = wire::run_heavy_write(w, j, writers, keys);
            expected.insert(key, value.into());
        }
    }
    assert_eq!(state, serde_json::Value::Object(expected));
}

#[test]
fn a_tampered_frame_is_refused() {
    let mut frame = wire::one_write_each(1, false).remove(0);
    // The last bytes are the seal's signature.
    let at = frame.len() - 3;
    frame[at] ^= 1;
    let mut receiver = Receiver::new();
    assert!(
        receiver.receive(&frame).is_err(),
        "a forged seal is refused"
    );
    assert_eq!(receiver.node().engine().keys().count(), 0);
}

#[test]
fn signed_history_is_sealed_in_bursts() {
    let events = wire::signed_history(1_000, 100, 1_000);
    assert_eq!(events.len(), 1_000);
    assert_eq!(events.iter().filter(|e| e.seal.is_some()).count(), 10);
    let events = wire::signed_history(50, 1, 50);
    assert!(events.iter().all(|e| e.seal.is_some()));
    // Bursts restart at the split: 0..95, then 95..100.
    let events = wire::signed_history(100, 50, 95);
    let sealed: Vec<u64> = events
        .iter()
        .filter(|e| e.seal.is_some())
        .map(|e| e.id.seq)
        .collect();
    assert_eq!(sealed, [50, 95, 100]);
}

#[test]
fn signed_replicas_settle_through_the_room_handshake() {
    use cpc_sync::protocol::room::{KdfCost, RoomSecret};
    use cpc_sync::protocol::testing::workload::settle;
    let events = wire::signed_history(2_000, 100, 1_950);
    let room = || Some(RoomSecret::with_cost("bench", "secret", KdfCost::TEST));
    let mut a = wire::signed_node_with(&events, 10, room());
    let mut b = wire::signed_node_with(&events[..1_950], 11, room());
    let outcome = settle(&mut a, &mut b);
    assert_eq!(a.digest(), b.digest());
    // Hello, Proof, then digests and the missing run.
    assert!(outcome.rounds >= 3, "{}", outcome.rounds);
}
