//! Room secrets: what a room's peers derive from the secret they share.
//!
//! - the **room id** the signaling server and the BroadcastChannel see, an
//!   opaque hash of the room name and the secret;
//! - the **signal key** that encrypts every signaling payload (SDP offers,
//!   answers, ICE candidates) with ChaCha20-Poly1305, so the server relays
//!   what it cannot read or forge;
//! - the **handshake key** with which two peers prove, on a fresh data
//!   channel and before anything else crosses it, that each knows the
//!   secret ([`Handshake`]);
//! - the **relay key** under which two peers whose WebRTC fails seal the
//!   frames the signaling server forwards between them
//!   ([`RelayLink`](super::relay::RelayLink)).
//!
//! The keys are blake3 `derive_key` outputs of one room key, which is
//! Argon2id of the secret salted by the room name ([`KdfCost`]): whoever
//! sees the room id can still test guesses offline, but each guess costs
//! the KDF (about 90 ms in a browser; BENCHMARKS.md), not one hash. A
//! secret should still be long and random (the page makes 128-bit ones).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use super::clock::PeerId;
use super::identity::{self, peer_id_of, Identity, PublicKey, Signature};
use crate::protocol::blake3;

/// Why a signaling payload or a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("signal is not hex of a nonce and a ciphertext")]
    Encoding,
    #[error("signal does not decrypt with this room's secret (another secret, or altered)")]
    Decrypt,
    #[error("the peer does not know the room secret")]
    WrongSecret,
    #[error("the peer's handshake is not signed by the key of its id")]
    WrongKey,
    #[error(
        "the peer's handshake was made for another connection than ours \
         (someone between us passed it along)"
    )]
    OtherChannel,
}

/// The keys of one room with a secret.
#[derive(Clone)]
pub struct RoomSecret {
    room_id: String,
    signal: [u8; 32],
    handshake: [u8; 32],
    relay: [u8; 32],
}

impl std::fmt::Debug for RoomSecret {
    /// Keys are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoomSecret({})", self.room_id)
    }
}

/// What deriving a room key from its secret costs (Argon2id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfCost {
    pub memory_kib: u32,
    pub passes: u32,
}

impl KdfCost {
    /// OWASP's Argon2id memory (19 MiB, 1 lane) with 3 passes instead of
    /// its minimum 2: about 90 ms a guess in Chromium's wasm
    /// (BENCHMARKS.md). More memory would cost as much time per guess, but
    /// a wasm heap never shrinks: every page of the room would keep it.
    pub const DEFAULT: KdfCost = KdfCost {
        memory_kib: 19 * 1024,
        passes: 3,
    };
    /// For tests and simulations that build many rooms: no protection.
    pub const TEST: KdfCost = KdfCost {
        memory_kib: 64,
        passes: 1,
    };
}

/// Argon2id of the secret, salted by the room name: the room key.
fn room_key(room: &str, secret: &str, cost: KdfCost) -> [u8; 32] {
    let mut salt = blake3::Hasher::new_derive_key("cpc-sync 2026 room salt");
    salt.update(room.as_bytes());
    let salt = salt.finalize();
    let mut key = [0u8; 32];
    let argon = argon2::Params::new(cost.memory_kib.max(8), cost.passes.max(1), 1, Some(32)).map(
        |params| argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
    );
    let hashed = argon
        .and_then(|a| a.hash_password_into(secret.as_bytes(), &salt.as_bytes()[..16], &mut key));
    if hashed.is_err() {
        // Only out-of-range parameters fail, and `max` keeps them in range.
        // Were it to happen, the key must still come from the secret (a
        // fast hash of it), never be one key shared by every room.
        let mut fast = blake3::Hasher::new_keyed(salt.as_bytes());
        fast.update(secret.as_bytes());
        key = *fast.finalize().as_bytes();
    }
    key
}

