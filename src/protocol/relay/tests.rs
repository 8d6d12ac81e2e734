//! The relay seal against a lying server: it may drop, delay, replay,
//! reorder, redirect, alter or inject; no page accepts a frame that its
//! peer did not send it, in this room, on this link, in order.

use super::*;
use crate::protocol::blake3;
use crate::protocol::room::KdfCost;

const A: PeerId = PeerId(0xa);
const B: PeerId = PeerId(0xb);
const C: PeerId = PeerId(0xc);

fn room(name: &str, secret: &str) -> RoomSecret {
    RoomSecret::with_cost(name, secret, KdfCost::TEST)
}

/// Fresh nonces, as the browser's CSPRNG would give (distinct per seed).
struct Nonces(u64);

impl Nonces {
    fn next(&mut self) -> [u8; 32] {
        self.0 += 1;
        *blake3::hash(&self.0.to_le_bytes()).as_bytes()
    }
}

/// Opens `from`'s link to `to` and back; returns both ends.
fn open(
    room: &RoomSecret,
    from: PeerId,
    to: PeerId,
    nonces: &mut Nonces,
) -> (RelayLink, RelayLink) {
    let mut a = RelayLink::new(room, from, to, nonces.next());
    let mut b = RelayLink::new(room, to, from, nonces.next());
    let reply = match b.receive(&a.hello(), || nonces.next()) {
        Ok(Received::Opened {
            reply: Some(reply),
            restarted: false,
        }) => reply,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        a.receive(&reply, || unreachable!()),
        Ok(Received::Opened {
            reply: None,
            restarted: false
        })
    );
    assert!(a.is_open() && b.is_open());
    assert_one_channel(&a, &b);
    (a, b)
}

/// The two ends of one link name one channel, each its own key first: the
/// sync handshake bound to it passes.
fn assert_one_channel(a: &RelayLink, b: &RelayLink) {
    assert_eq!(a.channel(), Some(Channel::of_keys(&a.public, &b.public)));
    assert_eq!(b.channel(), Some(Channel::of_keys(&b.public, &a.public)));
}

fn accept(link: &mut RelayLink, message: &[u8]) -> Result<Vec<u8>, RelayError> {
    match link.receive(message, || [0xee; 32])? {
        Received::Frame(frame) => Ok(frame),
        other => panic!("not a frame: {other:?}"),
    }
}

#[test]
fn frames_cross_both_ways_and_the_server_sees_only_ciphertext() {
    let r = room("r", "k");
    let (mut a, mut b) = open(&r, A, B, &mut Nonces(0));
    let sealed = a.seal(b"set doc/title = quarterly plan").unwrap();
    assert!(!sealed.windows(9).any(|w| w == b"quarterly"));
    assert_eq!(
        accept(&mut b, &sealed).unwrap(),
        b"set doc/title = quarterly plan"
    );
    let back = b.seal(b"ack").unwrap();
    assert_eq!(accept(&mut a, &back).unwrap(), b"ack");
    // The same plaintext twice seals differently (the counter moved).
    assert_ne!(a.seal(b"x").unwrap()[9..], a.seal(b"x").unwrap()[9..]);
    // The envelope the server reads: a peer id, then the message.
    let addressed = address(B, &sealed);
    assert_eq!(unaddress(&addressed), Some((B, &sealed[..])));
    assert_eq!(unaddress(&[1, 2, 3]), None);
    assert!(!format!("{a:?}").contains(&format!("{:?}", r.relay_key())));
}

#[test]
fn both_sides_opening_at_once_agree_on_one_key() {
    let r = room("r", "k");
    let mut a = RelayLink::new(&r, A, B, [1; 32]);
    let mut b = RelayLink::new(&r, B, A, [2; 32]);
    let (ha, hb) = (a.hello(), b.hello());
    let Ok(Received::Opened {
        reply: Some(ra), ..
    }) = a.receive(&hb, || unreachable!())
    else {
        panic!()
    };
    let Ok(Received::Opened {
        reply: Some(rb), ..
    }) = b.receive(&ha, || unreachable!())
    else {
        panic!()
    };
    assert_eq!(a.receive(&rb, || unreachable!()), Ok(Received::Ignored));
    assert_eq!(b.receive(&ra, || unreachable!()), Ok(Received::Ignored));
    assert_one_channel(&a, &b);
    let sealed = a.seal(b"hi").unwrap();
    assert_eq!(accept(&mut b, &sealed).unwrap(), b"hi");
}

