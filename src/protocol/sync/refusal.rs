//! Why something a peer sent was refused, and what it costs the peer.
//!
//! Every refusal is counted in the peer's session, reported as
//! [`Output::Rejected`](super::Output::Rejected), and weighs
//! [`points`](Refusal::points) toward the connection's penalty limit
//! ([`PENALTY_LIMIT`](super::PENALTY_LIMIT)): only what no honest peer sends
//! weighs anything.

use super::mesh::MAX_SHUFFLE;
use super::node::MAX_ANNOUNCED;
use super::presence::PresenceError;
use super::wire::WireError;
use crate::protocol::clock::PeerId;
use crate::protocol::error::ReceiveError;
use crate::protocol::room::RoomError;
use crate::protocol::seal::SealError;
use crate::protocol::snapshot::SnapshotError;

/// Penalty points of a forged or altered run, or of state that lies: four
/// of them and the peer is cut off.
pub const FORGERY_POINTS: u32 = 25;
/// A run with events no seal covers, a seal whose run is not all there, or
/// state nobody asked for: what an honest sender never sends, but no
/// forgery either.
pub const UNSEALED_POINTS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A frame that does not decode.
    #[error(transparent)]
    Frame(#[from] WireError),
    /// An event the engine refused.
    #[error(transparent)]
    Event(#[from] ReceiveError),
    /// A run whose seal does not verify.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A snapshot or a Merkle leaf's state that does not verify, or that
    /// nobody asked for.
    #[error(transparent)]
    State(#[from] SnapshotError),
    /// The room handshake failed: the connection is closed.
    #[error("room handshake failed: {0}")]
    Handshake(#[from] RoomError),
    #[error("room handshake failed: it spoke before proving it knows the room secret")]
    SpokeBeforeProof,
    #[error("a second handshake on one connection")]
    SecondHandshake,
    #[error("more than {0} reconciliation requests in one gossip interval")]
    TooManyRequests(u32),
    #[error("snapshot of {total} bytes exceeds the {limit}-byte limit")]
    SnapshotTooLarge { total: u64, limit: u64 },
    #[error("a snapshot offer claiming more of us, or more origins, than can be")]
    ImpossibleOffer,
    /// A snapshot that does not fit in what is left of
    /// [`SyncConfig::intake`](super::SyncConfig::intake) now (other
    /// snapshots hold it): not taken; a later offer is.
    #[error(
        "a snapshot needing {needed} bytes while {left} are left for snapshots being taken in"
    )]
    IntakeFull { needed: u64, left: u64 },
    #[error("snapshot chunk without an offer")]
    ChunkWithoutOffer,
    /// A reconciliation response to no request of ours on this connection
    /// still awaited (see [`AwaitedResponses`](super::session::AwaitedResponses)).
    #[error("reconciliation response to no request of ours awaited")]
    UnaskedResponse,
    /// A reconciliation request or response naming another sender than the
    /// connection's peer, or another recipient than us: shown to the app,
    /// it would put the exchange in another peer's name.
    #[error("reconciliation message from {sender} to {recipient}, not from this peer to us")]
    Misaddressed { sender: PeerId, recipient: PeerId },
    /// A Merkle query or answer for a node our tree does not have (trees
    /// of different shapes, or junk).
    #[error("no Merkle node {index} at depth {depth}")]
    NoMerkleNode { depth: u8, index: u32 },
    #[error("Merkle node {index} at depth {depth}, which we did not ask for")]
    UnaskedMerkleNode { depth: u8, index: u32 },
    #[error("a second request for a snapshot we do not keep in one gossip interval")]
    OfferAgain,
    #[error("snapshot windows sent again past {0} bytes in one gossip interval")]
    ResentBudget(u64),
    #[error("more than {0} Merkle queries in one gossip interval")]
    MerkleBudget(u32),
    #[error("Merkle leaves past {0} bytes in one gossip interval")]
    LeafBudget(usize),
    #[error("no Merkle leaf {0}")]
    NoLeaf(u32),
    #[error("an overlay message naming {0} peers (at most {MAX_SHUFFLE})")]
    OverlayTooLarge(usize),
    #[error("more than {0} overlay messages in one gossip interval")]
    OverlayFlood(u32),
    #[error(transparent)]
    Presence(#[from] PresenceError),
    /// An `IHave` or a graft naming more origins than one may.
    #[error("an IHave or graft naming {0} origins (at most {MAX_ANNOUNCED})")]
    AnnouncementTooLarge(usize),
    /// An `IHave` the sender's own digest (sent after it, on the same
    /// ordered channel) contradicts, or one claiming our own events beyond
    /// what we wrote: it announced events it does not have.
    #[error("an IHave of events {origin}:{seq} its sender does not have")]
    UnfoundedIHave { origin: PeerId, seq: u64 },
    /// Announcements awaited from this peer are at their bound: what it
    /// announced more is not awaited, only pulled from it at once
    /// (anti-entropy brings it if that fails).
    #[error("more than {0} announced events awaited from one peer")]
    TooManyAnnounced(usize),
    /// An `IHave` naming origins past what a session notes of its peer
    /// ([`MAX_THEIR_ORIGINS`](super::session::MAX_THEIR_ORIGINS)): those
    /// are neither noted nor awaited.
    #[error("an IHave naming origins past the {0} a peer's version vector may have")]
    TooManyOrigins(usize),
    #[error("more than {0} grafts in one gossip interval")]
    GraftFlood(u32),
    #[error("more than {0} prunes in one gossip interval")]
    PruneFlood(u32),
}

impl Refusal {
    /// What the refusal costs the sender.
    pub fn points(&self) -> u32 {
        match self {
            // Another protocol version: a peer not yet (or no longer)
            // updated, not an attacker; the connection closes instead.
            Refusal::Frame(WireError::Version(_)) => 0,
            // Refused before anything was decoded: it cost us nothing.
            Refusal::Frame(WireError::TooManyEvents { .. }) => 0,
            Refusal::Frame(_)
            | Refusal::SecondHandshake
            | Refusal::Misaddressed { .. }
            | Refusal::NoLeaf(_)
            | Refusal::OverlayTooLarge(_)
            | Refusal::OverlayFlood(_)
            | Refusal::AnnouncementTooLarge(_)
            | Refusal::GraftFlood(_)
            | Refusal::PruneFlood(_) => 1,
            Refusal::UnfoundedIHave { .. } => UNSEALED_POINTS,
            // A peer announcing many origins at once may be honest.
            Refusal::TooManyAnnounced(_) | Refusal::TooManyOrigins(_) => 0,
            Refusal::Event(e) => match e {
                ReceiveError::Malformed(_)
                | ReceiveError::ImpossibleDependency { .. }
                | ReceiveError::Equivocation { .. }
                | ReceiveError::InvalidRoomState { .. } => 1,
                // Skew, a full holding queue, too many origins, a run
                // overlapping one taken first: an honest peer may send
                // these; they are refused, not punished.
                _ => 0,
            },
            Refusal::Seal(e) if e.is_forgery() => FORGERY_POINTS,
            Refusal::Seal(_) => UNSEALED_POINTS,
            Refusal::State(SnapshotError::Unasked) => UNSEALED_POINTS,
            Refusal::State(e) if e.is_lie() => FORGERY_POINTS,
            Refusal::State(_) => 0,
            Refusal::ImpossibleOffer => FORGERY_POINTS,
            Refusal::Handshake(_) | Refusal::SpokeBeforeProof => 0,
            Refusal::Presence(e) => e.points(),
            Refusal::TooManyRequests(_)
            | Refusal::SnapshotTooLarge { .. }
            | Refusal::IntakeFull { .. }
            | Refusal::ChunkWithoutOffer
            | Refusal::UnaskedResponse
            | Refusal::NoMerkleNode { .. }
            | Refusal::UnaskedMerkleNode { .. }
            | Refusal::MerkleBudget(_)
            | Refusal::LeafBudget(_)
            | Refusal::ResentBudget(_)
            | Refusal::OfferAgain => 0,
        }
    }

    /// What the refusal costs `sender`: [`points`](Self::points), but an
    /// equivocation of another origin than the sender's costs nothing. Its
    /// sender relayed the version it took first, as an honest peer does;
    /// charged a point a run, two honest peers each handed one version by
    /// a member signing her events twice cut each other off (a review).
    pub fn points_from(&self, sender: PeerId) -> u32 {
        match self {
            Refusal::Event(ReceiveError::Equivocation { id }) if id.peer != sender => 0,
            _ => self.points(),
        }
    }

    /// Whether the connection closes at once (a failed handshake, a frame
    /// too large to read, a peer speaking another protocol version).
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Refusal::Handshake(_)
                | Refusal::SpokeBeforeProof
                | Refusal::Frame(WireError::FrameTooLarge(_) | WireError::Version(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::EventId;

    #[test]
    fn only_what_no_honest_peer_sends_weighs() {
        let id = EventId::new(PeerId(1), 1);
        let forged = Refusal::Seal(SealError::BadSignature(id));
        assert_eq!(forged.points(), FORGERY_POINTS);
        assert_eq!(
            Refusal::Seal(SealError::Unsealed(id)).points(),
            UNSEALED_POINTS
        );
        assert_eq!(
            Refusal::State(SnapshotError::Unasked).points(),
            UNSEALED_POINTS
        );
        let equivocation = Refusal::Event(ReceiveError::Equivocation { id });
        assert_eq!(equivocation.points_from(id.peer), 1, "its origin's");
        assert_eq!(
            equivocation.points_from(PeerId(id.peer.0 + 1)),
            0,
            "relayed"
        );
        let full = ReceiveError::HoldingQueueFull { id, capacity: 10 };
        assert_eq!(
            Refusal::Event(full).points(),
            0,
            "an honest peer may send it"
        );
        assert_eq!(Refusal::Frame(WireError::Checksum).points(), 1);
        assert!(Refusal::Frame(WireError::FrameTooLarge(1 << 20)).closes());
        assert!(!Refusal::Frame(WireError::Checksum).closes());
        assert!(Refusal::SpokeBeforeProof.closes());
        let old_peer = Refusal::Frame(WireError::Version(2));
        assert_eq!((old_peer.points(), old_peer.closes()), (0, true));
    }
}
