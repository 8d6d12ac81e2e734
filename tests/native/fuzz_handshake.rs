//! Fuzzing the room handshake past its first message: a stranger without
//! the secret that answers the node's nonce (replaying members' hellos
//! and proofs of other connections, mutated or cut, reflecting the node's
//! own, proving with a wrong secret, or with a member's answer to another
//! connection), and an honest member's handshake mutated in flight. The
//! node never says a word but its hello and proof to anyone who did not
//! prove the secret on this connection, never panics, and a member then
//! still connects and syncs.
//!
//! `CPC_FUZZ_CASES=n` for a longer run; the proptest seed is printed and
//! `CPC_SEED=n` replays it.

use crate::common::net::{self, Net};
use crate::common::{self, json};
use crate::fuzz::{edit, sample_frames, Edit};
use cpc_sync::protocol::room::{Channel, Handshake, KdfCost, RoomSecret};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{LocalWrite, Output, SyncConfig, SyncNode};
use cpc_sync::protocol::testing::mutate::checked;
use cpc_sync::protocol::{Identity, PeerId};
use proptest::prelude::*;
use std::cell::RefCell;

const NOW: u64 = 1_700_000_000_000;
const A: usize = 0;
const MEMBER: usize = 1;
const OTHER: usize = 2;

fn config() -> proptest::test_runner::Config {
    common::fuzz_config("fuzz_handshake", 64)
}

fn secret(key: &str) -> RoomSecret {
    RoomSecret::with_cost("r", key, KdfCost::TEST)
}

fn member(seed: u64, key: &str) -> SyncNode {
    common::signed_node(
        seed,
        SyncConfig {
            room: Some(secret(key)),
            nonce_seed: *blake3::hash(&seed.to_le_bytes()).as_bytes(),
            ..SyncConfig::default()
        },
    )
}

/// Three members of the room (A has a value of its own); the frames of
/// the handshakes of every pair, recorded as they crossed, then every
/// link ended.
fn room() -> (Net, Vec<Vec<u8>>) {
    let mut net = Net::new(vec![member(1, "k"), member(2, "k"), member(3, "k")], NOW);
    let write = LocalWrite::Set {
        key: "x".into(),
        value: json("\"private\""),
    };
    net.nodes[A].apply(write, NOW).expect("a write");
    let recorded = RefCell::new(Vec::new());
    let mut record = |_: PeerId, _: PeerId, frame: Vec<u8>| {
        if let Ok(Decoded::Message(m)) = wire::decode(&frame) {
            if m.is_handshake() {
                recorded.borrow_mut().push(frame.clone());
            }
        }
        vec![frame]
    };
    for (a, b) in [(A, MEMBER), (MEMBER, OTHER), (A, OTHER)] {
        net.link(a, b);
        net.run(50, 10, &mut record);
        net.unlink(a, b);
    }
    (net, recorded.into_inner())
}

/// One message of a stranger's.
#[derive(Debug, Clone)]
enum Step {
    /// A recorded handshake frame, edited (its check made right when
    /// `checked`), or cut.
    Replay {
        which: prop::sample::Index,
        edits: Vec<Edit>,
        checked: bool,
    },
    Hello([u8; 32]),
    /// A proof for the node's nonce from someone with another secret.
    WrongSecret,
    /// The node's own last frame to us, sent back.
    Reflect,
    /// A member's proof for the node's nonce, on another connection of
    /// the member's (to `other`, claimed as `claimed`).
    Oracle {
        claimed: u8,
    },
    /// Anything else (`sample_frames`).
    Other(prop::sample::Index),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (
            any::<prop::sample::Index>(),
            prop::collection::vec(
                (
                    any::<u8>(),
                    any::<prop::sample::Index>(),
                    any::<u8>(),
                    any::<usize>(),
                    any::<prop::sample::Index>(),
                ),
                0..3,
            ),
            prop::bool::weighted(0.8),
        )
            .prop_map(|(which, edits, checked)| Step::Replay {
                which,
                edits,
                checked
            }),
        1 => any::<[u8; 32]>().prop_map(Step::Hello),
        1 => Just(Step::WrongSecret),
        1 => Just(Step::Reflect),
        1 => (0u8..3).prop_map(|claimed| Step::Oracle { claimed }),
        1 => any::<prop::sample::Index>().prop_map(Step::Other),
    ]
}

