//! Durability order: a frame that may reflect a write of ours leaves only
//! once storage has committed that write, so a peer that dies between the
//! two never reuses a sequence number that others have seen.

use crate::common;

use common::json;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, Persist, SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, Identity, P2PEvent, PeerId};

fn durable_node(seed: u64) -> SyncNode {
    common::signed_node(seed, durable())
}

fn durable() -> SyncConfig {
    SyncConfig {
        durable: true,
        ..SyncConfig::default()
    }
}

/// What a node asked for and what it sent, in order.
#[derive(Default, Debug)]
struct Seen {
    persists: Vec<(u64, Persist)>,
    sends: Vec<(PeerId, Vec<u8>)>,
}

fn drain(node: &mut SyncNode) -> Seen {
    let mut seen = Seen::default();
    for output in node.take_outputs() {
        match output {
            Output::Persist { token, write } => seen.persists.push((token, write)),
            Output::Send { to, frame } => seen.sends.push((to, frame)),
            _ => {}
        }
    }
    seen
}

/// The events carried by `frames`.
fn events_in(frames: &[(PeerId, Vec<u8>)]) -> Vec<P2PEvent> {
    frames
        .iter()
        .filter_map(|(_, f)| match wire::decode(f) {
            Ok(Decoded::Message(Message::Events(events))) => Some(events),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Shuttles frames between two durable nodes, committing every persist at
/// once, until both are quiet.
fn settle(a: &mut SyncNode, b: &mut SyncNode, now: u64) {
    for _ in 0..100 {
        let quiet = step(a, b, now) & step(b, a, now);
        if quiet {
            return;
        }
    }
    panic!("the exchange does not end");
}

/// `x` commits what it asked to persist and delivers its frames to `y`;
/// returns whether it had nothing to do.
fn step(x: &mut SyncNode, y: &mut SyncNode, now: u64) -> bool {
    let seen = drain(x);
    let mut quiet = true;
    if let Some((token, _)) = seen.persists.last() {
        x.persisted(*token);
        quiet = false;
    }
    for (_, frame) in seen.sends {
        quiet = false;
        y.receive_frame(x.peer(), &frame, now);
    }
    quiet
}

fn connected_pair() -> (SyncNode, SyncNode) {
    let (mut a, mut b) = (durable_node(1), durable_node(2));
    a.connect(b.peer(), 1_000);
    b.connect(a.peer(), 1_000);
    settle(&mut a, &mut b, 1_000);
    (a, b)
}

#[test]
fn a_write_is_held_until_its_commit_is_acknowledged() {
    let (mut a, b) = connected_pair();
    a.write(|e| e.add("s", json("1"), 1_100).map(Some)).unwrap();
    let seen = drain(&mut a);
    let [(token, Persist::Events { record, count })] = &seen.persists[..] else {
        panic!("one persist of the write: {:?}", seen.persists);
    };
    let events = P2PEvent::decode_batch(record).unwrap();
    assert_eq!((*count, events.len()), (1, 1));
    assert!(
        seen.sends.is_empty(),
        "sent before durable: {:?}",
        seen.sends
    );
    assert_eq!(a.durable_upto(), 0);
    // A digest asked for meanwhile carries our raised clock: it waits too.
    a.tick(5_000);
    assert!(drain(&mut a).sends.is_empty());
    assert!(a.held().0 >= 2, "the events and the digest wait");

    a.persisted(*token);
    assert_eq!(a.durable_upto(), 1);
    let seen = drain(&mut a);
    let sent = events_in(&seen.sends);
    assert_eq!(sent.len(), 1, "the write leaves once durable");
    assert_eq!(sent[0].id, events[0].id);
    assert!(seen.sends.iter().all(|(to, _)| *to == b.peer()));
    assert_eq!(a.held(), (0, 0));
}

#[test]
fn acknowledgements_are_cumulative_and_late_or_bogus_ones_are_ignored() {
    let (mut a, _b) = connected_pair();
    let mut tokens = Vec::new();
    for (i, ms) in [1_100, 1_200, 1_300].into_iter().enumerate() {
        a.write(|e| e.increment("n", 1 + i as i64, ms).map(Some))
            .unwrap();
        tokens.extend(drain(&mut a).persists.into_iter().map(|(t, _)| t));
    }
    assert_eq!(tokens.len(), 3);
    a.persisted(tokens[2] + 7); // never issued
    assert_eq!(a.durable_upto(), 0);
    a.persisted(tokens[1]);
    assert_eq!(a.durable_upto(), 2, "the second commit covers the first");
    assert_eq!(events_in(&drain(&mut a).sends).len(), 2);
    a.persisted(tokens[0]); // late: already covered
    assert!(drain(&mut a).sends.is_empty());
    a.persisted(tokens[2]);
    assert_eq!(a.durable_upto(), 3);
    assert_eq!(events_in(&drain(&mut a).sends).len(), 1);
}

#[test]
fn relayed_events_are_persisted_without_holding_frames() {
    let (mut a, mut b) = connected_pair();
    let mut c = durable_node(3);
    b.connect(c.peer(), 1_000);
    c.connect(b.peer(), 1_000);
    settle(&mut b, &mut c, 1_000);
    a.write(|e| e.set("k", json("1"), 1_100).map(Some)).unwrap();
    let from_a = drain(&mut a);
    a.persisted(from_a.persists[0].0);
    let frames = drain(&mut a).sends;
    for (_, frame) in &frames {
        b.receive_frame(a.peer(), frame, 1_100);
    }
    // b persists a's write, and relays it to c before that commit: it is
    // not b's own write, and a has it durable. Relaying by pull (the
    // default), b announces it, and c's graft is answered at once too.
    let from_b = drain(&mut b);
    assert_eq!(from_b.persists.len(), 1, "{from_b:?}");
    assert!(from_b.sends.iter().all(|(to, _)| *to == c.peer()));
    assert_eq!(b.held(), (0, 0));
    for (_, frame) in &from_b.sends {
        c.receive_frame(b.peer(), frame, 1_100);
    }
    let from_c = drain(&mut c);
    for (_, frame) in &from_c.sends {
        b.receive_frame(c.peer(), frame, 1_100);
    }
    let relayed = events_in(&drain(&mut b).sends);
    assert_eq!(relayed.len(), 1, "relayed at once");
    assert_eq!(b.held(), (0, 0));
}

#[test]
fn a_crash_before_the_commit_loses_only_what_no_one_saw() {
    let (mut a, mut b) = connected_pair();
    let (a_id, b_id) = (a.peer(), b.peer());
    // Committed and acknowledged: the first write.
    a.write(|e| e.set("k", json("\"kept\""), 1_100).map(Some))
        .unwrap();
    let mut stored: Vec<P2PEvent> = Vec::new();
    for (token, write) in drain(&mut a).persists {
        if let Persist::Events { record, .. } = write {
            stored.extend(P2PEvent::decode_batch(&record).unwrap());
        }
        a.persisted(token);
    }
    settle(&mut a, &mut b, 1_100);
    // The second write is never committed; the tab dies.
    a.write(|e| e.set("k", json("\"lost\""), 1_200).map(Some))
        .unwrap();
    let mut sent = drain(&mut a);
    assert_eq!(sent.persists.len(), 1);
    a.tick(9_000);
    sent.sends.extend(drain(&mut a).sends);
    // Whatever did leave reaches b before the crash.
    for (_, frame) in &sent.sends {
        b.receive_frame(a_id, frame, 1_200);
    }
    let leaked = events_in(&sent.sends);
    assert!(leaked.is_empty(), "an uncommitted write left: {leaked:?}");
    drop(a);

    // The reloaded tab writes again under the same sequence number.
    let mut a = SyncNode::restore(
        a_id,
        EngineConfig::default(),
        SyncConfig {
            identity: Some(Identity::from_seed(1)),
            durable: true,
            ..SyncConfig::default()
        },
        None,
        stored,
    )
    .expect("restores");
    a.write(|e| e.set("k", json("\"again\""), 1_300).map(Some))
        .unwrap();
    a.connect(b_id, 1_400);
    b.disconnect(a_id);
    b.connect(a_id, 1_400);
    settle(&mut a, &mut b, 1_400);
    // b never saw the lost write, so the reuse is no equivocation.
    assert_eq!(b.engine().stats().equivocations, 0);
    assert_eq!(b.engine().get("k"), Some(serde_json::json!("again")));
    assert_eq!(a.engine().clock(), b.engine().clock());
}

/// The fold (the whole state encoded into a snapshot to persist) waits
/// for a gossip interval with no new events while writes keep coming, up
/// to `FORCED_FOLD` times `compact_after`.
#[test]
fn the_log_folds_when_writes_pause_or_it_grows_too_long() {
    use cpc_sync::protocol::sync::FORCED_FOLD;
    let config = SyncConfig {
        durable: true,
        compact_after: 10,
        keep_unacked: 0,
        ..SyncConfig::default()
    };
    let mut node = common::signed_node(7, config);
    let folds = |node: &mut SyncNode| {
        let seen = drain(node);
        seen.persists
            .iter()
            .filter(|(_, w)| matches!(w, Persist::Snapshot(_)))
            .count()
    };
    let mut now = 1_000;
    let write = |node: &mut SyncNode, n: usize, now: u64| {
        for i in 0..n {
            node.write(|e| e.set(&format!("k{i}"), json("1"), now).map(Some))
                .unwrap();
        }
    };
    // Writing in every interval: past the threshold, no fold yet.
    for _ in 0..3 {
        write(&mut node, 12, now);
        now += 1_000;
        node.tick(now);
        assert_eq!(
            folds(&mut node),
            0,
            "at {} logged events",
            node.engine().log().len()
        );
    }
    // An interval without writes: the fold.
    now += 1_000;
    node.tick(now);
    assert_eq!(folds(&mut node), 1);
    assert!(node.engine().log().is_empty());
    // Writing without pause: forced once the log is FORCED_FOLD times too long.
    let mut ticks_to_fold = 0;
    while folds(&mut node) == 0 {
        write(&mut node, 12, now);
        now += 1_000;
        node.tick(now);
        ticks_to_fold += 1;
        assert!(ticks_to_fold < 10, "never forced");
    }
    assert_eq!(ticks_to_fold, (10 * FORCED_FOLD).div_ceil(12));
}

/// A write of `a`, committed, and the frames that then leave it.
fn committed_write(a: &mut SyncNode, key: &str, now: u64) -> Vec<(PeerId, Vec<u8>)> {
    a.write(|e| e.set(key, json("1"), now).map(Some)).unwrap();
    let seen = drain(a);
    for (token, _) in &seen.persists {
        a.persisted(*token);
    }
    let mut sends = seen.sends;
    sends.extend(drain(a).sends);
    sends
}

fn records(seen: &Seen) -> Vec<(u64, Vec<P2PEvent>)> {
    seen.persists
        .iter()
        .map(|(token, write)| match write {
            Persist::Events { record, count } => {
                let events = P2PEvent::decode_batch(record).unwrap();
                assert_eq!(events.len(), *count);
                (*token, events)
            }
            Persist::Snapshot(_) => panic!("a snapshot"),
        })
        .collect()
}

/// Others' events wait while their last record commits and then go as one
/// record, so a stream of small frames is not a record each; a write of
/// our own takes them first, since it may depend on them.
#[test]
fn others_events_wait_for_their_last_record_then_go_as_one() {
    let (mut a, mut b) = connected_pair();
    let a_id = a.peer();
    let deliver = |b: &mut SyncNode, frames: Vec<(PeerId, Vec<u8>)>, now| {
        for (_, frame) in frames {
            b.receive_frame(a_id, &frame, now);
        }
        drain(b)
    };
    let first = committed_write(&mut a, "one", 2_000);
    let seen = records(&deliver(&mut b, first, 2_000));
    let [(token, events)] = &seen[..] else {
        panic!("one record: {seen:?}");
    };
    assert_eq!(events.len(), 1);
    // Its commit is out: the next two wait.
    for (i, key) in ["two", "three"].into_iter().enumerate() {
        let frames = committed_write(&mut a, key, 2_100 + i as u64);
        assert!(records(&deliver(&mut b, frames, 2_100)).is_empty());
    }
    b.persisted(*token);
    let seen = records(&drain(&mut b));
    let [(next, events)] = &seen[..] else {
        panic!("one record: {seen:?}");
    };
    let keys: Vec<&str> = events.iter().map(|e| &*e.key).collect();
    assert_eq!(keys, ["two", "three"]);
    // Waiting again, until b writes: first the event it may depend on.
    let frames = committed_write(&mut a, "four", 2_200);
    assert!(records(&deliver(&mut b, frames, 2_200)).is_empty());
    b.write(|e| e.set("mine", json("2"), 2_300).map(Some))
        .unwrap();
    let seen = records(&drain(&mut b));
    let origins: Vec<Vec<PeerId>> = seen
        .iter()
        .map(|(_, events)| events.iter().map(|e| e.id.peer).collect())
        .collect();
    assert_eq!(origins, [vec![a_id], vec![b.peer()]]);
    assert!(seen[0].0 > *next && seen[1].0 > seen[0].0);
}

/// However many frames come while a record of others' events commits,
/// the next record holds each of their events once (the ranges waiting
/// are merged as they grow).
#[test]
fn others_events_waiting_through_many_frames_go_once_each() {
    let (mut a, mut b) = connected_pair();
    let a_id = a.peer();
    let mut first = None;
    let writes = 4_500;
    for i in 0..writes {
        for (_, frame) in committed_write(&mut a, &format!("k{i}"), 2_000 + i) {
            b.receive_frame(a_id, &frame, 2_000 + i);
        }
        let seen = records(&drain(&mut b));
        match (first, &seen[..]) {
            (None, [(token, _)]) => first = Some(*token),
            (Some(_), []) => {}
            _ => panic!("write {i}: {seen:?}"),
        }
    }
    b.persisted(first.unwrap());
    let seen = records(&drain(&mut b));
    let [(_, events)] = &seen[..] else {
        panic!("one record: {seen:?}");
    };
    let mut seqs: Vec<u64> = events.iter().map(|e| e.id.seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), writes as usize - 1);
    assert_eq!(events.len(), seqs.len());
}

/// A durable node offers a newcomer the snapshot its last fold stored,
/// not a fresh encode of its state: the same bytes, covering the clock
/// of the fold; what came after it reaches the newcomer from the log.
#[test]
fn a_newcomer_is_offered_the_snapshot_the_last_fold_stored() {
    let mut host = common::signed_node(1, common::folds_all(durable()));
    for i in 0..20 {
        host.write(|e| e.set(&format!("k{i}"), json("1"), 1_000).map(Some))
            .unwrap();
    }
    host.fold();
    let stored = drain(&mut host)
        .persists
        .into_iter()
        .filter_map(|(token, write)| {
            host.persisted(token);
            match write {
                Persist::Snapshot(bytes) => Some(bytes),
                Persist::Events { .. } => None,
            }
        })
        .last()
        .expect("the fold stores a snapshot");
    let folded_at = host.engine().clock().clone();
    committed_write(&mut host, "after the fold", 1_100);
    assert!(host.engine().clock() != &folded_at);

    let mut new = durable_node(2);
    host.connect(new.peer(), 2_000);
    new.connect(host.peer(), 2_000);
    let mut offers = Vec::new();
    for _ in 0..100 {
        let seen = drain(&mut host);
        for (token, _) in &seen.persists {
            host.persisted(*token);
        }
        for (_, frame) in &seen.sends {
            if let Ok(Decoded::Message(Message::SnapshotOffer {
                id, total, clock, ..
            })) = wire::decode(frame)
            {
                offers.push((id, total, clock));
            }
            new.receive_frame(host.peer(), frame, 2_000);
        }
        // Once it loaded, its timer stores the snapshot, and then tells
        // its clock.
        if !new.engine().clock().is_empty() {
            new.tick(2_000);
        }
        if step(&mut new, &mut host, 2_000) && seen.sends.is_empty() {
            break;
        }
    }
    let [(id, total, clock)] = &offers[..] else {
        panic!("one offer: {offers:?}");
    };
    assert_eq!(clock, &folded_at, "the fold's snapshot, not a fresh one");
    assert_eq!(*total, stored.len() as u64);
    assert_eq!(
        id.0,
        *cpc_sync::protocol::blake3::hash(&stored).as_bytes(),
        "named by its bytes"
    );
    assert_eq!(new.engine().clock(), host.engine().clock(), "caught up");
}

/// A fold while a newcomer is taking the last one does not cut its
/// transfer short: the snapshot offered stays kept, and a window asked
/// for after the fold is served from it, by its id.
#[test]
fn a_transfer_under_way_outlives_the_next_fold() {
    let mut host = common::signed_node(1, common::folds_all(durable()));
    let write = |host: &mut SyncNode, from: usize, now: u64| {
        for i in from..from + 20 {
            host.write(|e| e.set(&format!("k{i}"), json("1"), now).map(Some))
                .unwrap();
        }
        host.fold();
        for (token, _) in drain(host).persists {
            host.persisted(token);
        }
    };
    write(&mut host, 0, 1_000);
    let mut new = durable_node(2);
    host.connect(new.peer(), 2_000);
    new.connect(host.peer(), 2_000);
    // Frames both ways until the host offers its snapshot.
    let mut offered = None;
    for _ in 0..20 {
        for (_, frame) in drain(&mut host).sends {
            if let Ok(Decoded::Message(Message::SnapshotOffer { id, .. })) = wire::decode(&frame) {
                offered = Some(id);
            }
        }
        if offered.is_some() {
            break;
        }
        for (_, frame) in drain(&mut new).sends {
            host.receive_frame(new.peer(), &frame, 2_000);
        }
    }
    let offered = offered.expect("an offer");
    // The host folds twice more meanwhile: two snapshots never offered.
    write(&mut host, 20, 3_000);
    write(&mut host, 40, 3_000);
    let request = Message::SnapshotRequest {
        id: offered,
        offset: 0,
    };
    for frame in wire::encode(&request, 1) {
        host.receive_frame(new.peer(), &frame, 3_000);
    }
    let served: Vec<_> = drain(&mut host)
        .sends
        .iter()
        .filter_map(|(_, frame)| match wire::decode(frame) {
            Ok(Decoded::Message(Message::SnapshotChunk { id, .. })) => Some(id),
            _ => None,
        })
        .collect();
    assert!(
        !served.is_empty() && served.iter().all(|id| *id == offered),
        "the window is served from the snapshot offered: {served:?}"
    );
}

/// The records `node` asked to persist (committed at once), decoded.
fn stored_by(node: &mut SyncNode) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    for (token, write) in drain(node).persists {
        if let Persist::Events { record, .. } = write {
            records.push(record);
        }
        node.persisted(token);
    }
    records
}

/// A received batch whose events all apply is stored as it came (not
/// encoded again); one with an event the node had is stored as the
/// events it brought, encoded; either way the records restore the state.
#[test]
fn a_batch_applied_whole_is_stored_as_it_came() {
    let (mut a, mut b) = connected_pair();
    let mut records = Vec::new();
    a.write(|e| e.set("k", json("1"), 1_100).map(Some)).unwrap();
    a.write(|e| e.increment("n", 2, 1_101).map(Some)).unwrap();
    stored_by(&mut a);
    let first: Vec<Vec<u8>> = drain(&mut a).sends.into_iter().map(|(_, f)| f).collect();
    let batch = first
        .iter()
        .find_map(|f| wire::event_batch(f))
        .expect("an events frame")
        .to_vec();
    for frame in &first {
        b.receive_frame(a.peer(), frame, 1_100);
    }
    let stored = stored_by(&mut b);
    assert_eq!(stored, vec![batch.clone()], "stored as it came");
    records.extend(stored);

    // Again: nothing new, nothing stored.
    for frame in &first {
        b.receive_frame(a.peer(), frame, 1_100);
    }
    assert!(stored_by(&mut b).is_empty());

    // One event b has, one it lacks: the new one alone, encoded.
    a.write(|e| e.set("k", json("2"), 1_200).map(Some)).unwrap();
    stored_by(&mut a);
    let fresh = events_in(&drain(&mut a).sends);
    assert_eq!(fresh.len(), 1);
    let mut mixed = P2PEvent::decode_batch(&batch).unwrap();
    mixed.extend(fresh.iter().cloned());
    let frame = wire::encode(&Message::Events(mixed), 9).remove(0);
    b.receive_frame(a.peer(), &frame, 1_200);
    let stored = stored_by(&mut b);
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].as_slice(), wire::event_batch(&frame).unwrap());
    let ids: Vec<_> = P2PEvent::decode_batch(&stored[0])
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![fresh[0].id]);
    records.extend(stored);

    let events: Vec<P2PEvent> = records
        .iter()
        .flat_map(|r| P2PEvent::decode_batch(r).unwrap())
        .collect();
    let restored = SyncNode::restore(
        PeerId(77),
        EngineConfig::default(),
        SyncConfig::default(),
        None,
        events,
    )
    .expect("restores");
    assert_eq!(restored.engine().clock(), b.engine().clock());
}

