use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A peer's identity: 64 bits, shown as 16 hex digits.
///
/// Binary encodings carry it as 8 fixed bytes (a random id would take 9-10
/// bytes as a varint); JSON carries the hex string, so it survives JavaScript's
/// 53-bit numbers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct PeerId(pub u64);

/// Hashed as one 128-bit word, the id in its low half: with the tables'
/// hasher (foldhash) the same value as the derived hash, which gathers
/// its `u64` into that word before its one multiply, but without the
/// 128-bit shifts the size-optimized wasm makes library calls of (peer
/// and event ids key the holding queue's and the log's tables).
impl std::hash::Hash for PeerId {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from(self.0));
    }
}

/// Ids spread evenly over 64 bits (hashes of keys, or random): a large
/// clock looks one up where its value puts it. Not in the wasm: there
/// C1.2's page thread was 5-7% slower for it in V8 (three alternating
/// rounds; why was not looked into), and the wasm 1.2 KB larger gzipped;
/// natively it took 8-10% off (2026-12-06, BENCHMARKS).
///
/// In both, a lookup tries first where the last one ended (`AGAIN`): an
/// event's origin is looked up in the version vector several times in a
/// row (is it new, its bound, then observed).
#[cfg(not(target_arch = "wasm32"))]
impl crate::protocol::blocks::Place for PeerId {
    #[inline]
    fn place(&self) -> Option<u64> {
        Some(self.0)
    }

    const AGAIN: bool = true;
}

#[cfg(target_arch = "wasm32")]
impl crate::protocol::blocks::Place for PeerId {
    const AGAIN: bool = true;
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A string that is not 1 to 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer id {0:?} is not 1 to 16 hex digits")]
pub struct ParsePeerIdError(pub String);

impl FromStr for PeerId {
    type Err = ParsePeerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParsePeerIdError(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(PeerId)
            .map_err(|_| ParsePeerIdError(s.to_string()))
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.to_le_bytes().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 8]>::deserialize(deserializer).map(|b| PeerId(u64::from_le_bytes(b)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PeerId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<PeerId>(), Ok(id));
        assert!("xyz".parse::<PeerId>().is_err());
        assert!("".parse::<PeerId>().is_err());
        assert!("11112222333344445".parse::<PeerId>().is_err());
    }

    #[test]
    fn binary_form_is_eight_bytes() {
        let bytes = postcard::to_allocvec(&PeerId(u64::MAX)).unwrap();
        assert_eq!(bytes.len(), 8);
        assert_eq!(
            postcard::from_bytes::<PeerId>(&bytes).unwrap(),
            PeerId(u64::MAX)
        );
        let json = serde_json::to_string(&PeerId(255)).unwrap();
        assert_eq!(json, "\"00000000000000ff\"");
    }
}
