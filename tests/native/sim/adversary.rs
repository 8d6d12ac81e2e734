//! A hostile peer in the simulator: it is connected like any other, relays
//! what honest peers send it, and now and then sends a neighbour something
//! hostile: events forged under an honest peer's id, a relayed run with an
//! altered payload, a giant version vector, junk, a dependency bomb (its
//! own validly sealed events that wait forever, under a key that writes
//! nothing else: see [`Adversary::origin`]), an event depending on
//! something a billion events ahead; and state that arrives whole: Merkle
//! leaves nobody asked for, forged snapshots claiming an honest origin is
//! far ahead, snapshots raising the victim's own count, and floods of
//! throwaway identities.

use cpc_sync::protocol::clock::MAX_CLOCK_ENTRIES;
use cpc_sync::protocol::digest;
use cpc_sync::protocol::seal;
use cpc_sync::protocol::sync::wire::{self, Decoded, Message};
use cpc_sync::protocol::{EventId, Hash32, Identity, P2PEvent, PeerId, StateSnapshot, VectorClock};

use super::World;
use crate::common::register_write;

/// The value every hostile write carries: it must never show up in an
/// honest peer's state.
pub const EVIL: &str = "\"evil\"";

pub struct Adversary {
    pub index: usize,
    /// The key its own hostile events are sealed with. Not its node's: the
    /// node runs honest code and writes under its id too (as the resolver
    /// of a reconcile conflict whose sibling origins it cannot reach), and
    /// such a genuine event 1 would rightly release the bombs.
    identity: Identity,
    /// Event batches it received, to alter and replay.
    captured: Vec<Vec<P2PEvent>>,
    /// Its next sequence number for bombs (never 1: everything waits).
    next_seq: u64,
    /// A digest whose clock has too many entries, encoded once.
    giant: Vec<Vec<u8>>,
    /// What honest peers refused from it (counted as they say so).
    pub refused: u64,
    /// Throwaway identities used so far.
    throwaways: u64,
}

/// What flood events carry: valid writes of throwaway members, so honest
/// peers may take them (below the bound on origins).
pub const SPAM: &str = "\"spam\"";

impl Adversary {
    pub fn new(index: usize, identity: Identity) -> Self {
        let clock: VectorClock = (1..=MAX_CLOCK_ENTRIES as u64 + 1)
            .map(|p| (PeerId(p), u64::MAX))
            .collect();
        let giant = wire::encode(
            &Message::Digest {
                clock,
                root: Hash32::ZERO,
            },
            1,
        );
        Adversary {
            index,
            identity,
            captured: Vec::new(),
            next_seq: 2,
            giant,
            refused: 0,
            throwaways: 0,
        }
    }

    /// Remembers an `Events` message it was sent (the last few).
    pub fn capture(&mut self, frame: &[u8]) {
        if let Ok(Decoded::Message(Message::Events(events))) = wire::decode(frame) {
            if self.captured.len() >= 8 {
                self.captured.remove(0);
            }
            self.captured.push(events);
        }
    }

    /// The origin of its own hostile events, whose event 1 never exists:
    /// honest peers may hold its events, never apply them.
    pub fn origin(&self) -> PeerId {
        self.identity.peer()
    }

    fn event(&self, seq: u64, key: &str, now: u64) -> P2PEvent {
        register_write(EventId::new(self.identity.peer(), seq), key, EVIL, now)
    }

    /// Its next `len` events (keys `{prefix}/{seq}`), one validly sealed
    /// run, all waiting for its event 1.
    fn sealed_run(&mut self, len: u64, prefix: &str, now: u64) -> Vec<P2PEvent> {
        let start = self.next_seq;
        let mut run: Vec<P2PEvent> = (start..start + len)
            .map(|seq| self.event(seq, &format!("{prefix}/{seq}"), now))
            .collect();
        self.next_seq += len;
        seal::seal(&self.identity, &mut run);
        run
    }

    /// Its next 50 events, validly sealed, all waiting for its event 1.
    fn bomb(&mut self, now: u64) -> Vec<Vec<u8>> {
        let run = self.sealed_run(50, "bomb", now);
        wire::encode(&Message::Events(run), 4)
    }
}

impl World {
    /// Throws one dependency bomb at peer `victim` (delivered with the
    /// next frames due).
    pub fn throw_bomb(&mut self, victim: usize) {
        let at = self.now + 1;
        let Some(adversary) = &mut self.adversary else {
            return;
        };
        let me = self.peers[adversary.index].id;
        for frame in adversary.bomb(at) {
            self.net.send(me, self.peers[victim].id, frame, at);
        }
    }

