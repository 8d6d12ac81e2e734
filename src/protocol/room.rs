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

impl RoomSecret {
    /// The keys of `room` with `secret`, at the default KDF cost.
    pub fn new(room: &str, secret: &str) -> Self {
        Self::with_cost(room, secret, KdfCost::DEFAULT)
    }

    pub fn with_cost(room: &str, secret: &str, cost: KdfCost) -> Self {
        let key = room_key(room, secret, cost);
        let id = derive("cpc-sync 2026 room id", &key);
        RoomSecret {
            room_id: format!("secret-{}", hex(&id[..16])),
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
/// from), both over a transcript naming both peers and both fresh nonces,
/// so it cannot be replayed on another connection or reflected back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    #[serde(deserialize_with = "super::identity::bytes::b32")]
    pub key: PublicKey,
    #[serde(deserialize_with = "super::identity::bytes::b32")]
    pub mac: [u8; 32],
    #[serde(deserialize_with = "super::identity::bytes::signature")]
    pub signature: Signature,
}

fn transcript(
    prover: PeerId,
    verifier: PeerId,
    prover_nonce: &[u8; 32],
    verifier_nonce: &[u8; 32],
) -> Vec<u8> {
    let mut t = b"cpc-sync handshake v1".to_vec();
    t.extend_from_slice(&prover.0.to_le_bytes());
    t.extend_from_slice(&verifier.0.to_le_bytes());
    t.extend_from_slice(prover_nonce);
    t.extend_from_slice(verifier_nonce);
    t
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
}

impl Handshake {
    pub fn new(me: PeerId, them: PeerId, my_nonce: [u8; 32]) -> Self {
        Handshake {
            me,
            them,
            my_nonce,
            their_nonce: None,
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
        let t = transcript(self.me, self.them, &self.my_nonce, &their_nonce);
        Some(Proof {
            key: identity.public_key(),
            mac: *blake3::keyed_hash(&room.handshake, &t).as_bytes(),
            signature: identity.sign(&t),
        })
    }

    /// Checks the peer's proof against our nonce (it must have seen it, so
    /// its nonce came first).
    pub fn check(&self, proof: &Proof, room: &RoomSecret) -> Result<(), RoomError> {
        let their_nonce = self.their_nonce.ok_or(RoomError::WrongSecret)?;
        let t = transcript(self.them, self.me, &their_nonce, &self.my_nonce);
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
        let mut a = Handshake::new(ia.peer(), ib.peer(), [1; 32]);
        let mut b = Handshake::new(ib.peer(), ia.peer(), [2; 32]);
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
        let mut a = Handshake::new(ia.peer(), ib.peer(), [1; 32]);
        let mut b = Handshake::new(ib.peer(), ia.peer(), [2; 32]);
        a.prove(b.my_nonce(), &room, &ia).unwrap();
        let proof_b = b.prove(a.my_nonce(), &room, &ib).unwrap();
        assert!(
            b.prove([9; 32], &room, &ib).is_none(),
            "one proof per connection"
        );
        // Replayed on a new connection (a new nonce of a's): refused.
        let mut a2 = Handshake::new(ia.peer(), ib.peer(), [3; 32]);
        a2.prove([2; 32], &room, &ia).unwrap();
        assert_eq!(a2.check(&proof_b, &room), Err(RoomError::WrongSecret));
        // c knows the secret but claims b's id: its signature gives it away.
        let mut c = Handshake::new(ib.peer(), ia.peer(), [2; 32]);
        let proof_c = c.prove(a.my_nonce(), &room, &ic).unwrap();
        assert_eq!(a.check(&proof_c, &room), Err(RoomError::WrongKey));
        assert_eq!(a.check(&proof_b, &room), Ok(()));
    }
}
