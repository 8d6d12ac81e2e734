//! Presence (Yjs's awareness): who is here, with a small JSON value each
//! (a name, a color, a cursor). Ephemeral: never in the state, the log,
//! storage or the digest; a peer's entry is gone [`PRESENCE_TIMEOUT_MS`]
//! after its last refresh. Signed by its peer's key like events, bounded in
//! size, limited in rate by the origin's own signed stamps, and relayed
//! once per update (a stamp not newer than the one held is a duplicate).

use serde::{Deserialize, Serialize};

use crate::protocol::blake3;
use crate::protocol::clock::PeerId;
use crate::protocol::identity::{self, Identity, PublicKey, Signature};
use crate::protocol::key_sort;
use crate::protocol::sorted_map::SortedMap;

/// Bytes of a presence value's JSON text, at most.
pub const MAX_PRESENCE_BYTES: usize = 1024;
/// An entry not refreshed for this long is gone.
pub const PRESENCE_TIMEOUT_MS: u64 = 30_000;
/// A peer sends its presence again this often while it is here.
pub const PRESENCE_REFRESH_MS: u64 = 10_000;
/// Updates of one peer are at least this far apart (by their stamps).
pub const MIN_PRESENCE_INTERVAL_MS: u64 = 100;
/// A stamp this far ahead of our clock is refused.
pub const PRESENCE_SKEW_MS: u64 = 60_000;
/// A stamp this far behind our clock is refused: an update that old was
/// gone [`PRESENCE_TIMEOUT_MS`] after it was made, even from a peer whose
/// clock runs [`PRESENCE_SKEW_MS`] behind ours, so it can only be a replay.
pub const PRESENCE_MAX_AGE_MS: u64 = PRESENCE_TIMEOUT_MS + PRESENCE_SKEW_MS;
/// Peers whose presence is held, at most (a room's `MAX_ROOM`).
pub const MAX_PRESENCES: usize = 1024;
/// Updates in one message, at most.
pub const MAX_PRESENCE_BATCH: usize = 64;

/// One peer's presence, as it travels: its value, stamped and signed by
/// its key (unsigned rooms: the key and signature are zeros, unchecked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    pub peer: PeerId,
    /// The origin's time of the update (ms): newer replaces older.
    pub stamp: u64,
    /// JSON text; `null`: the peer left.
    pub value: String,
    #[serde(deserialize_with = "crate::protocol::identity::bytes::b32")]
    pub key: PublicKey,
    #[serde(deserialize_with = "crate::protocol::identity::bytes::signature")]
    pub signature: Signature,
}

/// Why a presence update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("presence of {0} bytes exceeds the {MAX_PRESENCE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("presence of {0} not signed by its key")]
    Forged(PeerId),
    #[error("presence of {0} updated more often than every {MIN_PRESENCE_INTERVAL_MS} ms")]
    TooFrequent(PeerId),
    #[error("presence of {0} older than the one held")]
    Stale(PeerId),
    #[error("presence of {0} stamped more than {PRESENCE_SKEW_MS} ms ahead")]
    Ahead(PeerId),
    #[error("presence of {0} stamped more than {PRESENCE_MAX_AGE_MS} ms ago")]
    Old(PeerId),
    #[error("presence of more than {MAX_PRESENCES} peers")]
    Full,
    #[error("more than {MAX_PRESENCE_BATCH} presence updates in one message")]
    Batch,
    #[error("presence value is not JSON: {0}")]
    NotJson(String),
}

impl PresenceError {
    /// Penalty points: a forgery weighs like a forged run; what an honest
    /// relay may pass on (late, ahead, a full table) weighs nothing.
    pub fn points(&self) -> u32 {
        match self {
            PresenceError::Forged(_) => super::refusal::FORGERY_POINTS,
            PresenceError::TooLarge(_) | PresenceError::Batch | PresenceError::NotJson(_) => 1,
            _ => 0,
        }
    }
}

fn signed_bytes(peer: PeerId, stamp: u64, value: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("cpc-sync presence v1");
    hasher.update(&peer.0.to_le_bytes());
    hasher.update(&stamp.to_le_bytes());
    hasher.update(value.as_bytes());
    *hasher.finalize().as_bytes()
}

