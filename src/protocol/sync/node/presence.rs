//! Presence at the node (see [`crate::protocol::sync::presence`]): this
//! peer's own, refreshed while it is here; the others', checked, held
//! apart from the engine, and relayed once per update.

use super::{Message, SyncNode};
use crate::protocol::clock::PeerId;
use crate::protocol::sync::presence::{
    PresenceEntry, PresenceError, PresenceUpdate, MAX_PRESENCE_BATCH, MIN_PRESENCE_INTERVAL_MS,
    PRESENCE_REFRESH_MS,
};
use crate::protocol::sync::refusal::Refusal;

impl SyncNode {
    /// Sets this peer's presence: `value` is JSON text (`null` clears
    /// it). Sent at once, or as soon as the rate allows, then refreshed
    /// every [`PRESENCE_REFRESH_MS`]; never persisted.
    pub fn set_presence(&mut self, value: &str, now_ms: u64) -> Result<(), PresenceError> {
        let me = self.peer();
        PresenceUpdate::new(me, now_ms, value.to_string(), None).check(false)?;
        self.presence_value = Some(value.to_string());
        let earliest = self
            .presence_sent
            .as_ref()
            .map_or(now_ms, |s| s.stamp + MIN_PRESENCE_INTERVAL_MS);
        // A leave goes at once (a closing page has no later): its stamp is
        // still the interval past the last, so receivers take it.
        let leaving = value == "null";
        self.presence_due = Some(if leaving {
            now_ms
        } else {
            earliest.max(now_ms)
        });
        self.presence_changed = true;
        self.send_presence_if_due(now_ms);
        Ok(())
    }

    /// Signs and spreads our presence if it is due (a change, or the
    /// refresh).
    pub(super) fn send_presence_if_due(&mut self, now_ms: u64) {
        if self.presence_due.is_none_or(|due| now_ms < due) {
            return;
        }
        let Some(value) = self.presence_value.clone() else {
            self.presence_due = None;
            return;
        };
        let stamp = self
            .presence_sent
            .as_ref()
            .map_or(now_ms, |s| now_ms.max(s.stamp + MIN_PRESENCE_INTERVAL_MS));
        let update = PresenceUpdate::new(self.peer(), stamp, value, self.config.identity.as_ref());
        self.presence_due = (!update.left()).then_some(stamp + PRESENCE_REFRESH_MS);
        self.presence_sent = Some(update.clone());
        let peers: Vec<PeerId> = self.sessions.keys().copied().collect();
        for peer in peers {
            self.send(peer, &Message::Presence(vec![update.clone()]));
        }
    }

    /// A new session learns who is here: ours and the freshest others.
    /// Ours is made anew, and sent to every session, when every session
    /// had closed (see `presence_unheard`).
    pub(super) fn greet_presence(&mut self, peer: PeerId, now_ms: u64) {
        let mut updates = self.presence.freshest(MAX_PRESENCE_BATCH - 1);
        updates.retain(|u| u.peer != peer);
        if std::mem::take(&mut self.presence_unheard) && self.presence_value.is_some() {
            self.presence_due = Some(now_ms);
            self.send_presence_if_due(now_ms);
        } else {
            updates.extend(self.presence_sent.clone());
        }
        if !updates.is_empty() {
            self.send(peer, &Message::Presence(updates));
        }
    }

    pub(super) fn on_presence(&mut self, from: PeerId, updates: Vec<PresenceUpdate>, now_ms: u64) {
        if updates.len() > MAX_PRESENCE_BATCH {
            return self.refuse(from, Refusal::Presence(PresenceError::Batch));
        }
        let me = self.peer();
        let signed = self.signed();
        for update in updates {
            if update.peer == me {
                continue;
            }
            let taken = update
                .check(signed)
                .and_then(|()| self.presence.take(update.clone(), from, now_ms));
            match taken {
                Ok(true) => {
                    self.presence_changed = true;
                    let peers: Vec<PeerId> = self.sessions.keys().copied().collect();
                    for peer in peers
                        .into_iter()
                        .filter(|p| *p != from && *p != update.peer)
                    {
                        self.send(peer, &Message::Presence(vec![update.clone()]));
                    }
                }
                Ok(false) => {}
                // An older update than the one held is what an honest
                // relay passes on when two paths cross: dropped as a
                // duplicate, not refused (the page showed the room peer
                // "1 refused" in Firefox).
                // So is one too old by our clock: its origin's clock may
                // run behind.
                Err(PresenceError::Stale(_) | PresenceError::Old(_)) if update.peer != from => {}
                Err(e) => self.refuse(from, Refusal::Presence(e)),
            }
        }
    }

    /// The link to `peer` closed. Links close and open all the time in a
    /// big room's partial view, so its presence is not dropped: it goes
    /// unless a refresh reaches us another way soon
    /// ([`PRESENCE_UNLINKED_MS`](crate::protocol::sync::presence::PRESENCE_UNLINKED_MS)).
    pub(super) fn unlink_presence(&mut self, peer: PeerId) {
        self.presence.unlinked(peer);
    }

    /// Signaling says `peer` left the room (its socket closed, its tab said
    /// goodbye): its presence goes at once, and stays gone until an update
    /// newer than the last one heard (a page that closes rarely gets its
    /// own leave out).
    pub fn peer_left(&mut self, peer: PeerId) {
        if self.presence.hide(peer) {
            self.presence_changed = true;
        }
    }

    /// This peer went offline (the app said so): who else is here is
    /// unknown until it links again, so their presence goes now, with no
    /// tombstone (their greetings then show them again at once).
    pub fn forget_presence(&mut self) {
        if self.presence.clear() {
            self.presence_changed = true;
        }
    }

    /// Drops presence not refreshed in time.
    pub(super) fn expire_presence(&mut self, now_ms: u64) {
        if self.presence.expire(now_ms) {
            self.presence_changed = true;
        }
    }

    /// Who is here, this peer included: `[{ id, value, lastSeen }]`.
    pub fn presence(&self) -> Vec<PresenceEntry> {
        let mut out = self.presence.entries();
        if let Some(own) = self.presence_sent.as_ref().filter(|u| !u.left()) {
            out.push(PresenceEntry {
                id: own.peer.to_string(),
                value: own.value.clone(),
                last_seen: own.stamp,
            });
        }
        out
    }

    /// Whether anyone's presence changed since the last call (for the
    /// `"presence"` event).
    pub fn take_presence_changed(&mut self) -> bool {
        std::mem::take(&mut self.presence_changed)
    }
}