/// What the node sent `to`: every frame, decoded (an undecodable one
/// fails the property).
fn said(node: &mut SyncNode, to: PeerId) -> Vec<Message> {
    node.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to: t, frame } if t == to => Some(frame),
            _ => None,
        })
        .map(|f| match wire::decode(&f) {
            Ok(Decoded::Message(m)) => m,
            other => panic!("sent a frame that does not decode: {other:?}"),
        })
        .collect()
}

/// The stranger's messages to A under `claimed`'s id.
fn stranger(steps: Vec<Step>, claim: u8) -> Result<(), TestCaseError> {
    let (mut net, recorded) = room();
    // Who the stranger claims to be: a member (whose key it lacks), or
    // itself, with a key of its own and a wrong secret.
    let own = Identity::from_seed(9);
    let claimed = match claim % 3 {
        0 => net.nodes[MEMBER].peer(),
        1 => net.nodes[OTHER].peer(),
        _ => own.peer(),
    };
    let a = net.nodes[A].peer();
    net.nodes[A].connect(claimed, net.now);
    let mut last: Vec<Message> = said(&mut net.nodes[A], claimed);
    let mut their_nonce = last.iter().find_map(|m| match m {
        Message::Hello { nonce } => Some(*nonce),
        _ => None,
    });
    let others = sample_frames();
    for step in steps {
        let frames: Vec<Vec<u8>> = match step {
            Step::Replay {
                which,
                edits,
                checked: c,
            } => {
                let original = &recorded[which.index(recorded.len())];
                let mut frame = original.clone();
                for e in edits {
                    edit(&mut frame, e, original);
                }
                vec![if c { checked(frame) } else { frame }]
            }
            Step::Hello(nonce) => wire::encode(&Message::Hello { nonce }, 1),
            Step::WrongSecret => {
                // Its own hello first, as a peer with another secret's
                // node sends it.
                let mut h = Handshake::new(claimed, a, [7; 32], &Channel::unbound());
                let proof = their_nonce.and_then(|n| h.prove(n, &secret("guess"), &own));
                let mut frames = wire::encode(&Message::Hello { nonce: [7; 32] }, 2);
                frames.extend(
                    proof
                        .iter()
                        .flat_map(|p| wire::encode(&Message::Proof(p.clone()), 2)),
                );
                frames
            }
            Step::Reflect => last.iter().flat_map(|m| wire::encode(m, 3)).collect(),
            Step::Oracle { claimed: to } => {
                // The member answers a hello carrying A's nonce on a
                // connection from someone it takes for `to` (never A's
                // connection to it: that is a relay, not a stranger).
                let to = match to {
                    0 => net.nodes[OTHER].peer(),
                    1 => own.peer(),
                    _ => PeerId(77),
                };
                let Some(nonce) = their_nonce else { continue };
                let m = &mut net.nodes[MEMBER];
                m.connect(to, NOW);
                m.take_outputs();
                for f in wire::encode(&Message::Hello { nonce }, 4) {
                    m.receive_frame(to, &f, NOW);
                }
                let answer = said(m, to);
                m.disconnect(to);
                answer.iter().flat_map(|m| wire::encode(m, 4)).collect()
            }
            Step::Other(which) => vec![others[which.index(others.len())].clone()],
        };
        for f in frames {
            net.nodes[A].receive_frame(claimed, &f, net.now);
        }
        let now = said(&mut net.nodes[A], claimed);
        for m in &now {
            prop_assert!(
                m.is_handshake(),
                "A said {:?} to {} who never proved the secret",
                m,
                claimed
            );
            if let Message::Hello { nonce } = m {
                their_nonce = Some(*nonce);
            }
        }
        if !now.is_empty() {
            last = now;
        }
    }
    net.nodes[A].disconnect(claimed);
    honest_still_connects(&mut net)
}