#[test]
fn an_altered_frame_is_refused_and_the_link_goes_on() {
    let (mut a, mut b) = open(&room("r", "k"), A, B, &mut Nonces(0));
    let sealed = a.seal(b"hello").unwrap();
    for i in [0, 1, 9, sealed.len() - 1] {
        let mut bent = sealed.clone();
        bent[i] ^= 1;
        assert!(accept(&mut b, &bent).is_err(), "byte {i} altered");
    }
    let mut cut = sealed.clone();
    cut.truncate(sealed.len() - 1);
    assert_eq!(accept(&mut b, &cut), Err(RelayError::Forged));
    assert_eq!(accept(&mut b, &sealed[..5]), Err(RelayError::Malformed));
    assert_eq!(accept(&mut b, &sealed).unwrap(), b"hello");
}

#[test]
fn a_replayed_or_reordered_frame_is_refused() {
    let (mut a, mut b) = open(&room("r", "k"), A, B, &mut Nonces(0));
    let (f0, f1, f2) = (
        a.seal(b"0").unwrap(),
        a.seal(b"1").unwrap(),
        a.seal(b"2").unwrap(),
    );
    assert_eq!(accept(&mut b, &f0).unwrap(), b"0");
    let replayed = accept(&mut b, &f0);
    assert_eq!(
        replayed,
        Err(RelayError::Replayed {
            expected: 1,
            got: 0
        })
    );
    assert!(!replayed.unwrap_err().is_fatal());
    // f2 before f1: refused, and since it is genuine, f1 was held back
    // or dropped: the link starts over.
    let early = accept(&mut b, &f2).unwrap_err();
    assert_eq!(
        early,
        RelayError::Gap {
            expected: 1,
            got: 2
        }
    );
    assert!(early.is_fatal());
    assert_eq!(accept(&mut b, &f1).unwrap(), b"1");
    assert_eq!(
        accept(&mut b, &f1),
        Err(RelayError::Replayed {
            expected: 2,
            got: 1
        })
    );
}

#[test]
fn a_redirected_frame_or_hello_is_refused() {
    let r = room("r", "k");
    let mut nonces = Nonces(0);
    let (mut ab, mut ba) = open(&r, A, B, &mut nonces);
    let (_, mut ca) = open(&r, A, C, &mut nonces);
    let (mut cb, mut bc) = open(&r, C, B, &mut nonces);
    let for_b = ab.seal(b"for b only").unwrap();
    // To C instead of B (C's link with A): refused.
    assert_eq!(accept(&mut ca, &for_b), Err(RelayError::Forged));
    // To B, passed off as C's: refused.
    assert_eq!(accept(&mut bc, &for_b), Err(RelayError::Forged));
    // C's frame to B, passed off as A's.
    let from_c = cb.seal(b"from c").unwrap();
    assert_eq!(accept(&mut ba, &from_c), Err(RelayError::Forged));
    // Hellos are bound to sender and recipient too.
    let hello_to_b = RelayLink::new(&r, A, B, nonces.next()).hello();
    let mut c_of_a = RelayLink::new(&r, C, A, nonces.next());
    assert_eq!(
        c_of_a.receive(&hello_to_b, || nonces.next()),
        Err(RelayError::ForgedHello)
    );
    let mut b_of_c = RelayLink::new(&r, B, C, nonces.next());
    assert_eq!(
        b_of_c.receive(&hello_to_b, || nonces.next()),
        Err(RelayError::ForgedHello)
    );
    assert_eq!(accept(&mut ba, &for_b).unwrap(), b"for b only");
}

#[test]
fn a_frame_of_another_room_or_secret_is_refused() {
    let mut nonces = Nonces(0);
    let (mut a, _) = open(&room("r", "k"), A, B, &mut nonces);
    let sealed = a.seal(b"x").unwrap();
    for other in [room("r2", "k"), room("r", "k2")] {
        let (_, mut b) = open(&other, A, B, &mut nonces);
        assert_eq!(accept(&mut b, &sealed), Err(RelayError::Forged));
        let hello = RelayLink::new(&room("r", "k"), A, B, nonces.next()).hello();
        let mut fresh = RelayLink::new(&other, B, A, nonces.next());
        assert_eq!(
            fresh.receive(&hello, || [0; 32]),
            Err(RelayError::ForgedHello)
        );
        assert!(!fresh.is_open());
    }
}