/// Our writes are encoded once for every peer that lacks them all, and
/// the batch of that frame is the record stored; writes that take more
/// than a frame are stored as encoded from the log. Either way the
/// record holds exactly the writes, and every peer gets the same frames.
#[test]
fn our_writes_are_stored_as_the_frame_every_peer_gets() {
    let (mut a, mut b, mut c) = (durable_node(1), durable_node(2), durable_node(3));
    for other in [&mut b, &mut c] {
        a.connect(other.peer(), 1_000);
        other.connect(a.peer(), 1_000);
        settle(&mut a, other, 1_000);
    }
    for (writes, frames) in [(2, 1), (2_500, 3)] {
        a.write(|e| {
            for i in 0..writes {
                e.set(&format!("k{i}"), json("1"), 1_100)?;
            }
            Ok(None)
        })
        .unwrap();
        let records = stored_by(&mut a);
        let sends = drain(&mut a).sends;
        let to = |peer: PeerId| -> Vec<&[u8]> {
            let sent = sends.iter().filter(|(to, _)| *to == peer);
            sent.map(|(_, f)| f.as_slice()).collect()
        };
        assert_eq!(to(b.peer()), to(c.peer()));
        assert!(
            to(b.peer()).len() >= frames,
            "{} frames",
            to(b.peer()).len()
        );
        let [record] = &records[..] else {
            panic!("one record: {records:?}");
        };
        if frames == 1 {
            assert_eq!(Some(record.as_slice()), wire::event_batch(to(b.peer())[0]));
        }
        let stored = P2PEvent::decode_batch(record).unwrap();
        assert_eq!(stored, events_in(&sends[..to(b.peer()).len()]));
        assert_eq!(stored.len(), writes);
    }
}

