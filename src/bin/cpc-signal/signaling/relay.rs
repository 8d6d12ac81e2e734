//! The relay of rooms with a secret: a binary message
//! `[8-byte recipient id][sealed bytes]` from a member goes to that
//! member's socket as `[8-byte sender id][sealed bytes]`, the sender being
//! the id its socket proved at the join, never one the message names.
//! The sealed bytes are the peers' (`cpc_sync::protocol::relay`): this
//! server reads neither them nor anything but the two ids and the length.
//!
//! Bounds, as for frames of the room peer: a message of at most
//! [`MAX_RELAYED`] bytes; at most [`FRAME_BYTES`](super::outbox::FRAME_BYTES)
//! of frames wait for one socket, beyond that they are dropped (the
//! recipient's link sees the gap and starts over), and a recipient that
//! stops reading altogether is closed by the send timeout. Each refusal
//! is counted by class for `/metrics`. Like the room peer's frames, relayed
//! ones are not counted against the message rate (a sync burst is many
//! frames); what a sender can pile up is bounded per recipient.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use cpc_sync::protocol::relay::{address, unaddress, MAX_RELAYED};
use cpc_sync::protocol::PeerId;

use super::{Outbox, Refused, Rooms};
use crate::keep;
use crate::metrics::Reading;

/// Why a relayed message went nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRefusal {
    /// The socket is in no room with a secret (or was replaced in it).
    NotJoined,
    /// No such member in the sender's room.
    UnknownRecipient,
    /// Over [`MAX_RELAYED`] bytes, or too short to name a recipient.
    TooLarge,
    Malformed,
    /// Frames for the recipient waiting over the bound: dropped.
    RecipientFull,
}

impl RelayRefusal {
    pub const ALL: [RelayRefusal; 5] = [
        RelayRefusal::NotJoined,
        RelayRefusal::UnknownRecipient,
        RelayRefusal::TooLarge,
        RelayRefusal::Malformed,
        RelayRefusal::RecipientFull,
    ];

    /// What the sender is told, when it is a mistake of its own (a peer
    /// that left, or a slow reader, are not).
    pub fn message(self) -> Option<String> {
        match self {
            RelayRefusal::NotJoined => Some(
                "binary messages are sealed frames relayed within a room with a secret \
                 (or the room peer's, once linked): join one first"
                    .into(),
            ),
            RelayRefusal::TooLarge => {
                Some(format!("relayed frames are at most {MAX_RELAYED} bytes"))
            }
            RelayRefusal::Malformed => {
                Some("a relayed frame starts with its recipient's id".into())
            }
            RelayRefusal::UnknownRecipient | RelayRefusal::RecipientFull => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RelayRefusal::NotJoined => "not_joined",
            RelayRefusal::UnknownRecipient => "unknown_recipient",
            RelayRefusal::TooLarge => "too_large",
            RelayRefusal::Malformed => "malformed",
            RelayRefusal::RecipientFull => "recipient_full",
        }
    }
}

/// What the relay counts.
#[derive(Debug, Default)]
pub struct RelayCounters {
    frames: AtomicU64,
    bytes: AtomicU64,
    refused: [AtomicU64; RelayRefusal::ALL.len()],
}

/// Whether a binary message on a socket that joined `joined` is for the
/// relay: in a room with a secret, or in none (then it is refused as not
/// joined).
pub fn takes(joined: Option<&(String, String)>) -> bool {
    joined.is_none_or(|(room, _)| keep::is_secret(room))
}

impl Rooms {
    /// Forwards a relayed message from the socket of `outbox`, a member
    /// of `joined` (if any).
    pub(super) fn relay_frame(
        &self,
        joined: Option<&(String, String)>,
        outbox: &Arc<Outbox>,
        bytes: &[u8],
    ) -> Result<(), RelayRefusal> {
        let result = self.forward(joined, outbox, bytes);
        let counters = &self.relay;
        match result {
            Ok(()) => {
                counters.frames.fetch_add(1, Relaxed);
                counters.bytes.fetch_add(bytes.len() as u64, Relaxed);
            }
            Err(why) => {
                let i = RelayRefusal::ALL.iter().position(|r| *r == why);
                if let Some(i) = i {
                    counters.refused[i].fetch_add(1, Relaxed);
                }
            }
        }
        result
    }

