//! What one member with a valid key can make an honest peer spend:
//! memory and storage it cannot fold, bytes it sends, signatures it
//! checks. Each attack is a review's, written as it was found.

use crate::common::{self, json};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode};
use cpc_sync::protocol::{Hash32, PeerId, VectorClock};

const NOW: u64 = 1_700_000_000_000;

/// Carries frames between `nodes` until quiet; frames to anyone else are
/// kept in `to_others`.
fn pump(nodes: &mut [&mut SyncNode], now: u64, to_others: &mut Vec<(PeerId, Vec<u8>)>) {
    for _ in 0..200 {
        let mut frames = Vec::new();
        for node in nodes.iter_mut() {
            let from = node.peer();
            for output in node.take_outputs() {
                if let Output::Send { to, frame } = output {
                    frames.push((from, to, frame));
                }
            }
        }
        if frames.is_empty() {
            return;
        }
        for (from, to, frame) in frames {
            match nodes.iter_mut().find(|n| n.peer() == to) {
                Some(node) => node.receive_frame(from, &frame, now),
                None => to_others.push((to, frame)),
            }
        }
    }
    panic!("the nodes did not go quiet");
}

/// Node 1 with `config`, linked at `NOW` to node `seed` with `its_config`.
fn linked(config: SyncConfig, seed: u64, its_config: SyncConfig) -> (SyncNode, SyncNode) {
    let mut a = common::signed_node(1, config);
    let mut b = common::signed_node(seed, its_config);
    let (ia, ib) = (a.peer(), b.peer());
    a.connect(ib, NOW);
    b.connect(ia, NOW);
    (a, b)
}

fn events_in(frames: &[(PeerId, Vec<u8>)]) -> usize {
    frames
        .iter()
        .filter_map(|(_, f)| match wire::decode(f) {
            Ok(Decoded::Message(Message::Events(e))) => Some(e.len()),
            _ => None,
        })
        .sum()
}

/// Mallory, linked to `a`: "I have nothing" (~40 bytes).
fn empty_digest(a: &mut SyncNode, mallory: PeerId, now: u64) {
    let digest = Message::Digest {
        clock: VectorClock::new(),
        root: Hash32::ZERO,
    };
    for frame in wire::encode(&digest, 1) {
        a.receive_frame(mallory, &frame, now);
    }
}

/// `seconds` of an honest writer `b` writing 50 keys a second to `a`
/// (folding at 500 events); with `mallory`, a member linked to `a` who
/// says she has nothing right after each of `a`'s gossip rounds and
/// again just before the next. `a`'s log at the end, and what `a` sent
/// her: events, bytes.
fn fold_beside_empty_digests(
    seconds: u64,
    mallory: bool,
    compact_after: usize,
) -> (usize, usize, usize) {
    let config = SyncConfig {
        compact_after,
        keep_unacked: 0,
        ..SyncConfig::default()
    };
    let (mut a, mut b) = linked(config.clone(), 2, config.clone());
    let m = common::signed_node(666, config).peer();
    if mallory {
        a.connect(m, NOW);
    }
    let mut to_mallory = Vec::new();
    for second in 0..seconds {
        let now = NOW + second * 1_000;
        a.tick(now);
        b.tick(now);
        if mallory {
            empty_digest(&mut a, m, now);
        }
        pump(&mut [&mut a, &mut b], now, &mut to_mallory);
        b.write(|e| {
            for k in 0..50 {
                e.set(&format!("k{second}/{k}"), json("1"), now)?;
            }
            Ok(None)
        })
        .unwrap();
        pump(&mut [&mut a, &mut b], now, &mut to_mallory);
        if mallory {
            empty_digest(&mut a, m, now + 900);
            pump(&mut [&mut a, &mut b], now + 900, &mut to_mallory);
        }
    }
    let events = events_in(&to_mallory);
    let bytes = to_mallory.iter().map(|(_, f)| f.len()).sum();
    let log = a.engine().log().len();
    println!(
        "mallory={mallory}: a's log {log} events, b's {}; a sent Mallory {events} events \
         ({bytes} B)",
        b.engine().log().len()
    );
    (log, events, bytes)
}