/// A key holder's run A1..=A2 that names our next event (its guess) is
/// held; our write releases it. Our write, which may depend on it (here
/// a second write saw A2), is never durable without it: the run is stored
/// in a record before or with ours, and passed on to our peers (a held
/// run released by a local write was neither stored nor sent until a
/// frame came).
#[test]
fn others_events_released_by_our_write_are_stored_first_and_passed_on() {
    let (mut a, mut b) = connected_pair();
    let (holder, run) = a_held_guess(&mut a);
    writes_over_the_guess(&mut a);
    let seen = drain(&mut a);
    let stored = records(&seen);
    let at = |id| {
        stored
            .iter()
            .position(|(_, events)| events.iter().any(|e| e.id == id))
    };
    let ours = at(cpc_sync::protocol::EventId::new(a.peer(), 1)).expect("ours stored");
    let theirs = at(run[1].id).expect("the released run stored");
    assert!(theirs <= ours, "the run it may rest on first: {stored:?}");
    for (token, _) in &seen.persists {
        a.persisted(*token);
    }
    for (_, frame) in &seen.sends {
        b.receive_frame(a.peer(), frame, 1_300);
    }
    // Passed on as a's own writes are, with no digest round (no tick).
    settle(&mut a, &mut b, 1_300);
    assert_eq!(b.engine().clock().get(holder.peer()), 2);
    assert_eq!(a.engine().state_json(), b.engine().state_json());
}