#[test]
fn a_dropped_frame_ends_the_link_and_the_next_link_refuses_the_old_frames() {
    let r = room("r", "k");
    let mut nonces = Nonces(0);
    let (mut a, mut b) = open(&r, A, B, &mut nonces);
    let dropped = a.seal(b"0").unwrap();
    let f1 = a.seal(b"1").unwrap();
    assert!(accept(&mut b, &f1).unwrap_err().is_fatal());
    // A starts over (a fresh nonce); B, open, answers with a fresh one.
    let mut a = RelayLink::new(&r, A, B, nonces.next());
    let reply = match b.receive(&a.hello(), || nonces.next()) {
        Ok(Received::Opened {
            reply: Some(reply),
            restarted: true,
        }) => reply,
        other => panic!("{other:?}"),
    };
    a.receive(&reply, || unreachable!()).unwrap();
    assert_one_channel(&a, &b);
    // The old link's frames, delayed until now: counters start over, the
    // key does not.
    assert_eq!(accept(&mut b, &dropped), Err(RelayError::Forged));
    let f0 = a.seal(b"new 0").unwrap();
    assert_eq!(accept(&mut b, &f1), Err(RelayError::Forged));
    assert_eq!(accept(&mut b, &f0).unwrap(), b"new 0");
}

#[test]
fn delayed_frames_are_taken_once_in_order() {
    let (mut a, mut b) = open(&room("r", "k"), A, B, &mut Nonces(0));
    let held: Vec<Vec<u8>> = (0..5u8).map(|i| a.seal(&[i]).unwrap()).collect();
    // Nothing arrives for a while; then all of it, twice.
    for (i, frame) in held.iter().enumerate() {
        assert_eq!(accept(&mut b, frame).unwrap(), [i as u8]);
    }
    for frame in &held {
        assert!(matches!(
            accept(&mut b, frame),
            Err(RelayError::Replayed { .. })
        ));
    }
}

#[test]
fn injected_messages_are_refused_and_never_reopen_a_spent_key() {
    let r = room("r", "k");
    let mut nonces = Nonces(0);
    let mut a = RelayLink::new(&r, A, B, nonces.next());
    let mut b = RelayLink::new(&r, B, A, nonces.next());
    // Before a hello: a frame is refused.
    assert_eq!(
        accept(&mut b, &[FRAME, 0, 0, 0, 0, 0, 0, 0, 0].repeat(4)),
        Err(RelayError::NotOpen)
    );
    let opening = a.hello();
    let Ok(Received::Opened {
        reply: Some(reply), ..
    }) = b.receive(&opening, || nonces.next())
    else {
        panic!()
    };
    a.receive(&reply, || unreachable!()).unwrap();
    // Junk, a forged hello, a frame under no key.
    for junk in [vec![], vec![9], vec![HELLO; 66], vec![FRAME; 40]] {
        assert!(b.receive(&junk, || nonces.next()).is_err(), "{junk:?}");
    }
    let mut forged = opening.clone();
    forged[5] ^= 1;
    assert_eq!(
        b.receive(&forged, || nonces.next()),
        Err(RelayError::ForgedHello)
    );
    // The answer, replayed to A: ignored, not a second key.
    assert_eq!(a.receive(&reply, || unreachable!()), Ok(Received::Ignored));
    let f0 = a.seal(b"0").unwrap();
    assert_eq!(accept(&mut b, &f0).unwrap(), b"0");
    // A's opening hello, replayed to B: B starts over with a fresh nonce
    // (as if A had), so old frames stay refused, and A (which did not
    // restart) refuses B's answer: the key it holds is not re-derived.
    let Ok(Received::Opened {
        reply: Some(answer),
        restarted: true,
    }) = b.receive(&opening, || nonces.next())
    else {
        panic!()
    };
    assert_eq!(accept(&mut b, &f0), Err(RelayError::Forged));
    assert_eq!(
        a.receive(&answer, || unreachable!()),
        Err(RelayError::StaleHello)
    );
    // B's first answer, replayed to A again: still nothing.
    assert_eq!(a.receive(&reply, || unreachable!()), Ok(Received::Ignored));
    let f1 = a.seal(b"1").unwrap();
    assert_eq!(accept(&mut b, &f1), Err(RelayError::Forged));
}

#[test]
fn too_large_a_frame_is_not_sealed() {
    let (mut a, _) = open(&room("r", "k"), A, B, &mut Nonces(0));
    let big = vec![0; MAX_SEALED_FRAME + 1];
    assert_eq!(a.seal(&big), Err(RelayError::TooLarge(big.len())));
    let most = a.seal(&vec![0; MAX_SEALED_FRAME]).unwrap();
    assert_eq!(address(B, &most).len(), MAX_RELAYED);
    assert_eq!(
        RelayLink::new(&room("r", "k"), A, B, [0; 32]).seal(b"x"),
        Err(RelayError::NotOpen)
    );
}

