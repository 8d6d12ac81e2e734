//! A page that wrote offline, closed (a fold of its whole log into the
//! snapshot it stores) and was opened again (restored from that storage):
//! `sync.rs`'s `an_edit_made_offline_and_folded_on_close_travels_as_an_event`
//! without the reopen. The fold keeps the unsent edit in the log, but the
//! snapshot it stores covers it, and a restore starts the log after the
//! snapshot's clock: the edit is past the restored page's horizon, so the
//! peers it meets get its whole state as a snapshot, and pass that on.

use crate::common;
use common::json;
use cpc_sync::protocol::sync::wire::{self, Message};
use cpc_sync::protocol::sync::{Output, Persist, SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, Identity, P2PEvent, PeerId};
use std::cell::RefCell;

#[test]
fn an_edit_made_offline_travels_as_an_event_after_a_close_and_reopen() {
    reopened(false);
}

/// The same, where the page wrote again after its fold and was then
/// killed (no fold on close): storage is the fold's snapshot and the
/// records after it.
#[test]
fn edits_made_offline_around_a_fold_travel_as_events_after_a_crash() {
    reopened(true);
}

fn reopened(more_after_fold: bool) {
    use common::net::{honest, Net};
    use common::signed_node;
    let config = SyncConfig {
        durable: true,
        ..SyncConfig::default()
    };
    let now = 1_700_000_000_000u64;
    let nodes = [1, 2, 3].map(|seed| signed_node(seed, config.clone()));
    let mut net = Net::new(nodes.into(), now);
    let (a, k, q) = (0, 1, 2);
    for i in 0..5_000 {
        let key = format!("item/{i}");
        net.nodes[a]
            .write(|e| e.set(&key, json("\"a row's value\""), now).map(Some))
            .unwrap();
    }
    net.link(a, k);
    net.link(k, q);
    net.run(5_000, 10, &mut honest);
    assert_eq!(net.nodes[q].engine().clock(), net.nodes[a].engine().clock());
    net.unlink(a, k);
    let t = net.now;
    net.nodes[a]
        .write(|e| e.set("item/7", json("\"edited offline\""), t).map(Some))
        .unwrap();
    net.run(100, 10, &mut honest);
    // The page closes: it folds, and storage is that snapshot.
    net.nodes[a].fold();
    assert_eq!(
        net.nodes[a].engine().log().len(),
        1,
        "the unsent edit stays"
    );
    let mut outputs = net.nodes[a].take_outputs();
    if more_after_fold {
        net.nodes[a]
            .write(|e| e.set("item/8", json("\"also offline\""), t).map(Some))
            .unwrap();
        outputs.extend(net.nodes[a].take_outputs());
    }
    // What storage holds: the last snapshot, and the records after it.
    let (mut stored, mut records) = (None, Vec::new());
    for output in outputs {
        match output {
            Output::Persist {
                write: Persist::Snapshot(bytes),
                ..
            } => {
                stored = Some(bytes);
                records.clear();
            }
            Output::Persist {
                write: Persist::Events { record, .. },
                ..
            } => records.extend(P2PEvent::decode_batch(&record).expect("decodes")),
            _ => {}
        }
    }
    let stored = stored.expect("the fold stores a snapshot");
    // It is opened again, from its storage.
    let identity = Identity::from_seed(1);
    let restored = SyncNode::restore(
        identity.peer(),
        EngineConfig::default(),
        SyncConfig {
            identity: Some(identity),
            ..config
        },
        Some(&stored),
        records,
    )
    .expect("own storage restores");
    assert_eq!(
        restored.engine().get("item/7"),
        Some(serde_json::json!("edited offline"))
    );
    net.nodes[a] = restored;
    let me = net.nodes[a].peer();
    println!(
        "restored: log {} horizon of ours {} clock of ours {}",
        net.nodes[a].engine().log().len(),
        net.nodes[a].engine().horizon().get(me),
        net.nodes[a].engine().clock().get(me)
    );
    let moved = RefCell::new((0, 0));
    let mut count = |_: PeerId, _: PeerId, frame: Vec<u8>| {
        let mut moved = moved.borrow_mut();
        moved.0 += frame.len();
        if let Ok(wire::Decoded::Message(Message::SnapshotOffer { .. })) = wire::decode(&frame) {
            moved.1 += 1;
        }
        vec![frame]
    };
    net.link(a, k);
    net.run(10_000, 10, &mut count);
    assert_eq!(
        net.nodes[q].engine().get("item/7"),
        Some(serde_json::json!("edited offline"))
    );
    if more_after_fold {
        assert_eq!(
            net.nodes[q].engine().get("item/8"),
            Some(serde_json::json!("also offline"))
        );
    }
    let (bytes, offers) = *moved.borrow();
    assert_eq!(offers, 0, "{bytes} bytes moved for one edit");
    assert!(bytes < 10_000, "{bytes} bytes moved for one edit");
}
