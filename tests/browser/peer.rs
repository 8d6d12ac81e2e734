//! The browser peer: peers of one page connect over real
//! RTCPeerConnections, signaled over a real BroadcastChannel, and are
//! driven through the JS API as an app would.

use std::cell::RefCell;
use std::rc::Rc;

use cpc_sync::browser::transport::{Sink, Transport, TransportConfig, TransportEvent};
use cpc_sync::browser::Peer;
use cpc_sync::protocol::room::{Channel, Handshake, KdfCost, RoomSecret};
use cpc_sync::protocol::sync::wire::{self, Message};
use cpc_sync::protocol::sync::{SyncConfig, SyncNode};
use cpc_sync::protocol::{EngineConfig, Identity, JsonValue, PeerId, ReconciliationEngine};
use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::convert::TryFromJsValue;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

fn room(test: &str) -> String {
    format!("test-{test}-{}", js_sys::Math::random())
}

async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        let _ = web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// Polls `ready` every 50 ms for up to `seconds`.
async fn wait_for(what: &str, seconds: u32, mut ready: impl FnMut() -> bool) {
    for _ in 0..seconds * 20 {
        if ready() {
            return;
        }
        sleep(50).await;
    }
    panic!("timed out after {seconds} s waiting for {what}");
}

fn options(pairs: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (name, value) in pairs {
        Reflect::set(&object, &(*name).into(), value).unwrap();
    }
    object.into()
}

async fn open(options: JsValue) -> Peer {
    let value = JsFuture::from(Peer::open(options)).await.expect("opens");
    // What JS holds is the Peer itself; take it back as Rust sees it.
    Peer::try_from_js_value(value).expect("a Peer")
}

async fn done(promise: Promise) {
    JsFuture::from(promise).await.expect("resolves");
}

fn json(value: JsValue) -> String {
    js_sys::JSON::stringify(&value).unwrap().into()
}

