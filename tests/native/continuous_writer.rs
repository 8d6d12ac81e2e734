//! A writer that never stops writing: what its peers miss of it must
//! still reach them while it writes. `Told` (session.rs) keeps one send
//! time per origin, refreshed by every push, and a digest is not answered
//! with what was sent within a patience of that time: while pushes come
//! faster than the patience (a gossip interval and a round trip), every
//! digest asking for a gap of that origin is taken as crossing a push.
//!
//! Each randomized test prints its seed; `CPC_SEED=n` replays it.

use std::cell::Cell;

use crate::common::slow_link::SlowLink;
use crate::common::{self, json, net::Net, Rng};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, Relay, SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, PeerId, ReconciliationEngine};

const START: u64 = 1_700_000_000_000;
const STEP_MS: u64 = 10;
/// Gossip intervals a healthy repair may take (the default interval is
/// 1 s; anti-entropy answers a gap at the second digest at the latest).
const HEAL_INTERVALS: u64 = 5;

/// Whether a repair that took `took` ms (or never came) was in time.
fn in_time(took: Option<u64>) -> bool {
    took.is_some_and(|t| t <= HEAL_INTERVALS * 1_000)
}

fn node(id: u64, relay: Relay) -> SyncNode {
    let engine = ReconciliationEngine::new(PeerId(id), EngineConfig::default());
    SyncNode::new(
        engine,
        SyncConfig {
            relay,
            ..SyncConfig::default()
        },
    )
}

fn is_events(frame: &[u8]) -> bool {
    matches!(
        wire::decode(frame),
        Ok(wire::Decoded::Message(Message::Events(_)))
    )
}

fn write(net: &mut Net, w: usize, n: u64) {
    let now = net.now;
    let key = format!("w/{}", n % 16);
    net.nodes[w]
        .write(|e| e.set(&key, json(&n.to_string()), now).map(Some))
        .expect("write");
}

/// Of `origin`, the sequence number `at` has applied.
fn has(net: &Net, at: usize, origin: usize) -> u64 {
    let origin = net.nodes[origin].peer();
    net.nodes[at].engine().clock().get(origin)
}

/// Runs the net for `for_ms`, node `w` writing once every `every_ms`,
/// frames `tamper`ed; the first moment (ms from the start) `done` held.
fn write_while(
    net: &mut Net,
    w: usize,
    every_ms: u64,
    for_ms: u64,
    tamper: &mut common::net::Tamper<'_>,
    done: &mut dyn FnMut(&Net) -> bool,
) -> Option<u64> {
    let start = net.now;
    let mut next_write = net.now;
    let mut n = 0;
    while net.now < start + for_ms {
        if net.now >= next_write {
            n += 1;
            write(net, w, n);
            next_write += every_ms;
        }
        net.run(STEP_MS, STEP_MS, tamper);
        if done(net) {
            return Some(net.now - start);
        }
    }
    None
}

/// Node `w` writes every `every_ms` for up to `for_ms` while the first
/// events frame node `sender` sends at `lose_at` or later is lost: when it
/// was lost (ms, the net's clock), what `sender` then held of `w`'s, and
/// how long after the start node `r` took to hold that (healed).
fn lose_a_push(
    net: &mut Net,
    (w, sender, r): (usize, usize, usize),
    every_ms: u64,
    for_ms: u64,
    lose_at: u64,
) -> (u64, u64, Option<u64>) {
    let from = net.nodes[sender].peer();
    let (lost, clock) = (Cell::new(None::<u64>), Cell::new(net.now));
    let mut tamper = |by: PeerId, _: PeerId, frame: Vec<u8>| {
        if by == from && lost.get().is_none() && clock.get() >= lose_at && is_events(&frame) {
            lost.set(Some(clock.get()));
            return vec![];
        }
        vec![frame]
    };
    let mut lost_seq = 0;
    let healed = write_while(net, w, every_ms, for_ms, &mut tamper, &mut |net| {
        clock.set(net.now);
        if lost.get().is_some() && lost_seq == 0 {
            lost_seq = has(net, sender, w);
        }
        lost_seq != 0 && has(net, r, w) >= lost_seq
    });
    (lost.get().expect("a push was lost"), lost_seq, healed)
}