    /// One hostile act against a random connected neighbour: the frames to
    /// deliver to it.
    pub(super) fn attack(&mut self) {
        let Some(adversary) = &self.adversary else {
            return;
        };
        let me = self.peers[adversary.index].id;
        let neighbours: Vec<usize> = (0..self.peers.len())
            .filter(|&j| self.peers[j].id != me && self.net.is_up(me, self.peers[j].id))
            .collect();
        if neighbours.is_empty() {
            return;
        }
        let victim = neighbours[self.rng.below(neighbours.len())];
        let honest = self.peers[self.rng.below(self.peers.len())].id;
        let now = self.now;
        let roll = self.rng.below(10);
        let victim_id = self.peers[victim].id;
        let junk_len = 1 + self.rng.below(3000);
        let junk: Vec<u8> = (0..junk_len).map(|_| self.rng.below(256) as u8).collect();
        let pick = self.rng.next_u64() as usize;
        let Some(adversary) = &mut self.adversary else {
            return;
        };
        let frames = match roll {
            // An event under an honest peer's id, sealed with its own key.
            0 => {
                let mut run = vec![adversary.event(adversary.next_seq, "forged", now)];
                seal::seal(&adversary.identity, &mut run);
                run[0].id.peer = honest;
                wire::encode(&Message::Events(run), 2)
            }
            // A run it relays, with one payload altered.
            1 => {
                let Some(mut events) = adversary
                    .captured
                    .get(pick % adversary.captured.len().max(1))
                    .cloned()
                else {
                    return;
                };
                let Some(event) = events.first_mut() else {
                    return;
                };
                event.op = adversary.event(1, "", now).op;
                wire::encode(&Message::Events(events), 3)
            }
            2 => adversary.giant.clone(),
            3 => vec![junk],
            // Its own events, validly sealed, all waiting for its event 1.
            4 => adversary.bomb(now),
            // A Merkle leaf nobody asked for, with a made-up value in an
            // honest peer's name and a clock claiming everyone is far ahead.
            6 => {
                let mut run = vec![adversary.event(5_000_000, "doc", now + 1_000_000_000)];
                seal::seal(&adversary.identity, &mut run);
                run[0].id.peer = honest;
                let clock: VectorClock = [(honest, 5_000_000), (victim_id, 1_000)]
                    .into_iter()
                    .collect();
                let state = StateSnapshot {
                    version_vector: clock,
                    events: run,
                    live: vec![true],
                };
                let index = u32::from(digest::leaf_of("doc"));
                let message = Message::LeafState {
                    index,
                    state: state.encode(),
                };
                wire::encode(&message, 6)
            }
            // A snapshot of its own sealed events whose clock says an
            // honest origin is at a billion (7), or that the victim itself
            // is at u64::MAX (8).
            7 | 8 => {
                let start = adversary.next_seq;
                let run = adversary.sealed_run(3, "snap", now);
                let mut clock: VectorClock = [(adversary.identity.peer(), start + 2)]
                    .into_iter()
                    .collect();
                if roll == 7 {
                    clock.set(honest, 1_000_000_000);
                } else {
                    clock.set(victim_id, u64::MAX);
                }
                let bytes = StateSnapshot {
                    version_vector: clock.clone(),
                    live: vec![true; run.len()],
                    events: run,
                }
                .encode();
                let id = Hash32(*blake3::hash(&bytes).as_bytes());
                let total = bytes.len() as u64;
                let offer = Message::SnapshotOffer {
                    id,
                    total,
                    clock,
                    gzip: None,
                };
                let mut frames = wire::encode(&offer, 7);
                let chunk = Message::SnapshotChunk {
                    id,
                    offset: 0,
                    total,
                    bytes,
                };
                frames.extend(wire::encode(&chunk, 8));
                frames
            }
            // Throwaway identities, one validly sealed event each.
            9 => {
                let events: Vec<P2PEvent> = (0..20)
                    .map(|_| {
                        adversary.throwaways += 1;
                        let identity = Identity::from_seed(1 << 40 | adversary.throwaways);
                        let id = EventId::new(identity.peer(), 1);
                        let key = format!("spam/{}", adversary.throwaways);
                        let mut run = vec![register_write(id, &key, SPAM, now)];
                        seal::seal(&identity, &mut run);
                        run.remove(0)
                    })
                    .collect();
                wire::encode(&Message::Events(events), 9)
            }
            // One depending on an honest peer's event a billion ahead.
            _ => {
                let mut run = vec![adversary.event(adversary.next_seq, "far", now)];
                adversary.next_seq += 1;
                run[0].deps.set(honest, 1_000_000_000);
                seal::seal(&adversary.identity, &mut run);
                wire::encode(&Message::Events(run), 5)
            }
        };
        let at = self.now + 1;
        for frame in frames {
            self.net.send(me, self.peers[victim].id, frame, at);
        }
    }
}
