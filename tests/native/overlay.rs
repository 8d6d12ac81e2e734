//! The overlay messages of a big room's partial view at the sync node: the
//! mesh gets what honest peers send; oversized and flooding messages are
//! typed refusals, counted, and charged.

use crate::common;

use common::signed_node;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{
    OverlayMessage, Refusal, SyncConfig, SyncNode, MAX_OVERLAY_PER_INTERVAL, MAX_SHUFFLE,
    PENALTY_LIMIT,
};
use cpc_sync::protocol::PeerId;

const NOW: u64 = 1_700_000_000_000;

/// `a`, connected to Mallory (seed 666), her opening digest taken.
fn victim() -> (SyncNode, PeerId) {
    let mut a = signed_node(1, SyncConfig::default());
    let mallory = signed_node(666, SyncConfig::default()).peer();
    a.connect(mallory, NOW);
    a.take_outputs();
    (a, mallory)
}

fn send(to: &mut SyncNode, from: PeerId, message: OverlayMessage, now: u64) {
    for frame in wire::encode(&Message::Overlay(message), 1) {
        to.receive_frame(from, &frame, now);
    }
}

fn peers(n: u64) -> Vec<PeerId> {
    (0..n).map(|i| PeerId(1000 + i)).collect()
}

fn refusals(node: &mut SyncNode) -> Vec<Refusal> {
    node.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            cpc_sync::protocol::sync::Output::Rejected { refusal, .. } => Some(refusal),
            _ => None,
        })
        .collect()
}

#[test]
fn overlay_messages_round_trip_and_reach_the_mesh() {
    let shuffle = OverlayMessage::Shuffle(peers(MAX_SHUFFLE as u64));
    let frames = wire::encode(&Message::Overlay(shuffle.clone()), 1);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        wire::decode(&frames[0]),
        Ok(Decoded::Message(Message::Overlay(shuffle.clone())))
    );
    let (mut a, mallory) = victim();
    send(&mut a, mallory, shuffle.clone(), NOW);
    assert!(refusals(&mut a).is_empty());
    assert_eq!(a.take_overlay(), vec![(mallory, shuffle)]);
    assert!(a.take_overlay().is_empty());
}

#[test]
fn an_oversized_shuffle_is_refused_and_counted() {
    let (mut a, mallory) = victim();
    send(
        &mut a,
        mallory,
        OverlayMessage::ShuffleReply(peers(5_000)),
        NOW,
    );
    assert_eq!(refusals(&mut a), vec![Refusal::OverlayTooLarge(5_000)]);
    assert!(
        a.take_overlay().is_empty(),
        "nothing of it reaches the mesh"
    );
    assert_eq!(a.stats(mallory).map(|s| s.rejected), Some(1));
}

#[test]
fn a_shuffle_flood_is_refused_past_the_rate_then_cut_off() {
    let (mut a, mallory) = victim();
    let mut refused = Vec::new();
    let mut closed = false;
    for _ in 0..(MAX_OVERLAY_PER_INTERVAL + PENALTY_LIMIT) {
        send(&mut a, mallory, OverlayMessage::Shuffle(peers(3)), NOW);
        for output in a.take_outputs() {
            match output {
                cpc_sync::protocol::sync::Output::Rejected { refusal, .. } => refused.push(refusal),
                cpc_sync::protocol::sync::Output::Close { .. } => closed = true,
                _ => {}
            }
        }
    }
    assert_eq!(a.take_overlay().len(), MAX_OVERLAY_PER_INTERVAL as usize);
    assert!(refused
        .iter()
        .all(|r| *r == Refusal::OverlayFlood(MAX_OVERLAY_PER_INTERVAL)));
    assert!(closed, "a flood of {PENALTY_LIMIT} closes the connection");
    // The allowance comes back each gossip interval, for honest peers.
    let (mut b, honest) = victim();
    for round in 0..3 {
        let now = NOW + round * 1_000;
        b.tick(now);
        for _ in 0..MAX_OVERLAY_PER_INTERVAL {
            send(&mut b, honest, OverlayMessage::Shuffle(peers(3)), now);
        }
        assert!(refusals(&mut b).is_empty());
    }
    assert_eq!(
        b.take_overlay().len(),
        3 * MAX_OVERLAY_PER_INTERVAL as usize
    );
}

/// A member with throwaway identities calling a full peer one by one
/// (HyParView's forced join) hung up its links one by one, the slowest
/// first, until every link was hers; calling again after each honest
/// peer's call, she kept them. The links open longest are never hung up
/// for a caller: hers are young however often she calls.
#[test]
fn throwaway_callers_cannot_take_the_oldest_links() {
    use cpc_sync::protocol::sync::{LinkState, Mesh, MeshConfig, PROTECTED_LINKS};
    let mut v = Mesh::new(PeerId(1), MeshConfig::default());
    let honest = peers(40);
    let sybils: Vec<PeerId> = (900..908).map(PeerId).collect();
    let mut now = NOW;
    v.discovered_all(&honest, true, now);
    let answer = |v: &mut Mesh, now: u64| {
        for action in v.take_actions() {
            if let cpc_sync::protocol::sync::MeshAction::Dial(p) = action {
                v.opened(p, now);
                v.rtt(p, 50.0);
            }
        }
    };
    answer(&mut v, now);
    for p in &honest[30..32] {
        now += 10;
        assert!(v.incoming(*p, now));
        v.opened(*p, now);
        v.rtt(*p, 50.0);
    }
    let honest_open = |v: &Mesh| {
        (honest.iter())
            .filter(|p| v.state(**p) == Some(LinkState::Open))
            .count()
    };
    assert_eq!(honest_open(&v), v.active(), "every link honest");
    // Ten minutes of calls: every sybil hung up calls again at once, each
    // near (1 ms); the honest peers are tended as usual.
    for second in 0..600u64 {
        now += 1_000;
        for s in &sybils {
            if v.state(*s) != Some(LinkState::Open) && v.incoming(*s, now) {
                v.opened(*s, now);
                v.rtt(*s, 1.0);
            }
        }
        v.tick(now, (second % 7) as f64 / 7.0);
        answer(&mut v, now);
        assert!(
            honest_open(&v) >= PROTECTED_LINKS,
            "at {second} s: {} honest links of {}",
            honest_open(&v),
            v.active()
        );
    }
}