fn derive(context: &str, room_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(context, room_key)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    // Hex digits only: `from_str_radix` also takes a sign, so `+a` would
    // read as `0a`, and an altered text as the same bytes.
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// How the id of a room with a secret starts (an opaque id follows):
/// a room without one is not named so.
pub const SECRET_ROOM_PREFIX: &str = "secret-";

impl RoomSecret {
    /// The keys of `room` with `secret`, at the default KDF cost.
    pub fn new(room: &str, secret: &str) -> Self {
        Self::with_cost(room, secret, KdfCost::DEFAULT)
    }

    pub fn with_cost(room: &str, secret: &str, cost: KdfCost) -> Self {
        let key = room_key(room, secret, cost);
        let id = derive("cpc-sync 2026 room id", &key);
        RoomSecret {
            room_id: format!("{SECRET_ROOM_PREFIX}{}", hex(&id[..16])),
            signal: derive("cpc-sync 2026 signal key", &key),
            handshake: derive("cpc-sync 2026 handshake key", &key),
            relay: derive("cpc-sync 2026 relay key", &key),
        }
    }

    /// What a sealed signal is bound to: this room, its sender and its
    /// recipient, so a server can neither replay it in another room nor
    /// redirect it to another peer or pass it off as another's.
    pub(crate) fn associated_data(&self, from: &str, to: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + from.len() + to.len());
        for part in [self.room_id.as_str(), from, to] {
            aad.extend_from_slice(&(part.len() as u64).to_le_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }

    /// The key relayed links are sealed under (`relay.rs`).
    pub(crate) fn relay_key(&self) -> &[u8; 32] {
        &self.relay
    }

    /// The name the room goes by outside its peers.
    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// Encrypts a signaling payload from `from` to `to`: hex of `nonce ||
    /// ciphertext`. The 12-byte nonce must never repeat under this key:
    /// draw it at random.
    pub fn seal_signal(&self, plaintext: &[u8], nonce: [u8; 12], from: &str, to: &str) -> String {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.signal));
        let aad = self.associated_data(from, to);
        let payload = Payload {
            msg: plaintext,
            aad: &aad,
        };
        // Encrypting into a Vec cannot fail.
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = hex(&nonce);
        out.push_str(&hex(&ciphertext));
        out
    }

    /// Decrypts what [`seal_signal`](Self::seal_signal) made with this key,
    /// from `from` to `to` (a payload relayed as from another peer, or to
    /// another, does not open).
    pub fn open_signal(&self, text: &str, from: &str, to: &str) -> Result<Vec<u8>, RoomError> {
        let bytes = unhex(text).ok_or(RoomError::Encoding)?;
        if bytes.len() < 12 + 16 {
            return Err(RoomError::Encoding);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let aad = self.associated_data(from, to);
        let payload = Payload {
            msg: ciphertext,
            aad: &aad,
        };
        ChaCha20Poly1305::new(Key::from_slice(&self.signal))
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| RoomError::Decrypt)
    }
}

/// The handshake's second message: proof of the secret (a MAC keyed by it)
/// and of the identity (a signature by the key the prover's id derives
/// from), both over a transcript naming both peers, both fresh nonces and
/// the connection as the prover sees it ([`Channel`]), so it cannot be
/// replayed on another connection, reflected back, or passed along by
/// someone who holds a connection to each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    #[serde(deserialize_with = "super::identity::bytes::b32")]
    pub key: PublicKey,
    #[serde(deserialize_with = "super::identity::bytes::b32")]
    pub mac: [u8; 32],
    #[serde(deserialize_with = "super::identity::bytes::signature")]
    pub signature: Signature,
    /// The connection the proof was made for: [`Channel::id`] of the
    /// prover's view.
    #[serde(deserialize_with = "super::identity::bytes::b32")]
    pub channel: [u8; 32],
}