/// A member's digest of an empty clock, twice a gossip round, held back
/// every fold of the peer it went to (the stable clock was the meet of
/// every synced session's, forced folds too): the log grew without
/// bound, at the room peer until its file passed `KEEP_MAX_ROOM_BYTES`
/// and the room was cut off, and every round the whole log went to her
/// again. A peer that lacks a fold's worth of our events now holds
/// nothing back, and a peer asking again for what was told it waits
/// twice as long each time.
#[test]
fn an_empty_digest_holds_back_no_fold() {
    let (honest, _, _) = fold_beside_empty_digests(120, false, 500);
    let (attacked, events, _) = fold_beside_empty_digests(120, true, 500);
    // A log folds at 4 times `compact_after` at the latest (events keep
    // coming, so no fold waits for a quiet round).
    assert!(honest <= 4 * 500, "without Mallory the log folds: {honest}");
    assert!(
        attacked <= 4 * 500,
        "Mallory's empty digests held back the folds: {attacked} events"
    );
    // Each digest asking again for what was told her doubles the wait
    // before it is sent again: 39,000 events went before, 357,000 before
    // the folds.
    assert!(
        events < 10_000,
        "a sent her {events} events for her digests"
    );
}

/// The same digests where no fold is near (she lacks less than
/// `compact_after`, so she is owed events, not a snapshot), for longer
/// than the longest patience: a resend of what she says she lacks is
/// given its patience again, however long she has said so, so the
/// back-off holds (a review of the fix for a writer that never stops:
/// what was told counts as on its way only while her digests show it
/// arriving, and hers never do).
#[test]
fn empty_digests_beside_a_writer_that_never_stops_back_off() {
    let (_, events, _) = fold_beside_empty_digests(600, true, 100_000);
    // 30,000 events written, ~52,000 sent her: a resend once the longest
    // patience (32 rounds) has passed. With the wait counted from the
    // first send only, 702,000.
    assert!(
        events < 150_000,
        "a sent her {events} events for her digests"
    );
}

/// A `Pong` nobody asked for was a round-trip sample: Mallory made her
/// link the nearest there is (0 ms) whatever her distance, and a peer
/// keeping its nearest links (the overlay of a big room) hung up honest
/// ones for hers. Only the echo of our ping, once, is a sample now.
#[test]
fn only_the_echo_of_our_ping_is_a_round_trip() {
    let mut a = common::signed_node(1, SyncConfig::default());
    let m = common::signed_node(666, SyncConfig::default()).peer();
    a.connect(m, NOW);
    let _ = a.take_outputs();
    let pong = |a: &mut SyncNode, sent_ms: u64, now: u64| {
        for frame in wire::encode(&Message::Pong { sent_ms }, 1) {
            a.receive_frame(m, &frame, now);
        }
    };
    // Her real round trip: 400 ms (she answers a's ping on connect late).
    pong(&mut a, NOW, NOW + 400);
    let rtt = |a: &SyncNode| a.stats(m).unwrap().rtt_ms;
    assert_eq!(rtt(&a), Some(400.0));
    // The same echo again, and pongs of her own stamps, each stamped with
    // the moment it arrives.
    pong(&mut a, NOW, NOW + 450);
    for i in 0..40u64 {
        let now = NOW + 500 + i;
        pong(&mut a, now, now);
    }
    assert_eq!(rtt(&a), Some(400.0), "forged pongs moved the round trip");
}