/// A lying server at random: what B accepts is always what A sent on
/// this link, from the first frame, in order, each once.
#[test]
fn a_lying_server_never_gets_a_frame_accepted() {
    let seeds = crate::protocol::testing::seeds("relay attack", "CPC_RELAY_SEEDS", 200);
    for seed in seeds {
        println!("relay attack seed {seed}");
        lying_server(seed);
    }
}

fn lying_server(seed: u64) {
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut roll = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let r = room("r", "k");
    let mut nonces = Nonces(seed << 20);
    let (mut a, mut b) = open(&r, A, B, &mut nonces);
    let (mut c, _) = open(&r, C, B, &mut nonces);
    let (mut elsewhere, _) = open(&room("other", "k"), A, B, &mut nonces);
    let sent: Vec<Vec<u8>> = (0..30u64).map(|i| i.to_le_bytes().to_vec()).collect();
    let genuine: Vec<Vec<u8>> = sent.iter().map(|f| a.seal(f).unwrap()).collect();
    let mut wire: Vec<Vec<u8>> = Vec::new();
    for (i, frame) in genuine.iter().enumerate() {
        match roll(10) {
            0 => {}                                                       // dropped
            1 => wire.push(genuine[roll(i as u64 + 1) as usize].clone()), // replayed
            2 => {
                let mut bent = frame.clone();
                let at = roll(bent.len() as u64) as usize;
                bent[at] ^= 1 << roll(8);
                wire.push(bent);
            }
            3 => wire.push(c.seal(&sent[i]).unwrap()), // another peer's
            4 => wire.push(elsewhere.seal(&sent[i]).unwrap()), // another room's
            5 => wire.push(RelayLink::new(&r, A, B, nonces.next()).hello()),
            _ => {}
        }
        if roll(4) != 0 {
            wire.push(frame.clone());
        }
        if roll(6) == 0 && wire.len() > 1 {
            let (x, y) = (roll(wire.len() as u64), roll(wire.len() as u64));
            wire.swap(x as usize, y as usize); // delayed / reordered
        }
    }
    let mut accepted = Vec::new();
    for message in wire {
        match b.receive(&message, || nonces.next()) {
            Ok(Received::Frame(frame)) => accepted.push(frame),
            // An injected opening hello restarts B: nothing more of this
            // link may open.
            Ok(Received::Opened { .. }) => break,
            Ok(Received::Ignored) => {}
            Err(e) if e.is_fatal() => break,
            Err(_) => {}
        }
    }
    assert_eq!(
        accepted,
        sent[..accepted.len()],
        "seed {seed}: B accepted what A did not send in that order"
    );
}

/// A member holds the relay key, and one that is also the server sees
/// both hellos. Before the Diffie-Hellman exchange the session key was
/// the relay key's hash of the two hellos' nonces, and such a member made
/// it from what it forwarded. Now a hello carries a public key: taken for
/// the secret it is not, it makes a key that opens nothing.
#[test]
fn a_member_passing_the_hellos_along_cannot_open_the_link() {
    let r = room("r", "k");
    let mut a = RelayLink::new(&r, A, B, [1; 32]);
    let mut b = RelayLink::new(&r, B, A, [2; 32]);
    let hello = a.hello();
    let Ok(Received::Opened {
        reply: Some(reply), ..
    }) = b.receive(&hello, || unreachable!())
    else {
        panic!()
    };
    a.receive(&reply, || unreachable!()).unwrap();
    let sealed = a.seal(b"the plan").unwrap();
    // The middle plays B with what B's reply carried, and A with what
    // A's hello carried: neither opens A's frame.
    let carried = |m: &[u8]| -> [u8; 32] { m[1..33].try_into().unwrap() };
    let mut as_b = RelayLink::new(&r, B, A, carried(&reply));
    as_b.receive(&hello, || unreachable!()).unwrap();
    assert_eq!(accept(&mut as_b, &sealed), Err(RelayError::Forged));
    let mut as_a = RelayLink::new(&r, A, B, carried(&hello));
    as_a.receive(&reply, || unreachable!()).ok();
    assert!(as_a
        .seal(b"x")
        .map_or(true, |forged| accept(&mut b, &forged).is_err()));
    assert_eq!(accept(&mut b, &sealed).unwrap(), b"the plan");
    // Both ends name the same channel, each its own key first.
    let (ca, cb) = (a.channel().unwrap(), b.channel().unwrap());
    assert_eq!(ca, Channel::of_keys(&carried(&hello), &carried(&reply)));
    assert_eq!(cb, Channel::of_keys(&carried(&reply), &carried(&hello)));
}