fn transcript(
    prover: PeerId,
    verifier: PeerId,
    prover_nonce: &[u8; 32],
    verifier_nonce: &[u8; 32],
    channel: &[u8; 32],
) -> Vec<u8> {
    let mut t = b"cpc-sync handshake v2".to_vec();
    t.extend_from_slice(&prover.0.to_le_bytes());
    t.extend_from_slice(&verifier.0.to_le_bytes());
    t.extend_from_slice(prover_nonce);
    t.extend_from_slice(verifier_nonce);
    t.extend_from_slice(channel);
    t
}

/// What one end of a connection sees of the channel under it, for the
/// handshake to be bound to: a WebRTC data channel's DTLS certificate
/// fingerprints, its own and the other end's, as their session
/// descriptions name them (the browser's DTLS checks the other end's
/// certificate against the fingerprint; no one can make a certificate of
/// another's fingerprint).
///
/// Without it a member who held a connection to each of two others,
/// under the other's id (a signaling server that is a member too: it
/// routes every offer, and the room's key seals them), could pass
/// their handshakes along and then sit between them: read what they send,
/// drop some of it, and put junk in that each would blame on the other.
/// With it, each end's proof names fingerprints the far end does not see
/// (the one in the middle has a certificate of its own on each side), and
/// the handshake fails ([`RoomError::OtherChannel`]).
///
/// A relayed link is bound to the ephemeral X25519 keys its two ends
/// exchanged ([`Channel::of_keys`]), and the link to the room's server
/// peer over the signaling socket is [`Channel::unbound`] (that server is
/// the far end of its own socket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    mine: String,
    theirs: String,
}

/// The longest fingerprint read from a description (sha-512's is 128
/// hex digits and 63 colons); a description with a longer one binds
/// nothing (no browser makes one).
const MAX_FINGERPRINT: usize = 256;

/// The most distinct fingerprints read from one description (RFC 8122
/// lets a certificate be named under several hash functions; browsers
/// name it once per section, under one).
const MAX_FINGERPRINTS: usize = 8;

impl Channel {
    /// A link under no channel the handshake can name.
    pub fn unbound() -> Channel {
        Channel::default()
    }

    /// The channel of a WebRTC connection: every DTLS fingerprint the
    /// local description names (`mine`) and every one the remote names
    /// (`theirs`).
    ///
    /// Every one, not the first: the browser checks the far end's
    /// certificate against the fingerprint of the section it uses, and
    /// whoever forwards descriptions could put another before it. With all
    /// of them bound, `theirs` must name exactly the fingerprints the far
    /// end put in its own description.
    ///
    /// `None` when either names none, or one that cannot be read: the
    /// connection cannot be bound, and must not be taken as unbound (two
    /// unbound ends agree), so it is closed.
    pub fn from_sdp(local: &str, remote: &str) -> Option<Channel> {
        Some(Channel {
            mine: fingerprints(local)?,
            theirs: fingerprints(remote)?,
        })
    }

    /// The channel of a link keyed by an exchange of ephemeral public
    /// keys (the relayed link's X25519): ours, and the far end's as we
    /// received it.
    pub fn of_keys(mine: &[u8; 32], theirs: &[u8; 32]) -> Channel {
        Channel {
            mine: format!("x25519 {}", hex(mine)),
            theirs: format!("x25519 {}", hex(theirs)),
        }
    }

    pub fn is_bound(&self) -> bool {
        *self != Channel::default()
    }

    /// The id of the channel as seen by `prover`, whose own end is
    /// `prover` and whose far end is `verifier` (each view names both ends,
    /// in the prover's order: the two ends' views of one connection give
    /// the same id for the same prover).
    fn id(prover: &str, verifier: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("cpc-sync 2026 handshake channel");
        for end in [prover, verifier] {
            h.update(&(end.len() as u64).to_le_bytes());
            h.update(end.as_bytes());
        }
        *h.finalize().as_bytes()
    }
}

