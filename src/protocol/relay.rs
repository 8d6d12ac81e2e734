//! The relayed link: two peers of a room with a secret whose WebRTC cannot
//! connect send their sync frames through the signaling server, sealed
//! end to end so that the server forwards what it can neither read nor
//! forge.
//!
//! The server sees `[8-byte peer id][relayed message]` and nothing else:
//! it swaps the recipient's id for the sender's (the id the socket proved
//! at its join) and passes the rest on. A relayed message is
//!
//! - a **hello** `[3][key: 32][1 if an echo follows][echo: 32]?[mac: 32]`:
//!   each side's fresh ephemeral X25519 public key (and, answering, the
//!   other's), MACed with the room's relay key over the room, sender and
//!   recipient; or
//! - a **frame** `[2][counter: 8, LE][ciphertext and tag]`: a sync frame
//!   sealed with ChaCha20-Poly1305 under the link's session key, the
//!   counter of its direction as nonce, the room, sender and recipient as
//!   associated data.
//!
//! The session key is blake3 of the relay key, the room, both peer ids,
//! both public keys and their Diffie-Hellman secret. Each side derives a
//! key with each of its ephemeral secrets at most once (a secret that made
//! a key is spent; the next hello draws a fresh one), so no key is ever
//! derived twice on a side: counters never repeat under a key, and frames
//! of an older link never open on a newer one.
//!
//! The Diffie-Hellman exchange is for the room's own members: every
//! member holds the relay key, and one that is also the server saw both
//! hellos. Without it the session key was the relay key's hash of what
//! crossed the server, and such a member could read and alter the link.
//! Now one that passes the hellos along cannot make the key; one that
//! answers each side with a key of its own is on two links, each side's
//! [`channel`](RelayLink::channel) names a key the other side does not
//! see, and the sync handshake bound to it fails at both ends.
//!
//! What a lying server can do, and what it gets: it can drop or delay
//! (the link stalls; a genuine frame after a gap in the counters ends it,
//! [`RelayError::Gap`], and the peers start a new one), replay or reorder ([`Replayed`]),
//! redirect to another peer or pass a frame off as another's, carry it to
//! another room or another link ([`Forged`]), inject ([`Forged`],
//! [`ForgedHello`], [`StaleHello`]). None of these makes a page accept a
//! frame, and only a gap ends the link: a refused message is dropped and
//! the next genuine one still opens. A replayed opening hello restarts
//! the link (a fresh key), which a server that can drop could do anyway.
//! Inside the link the sync node's own handshake runs as on a data
//! channel: the relay hides frames from the server; the handshake proves
//! the peer's identity and the secret to the node.
//!
//! [`Replayed`]: RelayError::Replayed
//! [`Forged`]: RelayError::Forged
//! [`ForgedHello`]: RelayError::ForgedHello
//! [`StaleHello`]: RelayError::StaleHello

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use curve25519_dalek::montgomery::MontgomeryPoint;

use super::clock::PeerId;
use super::room::{Channel, RoomSecret};
use super::sync::wire;
use crate::protocol::blake3;

/// Bytes of the peer id in front of every relayed message.
pub const PEER_BYTES: usize = 8;
/// Largest sync frame a link seals (a frame of the sync protocol).
pub const MAX_SEALED_FRAME: usize = wire::MAX_FRAME;
/// Largest relayed message, peer id included: a sealed frame of
/// [`MAX_SEALED_FRAME`] bytes, its tag, counter and kind.
pub const MAX_RELAYED: usize = PEER_BYTES + 1 + 8 + MAX_SEALED_FRAME + 16;

/// A hello of the first relay, whose session key rested on nonces alone.
const HELLO_V1: u8 = 1;
const FRAME: u8 = 2;
/// A hello carrying an X25519 public key.
const HELLO: u8 = 3;
const HELLO_LABEL: &[u8] = b"cpc-sync relay hello v2";
const HELLO_V1_LABEL: &[u8] = b"cpc-sync relay hello v1";

