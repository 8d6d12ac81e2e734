use super::clock::ClockSkewError;
use super::event::{EventId, Kind};
use super::value::InvalidJson;

/// Why a write of this peer's own (the app's, or a resolution it makes)
/// was refused. Messages say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("key {key:?} holds a {actual}; a {attempted} operation cannot apply to it")]
    KindMismatch {
        key: String,
        actual: Kind,
        attempted: Kind,
    },
    #[error(transparent)]
    InvalidValue(#[from] InvalidJson),
    /// The app wrote (or named as a policy prefix) a key of the namespace
    /// the room's own state lives in (see
    /// [`RESERVED_PREFIX`](crate::protocol::engine::RESERVED_PREFIX)).
    #[error("key {key:?} is reserved for room state (keys starting with \"\\u0000cpc/\"); choose another key, and set policies with setPolicy")]
    ReservedKey { key: String },
    #[error("this peer's sequence numbers are exhausted")]
    SequenceExhausted,
    #[error(
        "a write of {bytes} bytes (key and value) is over the limit of {limit}: \
         it could not travel to other peers; split the value over several keys"
    )]
    TooLarge { bytes: usize, limit: usize },
    /// This peer's running total on a counter would pass the range of a
    /// 64-bit integer (it wrapped around and changed sign).
    #[error("increment of {key:?} by {by}: this peer's total on it would pass ±2^63")]
    CounterOverflow { key: String, by: i64 },
}

/// Why an event or a message from another peer (or from our own storage)
/// was refused. The sync layer weighs each against its sender
/// ([`Refusal::points`](crate::protocol::sync::Refusal::points)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("event {id} is impossible: {reason}")]
    ImpossibleDependency { id: EventId, reason: String },
    #[error(
        "event {id} refused: {source}; it will be accepted when offered again within the skew"
    )]
    ClockSkew {
        id: EventId,
        #[source]
        source: ClockSkewError,
    },
    #[error("event {id} depends on {dependency}, more than {gap} events beyond what is known of that origin")]
    DependencyTooFar {
        id: EventId,
        dependency: EventId,
        gap: u64,
    },
    #[error("holding queue is full ({capacity} events); event {id} refused until its dependencies arrive")]
    HoldingQueueFull { id: EventId, capacity: usize },
    /// The held events' bytes are at a bound (of all held events, or of
    /// their origin's): a few events of large values or clocks must not
    /// hold what the counts allow.
    #[error("holding queue is full ({capacity} bytes of events); event {id} refused until its dependencies arrive")]
    HoldingQueueBytes { id: EventId, capacity: usize },
    #[error("event {id} differs from the event already known under that id")]
    Equivocation { id: EventId },
    /// A signer sealed two runs over some of the same events: the one
    /// taken first stays ([`crate::protocol::engine`]'s `runs`).
    #[error("the run {first}.. sealed on {id} overlaps another run of its signer's, kept here with other bounds")]
    OverlappingRun { id: EventId, first: u64 },
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("key {0:?} has no conflict to reconcile")]
    NoConflict(String),
    #[error("event {id} is from a new origin, and this room already has {limit} (the bound on distinct origins)")]
    TooManyOrigins { id: EventId, limit: usize },
    #[error("event {id} claims to be ours, beyond what we wrote: only we can write as us")]
    NotOurs { id: EventId },
    /// A remote event writes room state that no honest peer writes: a key
    /// of the reserved namespace with another kind, a value that is not a
    /// policy, or a key that holds no room state.
    #[error("event {id} refused: {reason}")]
    InvalidRoomState { id: EventId, reason: String },
    /// Answering it took a write of ours (a resolution), and that failed.
    #[error("answering it took a write of ours, which failed: {0}")]
    OwnWrite(#[from] WriteError),
}

/// Bytes of a peer's key a refusal quotes, at most.
const QUOTED_KEY: usize = 64;

/// `key` as a refusal of a peer's event quotes it: its first
/// [`QUOTED_KEY`] bytes, escaped, then `…` if there is more. A refusal's
/// text goes out to the app (`Output::Rejected`) and into the sender's
/// stats; a key of megabytes, its control characters escaped at five
/// bytes each, made it ~5 times the key.
pub fn quoted_key(key: &str) -> String {
    let start = prefix_within(key, QUOTED_KEY);
    let more = if start.len() < key.len() { "…" } else { "" };
    format!("{start:?}{more}")
}

/// The longest start of `text` of at most `max` bytes that ends between
/// characters.
pub fn prefix_within(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::quoted_key;

    #[test]
    fn a_quoted_key_is_short_and_cut_between_characters() {
        assert_eq!(quoted_key("todo:1"), "\"todo:1\"");
        let long = "é".repeat(1_000_000);
        let quoted = quoted_key(&long);
        assert_eq!(quoted, format!("{:?}…", "é".repeat(32)));
        let controls = "\u{1}".repeat(1_000_000);
        assert!(quoted_key(&controls).len() < 64 * 6 + 8);
    }
}