/// Every `a=fingerprint:` of a session description, each with its
/// algorithm in lower case and its hex in upper case (RFC 8122 allows
/// either case), sorted and without repeats, one a line. `None` if there
/// is none, or any is malformed or longer than [`MAX_FINGERPRINT`], or
/// there are more than [`MAX_FINGERPRINTS`].
fn fingerprints(sdp: &str) -> Option<String> {
    let mut prints = Vec::new();
    for line in sdp.lines() {
        let Some(line) = line.trim().strip_prefix("a=fingerprint:") else {
            continue;
        };
        let (algorithm, hex) = line.trim().split_once(' ')?;
        let hex = hex.trim();
        if algorithm.is_empty() || hex.is_empty() {
            return None;
        }
        let print = format!(
            "{} {}",
            algorithm.to_ascii_lowercase(),
            hex.to_ascii_uppercase()
        );
        if print.len() > MAX_FINGERPRINT {
            return None;
        }
        if !prints.contains(&print) {
            if prints.len() == MAX_FINGERPRINTS {
                return None;
            }
            prints.push(print);
        }
    }
    prints.sort_unstable();
    (!prints.is_empty()).then(|| prints.join("\n"))
}

/// One side of the handshake on one connection: both sides send a fresh
/// nonce (`Hello`); each answers the other's nonce with a [`Proof`]; each
/// checks the other's. Nothing else is sent or accepted until then.
#[derive(Debug, Clone)]
pub struct Handshake {
    me: PeerId,
    them: PeerId,
    my_nonce: [u8; 32],
    their_nonce: Option<[u8; 32]>,
    /// The channel's id as we prove it (our end first), and as the other
    /// end's proof must name it (its end first).
    ours: [u8; 32],
    expected: [u8; 32],
}

impl Handshake {
    pub fn new(me: PeerId, them: PeerId, my_nonce: [u8; 32], channel: &Channel) -> Self {
        Handshake {
            me,
            them,
            my_nonce,
            their_nonce: None,
            ours: Channel::id(&channel.mine, &channel.theirs),
            expected: Channel::id(&channel.theirs, &channel.mine),
        }
    }

    pub fn my_nonce(&self) -> [u8; 32] {
        self.my_nonce
    }

    /// Takes the peer's nonce and returns our proof for it. A second nonce
    /// on one connection is refused (`None`): one proof per connection.
    pub fn prove(
        &mut self,
        their_nonce: [u8; 32],
        room: &RoomSecret,
        identity: &Identity,
    ) -> Option<Proof> {
        if self.their_nonce.is_some() {
            return None;
        }
        self.their_nonce = Some(their_nonce);
        let t = transcript(self.me, self.them, &self.my_nonce, &their_nonce, &self.ours);
        Some(Proof {
            key: identity.public_key(),
            mac: *blake3::keyed_hash(&room.handshake, &t).as_bytes(),
            signature: identity.sign(&t),
            channel: self.ours,
        })
    }

