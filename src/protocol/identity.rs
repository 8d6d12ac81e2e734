//! A peer's identity: an Ed25519 key pair. The [`PeerId`] is derived from
//! the public key, so an event's origin names the key that must have
//! signed it, and nobody can write under another peer's id without its
//! secret key.
//!
//! The core draws no randomness: [`Identity::from_secret`] takes 32 bytes
//! the caller drew from a CSPRNG (the browser's `crypto.getRandomValues`).

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};

use super::clock::PeerId;
use crate::protocol::blake3;

/// An Ed25519 public key, as its 32-byte encoding.
pub type PublicKey = [u8; 32];

/// An Ed25519 signature, in two halves: serde has no 64-byte arrays, and it
/// travels inside serde messages (seals, handshake proofs).
pub type Signature = [[u8; 32]; 2];

/// `#[serde(deserialize_with)]` for keys, nonces, MACs and signatures: the
/// same forms as serde's own arrays, read by one loop. serde's array impl
/// unrolls 32 elements, 2 KB of wasm for each deserializer it meets.
pub(crate) mod bytes {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    struct Bytes<const N: usize>([u8; N]);

    impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Elements<const N: usize>;
            impl<'de, const N: usize> Visitor<'de> for Elements<N> {
                type Value = Bytes<N>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    write!(f, "an array of length {N}")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes<N>, A::Error> {
                    let mut out = [0u8; N];
                    for (i, byte) in out.iter_mut().enumerate() {
                        *byte = seq
                            .next_element()?
                            .ok_or_else(|| Error::invalid_length(i, &self))?;
                    }
                    Ok(Bytes(out))
                }
            }
            deserializer.deserialize_tuple(N, Elements::<N>)
        }
    }

    /// 32 bytes: a key, a nonce, a MAC, a hash.
    pub fn b32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        Bytes::<32>::deserialize(deserializer).map(|b| b.0)
    }

    /// A [`Signature`](super::Signature): two halves of 32.
    pub fn signature<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<super::Signature, D::Error> {
        <[Bytes<32>; 2]>::deserialize(deserializer).map(|[a, b]| [a.0, b.0])
    }
}

/// The peer id a public key signs for: the first 8 bytes of its blake3
/// hash. Finding a second key with a given id takes ~2^64 key generations.
pub fn peer_id_of(key: &PublicKey) -> PeerId {
    let hash = blake3::hash(key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&hash.as_bytes()[..8]);
    PeerId(u64::from_le_bytes(id))
}

/// A key pair and the peer id it signs for.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    peer: PeerId,
}

impl Identity {
    /// The identity of a 32-byte secret (random bytes, or ones stored
    /// earlier from [`Identity::secret`]).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(secret);
        let peer = peer_id_of(key.verifying_key().as_bytes());
        Identity { key, peer }
    }

    /// A deterministic identity for tests and simulations: the secret is
    /// the blake3 hash of `seed`. Never use it for a real peer.
    pub fn from_seed(seed: u64) -> Self {
        Self::from_secret(blake3::hash(&seed.to_le_bytes()).as_bytes())
    }

    pub fn peer(&self) -> PeerId {
        self.peer
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.verifying_key().to_bytes()
    }

    /// The 32 secret bytes, to store the identity.
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        let bytes = self.key.sign(message).to_bytes();
        let mut halves = [[0u8; 32]; 2];
        halves[0].copy_from_slice(&bytes[..32]);
        halves[1].copy_from_slice(&bytes[32..]);
        halves
    }
}

impl fmt::Debug for Identity {
    /// The secret key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.peer)
    }
}

/// Checks `signature` over `message` by `key`, by the rules of ZIP 215
/// ([`super::signature`]: the cofactored equation, a canonical `s`, no
/// small-order keys), which batch verification shares.
pub fn verify(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    super::signature::verify((key, message, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_id_follows_the_key() {
        let a = Identity::from_seed(1);
        let again = Identity::from_secret(&a.secret());
        assert_eq!(a.peer(), again.peer());
        assert_eq!(a.peer(), peer_id_of(&a.public_key()));
        assert_ne!(a.peer(), Identity::from_seed(2).peer());
        assert_eq!(format!("{a:?}"), format!("Identity({})", a.peer()));
    }

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let a = Identity::from_seed(1);
        let b = Identity::from_seed(2);
        let signature = a.sign(b"hello");
        assert!(verify(&a.public_key(), b"hello", &signature));
        assert!(!verify(&a.public_key(), b"hellO", &signature));
        assert!(!verify(&b.public_key(), b"hello", &signature));
        let mut bent = signature;
        bent[0][10] ^= 1;
        assert!(!verify(&a.public_key(), b"hello", &bent));
        assert!(!verify(&[0xff; 32], b"hello", &signature));
    }

    #[test]
    fn bytes_read_as_serde_arrays_do() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Ours {
            #[serde(deserialize_with = "super::bytes::b32")]
            key: PublicKey,
            #[serde(deserialize_with = "super::bytes::signature")]
            signature: Signature,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Serdes {
            key: PublicKey,
            signature: Signature,
        }
        let key: PublicKey = std::array::from_fn(|i| i as u8 * 7);
        let signature: Signature = [[0xa5; 32], std::array::from_fn(|i| 255 - i as u8)];
        let bytes = postcard::to_allocvec(&(key, signature)).unwrap();
        for len in [0, 31, 32, 95, 96, bytes.len()] {
            let ours = postcard::from_bytes::<Ours>(&bytes[..len]).ok();
            let serdes = postcard::from_bytes::<Serdes>(&bytes[..len]).ok();
            assert_eq!(
                ours.map(|o| (o.key, o.signature)),
                serdes.map(|s| (s.key, s.signature))
            );
        }
        let json = serde_json::to_string(&serde_json::json!({"key": key, "signature": signature}))
            .unwrap();
        let ours: Ours = serde_json::from_str(&json).unwrap();
        assert_eq!((ours.key, ours.signature), (key, signature));
        let short = json.replacen("[0,7,", "[7,", 1);
        let long = json.replacen("[0,7,", "[0,0,7,", 1);
        assert!(short != json && long != json);
        for bad in [short, long] {
            assert!(serde_json::from_str::<Ours>(&bad).is_err());
            assert!(serde_json::from_str::<Serdes>(&bad).is_err());
        }
    }
}