/// A `LeafQuery` was answered with the first leaf of each gossip interval
/// whatever its size, and a leaf's copy carries the whole signed runs its
/// values rest on. Mallory wrote one burst of 1,000 values of 14 KB (one
/// run, 14 MB: a write any member may make), then asked each second for a
/// leaf: 10 bytes that cost the victim 14 MB on its link, every second.
/// What a leaf went past the budget by is now paid off in the intervals
/// after it.
#[test]
fn a_leaf_query_a_second_gets_the_leaf_budget_on_average() {
    let (mut a, mut m) = linked(SyncConfig::default(), 666, SyncConfig::default());
    let im = m.peer();
    let pad = "x".repeat(14_000);
    m.write(|e| {
        for k in 0..1_000 {
            e.set(&format!("big/{k}"), json(&format!("\"{pad}\"")), NOW)?;
        }
        Ok(None)
    })
    .unwrap();
    pump(&mut [&mut a, &mut m], NOW, &mut Vec::new());
    a.verify_received(NOW);
    assert_eq!(a.engine().clock().get(im), 1_000, "a took Mallory's run");
    let _ = a.take_outputs();
    let (mut sent, mut asked) = (0, 0);
    let seconds = 10;
    for second in 0..seconds {
        let now = NOW + 10_000 + second * 1_000;
        a.tick(now);
        let _ = a.take_outputs();
        // A leaf holding one of her keys (another one each second).
        let key = format!("big/{}", second * 97);
        let query = Message::LeafQuery {
            index: u32::from(cpc_sync::protocol::digest::leaf_of(&key)),
        };
        for frame in wire::encode(&query, 1) {
            asked += frame.len();
            a.receive_frame(im, &frame, now);
        }
        for output in a.take_outputs() {
            if let Output::Send { to, frame } = output {
                if to == im {
                    sent += frame.len();
                }
            }
        }
    }
    println!("{seconds} leaf queries ({asked} B, one a second): a sent {sent} B");
    // The first leaf goes whole (an honest repair of it must be possible),
    // and pays for the next 13 intervals (1 MiB each); 140 MB went before.
    assert!(
        sent < 20_000_000,
        "a sent {sent} B for {asked} B of queries"
    );
}

/// A link of round trip `rtt_ms` (half each way), or one whose peer never
/// answers (`None`): what `a` knows of its round trip after `secs`.
fn measured_rtt(rtt_ms: Option<u64>, secs: u64) -> Option<f64> {
    let (mut a, mut b) = linked(SyncConfig::default(), 2, SyncConfig::default());
    let (ia, ib) = (a.peer(), b.peer());
    let mut in_flight: Vec<(u64, PeerId, Vec<u8>)> = Vec::new();
    for t in (0..=secs * 1_000).step_by(100) {
        let now = NOW + t;
        a.tick(now);
        b.tick(now);
        for (node, from) in [(&mut a, ia), (&mut b, ib)] {
            for output in node.take_outputs() {
                if let (Output::Send { frame, .. }, Some(rtt)) = (output, rtt_ms) {
                    in_flight.push((now + rtt / 2, from, frame));
                }
            }
        }
        let (due, later) = in_flight.drain(..).partition(|f| f.0 <= now);
        in_flight = later;
        for (_, from, frame) in due {
            let to = if from == ia { &mut b } else { &mut a };
            to.receive_frame(from, &frame, now);
        }
    }
    a.stats(ib).unwrap().rtt()
}

/// Only the echo of our outstanding ping is a sample, and a new ping
/// every 10 s replaced it: a link slower than that (a ping behind a long
/// backlog) was never measured, and one whose peer never answered was
/// taken as near. A ping now waits for its pong, and one still waiting
/// at the next interval counts as a round trip that long at least.
#[test]
fn slow_and_silent_links_are_measured_slow() {
    for rtt in [200, 12_000, 30_000] {
        let measured = measured_rtt(Some(rtt), 120).expect("measured");
        println!("a round trip of {rtt} ms measured as {measured:.0} ms");
        assert!(
            measured >= rtt as f64 * 0.75,
            "a round trip of {rtt} ms measured as {measured:.0} ms"
        );
    }
    let silent = measured_rtt(None, 60).unwrap_or(0.0);
    assert!(
        silent >= 10_000.0,
        "a peer that never answers: {silent:.0} ms"
    );
}