/// Why a relayed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("relayed message is malformed")]
    Malformed,
    #[error("relayed hello is not from a peer with this room's secret to this peer (forged, redirected, or another room)")]
    ForgedHello,
    #[error("relayed hello answers a key this link does not use (a replay)")]
    StaleHello,
    #[error("relayed frame before the link is open")]
    NotOpen,
    #[error("relayed frame {got} came again or out of order (expecting {expected}): a replay")]
    Replayed { expected: u64, got: u64 },
    #[error(
        "relayed frames {expected} to {got} are missing: dropped on the way, the link starts over"
    )]
    Gap { expected: u64, got: u64 },
    #[error("relayed frame does not open: altered, redirected, from another room or another link")]
    Forged,
    #[error("a frame of {0} bytes is too large to relay")]
    TooLarge(usize),
    #[error("relayed hello carries a key of small order (no secret would be shared)")]
    WeakKey,
    #[error(
        "relayed hello of an earlier release (its link had no key exchange): update both pages"
    )]
    OldRelay,
}

impl RelayError {
    /// Whether the link must start over. Anything else is dropped and
    /// the link goes on: what a server injects must not cut it.
    pub fn is_fatal(&self) -> bool {
        matches!(self, RelayError::Gap { .. })
    }
}

/// Puts `peer`'s id in front of `message`: the envelope the server reads.
pub fn address(peer: PeerId, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PEER_BYTES + message.len());
    out.extend_from_slice(&peer.0.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The peer id in front of a relayed message, and the message.
pub fn unaddress(bytes: &[u8]) -> Option<(PeerId, &[u8])> {
    if bytes.len() < PEER_BYTES {
        return None;
    }
    let (id, rest) = bytes.split_at(PEER_BYTES);
    let id = u64::from_be_bytes(id.try_into().ok()?);
    Some((PeerId(id), rest))
}

/// What a received message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The link is open (again, with a fresh key, if `restarted`); send
    /// `reply` to the peer if there is one.
    Opened {
        reply: Option<Vec<u8>>,
        restarted: bool,
    },
    /// A sync frame from the peer.
    Frame(Vec<u8>),
    /// A hello that changes nothing (the peer's answer to ours, again).
    Ignored,
}

/// One side of a relayed link to one peer; sans-IO: it is fed what the
/// server forwards and randomness, and returns what to send.
pub struct RelayLink {
    relay_key: [u8; 32],
    room_id: String,
    me: PeerId,
    them: PeerId,
    /// Our ephemeral X25519 secret (random bytes, clamped in use; zeroed
    /// once it made a key) and its public key, which our hellos carry.
    mine: [u8; 32],
    public: [u8; 32],
    /// `mine` made a key: the next key needs a fresh secret.
    spent: bool,
    /// The peer's public key of the open link.
    theirs: Option<[u8; 32]>,
    key: Option<[u8; 32]>,
    sent: u64,
    expected: u64,
}

impl std::fmt::Debug for RelayLink {
    /// Keys are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RelayLink({} -> {}, open: {}, sent {}, received {})",
            self.me,
            self.them,
            self.key.is_some(),
            self.sent,
            self.expected
        )
    }
}

fn id_bytes(peer: PeerId) -> [u8; 8] {
    peer.0.to_be_bytes()
}

/// The X25519 public key of the secret `secret`.
fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*secret).to_bytes()
}

impl RelayLink {
    /// A link from `me` to `them` in `room`, with 32 fresh random bytes for
    /// its ephemeral secret; [`hello`](Self::hello) opens it.
    pub fn new(room: &RoomSecret, me: PeerId, them: PeerId, secret: [u8; 32]) -> RelayLink {
        RelayLink {
            relay_key: *room.relay_key(),
            room_id: room.room_id().to_string(),
            me,
            them,
            mine: secret,
            public: public_key(&secret),
            spent: false,
            theirs: None,
            key: None,
            sent: 0,
            expected: 0,
        }
    }

    pub fn peer(&self) -> PeerId {
        self.them
    }

    pub fn is_open(&self) -> bool {
        self.key.is_some()
    }

    /// The channel the sync handshake on this link is bound to: our public
    /// key and the peer's, once open.
    pub fn channel(&self) -> Option<Channel> {
        let theirs = self.theirs.filter(|_| self.is_open())?;
        Some(Channel::of_keys(&self.public, &theirs))
    }

    /// The opening hello: our public key, answering none.
    pub fn hello(&self) -> Vec<u8> {
        self.hello_message(None)
    }

