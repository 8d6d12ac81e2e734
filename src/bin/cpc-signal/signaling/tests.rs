use cpc_sync::protocol::Identity;

use super::outbox::Out;
use super::*;

const MAX_ROOM: usize = 8;

fn rooms() -> Rooms {
    Rooms::new(Config {
        max_room: MAX_ROOM,
        origins: Origins::Own,
    })
}

/// A socket of a test and the identity it joins with; `seed` picks both
/// the identity and the connection's nonce.
fn socket(rooms: &Rooms, seed: u64) -> (Conn, Identity) {
    let conn = Conn::new(rooms, [seed as u8; 32]);
    conn.outbox.take(); // the hello
    (conn, Identity::from_seed(seed))
}

fn join(rooms: &Rooms, conn: &mut Conn, who: &Identity, room: &str) -> Option<ServerMessage> {
    let join = ClientMessage::join(who, &hex(&conn.nonce), room);
    handle(rooms, conn, &join.to_text())
}

/// What was queued for `conn`: messages, and a close as `None`.
fn drain(conn: &Conn) -> Vec<Option<ServerMessage>> {
    conn.outbox
        .take()
        .into_iter()
        .map(|out| match out {
            Out::Text(text) => Some(serde_json::from_str(&text).unwrap()),
            Out::Close(..) | Out::Binary(_) => None,
        })
        .collect()
}

pub(super) fn texts(conn: &Conn) -> Vec<String> {
    conn.outbox
        .take()
        .into_iter()
        .filter_map(|out| match out {
            Out::Text(text) => Some(text),
            Out::Close(..) | Out::Binary(_) => None,
        })
        .collect()
}

fn error_of(reply: Option<ServerMessage>) -> String {
    match reply {
        Some(ServerMessage::Error { message }) => message,
        other => panic!("not an error: {other:?}"),
    }
}

/// Fills room "r" with peers of seeds 0..MAX_ROOM through `handle`.
fn full_room(rooms: &Rooms) -> Vec<(Conn, Identity)> {
    (0..MAX_ROOM as u64)
        .map(|i| {
            let (mut conn, who) = socket(rooms, i);
            assert_eq!(join(rooms, &mut conn, &who, "r"), None);
            (conn, who)
        })
        .collect()
}

#[test]
fn the_first_message_is_a_hello_with_the_nonce() {
    let rooms = rooms();
    let conn = Conn::new(&rooms, [7; 32]);
    assert_eq!(
        drain(&conn),
        [Some(ServerMessage::Hello {
            nonce: "07".repeat(32)
        })]
    );
}

#[test]
fn a_join_without_a_valid_proof_is_refused_and_counted() {
    let rooms = rooms();
    let (mut conn, who) = socket(&rooms, 1);
    let unsigned = r#"{"type":"join","room":"r","peer":"p"}"#;
    assert!(error_of(handle(&rooms, &mut conn, unsigned)).starts_with("malformed"));
    // Signed for another connection's nonce.
    let elsewhere = ClientMessage::join(&who, &hex(&[9; 32]), "r").to_text();
    let message = error_of(handle(&rooms, &mut conn, &elsewhere));
    assert!(message.starts_with("join refused: the proof"), "{message}");
    // Another's id with one's own key.
    let ClientMessage::Join {
        room, key, proof, ..
    } = ClientMessage::join(&who, &hex(&conn.nonce), "r")
    else {
        unreachable!()
    };
    let peer = Identity::from_seed(2).peer().to_string();
    let theirs = ClientMessage::Join {
        room,
        peer,
        key,
        proof,
    };
    let message = error_of(handle(&rooms, &mut conn, &theirs.to_text()));
    assert!(message.contains("not the one the key derives"), "{message}");
    assert_eq!(conn.joined, None);
    assert!(rooms.lock().is_empty());
    let stats = rooms.stats();
    assert!(stats.refused.contains(&("bad_proof", 1)));
    assert!(stats.refused.contains(&("not_its_id", 1)));
    assert!(stats.refused.contains(&("malformed", 1)));
}

