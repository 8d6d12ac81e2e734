//! The room handshake: in a room with a secret, each side of a connection
//! proves it knows the secret and holds the key of its id before anything
//! else is said.

use super::{Message, Refusal, SyncNode};
use crate::protocol::clock::PeerId;

impl SyncNode {
    pub(super) fn needs_handshake(&self) -> bool {
        self.config.room.is_some() && self.config.identity.is_some()
    }

    /// A handshake message, or anything else from a peer still owing one.
    /// Returns whether `message` is left for the session to handle.
    pub(super) fn handshake(&mut self, from: PeerId, message: &Message, now_ms: u64) -> bool {
        let (Some(room), Some(identity)) = (&self.config.room, &self.config.identity) else {
            // No secret here: a handshake message is out of place.
            return !message.is_handshake();
        };
        let Some(session) = self.sessions.get_mut(&from) else {
            return false;
        };
        let Some(handshake) = &mut session.handshake else {
            // Done already: a second handshake on one connection is junk.
            if message.is_handshake() {
                self.refuse(from, Refusal::SecondHandshake);
                return false;
            }
            return true;
        };
        let outcome = match message {
            Message::Hello { nonce } => match handshake.prove(*nonce, room, identity) {
                Some(proof) => {
                    self.send(from, &Message::Proof(proof));
                    return false;
                }
                None => Err(Refusal::SecondHandshake),
            },
            Message::Proof(proof) => handshake.check(proof, room).map_err(Refusal::from),
            _ => Err(Refusal::SpokeBeforeProof),
        };
        match outcome {
            Ok(()) => {
                if let Some(session) = self.sessions.get_mut(&from) {
                    session.handshake = None;
                }
                self.start_session(from, now_ms);
            }
            Err(refusal) if refusal.closes() => self.refuse(from, refusal),
            Err(refusal) => {
                // A second Hello: junk, and the handshake cannot go on.
                let reason = format!("room handshake failed: {refusal}");
                self.refuse(from, refusal);
                self.close(from, reason);
            }
        }
        false
    }
}