/// A run our write released, then (before `take_outputs`) a frame from
/// another peer whose events all apply alone. The frame's absorb took the
/// mark our write left open, the released run in it, and, its batch
/// "applied whole", stored the batch's bytes only: the run was never
/// stored, and our write was durable without the run it rests on (a
/// helper's review of the first fix). The node now absorbs what a write
/// released before it marks for received events (`open_mark`), and a
/// batch is stored as it came only if it is all that applied.
#[test]
fn a_released_run_is_stored_when_a_whole_batch_lands_before_the_flush() {
    use cpc_sync::protocol::EventId;
    let (mut a, _b) = connected_pair();
    let other = Identity::from_seed(67);
    a.connect(other.peer(), 1_000);
    let (_, run) = a_held_guess(&mut a);
    writes_over_the_guess(&mut a);
    // Another peer's lone event lands before the node's outputs are taken.
    let lone = sealed_first_write(&other, "x");
    for frame in wire::encode(&Message::Events(lone.clone()), 8) {
        a.receive_frame(other.peer(), &frame, 1_210);
    }
    assert_eq!(a.engine().clock().get(other.peer()), 1);
    let seen = drain(&mut a);
    let stored = records(&seen);
    let at = |id| {
        stored
            .iter()
            .position(|(_, events)| events.iter().any(|e| e.id == id))
    };
    let ours = at(EventId::new(a.peer(), 2)).expect("ours stored");
    assert!(at(lone[0].id).is_some(), "the lone event stored");
    // Restored from what it stored (nothing was stored before: the run
    // was held), a's second write, which saw the run, must apply.
    let config = SyncConfig {
        durable: true,
        identity: Some(Identity::from_seed(1)),
        ..SyncConfig::default()
    };
    let restored = SyncNode::restore(
        a.peer(),
        EngineConfig::default(),
        config,
        None,
        stored.iter().flat_map(|(_, events)| events.iter().cloned()),
    )
    .unwrap();
    assert_eq!(
        restored.engine().clock().get(a.peer()),
        2,
        "restored, our write that saw the run is held (its number would be made again)"
    );
    let theirs = at(run[1].id).expect("the released run stored");
    assert!(theirs <= ours, "the run it may rest on first: {stored:?}");
}