#[test]
fn a_join_beyond_the_room_cap_is_refused_and_not_added() {
    let rooms = rooms();
    let mut members = full_room(&rooms);
    for (conn, _) in &members {
        drain(conn);
    }
    let (mut late, who) = socket(&rooms, 100);
    let message = error_of(join(&rooms, &mut late, &who, "r"));
    assert!(
        message.starts_with(&format!("room full: \"r\" has {MAX_ROOM} peers")),
        "{message}"
    );
    assert_eq!(late.joined, None);
    assert!(drain(&late).is_empty());
    assert!(members.iter().all(|(conn, _)| drain(conn).is_empty()));
    assert_eq!(rooms.lock()["r"].len(), MAX_ROOM);
    assert!(rooms.stats().refused.contains(&("room_full", 1)));

    // One leaves: now there is room.
    let (mut first, _) = members.remove(0);
    handle(&rooms, &mut first, &ClientMessage::Leave.to_text());
    assert_eq!(join(&rooms, &mut late, &who, "r"), None);
    assert!(
        matches!(&drain(&late)[..], [Some(ServerMessage::Peers { peers, .. })]
        if peers.len() == MAX_ROOM - 1)
    );
}

#[test]
fn a_second_socket_proving_the_id_replaces_the_first_without_a_leave() {
    let rooms = rooms();
    let mut members = full_room(&rooms);
    for (conn, _) in &members {
        drain(conn);
    }
    // A reloaded tab: the same identity on a new socket, in a full room.
    let who = members[1].1.clone();
    let mut reloaded = Conn::new(&rooms, [200; 32]);
    reloaded.outbox.take();
    assert_eq!(join(&rooms, &mut reloaded, &who, "r"), None);
    assert!(
        matches!(&drain(&reloaded)[..], [Some(ServerMessage::Peers { peers, .. })]
        if peers.len() == MAX_ROOM - 1)
    );
    let id = who.peer().to_string();
    assert_eq!(
        drain(&members[1].0),
        [
            Some(ServerMessage::Error {
                message: format!("replaced: peer {id} joined from another connection")
            }),
            None
        ]
    );
    // The old socket's leave (it closes) tells no one.
    let (mut old, _) = members.remove(1);
    old.leave(&rooms);
    assert_eq!(
        drain(&members[0].0),
        [Some(ServerMessage::Joined { peer: id.clone() })]
    );
    assert!(Arc::ptr_eq(&rooms.lock()["r"][&id], &reloaded.outbox));
    assert_eq!(rooms.stats().replaced, 1);

    // A member taking another id (a key it also holds) in its own room.
    let (conn, _) = &mut members[0];
    let other = Identity::from_seed(300);
    assert_eq!(join(&rooms, conn, &other, "r"), None);
    assert_eq!(rooms.lock()["r"].len(), MAX_ROOM);
}

