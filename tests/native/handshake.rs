//! Rooms with a secret: two peers prove the secret (and the key of their
//! id) before anything else crosses their connection; a peer without it is
//! cut off having learned nothing.

use crate::common;

use common::json;
use cpc_sync::protocol::room::{Channel, RoomSecret};
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::sync::{Output, SyncConfig, SyncNode};
use cpc_sync::protocol::PeerId;

const NOW: u64 = 1_700_000_000_000;

pub fn secret_node(seed: u64, secret: Option<&str>) -> SyncNode {
    let config = SyncConfig {
        room: secret.map(|s| RoomSecret::new("room", s)),
        nonce_seed: *blake3::hash(&seed.to_be_bytes()).as_bytes(),
        ..SyncConfig::default()
    };
    common::signed_node(seed, config)
}

/// What crossed, and who closed whom, once both sides went quiet.
#[derive(Default)]
struct Seen {
    messages: Vec<(PeerId, Message)>,
    closed: Vec<(PeerId, String)>,
}

fn run(a: &mut SyncNode, b: &mut SyncNode) -> Seen {
    run_over(a, b, &Channel::unbound(), &Channel::unbound())
}

/// [`run`], each side's connection seen as `over_a` and `over_b`: what
/// crosses between them crosses whatever is in the middle, unaltered.
fn run_over(a: &mut SyncNode, b: &mut SyncNode, over_a: &Channel, over_b: &Channel) -> Seen {
    let (ida, idb) = (a.peer(), b.peer());
    a.connect_over(idb, over_a, NOW);
    b.connect_over(ida, over_b, NOW);
    let mut seen = Seen::default();
    for _ in 0..50 {
        let mut frames = Vec::new();
        for n in [&mut *a, &mut *b] {
            let from = n.peer();
            for output in n.take_outputs() {
                match output {
                    Output::Send { to, frame } => frames.push((from, to, frame)),
                    Output::Close { reason, .. } => seen.closed.push((from, reason)),
                    _ => {}
                }
            }
        }
        if frames.is_empty() {
            return seen;
        }
        for (from, to, frame) in frames {
            if let Ok(Decoded::Message(m)) = wire::decode(&frame) {
                seen.messages.push((from, m));
            }
            let n = if to == ida { &mut *a } else { &mut *b };
            n.receive_frame(from, &frame, NOW);
        }
    }
    panic!("the exchange does not end");
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello",
        Message::Proof(_) => "proof",
        _ => "other",
    }
}

#[test]
fn peers_with_the_secret_prove_it_then_sync() {
    let (mut a, mut b) = (secret_node(1, Some("k")), secret_node(2, Some("k")));
    a.write(|e| e.set("x", json("1"), NOW).map(Some)).unwrap();
    let seen = run(&mut a, &mut b);
    assert!(seen.closed.is_empty(), "{:?}", seen.closed);
    // Hello and Proof first, each way; then the session.
    let first: Vec<&str> = seen.messages.iter().take(4).map(|(_, m)| kind(m)).collect();
    assert_eq!(first, ["hello", "hello", "proof", "proof"]);
    assert_eq!(a.engine().state_json(), b.engine().state_json());
    assert!(b.engine().state_json().contains("\"x\""));
}

#[test]
fn a_wrong_secret_is_cut_off_having_learned_nothing() {
    let (mut a, mut b) = (secret_node(1, Some("k")), secret_node(2, Some("guess")));
    a.write(|e| e.set("x", json("\"private\""), NOW).map(Some))
        .unwrap();
    let seen = run(&mut a, &mut b);
    assert_eq!(seen.closed.len(), 2, "both sides hang up");
    assert!(seen.closed.iter().all(|(_, r)| r.contains("room secret")));
    assert!(seen.messages.iter().all(|(_, m)| kind(m) != "other"));
    assert!(!b.engine().state_json().contains("private"));
}