    fn forward(
        &self,
        joined: Option<&(String, String)>,
        outbox: &Arc<Outbox>,
        bytes: &[u8],
    ) -> Result<(), RelayRefusal> {
        if bytes.len() > MAX_RELAYED {
            return Err(RelayRefusal::TooLarge);
        }
        let Some((room, from)) = joined.filter(|(room, _)| keep::is_secret(room)) else {
            return Err(RelayRefusal::NotJoined);
        };
        let from: PeerId = from.parse().map_err(|_| RelayRefusal::NotJoined)?;
        let (to, sealed) = unaddress(bytes).ok_or(RelayRefusal::Malformed)?;
        let recipient = {
            let rooms = self.lock();
            let members = rooms.get(room).ok_or(RelayRefusal::NotJoined)?;
            if !members
                .get(&from.to_string())
                .is_some_and(|o| Arc::ptr_eq(o, outbox))
            {
                return Err(RelayRefusal::NotJoined);
            }
            members
                .get(&to.to_string())
                .cloned()
                .ok_or(RelayRefusal::UnknownRecipient)?
        };
        match recipient.push_frame(address(from, sealed)) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(RelayRefusal::RecipientFull),
            // On its way out: its leave follows.
            Err(Refused::Closed) => Err(RelayRefusal::UnknownRecipient),
        }
    }

    /// The relay's readings for `/metrics` (`cpc_signal_relayed_*`).
    pub fn relay_readings(&self) -> Vec<Reading> {
        let counters = &self.relay;
        let counter = Reading::counter;
        let mut readings = vec![
            counter(
                "relayed_frames",
                "Sealed frames relayed between pages of rooms with a secret",
                counters.frames.load(Relaxed),
            ),
            counter(
                "relayed_bytes",
                "Bytes of sealed frames relayed",
                counters.bytes.load(Relaxed),
            ),
        ];
        for (why, n) in RelayRefusal::ALL.iter().zip(&counters.refused) {
            readings.push(Reading {
                labels: vec![("reason", why.as_str().to_string())],
                ..counter(
                    "relay_refused",
                    "Relayed frames refused, by reason",
                    n.load(Relaxed),
                )
            });
        }
        readings
    }
}

#[cfg(test)]
mod tests {
    use cpc_sync::protocol::signal::ClientMessage;
    use cpc_sync::protocol::Identity;

    use super::super::outbox::Out;
    use super::super::{handle, hex, Config, Conn, Origins};
    use super::*;

    fn rooms() -> Rooms {
        Rooms::new(Config {
            max_room: 8,
            origins: Origins::Own,
        })
    }

    fn socket(rooms: &Rooms, seed: u64) -> (Conn, Identity) {
        let conn = Conn::new(rooms, [seed as u8; 32]);
        conn.outbox.take(); // the hello
        (conn, Identity::from_seed(seed))
    }

    fn join(
        rooms: &Rooms,
        conn: &mut Conn,
        who: &Identity,
        room: &str,
    ) -> Option<cpc_sync::protocol::signal::ServerMessage> {
        let join = ClientMessage::join(who, &hex(&conn.nonce), room);
        handle(rooms, conn, &join.to_text())
    }

