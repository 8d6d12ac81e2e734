//! Snapshots gzipped on the wire (`SyncConfig::gzip_snapshots`): a node
//! whose edge can gzip offers both forms, a newcomer that can inflate asks
//! for the gzipped one, and either side without the edge's help gets the
//! snapshot as it is. The edge here is flate2, as a page's is the
//! browser's `CompressionStream`.

use crate::common::json;
use cpc_sync::protocol::event::Hash32;
use cpc_sync::protocol::sync::gzip::{gunzip_at_most, gzip};
use cpc_sync::protocol::sync::transfer::GZIP_PATIENCE_MS;
use cpc_sync::protocol::sync::wire::{self, Decoded, Gzipped, Message};
use cpc_sync::protocol::sync::{Output, Persist, SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, PeerId, ReconciliationEngine, VectorClock};

const NOW: u64 = 1_000;

fn node(id: u64, gzip_snapshots: bool, durable: bool) -> SyncNode {
    SyncNode::new(
        ReconciliationEngine::new(PeerId(id), EngineConfig::default()),
        SyncConfig {
            compact_after: 10,
            keep_unacked: 0,
            gzip_snapshots,
            durable,
            ..SyncConfig::default()
        },
    )
}

/// A host whose log is folded: a newcomer is behind its horizon.
fn host(gzip_snapshots: bool, durable: bool) -> SyncNode {
    let mut a = node(1, gzip_snapshots, durable);
    for i in 0..3_000 {
        let value = json(&format!("{{\"n\":{i},\"name\":\"entity number {i}\"}}"));
        a.write(|e| e.set(&format!("key/{i}"), value, NOW).map(Some))
            .unwrap();
    }
    a.tick(NOW);
    assert!(a.engine().log().is_empty(), "folded");
    a
}

/// How the edge answers.
#[derive(Clone, Copy)]
struct Edge {
    /// Answers `GzipSnapshot` (else never: a stuck edge).
    gzips: bool,
    /// A durable node's storage gzips each snapshot it stores and hands
    /// the node that form, unasked (as a page's does).
    storage_gzips: bool,
}

const EDGE: Edge = Edge {
    gzips: true,
    storage_gzips: false,
};

/// What went on during an exchange, per node.
#[derive(Default, Debug)]
struct Seen {
    /// Snapshot bytes this node was sent in chunks.
    chunk_bytes: usize,
    gzip_asked: usize,
    gunzip_asked: usize,
    rejected: Vec<String>,
}

/// Connects the nodes and carries frames and the edge's work between
/// them until they go quiet.
fn sync(nodes: &mut [&mut SyncNode], now: u64, edge: Edge) -> Vec<Seen> {
    for i in 0..nodes.len() {
        for j in 0..nodes.len() {
            if i != j {
                let peer = nodes[j].peer();
                nodes[i].connect(peer, now);
            }
        }
    }
    route(nodes, now, edge)
}

fn route(nodes: &mut [&mut SyncNode], now: u64, edge: Edge) -> Vec<Seen> {
    let mut seen: Vec<Seen> = nodes.iter().map(|_| Seen::default()).collect();
    for _ in 0..200 {
        let mut frames = Vec::new();
        let mut busy = false;
        for (n, seen) in nodes.iter_mut().zip(&mut seen) {
            let from = n.peer();
            let mut last_token = None;
            for output in n.take_outputs() {
                busy = true;
                match output {
                    Output::Send { to, frame } => frames.push((from, to, frame)),
                    Output::Persist { token, write } => {
                        if let (Persist::Snapshot(bytes), true) = (&write, edge.storage_gzips) {
                            n.snapshot_gzipped(bytes, gzip(bytes));
                        }
                        last_token = Some(token);
                    }
                    Output::GzipSnapshot { bytes } => {
                        seen.gzip_asked += 1;
                        if edge.gzips {
                            n.snapshot_gzipped(&bytes, gzip(&bytes));
                        }
                    }
                    Output::GunzipSnapshot { id, bytes, limit } => {
                        seen.gunzip_asked += 1;
                        n.snapshot_gunzipped(id, gunzip_at_most(&bytes, limit), now);
                    }
                    Output::Rejected { refusal, .. } => seen.rejected.push(refusal.to_string()),
                    _ => {}
                }
            }
            if let Some(token) = last_token {
                n.persisted(token);
            }
        }
        if !busy && frames.is_empty() {
            return seen;
        }
        for (from, to, frame) in frames {
            if let Some((n, seen)) = nodes
                .iter_mut()
                .zip(&mut seen)
                .find(|(n, _)| n.peer() == to)
            {
                if let Ok(Decoded::Message(Message::SnapshotChunk { bytes, .. })) =
                    wire::decode(&frame)
                {
                    seen.chunk_bytes += bytes.len();
                }
                n.receive_frame(from, &frame, now);
            }
        }
    }
    panic!("the exchange does not end");
}