/// A run our write released waits when a signed reconciliation request
/// from b lands before `take_outputs`. `on_request` marked (the mark
/// kept, the released run in it), took b's runs, then flushed our writes
/// before its own absorb: what our writes released was taken with b's
/// runs, with no sender, and b's own run pushed back to b (a helper's
/// review). What a write released is now absorbed on its own first.
#[test]
fn runs_from_a_request_are_not_pushed_back_to_the_requester() {
    use cpc_sync::protocol::reconciliation::{ReconciliationRequest, RequestType};
    use cpc_sync::protocol::EventId;
    let (mut a, b) = connected_pair();
    a_held_guess(&mut a);
    a.write(|e| e.set("mine", json("1"), 1_200).map(Some))
        .unwrap();
    assert_eq!(a.engine().holding().len(), 0);
    // b's run, in a request from b, before a's outputs are taken.
    let b_id = Identity::from_seed(2);
    assert_eq!(b_id.peer(), b.peer());
    let bs = sealed_first_write(&b_id, "k");
    let request = Message::ReconciliationRequest(ReconciliationRequest {
        message_type: RequestType::ReconciliationRequest,
        source_peer_id: b.peer(),
        target_peer_id: a.peer(),
        key: Some("k".into()),
        conflicting_events: bs.clone(),
    });
    for frame in wire::encode(&request, 9) {
        a.receive_frame(b.peer(), &frame, 1_210);
    }
    assert_eq!(a.engine().clock().get(b.peer()), 1, "b's run taken");
    let mut sends = Vec::new();
    for _ in 0..3 {
        let seen = drain(&mut a);
        for (token, _) in &seen.persists {
            a.persisted(*token);
        }
        sends.extend(seen.sends);
    }
    let to_b: Vec<(PeerId, Vec<u8>)> = sends
        .into_iter()
        .filter(|(to, _)| *to == b.peer())
        .collect();
    let back: Vec<EventId> = events_in(&to_b)
        .into_iter()
        .map(|e| e.id)
        .filter(|id| id.peer == b.peer())
        .collect();
    assert!(back.is_empty(), "b's own events sent back to b: {back:?}");
}

/// A key holder's run A1..=A2 whose A2 names `a`'s next event (its guess),
/// received by `a` and held there: the key holder and the run.
fn a_held_guess(a: &mut SyncNode) -> (Identity, Vec<P2PEvent>) {
    use cpc_sync::protocol::{seal, EventId};
    let holder = Identity::from_seed(66);
    let mut run: Vec<P2PEvent> = (1..=2)
        .map(|seq| common::register_write(EventId::new(holder.peer(), seq), "guess", "1", 1_050))
        .collect();
    run[1].deps.set(a.peer(), 1);
    seal::seal(&holder, &mut run);
    a.connect(holder.peer(), 1_000);
    let _ = drain(a);
    for frame in wire::encode(&Message::Events(run.clone()), 7) {
        a.receive_frame(holder.peer(), &frame, 1_100);
    }
    assert_eq!(a.engine().holding().len(), 2);
    let _ = drain(a);
    (holder, run)
}