/// Two peers, one writing every `every_ms` (under a gossip interval and a
/// round trip): one push of its is lost. The peer holds every later push
/// (each rests on the lost one) and shows none of them until the gap is
/// filled; the writer's digest answer leaves the gap out while it writes.
#[test]
fn a_push_lost_while_its_writer_keeps_writing_is_sent_again_within_a_few_intervals() {
    common::for_seeds(
        "lost push, continuous writer",
        "CPC_WRITER_SEEDS",
        8,
        lost_push_while_writing,
    );
}

fn lost_push_while_writing(seed: u64) {
    let mut rng = Rng::new(seed);
    let every_ms = 50 + 10 * rng.below(90) as u64; // 50..940 ms
    let lose_after_ms = 1_000 + 10 * rng.below(300) as u64;
    let mut net = Net::new(
        vec![node(1, Relay::default()), node(2, Relay::default())],
        START,
    );
    net.link(0, 1);
    net.run(2_000, STEP_MS, &mut common::net::honest);
    let (w, r) = (0, 1);
    // The writer writes for two minutes.
    let lose_at = net.now + lose_after_ms;
    let (lost_at, lost_seq, healed) = lose_a_push(&mut net, (w, w, r), every_ms, 120_000, lose_at);
    let wrote_until = has(&net, w, w);
    let (has_then, holding_then) = (has(&net, r, w), net.nodes[r].engine().holding().len());
    // The writer stops: how long the gap then takes.
    let start = net.now;
    let after_stop = net.run_until(60_000, STEP_MS, &mut common::net::honest, |net| {
        has(net, r, w) >= wrote_until
    });
    println!(
        "seed {seed}: once the writer stopped, the reader had all {} ms later ({after_stop})",
        net.now - start
    );
    let took = healed.map(|t| t - (lost_at - START - 2_000));
    println!(
        "seed {seed}: a write every {every_ms} ms, push of seq {lost_seq} lost at +{} ms: \
         healed after {took:?} ms while writing; reader shows seq {} of {}, holds {} events",
        lost_at - START,
        has_then,
        wrote_until,
        holding_then,
    );
    assert!(
        in_time(took),
        "seed {seed}: the lost push was not sent again within {HEAL_INTERVALS} gossip \
         intervals while its writer kept writing (every {every_ms} ms): {took:?}"
    );
}

/// A peer connects while another writes every 200 ms: the writer's next
/// push crosses the newcomer's first digest (a write within a one-way
/// trip of the connect). The digest's answer leaves out everything up to
/// that push, the writer's whole history, and every later digest is
/// taken as crossing a later push: the newcomer gets none of it for as
/// long as the writer keeps writing.
#[test]
fn a_peer_that_connects_while_a_writer_keeps_writing_gets_its_history() {
    let mut failed = Vec::new();
    for relay in [Relay::Pull, Relay::Flood, Relay::Tree] {
        let mut net = Net::new(vec![node(1, relay), node(2, relay)], START);
        let (w, r) = (0, 1);
        for n in 0..100 {
            write(&mut net, w, n);
        }
        net.run(100, STEP_MS, &mut common::net::honest);
        let history = has(&net, w, w);
        net.link(w, r);
        // A write in the same moment as the connect: its push is on the
        // wire before the newcomer's digest reaches the writer.
        write(&mut net, w, 1_000);
        let healed = write_while(
            &mut net,
            w,
            200,
            60_000,
            &mut common::net::honest,
            &mut |net| has(net, r, w) >= history,
        );
        println!(
            "{relay:?}: history of {history}, newcomer has {} after {healed:?} ms \
             (writer at {}), holding {}",
            has(&net, r, w),
            has(&net, w, w),
            net.nodes[r].engine().holding().len(),
        );
        if !in_time(healed) {
            failed.push((relay, healed));
        }
    }
    assert!(
        failed.is_empty(),
        "the newcomer lacked the writer's earlier writes while it wrote (a minute): {failed:?}"
    );
}