    fn frames(conn: &Conn) -> Vec<Vec<u8>> {
        conn.outbox
            .take()
            .into_iter()
            .filter_map(|out| match out {
                Out::Binary(bytes) => Some(bytes),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_sealed_frame_goes_to_its_recipient_as_from_the_proved_sender() {
        let rooms = rooms();
        let room = "secret-00ff";
        let (mut a, ia) = socket(&rooms, 1);
        let (mut b, ib) = socket(&rooms, 2);
        assert_eq!(join(&rooms, &mut a, &ia, room), None);
        assert_eq!(join(&rooms, &mut b, &ib, room), None);
        a.outbox.take();
        b.outbox.take();
        let sent = address(ib.peer(), b"sealed");
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &sent),
            Ok(())
        );
        assert_eq!(frames(&b), [address(ia.peer(), b"sealed")]);
        // To nobody, too large, malformed.
        let stranger = address(PeerId(77), b"x");
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &stranger),
            Err(RelayRefusal::UnknownRecipient)
        );
        let big = vec![0; MAX_RELAYED + 1];
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &big),
            Err(RelayRefusal::TooLarge)
        );
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &[1, 2]),
            Err(RelayRefusal::Malformed)
        );
        let readings = rooms.relay_readings();
        let value = |name: &str, label: Option<&str>| {
            readings
                .iter()
                .find(|r| r.name == name && r.labels.first().map(|l| l.1.as_str()) == label)
                .map(|r| r.value)
        };
        assert_eq!(value("relayed_frames", None), Some(1));
        assert_eq!(value("relay_refused", Some("unknown_recipient")), Some(1));
        assert_eq!(value("relay_refused", Some("too_large")), Some(1));
    }

    #[test]
    fn frames_for_a_recipient_that_does_not_read_are_dropped_past_the_bound() {
        let rooms = rooms();
        let (mut a, ia) = socket(&rooms, 1);
        let (mut b, ib) = socket(&rooms, 2);
        assert_eq!(join(&rooms, &mut a, &ia, "secret-02"), None);
        assert_eq!(join(&rooms, &mut b, &ib, "secret-02"), None);
        let frame = address(ib.peer(), &vec![7; MAX_RELAYED - 8]);
        use super::super::outbox::{FRAME_BYTES, FRAME_COST};
        let fit = FRAME_BYTES / (MAX_RELAYED + FRAME_COST);
        for _ in 0..fit {
            assert_eq!(
                rooms.relay_frame(a.joined.as_ref(), &a.outbox, &frame),
                Ok(())
            );
        }
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &frame),
            Err(RelayRefusal::RecipientFull)
        );
        // What waited is there, whole.
        assert_eq!(frames(&b).len(), fit);
        b.outbox.shut();
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &frame),
            Err(RelayRefusal::UnknownRecipient),
            "a socket on its way out takes nothing"
        );
    }

    #[test]
    fn only_members_of_a_room_with_a_secret_relay() {
        let rooms = rooms();
        let (mut a, ia) = socket(&rooms, 1);
        let (mut b, ib) = socket(&rooms, 2);
        let to_b = address(ib.peer(), b"x");
        assert_eq!(
            rooms.relay_frame(None, &a.outbox, &to_b),
            Err(RelayRefusal::NotJoined)
        );
        // A room without a secret: its frames are the room peer's.
        assert_eq!(join(&rooms, &mut a, &ia, "open"), None);
        assert_eq!(join(&rooms, &mut b, &ib, "open"), None);
        assert!(!takes(a.joined.as_ref()));
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &to_b),
            Err(RelayRefusal::NotJoined)
        );
        // A socket replaced in its room relays no more.
        let room = "secret-01".to_string();
        assert_eq!(join(&rooms, &mut b, &ib, &room), None);
        assert_eq!(join(&rooms, &mut a, &ia, &room), None);
        let (mut again, _) = socket(&rooms, 1);
        assert_eq!(join(&rooms, &mut again, &ia, &room), None);
        assert_eq!(
            rooms.relay_frame(a.joined.as_ref(), &a.outbox, &to_b),
            Err(RelayRefusal::NotJoined)
        );
        assert_eq!(
            rooms.relay_frame(again.joined.as_ref(), &again.outbox, &to_b),
            Ok(())
        );
    }

    /// A frame waiting for a recipient is counted with what it holds
    /// beyond its bytes: a sender of bare addresses (8 bytes, nothing
    /// sealed after them) queued 2M frames for one recipient, ~128 MiB
    /// against the 16 MiB bound. (A helper's review.)
    #[test]
    fn frames_waiting_for_one_recipient_take_at_most_about_their_bound_in_memory() {
        let rooms = rooms();
        let (mut a, ia) = socket(&rooms, 1);
        let (mut b, ib) = socket(&rooms, 2);
        assert_eq!(join(&rooms, &mut a, &ia, "secret-03"), None);
        assert_eq!(join(&rooms, &mut b, &ib, "secret-03"), None);
        b.outbox.take();
        let empty = address(ib.peer(), b"");
        let mut queued = 0usize;
        while rooms.relay_frame(a.joined.as_ref(), &a.outbox, &empty) == Ok(()) {
            queued += 1;
        }
        // What those frames hold at the least: a queue slot each, and the
        // 8 bytes of each frame's own allocation.
        let held = queued * (std::mem::size_of::<Out>() + empty.len());
        let bound = super::super::outbox::FRAME_BYTES;
        assert!(
            held <= bound,
            "{queued} frames of {} bytes wait for one recipient: at least {} MiB held, \
             against a bound of {} MiB",
            empty.len(),
            held >> 20,
            bound >> 20
        );
    }
}