impl PresenceUpdate {
    /// `value` (JSON text) of `peer` at `stamp`, signed by `identity`.
    pub fn new(peer: PeerId, stamp: u64, value: String, identity: Option<&Identity>) -> Self {
        let (key, signature) = match identity {
            Some(id) => (id.public_key(), id.sign(&signed_bytes(peer, stamp, &value))),
            None => ([0; 32], [[0; 32]; 2]),
        };
        PresenceUpdate {
            peer,
            stamp,
            value,
            key,
            signature,
        }
    }

    /// Its form and, in a signed room, its signature.
    pub fn check(&self, signed: bool) -> Result<(), PresenceError> {
        if self.value.len() > MAX_PRESENCE_BYTES {
            return Err(PresenceError::TooLarge(self.value.len()));
        }
        if crate::protocol::json::check(&self.value).is_err() {
            return Err(PresenceError::NotJson(
                self.value.chars().take(40).collect(),
            ));
        }
        if signed
            && (identity::peer_id_of(&self.key) != self.peer
                || !identity::verify(
                    &self.key,
                    &signed_bytes(self.peer, self.stamp, &self.value),
                    &self.signature,
                ))
        {
            return Err(PresenceError::Forged(self.peer));
        }
        Ok(())
    }

    pub fn left(&self) -> bool {
        self.value == "null"
    }
}

/// One peer's presence as the app sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub id: String,
    /// JSON text.
    pub value: String,
    /// Local time (ms) it was last refreshed.
    pub last_seen: u64,
}

#[derive(Debug, Clone)]
struct Held {
    update: PresenceUpdate,
    seen_ms: u64,
    /// The link it came over (its own peer's, or a relay's).
    via: PeerId,
    /// Its peer left the room (signaling said so): not shown, and kept as
    /// a tombstone, so only a newer update of its own shows it again (a
    /// replay, or its last refresh still being relayed, does not).
    hidden: bool,
    /// Our link to its peer closed since the last expiry: its timeout is
    /// cut to [`PRESENCE_UNLINKED_MS`] from then.
    unlinked: bool,
}

impl Held {
    /// Whether the app sees it.
    fn shown(&self) -> bool {
        !self.hidden && !self.update.left()
    }
}

/// A peer whose link closed is given this long for a refresh to reach us
/// some other way before its presence goes: one refresh interval and a
/// little slack. (In a partial view links close and open all the time; a
/// peer that left the room is hidden at once by [`PresenceTable::hide`].)
pub const PRESENCE_UNLINKED_MS: u64 = PRESENCE_REFRESH_MS + 2_000;

/// The presence of the room's peers, as heard.
#[derive(Debug, Default)]
pub struct PresenceTable {
    held: SortedMap<PeerId, Held>,
}

impl PresenceTable {
    /// Takes an update checked by [`PresenceUpdate::check`], come over
    /// our link to `via`: `Ok(true)` if it is news (to relay), `Ok(false)`
    /// for a duplicate.
    pub fn take(
        &mut self,
        update: PresenceUpdate,
        via: PeerId,
        now_ms: u64,
    ) -> Result<bool, PresenceError> {
        let peer = update.peer;
        if update.stamp > now_ms.saturating_add(PRESENCE_SKEW_MS) {
            return Err(PresenceError::Ahead(peer));
        }
        // Without a bound below, a peer's last update, replayed once its
        // tombstone timed out, showed it again long after it left.
        if update.stamp.saturating_add(PRESENCE_MAX_AGE_MS) < now_ms {
            return Err(PresenceError::Old(peer));
        }
        match self.held.get(&peer) {
            Some(h) if h.update.stamp == update.stamp => return Ok(false),
            Some(h) if h.update.stamp > update.stamp => return Err(PresenceError::Stale(peer)),
            Some(h) if update.stamp < h.update.stamp + MIN_PRESENCE_INTERVAL_MS => {
                return Err(PresenceError::TooFrequent(peer))
            }
            None if self.held.len() >= MAX_PRESENCES => self.make_room(peer, via)?,
            _ => {}
        }
        self.held.insert(
            peer,
            Held {
                update,
                seen_ms: now_ms,
                via,
                hidden: false,
                unlinked: false,
            },
        );
        Ok(true)
    }