/// `peers()` entries as (id, state, rejected).
fn links(peer: &Peer) -> Vec<(String, String, f64)> {
    Array::from(&peer.peers().unwrap())
        .iter()
        .map(|p| {
            let get = |name: &str| Reflect::get(&p, &name.into()).unwrap();
            (
                get("id").as_string().unwrap(),
                get("state").as_string().unwrap(),
                get("rejected").as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

fn is_open_to(peer: &Peer, other: &str) -> bool {
    links(peer)
        .iter()
        .any(|(id, state, _)| id == other && state == "open")
}

#[wasm_bindgen_test]
async fn two_peers_in_one_page_converge_over_webrtc() {
    let room = room("converge");
    let memory = || options(&[("room", room.clone().into()), ("storage", "memory".into())]);
    let a = open(memory()).await;
    let b = open(memory()).await;
    wait_for("the data channel", 20, || {
        is_open_to(&a, &b.id().unwrap()) && is_open_to(&b, &a.id().unwrap())
    })
    .await;

    done(a.set("title".into(), "from a".into())).await;
    done(b.increment("count".into(), 2.0.into())).await;
    done(a.increment("count".into(), 3.0.into())).await;
    done(b.add("tags".into(), "x".into())).await;
    wait_for("convergence", 10, || a.digest() == b.digest()).await;
    assert_eq!(
        json(a.state().unwrap()),
        r#"{"count":5,"tags":["x"],"title":"from a"}"#
    );
    assert_eq!(json(a.state().unwrap()), json(b.state().unwrap()));
    assert_eq!(json(a.clock().unwrap()), json(b.clock().unwrap()));

    wait_for("a round-trip time", 10, || {
        Array::from(&a.peers().unwrap())
            .iter()
            .any(|p| Reflect::get(&p, &"rtt".into()).unwrap().as_f64().is_some())
    })
    .await;

    // Offline: the connection goes, writes go on; online: they sync.
    a.go_offline().unwrap();
    wait_for("the link to drop", 10, || !is_open_to(&b, &a.id().unwrap())).await;
    done(a.set("title".into(), "offline write".into())).await;
    done(b.increment("count".into(), 10.0.into())).await;
    a.go_online().unwrap();
    wait_for("reconnection", 20, || is_open_to(&a, &b.id().unwrap())).await;
    wait_for("convergence after going online", 10, || {
        a.digest() == b.digest()
    })
    .await;
    assert_eq!(
        json(b.state().unwrap()),
        r#"{"count":15,"tags":["x"],"title":"offline write"}"#
    );
    done(a.close()).await;
    done(b.close()).await;
}

#[wasm_bindgen_test]
async fn a_megabyte_snapshot_crosses_a_data_channel_in_chunks() {
    let room = room("snapshot");
    let a = open(options(&[
        ("room", room.clone().into()),
        ("storage", "memory".into()),
        ("compactAfter", 100.into()),
    ]))
    .await;
    // Values that gzip to about half: the snapshot travels gzipped, and
    // is still a megabyte on the wire.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut value = String::new();
    for i in 0..1000 {
        value = (0..138)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect();
        // Not awaited one by one: writes of one tick share a commit.
        let _ = a.set(format!("key{i:04}").into(), value.clone().into());
    }
    // A peer takes them and goes: the next gossip tick folds the log into
    // a snapshot (every event is stable, and a peer had a's own), leaving
    // nothing to replay event by event. (Alone, a keeps its own latest
    // writes no peer has in its log, to send them as events.)
    let c = open(options(&[
        ("room", room.clone().into()),
        ("storage", "memory".into()),
    ]))
    .await;
    wait_for("a second peer's sync", 30, || a.digest() == c.digest()).await;
    done(c.close()).await;
    sleep(1500).await;

    let b = open(options(&[
        ("room", room.into()),
        ("storage", "memory".into()),
    ]))
    .await;
    let progress = Rc::new(RefCell::new(Vec::<(f64, f64)>::new()));
    let record = progress.clone();
    let listener = Closure::<dyn Fn(JsValue)>::new(move |event: JsValue| {
        let get = |name: &str| {
            Reflect::get(&event, &name.into())
                .unwrap()
                .as_f64()
                .unwrap()
        };
        record.borrow_mut().push((get("received"), get("total")));
    });
    b.add_event_listener("snapshot".into(), listener.as_ref().clone())
        .expect("a listener of a known event");
    wait_for("the snapshot", 30, || a.digest() == b.digest()).await;

    let progress = progress.borrow().clone();
    let (_, total) = *progress.last().expect("progress events");
    assert!(total > 1_000_000.0, "a snapshot of {total} bytes");
    assert!(
        progress.len() >= 16,
        "{} chunks of at most 64 KiB",
        progress.len()
    );
    assert!(
        progress.windows(2).all(|w| w[0].0 < w[1].0),
        "progress only grows"
    );
    assert_eq!(
        json(b.get("key0999".into()).expect("a string key")),
        json(JsValue::from(value))
    );
    done(a.close()).await;
    done(b.close()).await;
}

/// A raw transport to a peer: sends it whatever bytes a test likes.
struct Raw {
    transport: Transport,
    open: Rc<RefCell<Vec<PeerId>>>,
    frames: Rc<RefCell<usize>>,
    /// What it reported of its queues, in order.
    backlog: Rc<RefCell<Vec<(PeerId, bool)>>>,
    /// The channel each link opened over.
    channels: Rc<RefCell<Vec<(PeerId, Channel)>>>,
}

/// A bare transport in `room`, of the identity of `seed`; and its id.
fn raw(room: &str, seed: u64) -> (Raw, PeerId) {
    let identity = Identity::from_seed(seed);
    let me = identity.peer();
    let open = Rc::new(RefCell::new(Vec::new()));
    let frames = Rc::new(RefCell::new(0));
    let backlog = Rc::new(RefCell::new(Vec::new()));
    let channels = Rc::new(RefCell::new(Vec::new()));
    let (o, f, b, c) = (
        open.clone(),
        frames.clone(),
        backlog.clone(),
        channels.clone(),
    );
    let sink: Sink = Rc::new(move |event| match event {
        TransportEvent::Opened(peer, channel) => {
            o.borrow_mut().push(peer);
            c.borrow_mut().push((peer, channel));
        }
        TransportEvent::Link(peer, _) => o.borrow_mut().retain(|p| *p != peer),
        TransportEvent::Frame(..) => *f.borrow_mut() += 1,
        TransportEvent::Backlog(peer, backlogged) => b.borrow_mut().push((peer, backlogged)),
        // A room of two is a full mesh: no shuffles.
        TransportEvent::Overlay(..) | TransportEvent::Left(_) => {}
        TransportEvent::Failed { reason, .. } => panic!("transport failed: {reason}"),
    });
    let config = TransportConfig {
        room: room.to_string(),
        codec: Default::default(),
        signaling: None,
        ice_servers: JsValue::UNDEFINED,
        mesh: Default::default(),
    };
    let raw = Raw {
        transport: Transport::new(identity, config, sink),
        open,
        frames,
        backlog,
        channels,
    };
    (raw, me)
}

/// Two ends of a real RTCPeerConnection read the same two DTLS
/// fingerprints from their session descriptions, each its own first: a
/// room handshake bound to them passes, where one bound to another
/// connection's fails (`tests/native/handshake.rs` has the attack).
#[wasm_bindgen_test]
async fn both_ends_of_a_data_channel_bind_the_handshake_alike() {
    let room = room("channel");
    let (a, ida) = raw(&room, 0xc1);
    let (b, idb) = raw(&room, 0xc2);
    wait_for("the link", 20, || {
        a.open.borrow().contains(&idb) && b.open.borrow().contains(&ida)
    })
    .await;
    let over = |r: &Raw, peer: PeerId| {
        let channels = r.channels.borrow();
        let (_, channel) = channels.iter().find(|(p, _)| *p == peer).unwrap();
        channel.clone()
    };
    let (over_a, over_b) = (over(&a, idb), over(&b, ida));
    assert!(over_a.is_bound() && over_b.is_bound());
    assert_ne!(over_a, over_b, "each sees its own certificate first");
    let secret = RoomSecret::with_cost("r", "k", KdfCost::TEST);
    let (ia, ib) = (Identity::from_seed(0xc1), Identity::from_seed(0xc2));
    let handshake = |over_a: &Channel, over_b: &Channel| {
        let mut ha = Handshake::new(ida, idb, [1; 32], over_a);
        let mut hb = Handshake::new(idb, ida, [2; 32], over_b);
        let proof_a = ha.prove(hb.my_nonce(), &secret, &ia).unwrap();
        let proof_b = hb.prove(ha.my_nonce(), &secret, &ib).unwrap();
        (ha.check(&proof_b, &secret), hb.check(&proof_a, &secret))
    };
    assert_eq!(handshake(&over_a, &over_b), (Ok(()), Ok(())));
    // b's end seen as a's: a proof made for another connection.
    assert!(handshake(&over_a, &over_a).0.is_err());
}

/// What crosses a room's tabs' channel, as a third tab hears it: the
/// channel, the texts heard, and the listener (dropped, it stops).
#[allow(clippy::type_complexity)]
fn overhear(
    room: &str,
) -> (
    web_sys::BroadcastChannel,
    Rc<RefCell<Vec<String>>>,
    Closure<dyn FnMut(web_sys::MessageEvent)>,
) {
    let tabs = web_sys::BroadcastChannel::new(&format!("cpc-sync:{room}")).unwrap();
    let heard = Rc::new(RefCell::new(Vec::<String>::new()));
    let h = heard.clone();
    let listener =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
            if let Some(text) = e.data().as_string() {
                h.borrow_mut().push(text);
            }
        });
    tabs.set_onmessage(Some(listener.as_ref().unchecked_ref()));
    (tabs, heard, listener)
}

/// Each end's steps name the other's connection once it has heard from
/// it (`replyTo`): a late step of a dial since replaced is then told
/// apart from the new one's (`a_late_answer_to_a_replaced_dial_is_ignored`
/// in the core). Checked on what two real connections send.
#[wasm_bindgen_test]
async fn each_end_names_the_connection_its_steps_reply_to() {
    use cpc_sync::protocol::signal::{Negotiation, SdpKind, TabMessage};
    let room = room("reply-to");
    let (tabs, heard, _listener) = overhear(&room);
    let (a, ida) = raw(&room, 0xe1);
    let (b, idb) = raw(&room, 0xe2);
    wait_for("the link", 20, || {
        a.open.borrow().contains(&idb) && b.open.borrow().contains(&ida)
    })
    .await;
    // Each side's steps: (epoch, reply_to, is an answer), in order.
    let mut steps: [Vec<(u64, Option<u64>, bool)>; 2] = Default::default();
    for text in heard.borrow().iter() {
        let Some(TabMessage::Signal { from, to, data }) = TabMessage::from_text(text) else {
            continue;
        };
        let side = usize::from(from == idb.to_string());
        if let Some(step) = Negotiation::from_data(data, None, &from, &to) {
            let answer = matches!(
                step,
                Negotiation::Description {
                    kind: SdpKind::Answer,
                    ..
                }
            );
            steps[side].push((step.epoch(), step.reply_to(), answer));
        }
    }
    // Every step names a connection the other side negotiated (its last,
    // unless one was replaced while the link came up), or none (sent
    // before it heard from it).
    let epochs = steps
        .clone()
        .map(|sent| sent.iter().map(|s| s.0).collect::<Vec<_>>());
    for (side, sent) in steps.iter().enumerate() {
        let other = &epochs[1 - side];
        assert!(
            sent.iter()
                .all(|&(_, to, _)| to.is_none_or(|to| other.contains(&to))),
            "side {side}: {sent:?}, the other's epochs {other:?}"
        );
    }
    // An answer is sent once the offer is heard: it names the offer's.
    let answers: Vec<_> = steps.iter().flatten().filter(|s| s.2).collect();
    assert!(!answers.is_empty(), "{steps:?}");
    assert!(answers.iter().all(|s| s.1.is_some()), "{steps:?}");
    tabs.close();
}

/// Whoever carries the signals (here, anyone on the tabs' channel) sends
/// one end an offer of its own after the link opened, under the link's
/// epoch: a re-negotiation to another certificate, under a handshake bound
/// to the first. The offer is ignored, and the link goes on as it was.
#[wasm_bindgen_test]
async fn an_offer_after_the_link_opened_is_ignored() {
    use cpc_sync::protocol::signal::{Negotiation, SdpKind, TabMessage};
    use web_sys::{RtcPeerConnection, RtcSdpType};
    let room = room("reoffer");
    let (tabs, heard, _listener) = overhear(&room);
    let (a, ida) = raw(&room, 0xd1);
    let (b, idb) = raw(&room, 0xd2);
    wait_for("the link", 20, || {
        a.open.borrow().contains(&idb) && b.open.borrow().contains(&ida)
    })
    .await;
    let opened = a.channels.borrow().len();
    let epoch = (heard.borrow().iter().rev())
        .find_map(|text| match TabMessage::from_text(text)? {
            // b's epoch: each end names its own connection.
            TabMessage::Signal { from, to, data } if from == idb.to_string() => {
                match Negotiation::from_data(data, None, &from, &to)? {
                    Negotiation::Description { epoch, .. } => Some(epoch),
                    Negotiation::Candidate { .. } => None,
                }
            }
            _ => None,
        })
        .expect("the link's signals");
    // An offer of another connection: another certificate.
    let other = RtcPeerConnection::new().unwrap();
    let _dc = other.create_data_channel("x");
    let offer = JsFuture::from(other.create_offer()).await.unwrap();
    let sdp = Reflect::get(&offer, &"sdp".into())
        .unwrap()
        .as_string()
        .unwrap();
    let init = web_sys::RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    init.set_sdp(&sdp);
    JsFuture::from(other.set_local_description(&init))
        .await
        .unwrap();
    let forged = Negotiation::Description {
        epoch,
        reply_to: None,
        kind: SdpKind::Offer,
        sdp,
    };
    let (from, to) = (idb.to_string(), ida.to_string());
    let data = forged.to_data(None, [0; 12], &from, &to);
    tabs.post_message(&TabMessage::Signal { from, to, data }.to_text().into())
        .unwrap();
    sleep(3_000).await;
    // The link as it was: open, over the one channel, and carrying frames.
    assert!(a.open.borrow().contains(&idb), "still open");
    assert_eq!(a.channels.borrow().len(), opened, "not opened again");
    let before = *a.frames.borrow();
    b.transport.send(ida, vec![7; 100]);
    wait_for("a frame after the offer", 10, || {
        *a.frames.borrow() > before
    })
    .await;
    other.close();
    tabs.close();
}

#[wasm_bindgen_test]
async fn a_full_data_channel_reports_its_backlog_and_its_end() {
    let room = room("backlog");
    let (a, ida) = raw(&room, 0xb1);
    let (b, idb) = raw(&room, 0xb2);
    wait_for("the link", 20, || {
        a.open.borrow().contains(&idb) && b.open.borrow().contains(&ida)
    })
    .await;
    // 2.4 MB in one task: the channel's buffer takes its high-water mark
    // (1 MiB), the rest waits in our queue until it drains.
    const FRAMES: usize = 40;
    for _ in 0..FRAMES {
        a.transport.send(idb, vec![7; 60 * 1024]);
    }
    wait_for("every frame", 20, || *b.frames.borrow() >= FRAMES).await;
    wait_for("the end of the backlog", 10, || {
        a.backlog.borrow().last() == Some(&(idb, false))
    })
    .await;
    let reported = a.backlog.borrow().clone();
    assert_eq!(reported.first(), Some(&(idb, true)), "{reported:?}");
    assert!(
        reported.windows(2).all(|w| w[0].1 != w[1].1),
        "each change once: {reported:?}"
    );
    assert!(b.backlog.borrow().is_empty(), "b sent nothing");
    assert_eq!(*b.frames.borrow(), FRAMES);
}

#[wasm_bindgen_test]
async fn bad_frames_are_counted_and_an_oversized_one_closes_the_connection() {
    let room = room("hostile");
    let peer = open(options(&[
        ("room", room.clone().into()),
        ("storage", "memory".into()),
    ]))
    .await;
    let me: PeerId = peer.id().unwrap().parse().unwrap();
    let (hostile, hostile_id) = raw(&room, 0x0bad);
    wait_for("the hostile link", 20, || {
        hostile.open.borrow().contains(&me)
    })
    .await;
    wait_for("the peer's first frames", 10, || {
        *hostile.frames.borrow() > 0
    })
    .await;

    // Junk in our protocol's version (a frame of another version closes
    // the connection at once).
    let v = wire::PROTOCOL_VERSION;
    for junk in [
        vec![],
        vec![v],
        vec![v, 0, 9, 9, 9, 9, 9],
        vec![v, 0xff, 0xff, 0xff, 0xff, 0xff],
    ] {
        hostile.transport.send(me, junk);
    }
    let hostile_hex = hostile_id.to_string();
    wait_for("four refusals", 10, || {
        links(&peer)
            .iter()
            .any(|(id, _, rejected)| *id == hostile_hex && *rejected >= 4.0)
    })
    .await;
    // A run under the peer's own id, sealed by another key: a forgery.
    let mallory = Identity::from_seed(666);
    let mut forger = SyncNode::new(
        ReconciliationEngine::new(mallory.peer(), EngineConfig::default()),
        SyncConfig {
            identity: Some(mallory),
            ..SyncConfig::default()
        },
    );
    forger
        .write(|e| e.set("k", JsonValue::parse("666").unwrap(), 1).map(Some))
        .unwrap();
    let _ = forger.take_outputs();
    let mut forged: Vec<_> = forger.engine().log().iter().cloned().collect();
    forged[0].id.peer = me;
    for frame in wire::encode(&Message::Events(forged), 1) {
        hostile.transport.send(me, frame);
    }
    wait_for("the forgery refused", 10, || {
        links(&peer)
            .iter()
            .any(|(id, _, rejected)| *id == hostile_hex && *rejected >= 5.0)
    })
    .await;
    assert_eq!(json(peer.state().unwrap()), "{}", "nothing forged got in");
    // Still connected, still working.
    assert!(is_open_to(&peer, &hostile_hex));
    done(peer.set("k".into(), 1.into())).await;

    hostile.transport.send(me, vec![1; 65 * 1024]);
    wait_for("the connection to close", 10, || {
        !is_open_to(&peer, &hostile_hex)
    })
    .await;
    let last_error = Array::from(&peer.peers().unwrap())
        .iter()
        .find(|p| {
            Reflect::get(p, &"id".into())
                .unwrap()
                .as_string()
                .as_deref()
                == Some(&hostile_hex)
        })
        .and_then(|p| Reflect::get(&p, &"lastError".into()).unwrap().as_string())
        .expect("the reason is shown");
    assert!(last_error.contains("exceeds"), "{last_error}");
    assert_eq!(
        json(peer.state().unwrap()),
        r#"{"k":1}"#,
        "the peer keeps its state"
    );
    done(peer.close()).await;
}

#[wasm_bindgen_test]
async fn both_sides_offering_at_once_still_connect() {
    let room = room("glare");
    let (a, ida) = raw(&room, 0xa11ce);
    let (b, idb) = raw(&room, 0xb0b);
    let both_open =
        |a: &Raw, b: &Raw| a.open.borrow().contains(&idb) && b.open.borrow().contains(&ida);
    wait_for("the first connection", 20, || both_open(&a, &b)).await;
    for round in 0..5 {
        // Both drop the connection and offer in the same tick: the offers
        // cross; the polite side (the higher id) yields.
        a.transport.redial(idb);
        b.transport.redial(ida);
        sleep(10).await;
        assert!(
            !both_open(&a, &b),
            "round {round}: the old connection is gone"
        );
        wait_for("the new connection", 20, || both_open(&a, &b)).await;
        a.transport.send(idb, vec![round]);
        let before = *b.frames.borrow();
        wait_for("a frame over it", 10, || *b.frames.borrow() > before).await;
    }
}

#[wasm_bindgen_test]
async fn the_warm_up_leaves_no_trace_in_the_peer() {
    let peer = open(options(&[
        ("room", room("warm").into()),
        ("storage", "memory".into()),
    ]))
    .await;
    done(peer.set("k".into(), 1.into())).await;
    // Its ~4,000 scratch events run in tasks of a few ms meanwhile.
    sleep(1_000).await;
    assert_eq!(json(peer.state().unwrap()), r#"{"k":1}"#);
    assert_eq!(
        json(peer.clock().unwrap()),
        format!(r#"{{"{}":1}}"#, peer.id().unwrap())
    );
    assert!(links(&peer).is_empty(), "the scratch nodes are no peers");
    done(peer.close()).await;

    let cold = open(options(&[
        ("room", room("cold").into()),
        ("storage", "memory".into()),
        ("warmUp", false.into()),
    ]))
    .await;
    done(cold.set("k".into(), 2.into())).await;
    assert_eq!(json(cold.state().unwrap()), r#"{"k":2}"#);
    done(cold.close()).await;
}