/// The room's server peer floods (keep/room.rs): a page that joins
/// through it while another page writes every 200 ms is pushed each fresh
/// write by the server, and the server's answer to the page's digests
/// leaves out the writer's history for as long as it writes.
#[test]
fn a_page_joining_through_a_flooding_relay_gets_a_continuous_writer_s_history() {
    let mut net = Net::new(
        vec![
            node(1, Relay::Pull),  // the writer
            node(2, Relay::Flood), // the room's server peer
            node(3, Relay::Pull),  // the newcomer
        ],
        START,
    );
    let (w, s, r) = (0, 1, 2);
    net.link(w, s);
    for n in 0..100 {
        write(&mut net, w, n);
    }
    net.run(2_000, STEP_MS, &mut common::net::honest);
    let history = has(&net, w, w);
    assert_eq!(has(&net, s, w), history);
    net.link(s, r);
    // The writer's write reaches the server while the newcomer's first
    // digest is on its way.
    write(&mut net, w, 1_000);
    let healed = write_while(
        &mut net,
        w,
        200,
        60_000,
        &mut common::net::honest,
        &mut |net| has(net, r, w) >= history,
    );
    println!(
        "history of {history}, newcomer has {} after {healed:?} ms (writer at {}), holding {}",
        has(&net, r, w),
        has(&net, w, w),
        net.nodes[r].engine().holding().len(),
    );
    assert!(
        in_time(healed),
        "the newcomer lacked the writer's {history} earlier writes for {healed:?} ms"
    );
}

/// A relayed writer: W — R — N, each relay; one events frame from R to N
/// (a graft's answer, or an eager relay) is lost while W writes every
/// 50-440 ms (by the seed). N gets it again within a few intervals.
#[test]
fn a_relayed_frame_lost_while_its_writer_keeps_writing_comes_again() {
    common::for_seeds("lost relayed frame", "CPC_WRITER_SEEDS", 4, |seed| {
        let mut rng = Rng::new(seed);
        let every_ms = 50 + 10 * rng.below(40) as u64;
        let mut failed = Vec::new();
        for relay in [Relay::Pull, Relay::Flood, Relay::Tree] {
            let mut net = Net::new(vec![node(1, relay), node(2, relay), node(3, relay)], START);
            let (w, s, r) = (0, 1, 2);
            net.link(w, s);
            net.link(s, r);
            net.run(2_000, STEP_MS, &mut common::net::honest);
            let lose_at = net.now + 1_000 + 10 * rng.below(200) as u64;
            let (lost_at, _, healed) = lose_a_push(&mut net, (w, s, r), every_ms, 30_000, lose_at);
            let lost_at = lost_at - START - 2_000;
            let took = healed.map(|t| t - lost_at);
            println!("seed {seed} {relay:?}: every {every_ms} ms, lost at +{lost_at}: healed after {took:?} ms");
            if !in_time(took) {
                failed.push((relay, took));
            }
        }
        assert!(
            failed.is_empty(),
            "seed {seed}: not healed within {HEAL_INTERVALS} intervals while writing: {failed:?}"
        );
    });
}

struct Run {
    /// ms from the connect until the newcomer had the writer's history.
    caught_up_ms: Option<u64>,
    /// Events the newcomer received, and of them already received.
    received: usize,
    duplicates: usize,
}