    /// Room in a full table for `peer`'s presence come over our link to
    /// `via`. Identities cost nothing to make, and a member relaying
    /// updates of a thousand of them kept every presence it had not
    /// heard out for as long as it refreshed them. Relayed presence is
    /// shared among the links it came over: the stalest entry of the
    /// link that brought the most goes, if that is more than `via`
    /// brought. A peer's own presence, over its own link, is never
    /// pushed out, and pushes out a relayed one. A tombstone goes only
    /// from a link with nothing shown: one pushed out would let a replay
    /// of that peer's last update show it again.
    fn make_room(&mut self, peer: PeerId, via: PeerId) -> Result<(), PresenceError> {
        // Per link: the entries it relayed, and the one to push out
        // (shown before tombstones, then the stalest).
        let mut relayed: SortedMap<PeerId, (usize, (bool, u64), PeerId)> = SortedMap::new();
        for (p, h) in self.held.iter().filter(|(p, h)| **p != h.via) {
            let share = relayed.get_or_insert_with(h.via, || (0, (true, u64::MAX), *p));
            share.0 += 1;
            let rank = (!h.shown(), h.seen_ms);
            if rank < share.1 {
                (share.1, share.2) = (rank, *p);
            }
        }
        let ours = if peer == via {
            0
        } else {
            relayed.get(&via).map_or(0, |s| s.0)
        };
        let heaviest = relayed.values().max_by_key(|s| s.0);
        match heaviest {
            Some(&(count, _, stalest)) if count > ours + 1 || (count > ours && peer == via) => {
                self.held.remove(&stalest);
                Ok(())
            }
            _ => Err(PresenceError::Full),
        }
    }

    /// Drops what was not refreshed in time; whether anything the app sees
    /// went. A tombstone (left or hidden) is kept at least until its stamp
    /// is too old to be taken ([`PRESENCE_MAX_AGE_MS`]), so a replay of it
    /// stays stale.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let mut gone = false;
        self.held.retain(|_, h| {
            // Seen later than now: by a clock since set back.
            h.seen_ms = h.seen_ms.min(now_ms);
            if std::mem::take(&mut h.unlinked) {
                let by = (now_ms + PRESENCE_UNLINKED_MS).saturating_sub(PRESENCE_TIMEOUT_MS);
                h.seen_ms = h.seen_ms.min(by);
            }
            let keep = now_ms < h.seen_ms + PRESENCE_TIMEOUT_MS
                || (!h.shown() && now_ms <= h.update.stamp.saturating_add(PRESENCE_MAX_AGE_MS));
            gone |= !keep && h.shown();
            keep
        });
        gone
    }

    /// Forgets everyone's presence, tombstones too (this peer went
    /// offline: what it hears when back is news); whether the app saw any.
    pub fn clear(&mut self) -> bool {
        let shown = self.held.values().any(Held::shown);
        self.held = SortedMap::default();
        shown
    }

    /// `peer` left the room: its presence goes now (a tombstone stays);
    /// whether the app saw it.
    pub fn hide(&mut self, peer: PeerId) -> bool {
        self.held.get_mut(&peer).is_some_and(|h| {
            let shown = h.shown();
            h.hidden = true;
            shown
        })
    }

    /// Our link to `peer` closed: unless a refresh reaches us another way
    /// within [`PRESENCE_UNLINKED_MS`] of the next expiry, its presence
    /// goes.
    pub fn unlinked(&mut self, peer: PeerId) {
        if let Some(h) = self.held.get_mut(&peer) {
            h.unlinked = true;
        }
    }

    /// The freshest updates, at most `n` (for a new link); none of a peer
    /// that left.
    pub fn freshest(&self, n: usize) -> Vec<PresenceUpdate> {
        let mut all: Vec<&Held> = self.held.values().filter(|h| !h.hidden).collect();
        key_sort::sort_by_key(&mut all, |h| u128::from(u64::MAX - h.seen_ms));
        all.into_iter().take(n).map(|h| h.update.clone()).collect()
    }

    /// Who is here (those who left are not).
    pub fn entries(&self) -> Vec<PresenceEntry> {
        self.held
            .iter()
            .filter(|(_, h)| h.shown())
            .map(|(p, h)| PresenceEntry {
                id: p.to_string(),
                value: h.update.value.clone(),
                last_seen: h.seen_ms,
            })
            .collect()
    }

    pub fn get(&self, peer: PeerId) -> Option<&PresenceUpdate> {
        self.held
            .get(&peer)
            .filter(|h| h.shown())
            .map(|h| &h.update)
    }
}
