//! Fuzzing the penalty cut-off: one peer sends frame after mutated frame
//! (of a signed stream of three writers' runs, and of every message kind),
//! to a signed node. Every refusal is reported and counted in that peer's
//! session; once the refusals' points reach `PENALTY_LIMIT` (or one closes
//! at once) the peer is cut off, and never before; the node then syncs
//! with an honest peer to exactly its state.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the proptest seed is printed and
//! `CPC_SEED=n` replays it.

use crate::common::net::{self, Net};
use crate::common::{self, json, signed_node};
use crate::fuzz::{edit, sample_frames, signed_stream, Edit};
use cpc_sync::protocol::sync::{LocalWrite, Refusal, SyncConfig, PENALTY_LIMIT};
use cpc_sync::protocol::testing::mutate::checked;
use cpc_sync::protocol::testing::wire::{neighbour, WRITERS_NOW};
use cpc_sync::protocol::PeerId;
use proptest::prelude::*;

const NODE: usize = 0;
const HONEST: usize = 1;
/// After every write of the stream.
const NOW: u64 = WRITERS_NOW + 100_000_000;

fn config() -> proptest::test_runner::Config {
    common::fuzz_config("fuzz_penalty", 256)
}

/// How the node takes frames.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Seals held a window, to be verified with the next frames'.
    window: bool,
    /// ... and verified elsewhere.
    offload: bool,
    durable: bool,
}

fn node_strategy() -> impl Strategy<Value = Node> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(window, offload, durable)| Node {
        window: window || offload,
        offload,
        durable,
    })
}

/// One frame the liar sends: which of the pool, its edits, whether its
/// check is made right again, and the milliseconds since the last.
type Bad = (prop::sample::Index, Vec<Edit>, bool, u64);

fn bad() -> impl Strategy<Value = Bad> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(
            (
                any::<u8>(),
                any::<prop::sample::Index>(),
                any::<u8>(),
                any::<usize>(),
                any::<prop::sample::Index>(),
            ),
            0..4,
        ),
        prop::bool::weighted(0.7),
        prop_oneof![3 => Just(0u64), 1 => 1u64..5, 1 => 5u64..2_000],
    )
}

/// The pool of frames a liar mutates: the signed stream and one of every
/// message kind.
fn pool() -> &'static [Vec<u8>] {
    static POOL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = signed_stream();
        pool.extend(sample_frames());
        pool
    })
}

fn check(node: Node, frames: Vec<Bad>, rounds: usize) -> Result<(), TestCaseError> {
    let liar = neighbour();
    let config = SyncConfig {
        verify_window_ms: node.window.then_some(2),
        offload_seals: node.offload,
        durable: node.durable,
        ..SyncConfig::default()
    };
    let mut net = Net::new(
        vec![
            signed_node(7, config),
            signed_node(3, SyncConfig::default()),
        ],
        NOW,
    );
    // The honest peer takes the stream as it is.
    net.nodes[HONEST].connect(liar, NOW);
    for f in signed_stream() {
        net.nodes[HONEST].receive_frame(liar, &f, NOW);
    }
    net.nodes[HONEST].disconnect(liar);
    net.deliver(&mut net::honest);
    prop_assert!(net.seen[HONEST].rejected.is_empty());

    net.nodes[NODE].connect(liar, net.now);
    net.deliver(&mut net::honest);
    let pool = pool();
    let points_of = |refused: &[(PeerId, Refusal)]| -> u32 {
        refused
            .iter()
            .filter(|(p, _)| *p == liar)
            .map(|(_, r)| r.points())
            .sum()
    };
    'send: for _ in 0..rounds {
        for (which, edits, check, dt) in &frames {
            let original = &pool[which.index(pool.len())];
            let mut frame = original.clone();
            for e in edits {
                edit(&mut frame, *e, original);
            }
            if *check {
                frame = checked(frame);
            }
            net.now += dt;
            if net.nodes[NODE].next_timer() <= net.now {
                net.nodes[NODE].tick(net.now);
            }
            net.deliver(&mut net::honest);
            if !net.seen[NODE].closed.is_empty() {
                break 'send;
            }
            net.nodes[NODE].receive_frame(liar, &frame, net.now);
            net.deliver(&mut net::honest);
            if !net.seen[NODE].closed.is_empty() {
                break 'send;
            }
            let points = points_of(&net.seen[NODE].rejected);
            prop_assert!(
                points < PENALTY_LIMIT,
                "{} points and still connected",
                points
            );
        }
    }
    // What was held of the liar's is verified.
    net.run(1_000, 50, &mut net::honest);
    let refused: Vec<&Refusal> = net.seen[NODE].of(liar).collect();
    let counted = net.nodes[NODE].stats(liar).map_or(0, |s| s.rejected);
    prop_assert_eq!(
        counted,
        refused.len() as u64,
        "refusals reported {:?}, counted {}",
        refused,
        counted
    );
    if let Some((who, why, refused_then)) = net.seen[NODE].closed.first() {
        prop_assert_eq!(*who, liar);
        let before = &net.seen[NODE].rejected[..*refused_then];
        let points = points_of(before);
        let at_once = before.last().is_some_and(|(_, r)| r.closes());
        prop_assert!(
            at_once || points >= PENALTY_LIMIT,
            "cut off at {} points ({}) after {:?}",
            points,
            why,
            before
        );
        // Cut off: what it sends now is not even read.
        let frames_in = net.nodes[NODE].stats(liar).map(|s| s.frames_in);
        net.nodes[NODE].receive_frame(liar, &pool[0], net.now);
        prop_assert_eq!(net.nodes[NODE].stats(liar).map(|s| s.frames_in), frames_in);
    }

    // An honest peer with the stream: the node ends with exactly its
    // state, and still writes.
    net.link(NODE, HONEST);
    let settled = net.run_until(30_000, 100, &mut net::honest, |net| {
        let root = net.nodes[HONEST].digest();
        net.nodes[NODE].digest() == root
    });
    prop_assert!(
        settled,
        "never reached the honest peer's state: {:?} vs {:?}",
        net.nodes[NODE].engine().clock(),
        net.nodes[HONEST].engine().clock()
    );
    prop_assert_eq!(
        net.nodes[NODE].engine().state_json(),
        net.nodes[HONEST].engine().state_json()
    );
    let refused_honest: Vec<(PeerId, Refusal)> = net.seen[NODE]
        .rejected
        .iter()
        .filter(|(p, _)| *p != liar)
        .cloned()
        .collect();
    prop_assert!(
        refused_honest.is_empty(),
        "refused the honest peer: {:?}",
        refused_honest
    );
    let write = LocalWrite::Set {
        key: "still-works".into(),
        value: json("1"),
    };
    net.nodes[NODE].apply(write, net.now).expect("still writes");
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// A few mutated frames, sent again and again (up to `rounds` times):
    /// a liar that keeps at it reaches the cut-off.
    #[test]
    fn a_lying_peer_is_cut_off_at_its_penalty_and_the_node_syncs_on(
        node in node_strategy(),
        frames in prop::collection::vec(bad(), 1..8),
        rounds in 1usize..40,
    ) {
        check(node, frames, rounds)?;
    }
}