/// A member connects to A afresh, and they sync.
fn honest_still_connects(net: &mut Net) -> Result<(), TestCaseError> {
    net.seen[A] = Default::default();
    net.link(A, MEMBER);
    let synced = net.run_until(5_000, 50, &mut net::honest, |net| {
        let root = net.nodes[A].digest();
        net.nodes[MEMBER].digest() == root
    });
    prop_assert!(
        synced,
        "a member could not connect after: {:?}",
        net.seen[A]
    );
    prop_assert!(net.nodes[MEMBER].engine().state_json().contains("private"));
    prop_assert!(net.seen[A].closed.is_empty(), "{:?}", net.seen[A].closed);
    Ok(())
}

/// A member's handshake with A, its frames (either way) edited in
/// flight: A opens only if what it took was the member's own hello and
/// proof, and the member took A's own hello.
fn mutated_in_flight(targets: Vec<(u8, Vec<Edit>, bool)>) -> Result<(), TestCaseError> {
    let (mut net, _) = room();
    let (a, m) = (net.nodes[A].peer(), net.nodes[MEMBER].peer());
    // Every handshake frame, by direction: (sent, delivered) as decoded.
    let log = RefCell::new(Vec::<(PeerId, Option<Message>, Option<Message>)>::new());
    let spoke = RefCell::new(false);
    let mut n = 0u8;
    let mut tamper = |from: PeerId, to: PeerId, frame: Vec<u8>| {
        let decode = |f: &[u8]| match wire::decode(f) {
            Ok(Decoded::Message(m)) => Some(m),
            _ => None,
        };
        let sent = decode(&frame);
        if !sent.as_ref().is_some_and(Message::is_handshake) {
            if from == a && to == m {
                *spoke.borrow_mut() = true;
            }
            return vec![frame];
        }
        let k = n;
        n += 1;
        let mut out = frame.clone();
        for (target, edits, c) in &targets {
            if *target % 4 == k {
                for e in edits {
                    edit(&mut out, *e, &frame);
                }
                if *c {
                    out = checked(out);
                }
            }
        }
        log.borrow_mut().push((to, sent, decode(&out)));
        vec![out]
    };
    net.link(A, MEMBER);
    net.run(200, 10, &mut tamper);
    let log = log.into_inner();
    let unaltered = |to: PeerId, hello: bool| {
        log.iter()
            .filter(|(t, sent, _)| *t == to && matches!(sent, Some(Message::Hello { .. })) == hello)
            .all(|(_, sent, got)| sent == got)
    };
    if spoke.into_inner() {
        prop_assert!(
            unaltered(a, true) && unaltered(a, false) && unaltered(m, true),
            "A opened after a handshake altered in flight: {:?}",
            log
        );
    }
    net.unlink(A, MEMBER);
    honest_still_connects(&mut net)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_stranger_answering_the_handshake_never_opens_it(
        steps in prop::collection::vec(step(), 1..8),
        claim in any::<u8>(),
    ) {
        stranger(steps, claim)?;
    }

    #[test]
    fn a_handshake_altered_in_flight_never_opens(
        targets in prop::collection::vec(
            (
                0u8..4,
                prop::collection::vec(
                    (
                        any::<u8>(),
                        any::<prop::sample::Index>(),
                        any::<u8>(),
                        any::<usize>(),
                        any::<prop::sample::Index>(),
                    ),
                    1..3,
                ),
                prop::bool::weighted(0.8),
            ),
            1..3,
        ),
    ) {
        mutated_in_flight(targets)?;
    }
}

/// The baseline: the recorded handshakes are whole (both hellos and both
/// proofs of each of three connections), and without a stranger A and
/// the member sync.
#[test]
fn members_handshake_and_sync() {
    let (mut net, recorded) = room();
    assert_eq!(recorded.len(), 12);
    honest_still_connects(&mut net).expect("members sync");
}