    /// Checks the peer's proof against our nonce (it must have seen it, so
    /// its nonce came first), then that it was made for this connection:
    /// the secret and the key first, so that a stranger is told apart from
    /// a member's proof passed along.
    pub fn check(&self, proof: &Proof, room: &RoomSecret) -> Result<(), RoomError> {
        let their_nonce = self.their_nonce.ok_or(RoomError::WrongSecret)?;
        let t = transcript(
            self.them,
            self.me,
            &their_nonce,
            &self.my_nonce,
            &proof.channel,
        );
        let expected = blake3::keyed_hash(&room.handshake, &t);
        // blake3's Hash compares in constant time.
        if expected != blake3::Hash::from(proof.mac) {
            return Err(RoomError::WrongSecret);
        }
        if peer_id_of(&proof.key) != self.them
            || !identity::verify(&proof.key, &t, &proof.signature)
        {
            return Err(RoomError::WrongKey);
        }
        // Fingerprints are public: no need to compare in constant time.
        if proof.channel != self.expected {
            return Err(RoomError::OtherChannel);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn room_keys_come_from_argon2id_of_the_secret() {
        let cost = KdfCost::TEST;
        let a = RoomSecret::with_cost("r", "k", cost);
        assert_eq!(a.room_id(), RoomSecret::with_cost("r", "k", cost).room_id());
        assert_ne!(
            a.room_id(),
            RoomSecret::with_cost("r", "k2", cost).room_id()
        );
        assert_ne!(
            a.room_id(),
            RoomSecret::with_cost("r2", "k", cost).room_id()
        );
        // The cost is part of the key: a cheaper KDF is another room.
        assert_ne!(a.room_id(), RoomSecret::new("r", "k").room_id());
        // Known answer: the room key is Argon2id(secret, salt(room)).
        let salt = blake3::Hasher::new_derive_key("cpc-sync 2026 room salt")
            .update(b"r")
            .finalize();
        let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
        let mut key = [0u8; 32];
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(b"k", &salt.as_bytes()[..16], &mut key)
            .unwrap();
        let id = blake3::derive_key("cpc-sync 2026 room id", &key);
        assert_eq!(a.room_id(), format!("secret-{}", hex(&id[..16])));
    }

    use super::*;

    #[test]
    fn the_room_id_hides_the_room_and_depends_on_the_secret() {
        let a = RoomSecret::with_cost("team", "s3cret-long-random", KdfCost::TEST);
        assert!(!a.room_id().contains("team"));
        assert_eq!(
            a.room_id(),
            RoomSecret::with_cost("team", "s3cret-long-random", KdfCost::TEST).room_id()
        );
        assert_ne!(
            a.room_id(),
            RoomSecret::with_cost("team", "other", KdfCost::TEST).room_id()
        );
        assert_ne!(
            a.room_id(),
            RoomSecret::with_cost("team2", "s3cret-long-random", KdfCost::TEST).room_id()
        );
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn signals_open_only_with_the_same_secret_and_unaltered() {
        let a = RoomSecret::with_cost("r", "k1", KdfCost::TEST);
        let sealed = a.seal_signal(b"v=0 offer", [7; 12], "a", "b");
        assert!(!sealed.contains("offer"));
        assert_eq!(a.open_signal(&sealed, "a", "b").unwrap(), b"v=0 offer");
        assert_eq!(
            RoomSecret::with_cost("r", "k2", KdfCost::TEST).open_signal(&sealed, "a", "b"),
            Err(RoomError::Decrypt)
        );
        let mut bent = sealed.clone().into_bytes();
        let last = bent.len() - 1;
        bent[last] = if bent[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            a.open_signal(std::str::from_utf8(&bent).unwrap(), "a", "b"),
            Err(RoomError::Decrypt)
        );
        assert_eq!(a.open_signal("zz", "a", "b"), Err(RoomError::Encoding));
        assert_eq!(a.open_signal("", "a", "b"), Err(RoomError::Encoding));
    }

    fn pair(secret_a: &str, secret_b: &str) -> (Result<(), RoomError>, Result<(), RoomError>) {
        let (ia, ib) = (Identity::from_seed(1), Identity::from_seed(2));
        let (ra, rb) = (
            RoomSecret::with_cost("r", secret_a, KdfCost::TEST),
            RoomSecret::with_cost("r", secret_b, KdfCost::TEST),
        );
        let mut a = Handshake::new(ia.peer(), ib.peer(), [1; 32], &Channel::unbound());
        let mut b = Handshake::new(ib.peer(), ia.peer(), [2; 32], &Channel::unbound());
        let proof_a = a.prove(b.my_nonce(), &ra, &ia).unwrap();
        let proof_b = b.prove(a.my_nonce(), &rb, &ib).unwrap();
        (a.check(&proof_b, &ra), b.check(&proof_a, &rb))
    }

    #[test]
    fn peers_with_the_secret_pass_and_others_do_not() {
        assert_eq!(pair("k", "k"), (Ok(()), Ok(())));
        assert_eq!(
            pair("k", "x"),
            (Err(RoomError::WrongSecret), Err(RoomError::WrongSecret))
        );
    }

    #[test]
    fn a_proof_does_not_carry_over_to_another_connection_or_peer() {
        let (ia, ib, ic) = (
            Identity::from_seed(1),
            Identity::from_seed(2),
            Identity::from_seed(3),
        );
        let room = RoomSecret::with_cost("r", "k", KdfCost::TEST);
        let mut a = Handshake::new(ia.peer(), ib.peer(), [1; 32], &Channel::unbound());
        let mut b = Handshake::new(ib.peer(), ia.peer(), [2; 32], &Channel::unbound());
        a.prove(b.my_nonce(), &room, &ia).unwrap();
        let proof_b = b.prove(a.my_nonce(), &room, &ib).unwrap();
        assert!(
            b.prove([9; 32], &room, &ib).is_none(),
            "one proof per connection"
        );
        // Replayed on a new connection (a new nonce of a's): refused.
        let mut a2 = Handshake::new(ia.peer(), ib.peer(), [3; 32], &Channel::unbound());
        a2.prove([2; 32], &room, &ia).unwrap();
        assert_eq!(a2.check(&proof_b, &room), Err(RoomError::WrongSecret));
        // c knows the secret but claims b's id: its signature gives it away.
        let mut c = Handshake::new(ib.peer(), ia.peer(), [2; 32], &Channel::unbound());
        let proof_c = c.prove(a.my_nonce(), &room, &ic).unwrap();
        assert_eq!(a.check(&proof_c, &room), Err(RoomError::WrongKey));
        assert_eq!(a.check(&proof_b, &room), Ok(()));
    }

    fn views(a: &Channel, b: &Channel) -> (Result<(), RoomError>, Result<(), RoomError>) {
        let (ia, ib) = (Identity::from_seed(1), Identity::from_seed(2));
        let room = RoomSecret::with_cost("r", "k", KdfCost::TEST);
        let mut ha = Handshake::new(ia.peer(), ib.peer(), [1; 32], a);
        let mut hb = Handshake::new(ib.peer(), ia.peer(), [2; 32], b);
        let proof_a = ha.prove(hb.my_nonce(), &room, &ia).unwrap();
        let proof_b = hb.prove(ha.my_nonce(), &room, &ib).unwrap();
        (ha.check(&proof_b, &room), hb.check(&proof_a, &room))
    }

    fn sdp(fingerprint: &str) -> String {
        format!("v=0\r\ns=-\r\na=fingerprint:{fingerprint}\r\nm=application 9 UDP/DTLS/SCTP\r\n")
    }

    fn dtls(mine: &str, theirs: &str) -> Channel {
        Channel::from_sdp(&sdp(mine), &sdp(theirs)).unwrap()
    }

    #[test]
    fn a_proof_holds_only_on_the_connection_both_ends_see() {
        let (a, b) = ("sha-256 0A:1B", "sha-256 2C:3D");
        assert_eq!(views(&dtls(a, b), &dtls(b, a)), (Ok(()), Ok(())));
        assert_eq!(
            views(&Channel::unbound(), &Channel::unbound()),
            (Ok(()), Ok(()))
        );
        // Someone between them, with a certificate of its own each way.
        let (m1, m2) = ("sha-256 EE:01", "sha-256 EE:02");
        let other = Err(RoomError::OtherChannel);
        assert_eq!(
            views(&dtls(a, m1), &dtls(b, m2)),
            (other.clone(), other.clone())
        );
        // Even with the right certificate at one end.
        assert_eq!(
            views(&dtls(a, b), &dtls(b, m2)),
            (other.clone(), other.clone())
        );
        assert_eq!(
            views(&dtls(a, b), &Channel::unbound()),
            (other.clone(), other)
        );
        // A proof whose channel was changed on the way: its MAC breaks.
        let (ia, ib) = (Identity::from_seed(1), Identity::from_seed(2));
        let room = RoomSecret::with_cost("r", "k", KdfCost::TEST);
        let mut ha = Handshake::new(ia.peer(), ib.peer(), [1; 32], &dtls(a, b));
        let mut hb = Handshake::new(ib.peer(), ia.peer(), [2; 32], &dtls(b, m2));
        ha.prove(hb.my_nonce(), &room, &ia).unwrap();
        let mut proof_b = hb.prove(ha.my_nonce(), &room, &ib).unwrap();
        proof_b.channel = Channel::id(b, a);
        assert_eq!(ha.check(&proof_b, &room), Err(RoomError::WrongSecret));
    }

    #[test]
    fn every_fingerprint_is_read_from_a_description_in_either_case() {
        let chromium = "v=0\r\no=- 46 2 IN IP4 127.0.0.1\r\na=group:BUNDLE 0\r\n\
                        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                        a=fingerprint:sha-256 4F:A0:1c\r\na=setup:actpass\r\n";
        let firefox = "v=0\na=fingerprint:SHA-256 4f:a0:1C\n";
        assert_eq!(fingerprints(chromium).as_deref(), Some("sha-256 4F:A0:1C"));
        assert_eq!(fingerprints(chromium), fingerprints(firefox));
        // One certificate named in each section, or under two hashes.
        let sections = format!("{firefox}m=application\na=fingerprint:sha-256 4F:A0:1C\n");
        assert_eq!(fingerprints(&sections), fingerprints(firefox));
        let two = format!("{chromium}a=fingerprint:sha-1 00:11\r\n");
        assert_eq!(
            fingerprints(&two).as_deref(),
            Some("sha-1 00:11\nsha-256 4F:A0:1C")
        );
        // Nothing read is nothing bound: the connection is not taken.
        assert_eq!(fingerprints("v=0\r\ns=-\r\n"), None);
        assert_eq!(
            fingerprints(&format!("{chromium}a=fingerprint:sha-256\r\n")),
            None
        );
        assert_eq!(Channel::from_sdp(chromium, "v=0"), None);
        let long = format!("{chromium}a=fingerprint:sha-256 {}\r\n", "AB:".repeat(100));
        assert_eq!(fingerprints(&long), None);
        let many: String = (0..=MAX_FINGERPRINTS)
            .map(|i| format!("a=fingerprint:sha-256 {i:02X}\n"))
            .collect();
        assert_eq!(fingerprints(&many), None);
        assert!(Channel::from_sdp(chromium, firefox).unwrap().is_bound());
        assert!(!Channel::unbound().is_bound());
    }

    /// Whoever forwards the descriptions (a signaling server that is a
    /// member) gives each end the other's fingerprint first and its own in
    /// the section the browser's DTLS checks. Each end's view of the far
    /// end then names a certificate the far end does not have.
    #[test]
    fn a_fingerprint_slipped_in_beside_the_far_ends_is_found_out() {
        let (a, b) = ("sha-256 0A:1B", "sha-256 2C:3D");
        let (m1, m2) = ("sha-256 EE:01", "sha-256 EE:02");
        let forged = |honest: &str, own: &str| {
            format!(
                "v=0\r\na=fingerprint:{honest}\r\nm=application 9 UDP/DTLS/SCTP\r\n\
                 a=fingerprint:{own}\r\n"
            )
        };
        let at_a = Channel::from_sdp(&sdp(a), &forged(b, m1)).unwrap();
        let at_b = Channel::from_sdp(&sdp(b), &forged(a, m2)).unwrap();
        let other = Err(RoomError::OtherChannel);
        assert_eq!(views(&at_a, &at_b), (other.clone(), other));
    }
}