fn assert_same_state(a: &mut SyncNode, b: &mut SyncNode) {
    assert_eq!(b.engine().state_json(), a.engine().state_json());
    assert_eq!(b.engine_mut().digest(), a.engine_mut().digest());
}

#[test]
fn a_newcomer_takes_the_snapshot_gzipped_when_both_sides_can() {
    let mut a = host(true, false);
    let raw = a.engine().encode_snapshot().len();
    let mut b = node(2, true, false);
    let seen = sync(&mut [&mut a, &mut b], 2_000, EDGE);
    assert_same_state(&mut a, &mut b);
    assert_eq!(seen[0].gzip_asked, 1, "gzipped once, for the first offer");
    assert_eq!(seen[1].gunzip_asked, 1);
    assert!(seen[1].rejected.is_empty(), "{:?}", seen[1].rejected);
    assert!(
        seen[1].chunk_bytes * 4 < raw,
        "{} bytes sent of a snapshot of {raw}",
        seen[1].chunk_bytes
    );

    // A second newcomer is offered the same gzipped form: no gzip again.
    let mut c = node(3, true, false);
    let seen = sync(&mut [&mut a, &mut c], 3_000, EDGE);
    assert_same_state(&mut a, &mut c);
    assert_eq!(seen[0].gzip_asked, 0);
    assert!(seen[1].chunk_bytes * 4 < raw);
}

#[test]
fn either_side_without_gzip_sends_or_takes_the_snapshot_as_it_is() {
    for (host_gzips, newcomer_gzips) in [(true, false), (false, true), (false, false)] {
        let mut a = host(host_gzips, false);
        let raw = a.engine().encode_snapshot().len();
        let mut b = node(2, newcomer_gzips, false);
        let seen = sync(&mut [&mut a, &mut b], 2_000, EDGE);
        assert_same_state(&mut a, &mut b);
        assert_eq!(seen[1].chunk_bytes, raw, "{host_gzips} {newcomer_gzips}");
        assert_eq!(seen[1].gunzip_asked, 0);
        assert!(seen[1].rejected.is_empty());
    }
}

/// A durable page's storage gzips every fold: the node offers that form
/// and never asks for it again.
#[test]
fn a_durable_host_offers_the_gzip_its_storage_made() {
    let mut a = node(1, true, true);
    for i in 0..3_000 {
        let value = json(&format!("{{\"n\":{i}}}"));
        a.write(|e| e.set(&format!("key/{i}"), value, NOW).map(Some))
            .unwrap();
    }
    let storage = Edge {
        gzips: true,
        storage_gzips: true,
    };
    route(&mut [&mut a], NOW, storage);
    a.tick(NOW);
    route(&mut [&mut a], NOW, storage);
    assert!(a.engine().log().is_empty(), "folded");
    let mut b = node(2, true, false);
    let seen = sync(&mut [&mut a, &mut b], 2_000, storage);
    assert_same_state(&mut a, &mut b);
    assert_eq!(seen[0].gzip_asked, 0, "storage's gzip was offered");
    assert_eq!(seen[1].gunzip_asked, 1);
}

/// An edge that never answers holds offers up for a while, not forever.
#[test]
fn offers_go_without_the_gzipped_form_when_the_edge_does_not_answer() {
    let mut a = host(true, false);
    let raw = a.engine().encode_snapshot().len();
    let mut b = node(2, true, false);
    let stuck = Edge {
        gzips: false,
        storage_gzips: false,
    };
    let seen = sync(&mut [&mut a, &mut b], 2_000, stuck);
    assert_eq!(seen[0].gzip_asked, 1);
    assert_eq!(seen[1].chunk_bytes, 0, "the offer waits");
    assert!(b.snapshot_progress().is_none());

    let later = 2_000 + GZIP_PATIENCE_MS + 1;
    a.tick(later);
    let seen = route(&mut [&mut a, &mut b], later, stuck);
    assert_same_state(&mut a, &mut b);
    assert_eq!(seen[1].chunk_bytes, raw, "sent as it is");
}