/// The wait of a ping is no sample of its own, and ends with its session:
/// a link of 50 ms whose network went away for 30 s before the link was
/// found dead came back as a link of 7 s (the waits smoothed in and kept
/// with the peer's counters), hung up first by a peer keeping near links.
#[test]
fn a_link_back_after_its_network_went_away_is_near() {
    let (mut a, mut b) = linked(SyncConfig::default(), 2, SyncConfig::default());
    let (ia, ib) = (a.peer(), b.peer());
    for t in (0..45_000).step_by(50) {
        let now = NOW + t;
        a.tick(now);
        b.tick(now);
        // Every frame arrives 25 ms later; b's, not after 15 s.
        for output in a.take_outputs() {
            if let Output::Send { frame, .. } = output {
                b.receive_frame(ia, &frame, now + 25);
            }
        }
        for output in b.take_outputs() {
            if let Output::Send { frame, .. } = output {
                if t < 15_000 {
                    a.receive_frame(ib, &frame, now + 50);
                }
            }
        }
    }
    let while_gone = a.stats(ib).unwrap().rtt().expect("measured");
    assert!(while_gone >= 10_000.0, "while gone: {while_gone:.0} ms");
    a.disconnect(ib);
    a.connect(ib, NOW + 46_000);
    let back = a.stats(ib).unwrap().rtt().expect("kept");
    println!("a 50 ms link: {while_gone:.0} ms while gone, {back:.0} ms back");
    assert!(
        back < 200.0,
        "back after its network went away: {back:.0} ms"
    );
}

/// Runs a peer held already were verified again each time they came (a
/// duplicate costs no points: honest gossip sends them). Mallory signed
/// 500 one-event runs once, then only replayed the frame: each replay cost
/// the victim 500 signature checks (~14 µs each natively), her nothing.
/// Runs held as they came are now dropped before verification; seals are
/// counted as they are handed to the verifier.
#[test]
fn replayed_runs_are_not_verified_again() {
    // As a page's node: seals held a window, verified by workers.
    let config = SyncConfig {
        verify_window_ms: Some(cpc_sync::protocol::sync::VERIFY_WINDOW_MS),
        offload_seals: true,
        ..SyncConfig::default()
    };
    let (mut a, mut m) = linked(config, 666, SyncConfig::default());
    let im = m.peer();
    let _ = (a.take_outputs(), m.take_outputs());
    let mut runs = Vec::new();
    for k in 0..500 {
        m.write(|e| e.set(&format!("r/{k}"), json("1"), NOW).map(Some))
            .unwrap();
        for output in m.take_outputs() {
            if let Output::Send { frame, .. } = output {
                if let Ok(Decoded::Message(Message::Events(e))) = wire::decode(&frame) {
                    runs.extend(e);
                }
            }
        }
    }
    let frames = wire::encode(&Message::Events(runs), 1);
    // Every seal handed out is verified (a verdict of 1); how many were.
    let deliver = |a: &mut SyncNode, now: u64| {
        for f in &frames {
            a.receive_frame(im, f, now);
        }
        a.verify_received(now);
        let mut seals = 0;
        for output in a.take_outputs() {
            if let Output::Verify {
                batch,
                seals: packed,
            } = output
            {
                let count = packed.len() / cpc_sync::protocol::seal::PACKED_SEAL;
                seals += count;
                a.verified(batch, &vec![1; count], now);
            }
        }
        seals
    };
    assert_eq!(
        deliver(&mut a, NOW),
        500,
        "the first time, each is verified"
    );
    assert_eq!(a.engine().clock().get(im), 500);
    let duplicates = a.engine().stats().duplicates;
    for replay in 1..=3 {
        assert_eq!(
            deliver(&mut a, NOW + replay),
            0,
            "replay {replay} was verified again"
        );
    }
    assert_eq!(a.engine().stats().duplicates, duplicates + 3 * 500);
    assert_eq!(
        a.stats(im).unwrap().rejected,
        0,
        "duplicates cost no points"
    );
}