#[test]
fn a_peer_without_a_secret_is_cut_off_at_its_first_word() {
    let (mut a, mut stranger) = (secret_node(1, Some("k")), secret_node(3, None));
    a.write(|e| e.set("x", json("\"private\""), NOW).map(Some))
        .unwrap();
    let seen = run(&mut a, &mut stranger);
    assert_eq!(seen.closed.len(), 1);
    assert_eq!(seen.closed[0].0, a.peer());
    // All a ever said was its nonce.
    let from_a: Vec<&str> = seen
        .messages
        .iter()
        .filter(|(from, _)| *from == a.peer())
        .map(|(_, m)| kind(m))
        .collect();
    assert_eq!(from_a, ["hello"]);
    assert!(!stranger.engine().state_json().contains("private"));
}

/// A session description naming the DTLS certificate `fingerprint`, in
/// the case a browser might write it.
fn sdp(fingerprint: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=fingerprint:SHA-256 {fingerprint}\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    )
}

/// Each end's view of a WebRTC connection: its own certificate and the
/// one at the far end of its DTLS.
fn dtls(mine: &str, theirs: &str) -> Channel {
    Channel::from_sdp(&sdp(mine), &sdp(theirs)).expect("both name a fingerprint")
}

/// The attack the channel binding stops: a member (M) who holds a
/// connection to each of two others, under the other's id, passes
/// everything along unaltered. Unbound, the two handshakes pass and M
/// reads the session between them (and could drop or add to it, each side
/// blaming the other); bound to each connection's fingerprints, each
/// side's proof names M's certificate where the far end sees its own, and
/// both hang up before anything but the handshake crossed.
#[test]
fn a_member_in_the_middle_of_two_others_is_found_out_by_the_channel() {
    let (fa, fb) = ("AA:01", "bb:02");
    // M's certificates, one toward each side.
    let (fm1, fm2) = ("CC:03", "DD:04");

    // Unbound (what a relayed link was before its key exchange): M in the
    // middle goes unseen.
    let (mut a, mut b) = (secret_node(1, Some("k")), secret_node(2, Some("k")));
    a.write(|e| e.set("x", json("\"private\""), NOW).map(Some))
        .unwrap();
    let seen = run(&mut a, &mut b);
    assert!(seen.closed.is_empty(), "{:?}", seen.closed);
    assert!(
        seen.messages.iter().any(|(_, m)| kind(m) == "other"),
        "the session crossed the middle"
    );

    // Bound: both find the proof made for another connection.
    let (mut a, mut b) = (secret_node(1, Some("k")), secret_node(2, Some("k")));
    a.write(|e| e.set("x", json("\"private\""), NOW).map(Some))
        .unwrap();
    let seen = run_over(&mut a, &mut b, &dtls(fa, fm1), &dtls(fb, fm2));
    assert_eq!(seen.closed.len(), 2, "both sides hang up");
    assert!(
        seen.closed
            .iter()
            .all(|(_, r)| r.contains("another connection")),
        "{:?}",
        seen.closed
    );
    assert!(seen.messages.iter().all(|(_, m)| kind(m) != "other"));
    assert!(!b.engine().state_json().contains("private"));

    // With no one between them, each sees the other's certificate at the
    // far end (a browser may write a fingerprint's hex in either case).
    let (mut a, mut b) = (secret_node(1, Some("k")), secret_node(2, Some("k")));
    a.write(|e| e.set("x", json("1"), NOW).map(Some)).unwrap();
    let seen = run_over(&mut a, &mut b, &dtls(fa, "BB:02"), &dtls(fb, "aa:01"));
    assert!(seen.closed.is_empty(), "{:?}", seen.closed);
    assert_eq!(a.engine().state_json(), b.engine().state_json());

    // One end bound and the other not: no handshake.
    let (mut a, mut b) = (secret_node(1, Some("k")), secret_node(2, Some("k")));
    let seen = run_over(&mut a, &mut b, &dtls(fa, fb), &Channel::unbound());
    assert_eq!(seen.closed.len(), 2, "{:?}", seen.closed);
}
