//! The binary forms of events: runs in columns ([`events`]), used by the
//! wire, storage and snapshots alike; the content bytes seals sign and
//! hashes cover ([`content`]); and the previous forms kept to migrate what
//! a page stored before ([`legacy`]). [`read`] reads postcard's forms by
//! hand (the wire's message bodies, the previous forms).

pub mod content;
pub mod events;
mod key_table;
pub mod legacy;
pub mod read;
mod runs;
pub(crate) mod varint;

pub use events::{Batch, FORMAT};
pub use key_table::KeyWords;

/// Why bytes did not decode as a batch of events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("event batch format {0} is not supported (this build reads formats 1 to {FORMAT})")]
    Format(u8),
    #[error("event batch column {0} ends early")]
    Truncated(&'static str),
    #[error("event batch column {0} has bytes left over")]
    Trailing(&'static str),
    #[error("event batch column {0} holds a varint beyond 64 bits")]
    Varint(&'static str),
    #[error("{0} holds a varint wider than its 32-bit field")]
    Wide(&'static str),
    #[error("{column} holds the unknown variant {index}")]
    Variant { column: &'static str, index: u64 },
    #[error("event batch column {column} counts {count} items; at most {limit} fit")]
    Count {
        column: &'static str,
        count: u64,
        limit: u64,
    },
    #[error("event batch column {column} holds the unknown tag {tag:#04x}")]
    Tag { column: &'static str, tag: u8 },
    #[error("event batch column {column} refers to entry {index}, which it does not have")]
    Index { column: &'static str, index: u64 },
    #[error("event batch column {0} holds text that is not UTF-8")]
    Utf8(&'static str),
    #[error("event batch holds a value that is not JSON: {0}")]
    Json(String),
    #[error("event batch column {0} holds a clock not sorted by peer, or with a zero entry")]
    Clock(&'static str),
    #[error("event batch is invalid: {0}")]
    Invalid(&'static str),
    /// More events than the reader takes ([`events::decode_at_most`]):
    /// refused before any is decoded.
    #[error("event batch holds {count} events; at most {limit} are taken here")]
    TooManyEvents { count: u64, limit: u64 },
}

/// `#[serde(with = "codec::serde_events")]` on a `Vec<P2PEvent>`: a batch
/// (bytes) in binary serializers, the events one by one in readable ones
/// (JSON keeps the spec's shape).
pub mod serde_events {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::events;
    use crate::protocol::clock::VectorClock;
    use crate::protocol::event::P2PEvent;

    pub fn serialize<S: Serializer>(events: &[P2PEvent], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            events.serialize(serializer)
        } else {
            serializer.serialize_bytes(&events::encode(events, &VectorClock::new()))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<P2PEvent>, D::Error> {
        if deserializer.is_human_readable() {
            return Vec::deserialize(deserializer);
        }
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<P2PEvent>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event batch")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
                let batch = events::decode(bytes).map_err(E::custom)?;
                if !batch.clock.is_empty() {
                    return Err(E::custom("a message's event batch carries a clock"));
                }
                Ok(batch.events)
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}