/// A writer holding `history` writes of its own (`value_bytes` each)
/// and a newcomer over a link of `bytes_per_ms`, `latency_ms` to the
/// host; the writer writes once every `every_ms` (0: never) from the
/// connect on, for `for_ms` at most. With `room_peer` the host is a
/// flooding room peer beside the writer (an instant link between them),
/// otherwise the writer itself.
fn newcomer_beside_a_writer(
    history: usize,
    value_bytes: usize,
    bytes_per_ms: usize,
    latency_ms: u64,
    every_ms: u64,
    for_ms: u64,
    room_peer: bool,
) -> Run {
    let value = format!("\"{}\"", "v".repeat(value_bytes));
    let mut writer = node(1, Relay::default());
    for i in 0..history {
        writer
            .write(|e| e.set(&format!("k{i}"), json(&value), START).map(Some))
            .unwrap();
        writer.take_outputs();
    }
    writer.tick(START);
    writer.take_outputs();
    let w = writer.peer();
    let history = writer.engine().clock().get(w);
    let mut host = node(3, Relay::Flood);
    if room_peer {
        for e in writer.engine().log().iter().cloned().collect::<Vec<_>>() {
            host.engine_mut().receive(e, START).unwrap();
        }
        host.connect(w, START);
        writer.connect(host.peer(), START);
    }
    let mut new = node(2, Relay::default());
    {
        let host = if room_peer { &mut host } else { &mut writer };
        host.connect(new.peer(), START);
        new.connect(host.peer(), START);
    }
    let mut down = SlowLink::new(bytes_per_ms, latency_ms);
    let mut up = SlowLink::new(bytes_per_ms, latency_ms);
    let mut seen = std::collections::HashSet::new();
    let (mut received, mut duplicates) = (0, 0);
    let mut now = START;
    let mut next_write = START;
    let mut n = 0u64;
    let mut caught_up_ms = None;
    let new_id = new.peer();
    while now < START + for_ms {
        if every_ms > 0 && now >= next_write {
            n += 1;
            let key = format!("w/{}", n % 16);
            writer
                .write(|e| e.set(&key, json(&n.to_string()), now).map(Some))
                .unwrap();
            next_write += every_ms;
        }
        // The writer and the room peer: frames between them arrive at
        // once.
        let mut instant: Vec<(PeerId, PeerId, Vec<u8>)> = Vec::new();
        let mut nodes = if room_peer {
            vec![&mut writer, &mut host, &mut new]
        } else {
            vec![&mut writer, &mut new]
        };
        for node in nodes.iter_mut() {
            if node.next_timer() <= now {
                node.tick(now);
            }
            let from = node.peer();
            for output in node.take_outputs() {
                if let Output::Send { to, frame } = output {
                    if to == new_id {
                        down.push(frame);
                    } else if from == new_id {
                        up.push(frame);
                    } else {
                        instant.push((from, to, frame));
                    }
                }
            }
        }
        for (from, to, frame) in instant {
            if let Some(n) = nodes.iter_mut().find(|n| n.peer() == to) {
                n.receive_frame(from, &frame, now);
            }
        }
        let host = if room_peer { &mut host } else { &mut writer };
        if let Some(backlogged) = down.step(now) {
            host.set_backlogged(new_id, backlogged);
        }
        up.step(now);
        for frame in down.arrived(now) {
            if let Ok(Decoded::Message(Message::Events(events))) = wire::decode(&frame) {
                received += events.len();
                for e in &events {
                    if !seen.insert(e.id) {
                        duplicates += 1;
                    }
                }
            }
            new.receive_frame(host.peer(), &frame, now);
        }
        for frame in up.arrived(now) {
            host.receive_frame(new_id, &frame, now);
        }
        now += 1;
        if new.engine().clock().get(w) >= history {
            caught_up_ms = Some(now - START);
            break;
        }
    }
    Run {
        caught_up_ms,
        received,
        duplicates,
    }
}

/// A newcomer's history longer than one answer slice (1 MB: 20,000
/// writes of 500 bytes is ten), its writer writing every 200 ms, over a
/// link of 1 MB/s and 40 ms that paces the answer by its backlog: from
/// the writer itself, and through the room's flooding server peer.
/// Without the writes it comes in ~10 s. With them, each digest of the
/// newcomer that shows a slice arriving makes the writer's last push "on
/// its way" again (`Told::since` refreshed by the progress), and the
/// answer's next slices, recomputed from what is on its way
/// (`Owed::answer`), start past that push: the rest of the history is
/// dropped from what is owed, asked for again only a patience after the
/// progress stops, and each such ask doubles the patience (51 s, and
/// 253 s for 40,000 writes, against 21 s).
#[test]
fn a_history_of_several_slices_comes_while_its_writer_writes() {
    let mut failed = Vec::new();
    for room_peer in [false, true] {
        let quiet = newcomer_beside_a_writer(20_000, 500, 1_000, 40, 0, 300_000, room_peer);
        let busy = newcomer_beside_a_writer(20_000, 500, 1_000, 40, 200, 300_000, room_peer);
        println!(
            "through the room peer {room_peer}: quiet, caught up after {:?} ms, {} events \
             received ({} twice); writing every 200 ms: after {:?} ms, {} received ({} twice)",
            quiet.caught_up_ms,
            quiet.received,
            quiet.duplicates,
            busy.caught_up_ms,
            busy.received,
            busy.duplicates
        );
        let quiet_ms = quiet.caught_up_ms.expect("the quiet newcomer catches up");
        if busy.caught_up_ms.is_none_or(|t| t > quiet_ms + 5_000) {
            failed.push((room_peer, quiet_ms, busy.caught_up_ms));
        }
    }
    assert!(
        failed.is_empty(),
        "the newcomer had the history much later while its writer wrote \
         (room peer, ms quiet, ms busy): {failed:?}"
    );
}
