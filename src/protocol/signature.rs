//! Ed25519 verification, one signature or many at once, by the rules of
//! ZIP 215.
//!
//! Checking many signatures at once is checking one random linear
//! combination of their equations: one multiscalar multiplication instead
//! of one double multiplication each, several times cheaper per signature
//! when a frame or a snapshot holds hundreds of seals. It must accept
//! exactly what checking each accepts: otherwise a signature crafted with
//! a small-order component would be taken by one peer (in one batch) and
//! refused by another, and the room would never converge while honest
//! relays were penalized for forwarding it. The cofactorless equation of
//! `ed25519_dalek`'s `verify_strict` and `verify_batch` lacks that
//! property; the cofactored one, `[8]([s]B - R - [k]A) = 0`, has it, so
//! both paths here use it. Keys of small order are refused (anyone could
//! sign for them); `s` must be canonical. Signing is unchanged: every
//! signature valid by RFC 8032 verifies here.
//!
//! The batch's random coefficients are drawn from a hash of everything
//! being verified (as `ed25519_dalek` does), so no randomness is passed in
//! and a sender cannot choose them.

use hashbrown::HashMap;
use std::cell::RefCell;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use foldhash::fast::FixedState;
use sha2::{Digest, Sha512};

use super::identity::{PublicKey, Signature};
use crate::protocol::blake3;
use crate::protocol::hashing;

/// One signature to check: the key, the signed message, the signature.
pub type Item<'a> = (&'a PublicKey, &'a [u8], &'a Signature);

const TRANSCRIPT: &str = "cpc-sync batch verification v1";

/// A signature's parts, decoded, and `k = H(R || A || M)`.
struct Parsed {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Keys decompressed lately, in slots by their first byte: a room's
/// writers' keys come again and again (a run-heavy batch has a few keys
/// and many seals), and decompressing one costs about as much as a
/// seal's share of a batch's multiplication. Only keys that decompress
/// to a point not of small order are kept; the cache is a memo of a pure
/// function of the 32 bytes, so a key another evicts is only decompressed
/// again.
const KEY_SLOTS: usize = 64;

type KeySlots = Vec<Option<(PublicKey, EdwardsPoint)>>;

thread_local! {
    static KEY_POINTS: RefCell<KeySlots> = RefCell::new(vec![None; KEY_SLOTS]);
}

/// A signer's key as a point: refused when it is not one, or of small
/// order (anyone could sign for it).
fn key_point(key: &PublicKey) -> Option<EdwardsPoint> {
    let slot = usize::from(key[0]) % KEY_SLOTS;
    let cached = KEY_POINTS.with_borrow(|slots| match slots[slot] {
        Some((k, a)) if k == *key => Some(a),
        _ => None,
    });
    if cached.is_some() {
        return cached;
    }
    let a = CompressedEdwardsY(*key).decompress()?;
    if a.is_small_order() {
        return None;
    }
    KEY_POINTS.with_borrow_mut(|slots| slots[slot] = Some((*key, a)));
    Some(a)
}

fn parse((key, message, signature): Item) -> Option<Parsed> {
    let a = key_point(key)?;
    let r = CompressedEdwardsY(signature[0]).decompress()?;
    let s = Option::from(Scalar::from_canonical_bytes(signature[1]))?;
    let mut hash = Sha512::new();
    hash.update(signature[0]);
    hash.update(key);
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    Some(Parsed { a, r, s, k })
}

/// Checks one signature.
pub fn verify(item: Item) -> bool {
    let Some(p) = parse(item) else {
        return false;
    };
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-p.a, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Checks many signatures at once: true exactly when each verifies (but
/// with probability 2^-128). An empty batch verifies.
pub fn verify_batch(items: &[Item]) -> bool {
    match items {
        [] => return true,
        [one] => return verify(*one),
        _ => {}
    }
    let Some(parsed) = items.iter().map(|i| parse(*i)).collect::<Option<Vec<_>>>() else {
        return false;
    };
    let mut transcript = blake3::Hasher::new_derive_key(TRANSCRIPT);
    for (p, (key, _, signature)) in parsed.iter().zip(items) {
        transcript.update(p.k.as_bytes());
        transcript.update(&signature[0]);
        transcript.update(&signature[1]);
        transcript.update(*key);
    }
    let mut coefficients = transcript.finalize_xof();
    // [8]( [-sum z s] B + sum [z] R + sum over keys [sum z k] A ) = 0, the
    // terms of one key summed into one point (a run-heavy frame has a few
    // writers and many seals).
    let mut b = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * parsed.len() + 1);
    let mut points = Vec::with_capacity(2 * parsed.len() + 1);
    scalars.push(Scalar::ZERO);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    let mut keys: HashMap<&PublicKey, usize, FixedState> = HashMap::with_hasher(hashing::state());
    for (p, (key, _, _)) in parsed.iter().zip(items) {
        let mut z = [0u8; 16];
        coefficients.fill(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        b -= z * p.s;
        scalars.push(z);
        points.push(p.r);
        let at = *keys.entry(*key).or_insert_with(|| {
            scalars.push(Scalar::ZERO);
            points.push(p.a);
            scalars.len() - 1
        });
        scalars[at] += z * p.k;
    }
    scalars[0] = b;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::identity::Identity;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn signed(seed: u64, message: &[u8]) -> (PublicKey, Signature) {
        let identity = Identity::from_seed(seed);
        (identity.public_key(), identity.sign(message))
    }

    #[test]
    fn honest_signatures_verify_alone_and_together() {
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; i as usize]).collect();
        // Four writers, ten signatures each: keys repeat within the batch.
        let sigs: Vec<_> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| signed(i as u64 % 4, m))
            .collect();
        let items: Vec<Item> = sigs
            .iter()
            .zip(&messages)
            .map(|((k, s), m)| (k, m.as_slice(), s))
            .collect();
        assert!(items.iter().all(|i| verify(*i)));
        assert!(verify_batch(&items));
        assert!(verify_batch(&items[..1]));
        assert!(verify_batch(&[]));
        for bad in [0, 17, 39] {
            let mut tampered = messages[bad].clone();
            tampered.push(1);
            let mut items = items.clone();
            items[bad].1 = &tampered;
            assert!(!verify(items[bad]));
            assert!(!verify_batch(&items), "one forgery among 40 ({bad})");
        }
    }