#[test]
fn a_replaced_socket_cannot_signal_as_the_id() {
    let rooms = rooms();
    let (mut a, who_a) = socket(&rooms, 1);
    let (mut b, who_b) = socket(&rooms, 2);
    join(&rooms, &mut a, &who_a, "r");
    join(&rooms, &mut b, &who_b, "r");
    let mut a2 = Conn::new(&rooms, [3; 32]);
    join(&rooms, &mut a2, &who_a, "r");
    drain(&b);
    let to_b = format!(r#"{{"type":"signal","to":"{}","data":1}}"#, who_b.peer());
    let message = error_of(handle(&rooms, &mut a, &to_b));
    assert!(message.contains("replaced"), "{message}");
    assert!(drain(&b).is_empty());
    assert_eq!(handle(&rooms, &mut a2, &to_b), None);
    assert_eq!(drain(&b).len(), 1);
}

#[test]
fn signal_data_is_relayed_byte_for_byte() {
    let rooms = rooms();
    let (mut a, who_a) = socket(&rooms, 1);
    let (mut b, who_b) = socket(&rooms, 2);
    join(&rooms, &mut a, &who_a, "r");
    join(&rooms, &mut b, &who_b, "r");
    texts(&b);
    let data = r#"{ "n" : 9e15, "x":[1.50, "\u00e9"] }"#;
    let signal = format!(
        r#"{{"type":"signal","to":"{}","data":{data}}}"#,
        who_b.peer()
    );
    assert_eq!(handle(&rooms, &mut a, &signal), None);
    assert_eq!(
        texts(&b),
        [format!(
            r#"{{"type":"signal","from":"{}","data":{data}}}"#,
            who_a.peer()
        )]
    );
    assert_eq!(rooms.stats().relayed, 1);
    let extra = r#"{"type":"signal","to":"x","data":1,"from":"y"}"#;
    assert!(error_of(handle(&rooms, &mut a, extra)).starts_with("malformed"));
    let nobody = r#"{"type":"signal","to":"nobody","data":1}"#;
    assert!(error_of(handle(&rooms, &mut a, nobody)).starts_with("no peer \"nobody\""));
    assert_eq!(rooms.stats().dropped_no_peer, 1);
}

#[test]
fn a_refused_join_keeps_the_socket_in_its_room() {
    let rooms = rooms();
    let _members = full_room(&rooms);
    let (mut conn, who) = socket(&rooms, 100);
    assert_eq!(join(&rooms, &mut conn, &who, "other"), None);
    assert!(matches!(
        join(&rooms, &mut conn, &who, "r"),
        Some(ServerMessage::Error { .. })
    ));
    let id = who.peer().to_string();
    assert_eq!(conn.joined, Some(("other".into(), id.clone())));
    assert!(rooms.lock()["other"].contains_key(&id));
}

#[test]
fn a_full_outbox_drops_signals_and_keeps_the_peer() {
    let rooms = rooms();
    let (mut a, who_a) = socket(&rooms, 1);
    let (mut b, who_b) = socket(&rooms, 2);
    join(&rooms, &mut a, &who_a, "r");
    join(&rooms, &mut b, &who_b, "r");
    texts(&a);
    texts(&b);
    let data = "x".repeat(60_000);
    let signal = format!(
        r#"{{"type":"signal","to":"{}","data":"{data}"}}"#,
        who_b.peer()
    );
    for _ in 0..30 {
        assert_eq!(handle(&rooms, &mut a, &signal), None);
    }
    let fit = OUTBOX_BYTES / (data.len() + 100);
    assert!(b.outbox.bytes() <= OUTBOX_BYTES);
    let stats = rooms.stats();
    assert_eq!(stats.relayed as usize, fit);
    assert_eq!(stats.dropped_outbox_full as usize, 30 - fit);
    assert_eq!(stats.queued_bytes as usize, b.outbox.bytes());
    assert_eq!(texts(&b).len(), fit);
    assert_eq!(handle(&rooms, &mut a, &signal), None, "b is still there");
    assert_eq!(texts(&b).len(), 1);
}

#[test]
fn a_big_room_names_a_sample_each_way_and_every_member_hears_a_leave() {
    let rooms = Rooms::new(Config {
        max_room: 200,
        origins: Origins::Own,
    });
    let mut members: Vec<(Conn, Identity)> = (0..100u64)
        .map(|i| {
            let (mut conn, who) = socket(&rooms, i);
            assert_eq!(join(&rooms, &mut conn, &who, "r"), None);
            (conn, who)
        })
        .collect();
    for (conn, _) in &members {
        conn.outbox.take();
    }
    let (mut newcomer, who) = socket(&rooms, 500);
    assert_eq!(join(&rooms, &mut newcomer, &who, "r"), None);
    let Some(Some(ServerMessage::Peers { peers, sampled, .. })) = drain(&newcomer).pop() else {
        panic!("no peers list");
    };
    assert_eq!(peers.len(), sample::SAMPLE);
    assert!(
        sampled,
        "a sample must say so: who it leaves out has not left"
    );
    let me = who.peer().to_string();
    let told: Vec<String> = members
        .iter()
        .filter(|(conn, _)| {
            drain(conn)
                .iter()
                .any(|m| matches!(m, Some(ServerMessage::Joined { peer }) if *peer == me))
        })
        .map(|(_, w)| w.peer().to_string())
        .collect();
    // The members told of it are the ones it was told of.
    let (mut a, mut b) = (told.clone(), peers.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // A member it learned of otherwise (a shuffle) is signaled all the same.
    let stranger = members
        .iter()
        .map(|(_, w)| w.peer().to_string())
        .find(|p| !peers.contains(p))
        .unwrap();
    let signal = format!(r#"{{"type":"signal","to":"{stranger}","data":1}}"#);
    assert_eq!(handle(&rooms, &mut newcomer, &signal), None);
    // Its leave reaches every member, told of it or not.
    newcomer.leave(&rooms);
    for (conn, _) in members.iter_mut() {
        let heard = drain(conn);
        assert!(
            heard
                .iter()
                .any(|m| matches!(m, Some(ServerMessage::Left { peer }) if *peer == me)),
            "a member missed the leave"
        );
    }
}