/// `who`'s first event, a register write of `key`, sealed alone.
fn sealed_first_write(who: &Identity, key: &str) -> Vec<P2PEvent> {
    use cpc_sync::protocol::{seal, EventId};
    let mut run = vec![common::register_write(
        EventId::new(who.peer(), 1),
        key,
        "1",
        1_150,
    )];
    seal::seal(who, &mut run);
    run
}

/// `a` writes, which releases the held guess, then writes over its key
/// (seeing its last event).
fn writes_over_the_guess(a: &mut SyncNode) {
    a.write(|e| e.set("mine", json("1"), 1_200).map(Some))
        .unwrap();
    a.write(|e| e.set("guess", json("2"), 1_200).map(Some))
        .unwrap();
    assert_eq!(a.engine().holding().len(), 0);
}

/// Storage that lost everything it held (the browser deleted the page's
/// database) is given the whole state as one snapshot at the next tick,
/// the writes not yet durable in it; restored from that snapshot alone, a
/// node has every write and its own clock, so it numbers none again.
#[test]
fn storage_that_lost_everything_is_given_the_whole_state_again() {
    let mut a = durable_node(1);
    for (i, key) in ["a", "b"].into_iter().enumerate() {
        a.write(|e| e.set(key, json("1"), 1_000 + i as u64).map(Some))
            .unwrap();
        a.tick(1_100 + i as u64);
        let seen = drain(&mut a);
        a.persisted(seen.persists.last().expect("a write to store").0);
    }
    // A write the lost storage never committed.
    a.write(|e| e.set("c", json("1"), 1_200).map(Some)).unwrap();
    a.tick(1_300);
    let unsaved = drain(&mut a).persists;
    assert!(matches!(&unsaved[..], [(_, Persist::Events { .. })]));
    a.storage_lost();
    assert!(a.next_timer() <= 1_300, "at once");
    a.tick(1_300);
    let seen = drain(&mut a).persists;
    let [(token, Persist::Snapshot(bytes))] = &seen[..] else {
        panic!("one snapshot to store: {seen:?}");
    };
    a.persisted(*token);
    assert_eq!(a.durable_upto(), 3, "every write durable with it");
    let restored = SyncNode::restore(
        a.peer(),
        EngineConfig::default(),
        SyncConfig {
            identity: Some(Identity::from_seed(1)),
            durable: true,
            ..SyncConfig::default()
        },
        Some(bytes),
        Vec::new(),
    )
    .expect("restores");
    assert_eq!(restored.engine().state_json(), a.engine().state_json());
    assert_eq!(restored.engine().clock(), a.engine().clock());
}

/// What the room peer acknowledged is on its disk: its edge commits each
/// drain's writes, then sends its frames.
mod acknowledged {
    use crate::common::net::edge_work;
    use crate::common::{self, json, signed_node};
    use cpc_sync::protocol::sync::wire::{decode, Decoded, Message};
    use cpc_sync::protocol::sync::{Output, Persist, SyncConfig, SyncNode};
    use cpc_sync::protocol::{EngineConfig, P2PEvent, PeerId, VectorClock};

    /// A room peer's disk: what its commits left (a snapshot, then records).
    #[derive(Default)]
    struct Disk {
        snapshot: Option<Vec<u8>>,
        records: Vec<P2PEvent>,
    }

    impl Disk {
        fn commit(&mut self, writes: &[Persist]) {
            let c = Persist::commit(writes);
            if let Some(s) = c.snapshot {
                self.snapshot = Some(s.to_vec());
                self.records.clear();
            }
            if let Some(r) = c.record {
                self.records.extend(P2PEvent::decode_batch(&r).unwrap());
            }
        }

        /// The clock a restart (after `kill -9`) comes back with.
        fn clock(&self, peer: PeerId, config: &SyncConfig) -> VectorClock {
            SyncNode::restore(
                peer,
                EngineConfig::default(),
                config.clone(),
                self.snapshot.as_deref(),
                self.records.clone(),
            )
            .unwrap()
            .engine()
            .clock()
            .clone()
        }
    }

    /// The page's edge: everything done at once, frames returned.
    fn page_outputs(node: &mut SyncNode, now: u64) -> Vec<(PeerId, Vec<u8>)> {
        let mut frames = Vec::new();
        for _ in 0..20 {
            let outputs = node.take_outputs();
            if outputs.is_empty() {
                break;
            }
            for o in outputs {
                match edge_work(node, o, now) {
                    Some(Output::Send { to, frame }) => frames.push((to, frame)),
                    Some(Output::Persist { token, .. }) => node.persisted(token),
                    _ => {}
                }
            }
        }
        frames
    }

    /// The room peer's edge, as `keep/room.rs` `carry_out`: each drain's
    /// persists committed, then its frames sent. Every digest it sends is
    /// checked against what a restart from its disk would claim.
    fn keep_outputs(
        node: &mut SyncNode,
        disk: &mut Disk,
        config: &SyncConfig,
        now: u64,
        unbacked: &mut Vec<String>,
    ) -> Vec<(PeerId, Vec<u8>)> {
        let mut frames = Vec::new();
        loop {
            let outputs = node.take_outputs();
            if outputs.is_empty() {
                return frames;
            }
            let mut writes = Vec::new();
            let mut last = None;
            let mut rest = Vec::new();
            for o in outputs {
                match o {
                    Output::Persist { token, write } => {
                        writes.push(write);
                        last = Some(token);
                    }
                    other => rest.push(other),
                }
            }
            if let Some(t) = last {
                disk.commit(&writes);
                node.persisted(t);
            }
            for o in rest {
                if let Some(Output::Send { to, frame }) = edge_work(node, o, now) {
                    if let Ok(Decoded::Message(Message::Digest { clock, .. })) = decode(&frame) {
                        let on_disk = disk.clock(node.peer(), config);
                        if !on_disk.descends(&clock) {
                            unbacked.push(format!(
                                "digest sent with clock {clock:?}, disk restores {on_disk:?}"
                            ));
                        }
                    }
                    frames.push((to, frame));
                }
            }
        }
    }

