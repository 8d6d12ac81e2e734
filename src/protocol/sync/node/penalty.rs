//! Refusing what a peer sent: counted, reported, and charged in penalty
//! points toward closing its connection.

use super::{Output, Refusal, SyncNode, KEPT_STATS, PENALTY_LIMIT};
use crate::protocol::clock::PeerId;
use crate::protocol::sync::wire::WireError;

impl SyncNode {
    /// Counts and reports a refusal of what `peer` sent, and charges its
    /// points; the connection closes at [`PENALTY_LIMIT`], or at once for a
    /// refusal that [`closes`](Refusal::closes) it.
    pub(super) fn refuse(&mut self, peer: PeerId, refusal: Refusal) {
        let points = refusal.points_from(peer);
        let closes = refusal.closes().then(|| refusal.to_string());
        // A peer whose session ended may still be refused: the frames of
        // its held for verification with others are refused when their
        // batch is, and the first forgery among them may have cut it off.
        // Its counters are kept for its next session then.
        let stats = match self.sessions.get_mut(&peer) {
            Some(session) => Some(&mut session.stats),
            None => self.past_stats.get_mut(&peer),
        };
        if let Some(stats) = stats {
            stats.refused(&refusal.to_string());
        }
        if let Refusal::Frame(WireError::Version(version)) = refusal {
            self.tell_other_version(peer, version);
        }
        self.outputs.push(Output::Rejected { peer, refusal });
        if let Some(reason) = closes {
            return self.close(peer, reason);
        }
        self.penalize(peer, points);
    }

    /// Tells the app, once a peer, that `peer` speaks another protocol
    /// version.
    fn tell_other_version(&mut self, peer: PeerId, version: u8) {
        if self.other_versions.contains(&peer) {
            return;
        }
        if self.other_versions.len() >= KEPT_STATS {
            self.other_versions.remove(0);
        }
        self.other_versions.push(peer);
        self.outputs.push(Output::OtherVersion { peer, version });
    }

    /// Adds penalty points to `peer`'s connection; at [`PENALTY_LIMIT`] it
    /// is closed.
    pub(super) fn penalize(&mut self, peer: PeerId, points: u32) {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        session.penalty = session.penalty.saturating_add(points);
        if session.penalty >= PENALTY_LIMIT {
            let reason =
                format!("{PENALTY_LIMIT} penalty points: too many forged or malformed messages");
            self.close(peer, reason);
        }
    }

    /// Ends the session with `peer` and tells the caller to close the
    /// connection.
    pub(super) fn close(&mut self, peer: PeerId, reason: String) {
        self.end_session(peer);
        self.outputs.push(Output::Close { peer, reason });
    }
}