/// A member that answers each side with a key of its own sits on two
/// links and can read both, but each side's channel names a key the
/// other side does not see: the sync handshake bound to it, passed along,
/// fails at both ends.
#[test]
fn a_member_answering_each_side_is_found_out_by_the_channel() {
    use crate::protocol::identity::Identity;
    use crate::protocol::room::{Handshake, RoomError};
    let r = room("r", "k");
    let mut nonces = Nonces(40);
    // A's link to "B" ends at the middle, and "A"'s link to B starts there.
    let (a, _middle_as_b) = open(&r, A, B, &mut nonces);
    let (_middle_as_a, b) = open(&r, A, B, &mut nonces);
    let (ia, ib) = (Identity::from_seed(1), Identity::from_seed(2));
    let (pa, pb) = (ia.peer(), ib.peer());
    let mut ha = Handshake::new(pa, pb, [1; 32], &a.channel().unwrap());
    let mut hb = Handshake::new(pb, pa, [2; 32], &b.channel().unwrap());
    let proof_a = ha.prove(hb.my_nonce(), &r, &ia).unwrap();
    let proof_b = hb.prove(ha.my_nonce(), &r, &ib).unwrap();
    assert_eq!(ha.check(&proof_b, &r), Err(RoomError::OtherChannel));
    assert_eq!(hb.check(&proof_a, &r), Err(RoomError::OtherChannel));
    // On one honest link the same handshake holds.
    let (a, b) = open(&r, A, B, &mut nonces);
    let mut ha = Handshake::new(pa, pb, [1; 32], &a.channel().unwrap());
    let mut hb = Handshake::new(pb, pa, [2; 32], &b.channel().unwrap());
    let proof_a = ha.prove(hb.my_nonce(), &r, &ia).unwrap();
    let proof_b = hb.prove(ha.my_nonce(), &r, &ib).unwrap();
    assert_eq!(
        (ha.check(&proof_b, &r), hb.check(&proof_a, &r)),
        (Ok(()), Ok(()))
    );
}

/// A page of the release before the key exchange opens with a hello of
/// kind 1, MACed under that release's label: refused as such, not as a
/// forgery; one whose MAC does not check out is a forgery.
#[test]
fn a_hello_of_the_earlier_relay_is_refused_as_such() {
    let r = room("r", "k");
    let mut b = RelayLink::new(&r, B, A, [2; 32]);
    let a = RelayLink::new(&r, A, B, [1; 32]);
    let mut old = vec![HELLO_V1];
    old.extend_from_slice(&a.public);
    old.push(0);
    old.extend_from_slice(&a.hello_mac(HELLO_V1_LABEL, A, B, &a.public, None));
    assert_eq!(b.receive(&old, || [3; 32]), Err(RelayError::OldRelay));
    let mut forged = a.hello();
    forged[0] = HELLO_V1;
    assert_eq!(b.receive(&forged, || [3; 32]), Err(RelayError::ForgedHello));
    assert!(!b.is_open());
}

/// A public key of small order shares no secret (the key would be the
/// relay key's hash of public values): refused, the link unchanged.
#[test]
fn a_hello_with_a_key_of_small_order_is_refused() {
    let r = room("r", "k");
    let mut b = RelayLink::new(&r, B, A, [2; 32]);
    let mut weak = RelayLink::new(&r, A, B, [0; 32]);
    weak.public = [0; 32]; // the identity point, as a lying member would send
    assert_eq!(
        b.receive(&weak.hello(), || [3; 32]),
        Err(RelayError::WeakKey)
    );
    assert!(!b.is_open());
    // On an open link: refused, the link and its channel as they were.
    let (mut a, mut b) = open(&r, A, B, &mut Nonces(9));
    let channel = b.channel();
    assert_eq!(
        b.receive(&weak.hello(), || [4; 32]),
        Err(RelayError::WeakKey)
    );
    assert_eq!(b.channel(), channel);
    let sealed = a.seal(b"still").unwrap();
    assert_eq!(accept(&mut b, &sealed).unwrap(), b"still");
}