/// The fuzz's baseline: forged seals alone (a signature byte flipped, the
/// check made right) cut the liar off at the fourth, each counted.
#[test]
fn four_forgeries_cut_a_peer_off() {
    let liar = neighbour();
    let stream = signed_stream();
    let mut net = Net::new(vec![signed_node(7, SyncConfig::default())], NOW);
    net.nodes[NODE].connect(liar, NOW);
    net.deliver(&mut net::honest);
    let mut forged = 0;
    for frame in &stream {
        let mut frame = frame.clone();
        // The signature's last byte: the frame's last before its check.
        let at = frame.len() - 5;
        frame[at] ^= 1;
        let frame = checked(frame);
        net.nodes[NODE].receive_frame(liar, &frame, NOW);
        net.deliver(&mut net::honest);
        forged += 1;
        if !net.seen[NODE].closed.is_empty() {
            break;
        }
    }
    let refused: Vec<&Refusal> = net.seen[NODE].of(liar).collect();
    assert!(refused.iter().all(|r| r.points() == 25), "{refused:?}");
    assert_eq!((forged, refused.len()), (4, 4));
    assert_eq!(net.nodes[NODE].stats(liar).map(|s| s.rejected), Some(4));
}

/// Found by the fuzz above: forged frames held together for verification
/// (a verify window) are refused together when the window ends; the
/// fourth forgery cuts the peer off, and every refusal after it in the
/// same batch was reported (`Output::Rejected`) but counted nowhere: its
/// session had ended, and `refuse` counted only in a live session.
#[test]
fn refusals_after_the_cut_off_are_counted() {
    for offload in [false, true] {
        let liar = neighbour();
        let stream = signed_stream();
        let config = SyncConfig {
            verify_window_ms: Some(2),
            offload_seals: offload,
            ..SyncConfig::default()
        };
        let mut net = Net::new(vec![signed_node(7, config)], NOW);
        net.nodes[NODE].connect(liar, NOW);
        net.deliver(&mut net::honest);
        let mut frame = stream[0].clone();
        let at = frame.len() - 5;
        frame[at] ^= 1;
        let frame = checked(frame);
        for _ in 0..6 {
            net.nodes[NODE].receive_frame(liar, &frame, NOW);
        }
        net.deliver(&mut net::honest);
        assert!(net.seen[NODE].rejected.is_empty(), "held, not yet verified");
        net.run(100, 10, &mut net::honest);
        assert_eq!(net.seen[NODE].closed.len(), 1, "cut off");
        let refused = net.seen[NODE].of(liar).count() as u64;
        assert_eq!(refused, 6, "offload {offload}");
        assert_eq!(
            net.nodes[NODE].stats(liar).map(|s| s.rejected),
            Some(refused),
            "offload {offload}: every refusal reported is counted"
        );
    }
}