    /// A page that wrote `keys` keys and folded its log (every event).
    fn folded_page(keys: usize, now: u64) -> SyncNode {
        let mut page = signed_node(
            1,
            common::folds_all(SyncConfig {
                durable: true,
                ..SyncConfig::default()
            }),
        );
        for i in 0..keys {
            page.write(|e| e.set(&format!("k{i}"), json("1"), now).map(Some))
                .unwrap();
        }
        page_outputs(&mut page, now);
        page.fold();
        page_outputs(&mut page, now);
        page
    }

    /// The room peer's configuration, loading snapshots in `slices` or not.
    fn room_peer(slices: bool) -> SyncConfig {
        SyncConfig {
            durable: true,
            snapshot_slice: if slices {
                SyncConfig::default().snapshot_slice
            } else {
                None
            },
            ..SyncConfig::default()
        }
    }

    /// Carries frames between `page` and the room peer `keep` (its edge
    /// as `keep_outputs`: each drain committed, then sent) for `steps` of
    /// 5 ms, the room peer's timer firing every `keep_every` steps and
    /// `between` run on it after the page's frames came; what it sent that
    /// a `kill -9` would lose.
    fn run(
        page: &mut SyncNode,
        keep: &mut SyncNode,
        config: &SyncConfig,
        (steps, keep_every): (u32, u32),
        mut between: impl FnMut(&mut SyncNode, u64),
    ) -> Vec<String> {
        let mut now = 1_700_000_000_000u64;
        let (pid, kid) = (page.peer(), keep.peer());
        let mut disk = Disk::default();
        let mut unbacked = Vec::new();
        page.connect(kid, now);
        keep.connect(pid, now);
        for step in 0..steps {
            now += 5;
            for (_, f) in page_outputs(page, now) {
                keep.receive_frame(pid, &f, now);
            }
            between(keep, now);
            for (to, f) in keep_outputs(keep, &mut disk, config, now, &mut unbacked) {
                if to == pid {
                    page.receive_frame(kid, &f, now);
                }
            }
            if !unbacked.is_empty() {
                break;
            }
            if page.next_timer() <= now {
                page.tick(now);
            }
            if step % keep_every == 0 && keep.next_timer() <= now {
                keep.tick(now);
            }
        }
        unbacked
    }

    /// A page whose log is folded opens against a room peer that lacks its
    /// events (a new room file, or one behind its horizon): the room peer
    /// takes its snapshot, and told its clock at once, while the snapshot
    /// waited for its next timer to be stored (a review). README: "An
    /// event is committed (fsync'd) before the room peer relays it or
    /// sends anything that covers it, so what it acknowledged survives a
    /// kill -9".
    #[test]
    fn a_room_peer_acknowledges_a_loaded_snapshot_only_once_it_is_on_disk() {
        let config = room_peer(false);
        let mut page = folded_page(30, 1_700_000_000_000);
        assert!(page.engine().log().is_empty(), "the page folded");
        let mut keep = signed_node(2, config.clone());
        let unbacked = run(&mut page, &mut keep, &config, (400, 1), |_, _| {});
        assert_eq!(keep.engine().clock(), page.engine().clock(), "taken");
        assert!(
            unbacked.is_empty(),
            "a kill -9 now loses:\n{}",
            unbacked.join("\n")
        );
    }

    /// The same when the slice that finishes the load runs in a tick whose
    /// gossip round is due: the round told every peer the raised clock,
    /// and the store waited for the next wake (a second review). The room
    /// peer's timer fires once a second.
    #[test]
    fn a_load_finished_in_a_gossip_tick_is_not_acknowledged_before_its_store() {
        let config = room_peer(true);
        let mut page = folded_page(40_000, 1_700_000_000_000);
        let mut keep = signed_node(2, config.clone());
        let unbacked = run(&mut page, &mut keep, &config, (4000, 200), |_, _| {});
        assert_eq!(keep.engine().clock(), page.engine().clock(), "taken");
        assert!(
            unbacked.is_empty(),
            "a kill -9 now loses:\n{}",
            unbacked.join("\n")
        );
    }

    /// And a peer that connects between the load and the store: its
    /// session's first digest told it the raised clock (a second review).
    #[test]
    fn a_peer_connecting_before_the_store_is_not_told_the_loaded_clock() {
        let config = room_peer(false);
        let mut page = folded_page(30, 1_700_000_000_000);
        let mut keep = signed_node(2, config.clone());
        let other = signed_node(3, SyncConfig::default()).peer();
        let mut joined = false;
        let unbacked = run(&mut page, &mut keep, &config, (400, 1), |keep, now| {
            // In the drain where the load ended.
            if !joined && !keep.engine().clock().is_empty() {
                joined = true;
                keep.connect(other, now);
            }
        });
        assert!(joined);
        assert!(
            unbacked.is_empty(),
            "a kill -9 now loses:\n{}",
            unbacked.join("\n")
        );
    }
}

