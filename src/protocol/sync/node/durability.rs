//! Durability order: persist, then send.
//!
//! A node with storage ([`SyncConfig::durable`](super::SyncConfig)) asks for
//! every write with a numbered [`Output::Persist`] and learns of its commit
//! through [`SyncNode::persisted`]. A frame that could carry or reflect one
//! of our own writes not yet durable (the events themselves, a digest with
//! our raised clock entry, a Merkle node, a snapshot, a resolution) is held
//! here until that write's commit is acknowledged. Without it, a tab that
//! dies after sending a write but before committing it would reload,
//! reuse the write's sequence number for another write, and every peer
//! that saw the first would see an equivocation.
//!
//! Storage commits in order (an IndexedDB transaction, a database
//! transaction, an fsync'd file append all do), so an acknowledgement
//! covers every earlier token: acknowledgements may arrive late, batched
//! or out of order.
//!
//! Our writes are never durable before what they rest on: others' events
//! they may depend on are persisted first (`persist_others`), and a
//! snapshot loaded but not yet stored (it waits for the next timer, a task
//! of its own) is stored with them, holding them, instead of them alone.

use std::collections::VecDeque;
use std::sync::Arc;

use super::batch::Batch;
use super::{Output, SyncNode};
use crate::protocol::clock::PeerId;
use crate::protocol::event::P2PEvent;
use crate::protocol::key_sort;

/// A write to durable storage, to make in token order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// Append this record: `count` events in the batch format
    /// ([`P2PEvent::encode_batch`], read back with
    /// [`P2PEvent::decode_batch`]). Encoded here, from the events where
    /// the engine keeps them, so storage writes bytes; a batch received
    /// and applied whole is written as it came, and our writes as the
    /// batch of the frame made for the peers, when there is one.
    /// `count` is the events this record stores for the first time
    /// (what the room peer's `events_persisted` adds up): 0 for the log a
    /// fold kept, stored again after its snapshot.
    Events { record: Vec<u8>, count: usize },
    /// Replace everything stored with this snapshot: it covers every event
    /// persisted so far. Shared with the snapshot the node offers next.
    Snapshot(Arc<Vec<u8>>),
}

impl Persist {
    /// The record of `events`, encoded where they are.
    pub(super) fn events(events: &[&P2PEvent]) -> Persist {
        Persist::Events {
            record: P2PEvent::encode_batch(events.iter().copied()),
            count: events.len(),
        }
    }

    /// What storage writes to make `writes` durable in one commit: the
    /// last snapshot among them, which replaces everything stored (it
    /// covers what came before it), and the records after it joined into
    /// one (read back with [`P2PEvent::decode_batch`]). One storage record
    /// a commit, not one a request: a page whose writes each take a task
    /// would otherwise make an IndexedDB record for each.
    pub fn commit(writes: &[Persist]) -> Commit<'_> {
        let last_snapshot = writes
            .iter()
            .rposition(|w| matches!(w, Persist::Snapshot(_)));
        let (snapshot, after) = match last_snapshot {
            Some(at) => (Some(&writes[at]), &writes[at + 1..]),
            None => (None, writes),
        };
        let records: Vec<&[u8]> = after
            .iter()
            .filter_map(|w| match w {
                Persist::Events { record, .. } => Some(record.as_slice()),
                Persist::Snapshot(_) => None,
            })
            .collect();
        Commit {
            snapshot: match snapshot {
                Some(Persist::Snapshot(bytes)) => Some(bytes.as_slice()),
                _ => None,
            },
            record: (!records.is_empty()).then(|| records.concat()),
        }
    }
}

/// One commit's writes ([`Persist::commit`]), in this order: replace
/// everything stored with `snapshot`, then append `record`.
#[derive(Debug, PartialEq, Eq)]
pub struct Commit<'a> {
    pub snapshot: Option<&'a [u8]>,
    pub record: Option<Vec<u8>>,
}