    fn hello_mac(
        &self,
        label: &[u8],
        from: PeerId,
        to: PeerId,
        public: &[u8; 32],
        echo: Option<&[u8; 32]>,
    ) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.relay_key);
        h.update(label);
        h.update(&(self.room_id.len() as u64).to_le_bytes());
        h.update(self.room_id.as_bytes());
        h.update(&id_bytes(from));
        h.update(&id_bytes(to));
        h.update(public);
        match echo {
            Some(echo) => h.update(&[1]).update(echo),
            None => h.update(&[0]),
        };
        *h.finalize().as_bytes()
    }

    fn hello_message(&self, echo: Option<&[u8; 32]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 + 1 + 32 + 32);
        out.push(HELLO);
        out.extend_from_slice(&self.public);
        match echo {
            Some(echo) => {
                out.push(1);
                out.extend_from_slice(echo);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.hello_mac(HELLO_LABEL, self.me, self.them, &self.public, echo));
        out
    }

    /// The session key of our secret and their public key: the same on
    /// both sides (ids and public keys in the order of the ids). `None`
    /// for a public key of small order, which shares no secret.
    fn session_key(&self, theirs: &[u8; 32]) -> Option<[u8; 32]> {
        let shared = MontgomeryPoint(*theirs).mul_clamped(self.mine).to_bytes();
        if shared == [0; 32] {
            return None;
        }
        let (low, high) = if self.me < self.them {
            ((self.me, &self.public), (self.them, theirs))
        } else {
            ((self.them, theirs), (self.me, &self.public))
        };
        let mut h = blake3::Hasher::new_keyed(&self.relay_key);
        h.update(b"cpc-sync relay session v2");
        h.update(&(self.room_id.len() as u64).to_le_bytes());
        h.update(self.room_id.as_bytes());
        h.update(&id_bytes(low.0));
        h.update(&id_bytes(high.0));
        h.update(low.1);
        h.update(high.1);
        h.update(&shared);
        Some(*h.finalize().as_bytes())
    }

    /// Counter nonce of the direction `from -> to`: the two directions
    /// share the key, never a nonce.
    fn nonce(from: PeerId, to: PeerId, counter: u64) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[0] = u8::from(from > to);
        nonce[4..].copy_from_slice(&counter.to_le_bytes());
        nonce
    }

    fn aad(&self, from: PeerId, to: PeerId) -> Vec<u8> {
        let mut aad = b"cpc-sync relay frame v1".to_vec();
        aad.extend_from_slice(&(self.room_id.len() as u64).to_le_bytes());
        aad.extend_from_slice(self.room_id.as_bytes());
        aad.extend_from_slice(&id_bytes(from));
        aad.extend_from_slice(&id_bytes(to));
        aad
    }

    fn open_with(&mut self, theirs: [u8; 32], key: [u8; 32]) {
        self.key = Some(key);
        self.theirs = Some(theirs);
        // Spent: the next key takes a fresh secret, and this one, kept,
        // would give away this link's key to whoever read the memory.
        self.mine = [0; 32];
        self.spent = true;
        self.sent = 0;
        self.expected = 0;
    }

    /// Seals a sync frame for the peer.
    pub fn seal(&mut self, frame: &[u8]) -> Result<Vec<u8>, RelayError> {
        let key = self.key.ok_or(RelayError::NotOpen)?;
        if frame.len() > MAX_SEALED_FRAME {
            return Err(RelayError::TooLarge(frame.len()));
        }
        let counter = self.sent;
        let aad = self.aad(self.me, self.them);
        let nonce = Self::nonce(self.me, self.them, counter);
        let payload = Payload {
            msg: frame,
            aad: &aad,
        };
        // Encrypting into a Vec cannot fail.
        let sealed = ChaCha20Poly1305::new(Key::from_slice(&key))
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        self.sent += 1;
        let mut out = Vec::with_capacity(1 + 8 + sealed.len());
        out.push(FRAME);
        out.extend_from_slice(&counter.to_le_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// A message the server forwarded as from the peer. `fresh` draws a
    /// new random secret, when the peer starts over and ours is spent.
    pub fn receive(
        &mut self,
        message: &[u8],
        fresh: impl FnOnce() -> [u8; 32],
    ) -> Result<Received, RelayError> {
        match message.first() {
            Some(&HELLO) => self.receive_hello(&message[1..], fresh),
            Some(&FRAME) => self.receive_frame(&message[1..]).map(Received::Frame),
            // The same layout, MACed under the first relay's label: told
            // apart from a forgery before it is called an old release.
            Some(&HELLO_V1) => self
                .check_hello(&message[1..], HELLO_V1_LABEL)
                .and(Err(RelayError::OldRelay)),
            _ => Err(RelayError::Malformed),
        }
    }

    /// A hello's key and echo, once its MAC under `label` checks out.
    fn check_hello(
        &self,
        body: &[u8],
        label: &[u8],
    ) -> Result<([u8; 32], Option<[u8; 32]>), RelayError> {
        let (public, echo, mac) = match body.len() {
            65 if body[32] == 0 => (&body[..32], None, &body[33..65]),
            97 if body[32] == 1 => (&body[..32], Some(&body[33..65]), &body[65..97]),
            _ => return Err(RelayError::Malformed),
        };
        let public: [u8; 32] = public.try_into().map_err(|_| RelayError::Malformed)?;
        let echo: Option<[u8; 32]> = match echo {
            Some(e) => Some(e.try_into().map_err(|_| RelayError::Malformed)?),
            None => None,
        };
        let mac: [u8; 32] = mac.try_into().map_err(|_| RelayError::Malformed)?;
        let expected = self.hello_mac(label, self.them, self.me, &public, echo.as_ref());
        // blake3's Hash compares in constant time.
        if blake3::Hash::from(expected) != blake3::Hash::from(mac) {
            return Err(RelayError::ForgedHello);
        }
        Ok((public, echo))
    }

    fn receive_hello(
        &mut self,
        body: &[u8],
        fresh: impl FnOnce() -> [u8; 32],
    ) -> Result<Received, RelayError> {
        let (public, echo) = self.check_hello(body, HELLO_LABEL)?;
        match echo {
            // The peer starts a link: answer it, with a fresh secret if
            // ours already made a key.
            None => {
                let restarted = self.key.is_some();
                let kept = (self.mine, self.public);
                if self.spent {
                    self.mine = fresh();
                    self.public = public_key(&self.mine);
                }
                let Some(key) = self.session_key(&public) else {
                    // Our hello out, if any, still names the kept key.
                    (self.mine, self.public) = kept;
                    return Err(RelayError::WeakKey);
                };
                self.open_with(public, key);
                Ok(Received::Opened {
                    reply: Some(self.hello_message(Some(&public))),
                    restarted,
                })
            }
            Some(echo) if echo != self.public => Err(RelayError::StaleHello),
            Some(_) if self.spent => {
                if self.theirs == Some(public) {
                    Ok(Received::Ignored) // both opened at once: the same key
                } else {
                    Err(RelayError::StaleHello)
                }
            }
            Some(_) => {
                let key = self.session_key(&public).ok_or(RelayError::WeakKey)?;
                self.open_with(public, key);
                Ok(Received::Opened {
                    reply: None,
                    restarted: false,
                })
            }
        }
    }

    fn receive_frame(&mut self, body: &[u8]) -> Result<Vec<u8>, RelayError> {
        let key = self.key.ok_or(RelayError::NotOpen)?;
        if body.len() < 8 + 16 {
            return Err(RelayError::Malformed);
        }
        let (counter, sealed) = body.split_at(8);
        let got = u64::from_le_bytes(counter.try_into().map_err(|_| RelayError::Malformed)?);
        let expected = self.expected;
        if got < expected {
            return Err(RelayError::Replayed { expected, got });
        }
        let aad = self.aad(self.them, self.me);
        let nonce = Self::nonce(self.them, self.me, got);
        let payload = Payload {
            msg: sealed,
            aad: &aad,
        };
        let plain = ChaCha20Poly1305::new(Key::from_slice(&key))
            .decrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| RelayError::Forged)?;
        if got > expected {
            // Genuine, so frames before it were dropped: only then does
            // the link end (an injected counter does not open).
            return Err(RelayError::Gap { expected, got });
        }
        self.expected += 1;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests;