/// A record of others' events holds the batches that applied whole first
/// (as they came), then the other events by origin: not in causal order.
/// Restored, an event whose dependency comes later in the record is held,
/// and the holding queue's caps (25,000 events or 16 MB an origin) refuse
/// the rest, which are skipped. A write of ours that rests on
/// them is then held too, our clock restores short of it, and the next
/// write reuses its sequence number: an equivocation at every peer that
/// had the first.
///
/// Here: Y writes a value too large for one frame (it travels in chunks,
/// so it is stored by range), X sees it and writes 30,000 events (whole
/// frames, stored as they came), all reaching N before its previous
/// record of others' events committed; N writes on top, and dies.
#[test]
fn a_restore_never_loses_our_writes_to_the_order_of_a_record() {
    let now = 1_000;
    // X's id sorts before Y's.
    let (mut x, mut y) = {
        let (a, b) = (
            common::signed_node(21, SyncConfig::default()),
            common::signed_node(22, SyncConfig::default()),
        );
        if a.peer() < b.peer() {
            (a, b)
        } else {
            (b, a)
        }
    };
    let mut n = common::signed_node(23, durable());
    let n_seed_peer = n.peer();
    x.connect(y.peer(), now);
    y.connect(x.peer(), now);
    fn pass(from: &mut SyncNode, to: &mut SyncNode, now: u64) -> bool {
        let mut quiet = true;
        for output in from.take_outputs() {
            if let Output::Send { frame, .. } = output {
                quiet = false;
                to.receive_frame(from.peer(), &frame, now);
            }
        }
        quiet
    }
    let memory = |a: &mut SyncNode, b: &mut SyncNode| {
        for _ in 0..100 {
            if pass(a, b, now) & pass(b, a, now) {
                return;
            }
        }
        panic!("no end");
    };
    memory(&mut x, &mut y);
    let big = format!("\"{}\"", "y".repeat(100_000));
    y.write(|e| e.set("big", json(&big), now).map(Some))
        .unwrap();
    memory(&mut x, &mut y);
    for i in 0..30_000 {
        x.write(|e| e.set(&format!("x{i}"), json("1"), now).map(Some))
            .unwrap();
        if i % 1000 == 999 {
            x.take_outputs();
        }
    }
    x.take_outputs();

    // N meets X; its commits are slow: nothing is acknowledged until the
    // end, and a record of others' events (Z's) is committing already.
    let mut stored: Vec<(u64, Persist)> = Vec::new();
    let mut z = common::signed_node(24, SyncConfig::default());
    z.write(|e| e.set("z", json("1"), now).map(Some)).unwrap();
    n.connect(z.peer(), now);
    z.connect(n.peer(), now);
    for round in 0..20 {
        n.tick(now + round * 500);
        z.tick(now + round * 500);
        for output in n.take_outputs() {
            match output {
                Output::Send { frame, .. } => z.receive_frame(n.peer(), &frame, now),
                Output::Persist { token, write } => stored.push((token, write)),
                _ => {}
            }
        }
        pass(&mut z, &mut n, now);
    }
    assert_eq!(n.engine().clock().get(z.peer()), 1, "N has Z's write");
    assert_eq!(stored.len(), 1, "in a record not yet committed");
    n.connect(x.peer(), now);
    x.connect(n.peer(), now);
    for round in 0..2_000 {
        let mut quiet = true;
        let at = now + round * 500;
        n.tick(at);
        x.tick(at);
        for output in n.take_outputs() {
            match output {
                Output::Send { frame, .. } => {
                    quiet = false;
                    x.receive_frame(n.peer(), &frame, at);
                }
                Output::Persist { token, write } => stored.push((token, write)),
                _ => {}
            }
        }
        for output in x.take_outputs() {
            if let Output::Send { to, frame } = output {
                if to == n.peer() {
                    quiet = false;
                    n.receive_frame(x.peer(), &frame, at);
                }
            }
        }
        if quiet && n.engine().clock().get(x.peer()) == 30_000 {
            break;
        }
    }
    assert_eq!(n.engine().clock().get(x.peer()), 30_000, "N has X's writes");
    assert_eq!(n.engine().clock().get(y.peer()), 1, "and Y's");
    n.write(|e| e.set("mine", json("1"), now).map(Some))
        .unwrap();
    for output in n.take_outputs() {
        if let Output::Persist { token, write } = output {
            stored.push((token, write));
        }
    }
    // Storage commits it all, and our write leaves for X; then the tab
    // dies (or is reloaded).
    let last = stored.last().map(|(t, _)| *t).expect("persists");
    n.persisted(last);
    for output in n.take_outputs() {
        if let Output::Send { to, frame } = output {
            if to == x.peer() {
                x.receive_frame(n.peer(), &frame, now + 20_000);
            }
        }
    }
    assert_eq!(x.engine().clock().get(n_seed_peer), 1, "X has our write");
    let commit: Vec<Persist> = stored.iter().map(|(_, w)| w.clone()).collect();
    let commit = Persist::commit(&commit);
    // The records joined: batches back to back, as storage reads them.
    let events = P2PEvent::decode_batch(&commit.record.expect("a record")).expect("decodes");
    let mut restored = SyncNode::restore(
        n_seed_peer,
        EngineConfig::default(),
        SyncConfig {
            identity: Some(Identity::from_seed(23)),
            durable: true,
            ..SyncConfig::default()
        },
        commit.snapshot,
        events,
    )
    .expect("restores");
    let restored_x = restored.engine().clock().get(x.peer());
    let restored_ours = restored.engine().clock().get(n_seed_peer);
    // The reloaded tab writes again and meets X.
    restored
        .write(|e| e.set("again", json("2"), now + 30_000).map(Some))
        .unwrap();
    x.disconnect(n_seed_peer);
    x.connect(n_seed_peer, now + 30_000);
    restored.connect(x.peer(), now + 30_000);
    for round in 0..40 {
        let at = now + 30_000 + round * 500;
        restored.tick(at);
        x.tick(at);
        for output in restored.take_outputs() {
            match output {
                Output::Send { frame, .. } => x.receive_frame(n_seed_peer, &frame, at),
                Output::Persist { token, .. } => restored.persisted(token),
                _ => {}
            }
        }
        pass(&mut x, &mut restored, at);
    }
    eprintln!(
        "X has the reloaded tab's write: {:?}; the reloaded tab has it: {:?}",
        x.engine().get("again"),
        restored.engine().get("again")
    );
    assert_eq!(
        x.engine().stats().equivocations,
        0,
        "X saw two events under one of our numbers: restored, ours were {restored_ours} of 1 and X's {restored_x} of 30000",
    );
}