/// Tokens issued, tokens acknowledged, and the frames waiting on them.
#[derive(Debug, Default)]
pub(super) struct Durability {
    enabled: bool,
    issued: u64,
    acknowledged: u64,
    /// The last token that carries writes of ours (or a snapshot): frames
    /// made after it wait for it.
    barrier: u64,
    /// `(token, own sequence number)`: our writes up to the number are
    /// durable once the token is.
    own: VecDeque<(u64, u64)>,
    /// Our own events up to here are durable.
    own_durable: u64,
    /// Frames in the order they were made, each with the token it waits on.
    held: VecDeque<(u64, PeerId, Vec<u8>)>,
    held_bytes: usize,
    /// Others' events applied and not yet asked for, as `(origin, after,
    /// upto)` ranges of the log: asked for in one record once the last
    /// such record committed ([`SyncNode::persist_others`]).
    others: Vec<(PeerId, u64, u64)>,
    /// How many of `others` there were after they were last merged.
    others_merged: usize,
    /// Received batches applied whole, stored as they came with the next
    /// record of others' events (in place of their ranges in `others`),
    /// and the bytes they take.
    as_sent: Vec<Batch>,
    as_sent_bytes: usize,
    /// The token of the last record of others' events.
    others_token: u64,
}

/// Others' ranges waiting past this many (and past twice as many as
/// the last merge left) are merged.
const MERGE_PAST: usize = 4096;

/// Received batches kept to be stored as they came, at most this many
/// bytes: past it (storage is not committing) they wait as ranges, which
/// merge, as other events do.
const MAX_AS_SENT_BYTES: usize = 4 << 20;

/// One `(origin, after, upto)` range an origin, by origin: an origin's are
/// contiguous (what was applied of it, call after call).
fn merge(ranges: &mut Vec<(PeerId, u64, u64)>) {
    key_sort::sort_by_key(ranges, |(peer, after, _)| {
        (u128::from(peer.0) << 64) | u128::from(*after)
    });
    ranges.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 = kept.1.min(next.1);
            kept.2 = kept.2.max(next.2);
        }
        same
    });
}

impl Durability {
    pub(super) fn new(enabled: bool, own_durable: u64) -> Self {
        Durability {
            enabled,
            own_durable,
            ..Durability::default()
        }
    }
}

impl SyncNode {
    /// Asks the caller to persist `write`. `own_upto`: the write holds our
    /// own events up to this sequence number; frames made from now on wait
    /// for it. A snapshot holds every frame too (it replaces storage).
    pub(super) fn persist(&mut self, write: Persist, own_upto: Option<u64>) {
        let d = &mut self.durability;
        if !d.enabled {
            return;
        }
        d.issued += 1;
        let token = d.issued;
        if own_upto.is_some() || matches!(write, Persist::Snapshot(_)) {
            d.barrier = token;
        }
        if matches!(write, Persist::Snapshot(_)) {
            // It holds every event applied, those waiting among them.
            d.others.clear();
            d.others_merged = 0;
            d.as_sent.clear();
            d.as_sent_bytes = 0;
        }
        if let Some(seq) = own_upto {
            d.own.push_back((token, seq));
        }
        self.outputs.push(Output::Persist { token, write });
    }

    /// Others' events applied from the log's `ranges`: persisted with the
    /// next record of others' events. They hold no frame (their origins
    /// have them durable), so while the last such record is committing
    /// they wait, and a stream of small frames becomes one record a commit
    /// rather than one a frame (our own writes do not wait for them).
    pub(super) fn persist_later(&mut self, ranges: Vec<(PeerId, u64, u64)>) {
        let d = &mut self.durability;
        if d.enabled {
            d.others.extend(ranges);
            // Merged as they double (a commit that keeps failing leaves
            // them waiting): one range an origin, at most.
            if d.others.len() >= MERGE_PAST.max(2 * d.others_merged) {
                merge(&mut d.others);
                d.others_merged = d.others.len();
            }
        }
    }

    /// Whether the node asks for writes (it has storage).
    pub(super) fn stores(&self) -> bool {
        self.durability.enabled
    }

    /// Others' events applied from a received `batch`, all of its events
    /// and nothing else (the log's `ranges`): persisted as
    /// [`persist_later`](Self::persist_later) would, the batch's bytes
    /// stored as they came rather than its events encoded again.
    pub(super) fn persist_as_sent(&mut self, batch: Batch, ranges: Vec<(PeerId, u64, u64)>) {
        let d = &mut self.durability;
        if !d.enabled {
            return;
        }
        if d.as_sent_bytes + batch.bytes().len() > MAX_AS_SENT_BYTES {
            return self.persist_later(ranges);
        }
        d.as_sent_bytes += batch.bytes().len();
        d.as_sent.push(batch);
    }