/// A newcomer whose edge never inflates waits for it a while, then takes
/// a later offer (the host is not refused: it is not to blame).
#[test]
fn a_newcomer_whose_edge_does_not_inflate_takes_a_later_offer() {
    let mut a = host(true, false);
    let mut b = node(2, true, false);
    a.connect(b.peer(), 2_000);
    b.connect(a.peer(), 2_000);
    // Everything routed but b's `GunzipSnapshot`, which is dropped.
    let mut dropped = 0;
    for _ in 0..200 {
        let mut frames = Vec::new();
        for n in [&mut a, &mut b] {
            let from = n.peer();
            for output in n.take_outputs() {
                match output {
                    Output::Send { to, frame } => frames.push((from, to, frame)),
                    Output::GzipSnapshot { bytes } => n.snapshot_gzipped(&bytes, gzip(&bytes)),
                    Output::GunzipSnapshot { .. } => dropped += 1,
                    _ => {}
                }
            }
        }
        if frames.is_empty() {
            break;
        }
        for (from, to, frame) in frames {
            let n = if to == a.peer() { &mut a } else { &mut b };
            n.receive_frame(from, &frame, 2_000);
        }
    }
    assert_eq!(dropped, 1);
    assert!(b.engine().clock().is_empty());

    let later = 2_000 + GZIP_PATIENCE_MS + 1;
    b.tick(later);
    a.tick(later);
    let seen = route(&mut [&mut a, &mut b], later, EDGE);
    assert_same_state(&mut a, &mut b);
    assert_eq!(seen[1].gunzip_asked, 1);
    assert!(seen[1].rejected.is_empty(), "{:?}", seen[1].rejected);
}

// --- A lying sender -----------------------------------------------------

/// `b` (which can inflate) and Mallory, connected and quiet.
fn victim_and_mallory() -> (SyncNode, SyncNode) {
    let (mut b, mut mallory) = (node(2, true, false), node(666, false, false));
    sync(&mut [&mut b, &mut mallory], NOW, EDGE);
    (b, mallory)
}

/// Mallory offers a snapshot of `total` bytes whose gzipped form is
/// `gzipped`, and sends that form whole, as asked.
fn mallory_offers(b: &mut SyncNode, mallory: PeerId, total: u64, gzipped: Vec<u8>) -> Seen {
    let mut ahead = VectorClock::new();
    ahead.set(mallory, 5);
    let id = Hash32([9; 32]);
    let offer = Message::SnapshotOffer {
        id: Hash32([8; 32]),
        total,
        clock: ahead,
        gzip: Some(Gzipped {
            id,
            total: gzipped.len() as u64,
        }),
    };
    let chunk = Message::SnapshotChunk {
        id,
        offset: 0,
        total: gzipped.len() as u64,
        bytes: gzipped,
    };
    for message in [offer, chunk] {
        for frame in wire::encode(&message, 7) {
            b.receive_frame(mallory, &frame, NOW);
        }
    }
    route(&mut [b], NOW, EDGE).remove(0)
}

#[test]
fn a_gzipped_snapshot_that_does_not_inflate_to_its_offer_is_refused() {
    let bomb = gzip(&vec![0; 8 * 1024 * 1024]).unwrap();
    let short = gzip(&[1; 100]).unwrap();
    let cases = [
        ("a bomb", bomb, 1 << 20, "more than the 1048576 bytes"),
        (
            "too short",
            short,
            4_096,
            "inflates to 100 bytes, not the 4096",
        ),
        ("not gzip", vec![7; 64], 4_096, "does not inflate"),
        // Inflates as offered, to bytes that are no snapshot.
        (
            "not a snapshot",
            gzip(&[0xff; 100]).unwrap(),
            100,
            "bad magic bytes",
        ),
    ];
    for (what, gzipped, total, reason) in cases {
        let (mut b, mut mallory) = victim_and_mallory();
        let seen = mallory_offers(&mut b, mallory.peer(), total, gzipped);
        assert_eq!(seen.gunzip_asked, 1, "{what}");
        assert_eq!(seen.rejected.len(), 1, "{what}: {:?}", seen.rejected);
        assert!(
            seen.rejected[0].contains(reason),
            "{what}: {:?}",
            seen.rejected
        );
        assert_eq!(b.engine().stats().refused_state, 1, "{what}: counted");
        assert!(b.engine().clock().is_empty(), "{what}: nothing taken");

        // b goes on: an honest host's snapshot is taken after it.
        let mut a = host(true, false);
        sync(&mut [&mut a, &mut b, &mut mallory], 3_000, EDGE);
        assert_same_state(&mut a, &mut b);
    }
}

/// A gzipped form no smaller than the snapshot is not asked for.
#[test]
fn a_gzipped_form_no_smaller_than_the_snapshot_is_not_asked_for() {
    let (mut b, mallory) = victim_and_mallory();
    let mut ahead = VectorClock::new();
    ahead.set(mallory.peer(), 5);
    let raw = Hash32([8; 32]);
    let offer = Message::SnapshotOffer {
        id: raw,
        total: 100,
        clock: ahead,
        gzip: Some(Gzipped {
            id: Hash32([9; 32]),
            total: 100,
        }),
    };
    for frame in wire::encode(&offer, 7) {
        b.receive_frame(mallory.peer(), &frame, NOW);
    }
    let asked: Vec<Hash32> = b
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => match wire::decode(&frame) {
                Ok(Decoded::Message(Message::SnapshotRequest { id, .. })) => Some(id),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(asked, [raw]);
}