    /// A signature made with a nonce point R carrying a small-order
    /// component, by the key's owner: valid by the cofactored equation,
    /// refused by the cofactorless one (`verify_strict`), and taken by a
    /// cofactorless batch whenever its coefficient happens to kill the
    /// torsion. Here single and batch verification agree in every batch.
    #[test]
    fn a_small_order_component_gets_one_verdict_in_every_batch() {
        let identity = Identity::from_seed(5);
        let key = identity.public_key();
        let message = b"run digest";
        let hash = Sha512::digest(identity.secret());
        let mut clamped = [0u8; 32];
        clamped.copy_from_slice(&hash[..32]);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        let secret = Scalar::from_bytes_mod_order(clamped);
        let nonce = Scalar::from(0x5eed_u64);
        let r = (EdwardsPoint::mul_base(&nonce) + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        let mut k = Sha512::new();
        k.update(r);
        k.update(key);
        k.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&k.finalize().into());
        let crafted = [r, (nonce + k * secret).to_bytes()];

        assert!(
            verify((&key, message, &crafted)),
            "valid by the cofactored equation"
        );
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&crafted[0]);
        bytes[32..].copy_from_slice(&crafted[1]);
        let strict = dalek.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes));
        assert!(strict.is_err(), "refused by the cofactorless one");
        let others: Vec<(PublicKey, Signature, Vec<u8>)> = (0..24u8)
            .map(|i| {
                let m = vec![i; 3];
                let (k, s) = signed(100 + i as u64, &m);
                (k, s, m)
            })
            .collect();
        for n in 1..others.len() {
            let mut items: Vec<Item> = others[..n]
                .iter()
                .map(|(k, s, m)| (k, m.as_slice(), s))
                .collect();
            items.insert(n / 2, (&key, message, &crafted));
            assert!(verify_batch(&items), "batch of {}", n + 1);
        }
    }

    /// Keys are memoized in slots by their first byte: two keys sharing
    /// a slot take turns in it, and neither's verdicts change, alone or
    /// batched, whichever is cached; a small-order key is never kept.
    #[test]
    fn keys_sharing_a_cache_slot_keep_their_own_verdicts() {
        let first = Identity::from_seed(1);
        let slot = |key: &PublicKey| usize::from(key[0]) % KEY_SLOTS;
        let second = (2..)
            .map(Identity::from_seed)
            .find(|id| slot(&id.public_key()) == slot(&first.public_key()))
            .expect("some seed shares the slot");
        let (k1, k2) = (first.public_key(), second.public_key());
        let (s1, s2) = (first.sign(b"one"), second.sign(b"two"));
        for _ in 0..3 {
            assert!(verify((&k1, b"one", &s1)));
            assert!(verify((&k2, b"two", &s2)));
            assert!(
                !verify((&k2, b"one", &s1)),
                "one key's signature under the other"
            );
            assert!(!verify((&k1, b"two", &s2)));
            assert!(verify_batch(&[(&k1, b"one", &s1), (&k2, b"two", &s2)]));
            assert!(!verify_batch(&[(&k1, b"one", &s1), (&k1, b"two", &s2)]));
        }
        let small = EIGHT_TORSION[2].compress().to_bytes();
        assert!(!verify((&small, b"one", &s1)));
        assert!(key_point(&small).is_none());
        KEY_POINTS.with_borrow(|slots| {
            assert!(slots.iter().flatten().all(|(k, _)| *k != small));
        });
    }

    #[test]
    fn small_order_keys_and_non_canonical_scalars_are_refused() {
        let (key, signature) = signed(9, b"m");
        let small = EIGHT_TORSION[2].compress().to_bytes();
        assert!(!verify((&small, b"m", &signature)));
        let mut high_s = signature;
        high_s[1][31] |= 0xf0;
        assert!(!verify((&key, b"m", &high_s)));
        assert!(!verify_batch(&[
            (&key, b"m", &signature),
            (&key, b"m", &high_s)
        ]));
    }
}