    /// Asks for the others' events waiting (see
    /// [`persist_later`](Self::persist_later)) in one record, unless the
    /// last such record is not committed yet and not `now`: then they wait
    /// for it. A write of ours asks for them `now`, before itself: it may
    /// depend on them, and restored without them it would be held, not
    /// applied, and its sequence number made again.
    pub(super) fn persist_others(&mut self, now: bool) {
        let d = &mut self.durability;
        let waiting = !d.others.is_empty() || !d.as_sent.is_empty();
        if !waiting || (!now && d.acknowledged < d.others_token) {
            return;
        }
        let mut ranges = std::mem::take(&mut d.others);
        d.others_merged = 0;
        let as_sent = std::mem::take(&mut d.as_sent);
        let mut record = Vec::with_capacity(std::mem::take(&mut d.as_sent_bytes));
        merge(&mut ranges);
        let events = self.engine.logged(&ranges);
        // The batches as they came (in the order they were applied), then
        // the rest encoded: one record of batches back to back, as a
        // commit joins records.
        let mut count = events.len();
        for batch in as_sent {
            record.extend_from_slice(batch.bytes());
            count += batch.count;
        }
        if !events.is_empty() {
            record.extend_from_slice(&P2PEvent::encode_batch(events.iter().copied()));
        }
        if count > 0 {
            self.persist(Persist::Events { record, count }, None);
            self.durability.others_token = self.durability.issued;
        }
    }

    /// Storage committed every write up to `token` (and so every earlier
    /// one). Frames that waited for them leave at the next
    /// [`take_outputs`](Self::take_outputs). A token never issued is
    /// ignored.
    pub fn persisted(&mut self, token: u64) {
        let d = &mut self.durability;
        if token > d.issued || token <= d.acknowledged {
            return;
        }
        d.acknowledged = token;
        while let Some(&(t, seq)) = d.own.front() {
            if t > token {
                break;
            }
            d.own_durable = d.own_durable.max(seq);
            d.own.pop_front();
        }
        while d.held.front().is_some_and(|(t, _, _)| *t <= token) {
            let Some((_, to, frame)) = d.held.pop_front() else {
                break;
            };
            d.held_bytes -= frame.len();
            self.outputs.push(Output::Send { to, frame });
        }
    }

    /// Our own events up to this sequence number are durable (all of them
    /// on a node without storage): a write is acknowledged to the app once
    /// its number is here.
    pub fn durable_upto(&self) -> u64 {
        if self.durability.enabled {
            self.durability.own_durable
        } else {
            self.engine.clock().get(self.engine.peer())
        }
    }

    /// Frames waiting for a commit, and their bytes.
    pub fn held(&self) -> (usize, usize) {
        (self.durability.held.len(), self.durability.held_bytes)
    }

    /// Queues a frame: out now, or after the commit it may reflect.
    pub(super) fn emit_frame(&mut self, to: PeerId, frame: Vec<u8>) {
        let d = &mut self.durability;
        if d.barrier > d.acknowledged {
            d.held_bytes += frame.len();
            d.held.push_back((d.barrier, to, frame));
        } else {
            self.outputs.push(Output::Send { to, frame });
        }
    }

    /// The connection to `peer` is gone: what waited for it is dropped (a
    /// new connection starts a new session, with a handshake first).
    pub(super) fn drop_held(&mut self, peer: PeerId) {
        let d = &mut self.durability;
        d.held.retain(|(_, to, frame)| {
            let keep = *to != peer;
            if !keep {
                d.held_bytes -= frame.len();
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Persist {
        Persist::Events {
            record: bytes.to_vec(),
            count: 1,
        }
    }

    /// A commit writes the last snapshot and the records after it as one;
    /// records before that snapshot are covered by it and not written.
    #[test]
    fn a_commit_is_the_last_snapshot_and_the_records_after_it_joined() {
        let snapshot = |b: u8| Persist::Snapshot(Arc::new(vec![b; 3]));
        let writes = [
            events(b"a"),
            snapshot(1),
            events(b"b"),
            snapshot(2),
            events(b"cd"),
            events(b"e"),
        ];
        let commit = Persist::commit(&writes);
        assert_eq!(commit.snapshot, Some(&[2u8, 2, 2][..]));
        assert_eq!(commit.record.as_deref(), Some(&b"cde"[..]));

        let commit = Persist::commit(&writes[..4]);
        assert_eq!(
            (commit.snapshot, commit.record),
            (Some(&[2u8, 2, 2][..]), None)
        );

        let commit = Persist::commit(&writes[4..]);
        assert_eq!(
            (commit.snapshot, commit.record.as_deref()),
            (None, Some(&b"cde"[..]))
        );

        assert_eq!(
            Persist::commit(&[]),
            Commit {
                snapshot: None,
                record: None
            }
        );
    }
}
