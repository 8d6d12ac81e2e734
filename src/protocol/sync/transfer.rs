//! Snapshot transfer: chunked, windowed, with progress, resumable after a
//! dropped connection.
//!
//! The side with the log offers a snapshot (`SnapshotOffer`) to a peer
//! behind its compaction horizon. The receiver drives the transfer: it asks
//! for a window of bytes from an offset (`SnapshotRequest`), and for the next
//! window once half of that one is in. A window that does not arrive (lost frames, a
//! dropped connection) is asked for again, from the same offset, after a
//! stall; the sender keeps its recent snapshots so the offset stays valid.
//! A snapshot in whole is decoded a slice at a time ([`Decoding`]), may
//! have its seals verified elsewhere (in a signed room, [`Verifying`]), and
//! is loaded a slice at a time ([`Loading`]), each slice a timer's task.

use std::sync::Arc;

use crate::protocol::blake3;
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::engine::SnapshotLoad;
use crate::protocol::event::Hash32;
use crate::protocol::seal::{self, SealError, SnapshotSeals};
use crate::protocol::snapshot::{self, StateSnapshot};

/// Bytes per window: one request, this much back (in chunks of one frame).
/// Large enough that round trips do not bound the throughput, small enough
/// that a stalled window costs little to send again.
pub const WINDOW_BYTES: u64 = 1024 * 1024;

/// How many encoded snapshots a sender keeps for transfers in progress.
pub const KEPT_SNAPSHOTS: usize = 2;

/// A snapshot this node encoded to send. A durable node's are the bytes
/// its storage was given when it folded (or stored a loaded snapshot), kept
/// so that a newcomer after it costs no encode: shared, not copied (the
/// encoder's vector behind the `Arc` as it is).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The bytes' hash, which offers and requests name it by: hashed when
    /// it is first offered (most folds are never sent).
    id: Option<Hash32>,
    pub clock: VectorClock,
    pub bytes: Arc<Vec<u8>>,
}

impl Outgoing {
    pub fn new(clock: VectorClock, bytes: Arc<Vec<u8>>) -> Self {
        Outgoing {
            id: None,
            clock,
            bytes,
        }
    }

    /// Its id, to offer it by (hashed the first time).
    pub fn offer_id(&mut self) -> Hash32 {
        *self
            .id
            .get_or_insert_with(|| Hash32(*blake3::hash(&self.bytes).as_bytes()))
    }

    /// Whether it was offered as `id`: only an offered snapshot is asked
    /// for.
    pub fn offered_as(&self, id: Hash32) -> bool {
        self.id == Some(id)
    }

    /// Whether it was ever offered (a transfer of it may be under way).
    pub fn is_offered(&self) -> bool {
        self.id.is_some()
    }
}

/// A snapshot being received.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub from: PeerId,
    pub id: Hash32,
    /// The version vector the snapshot covers: once ours descends it, the
    /// transfer is no longer needed.
    pub clock: VectorClock,
    pub total: u64,
    pub bytes: Vec<u8>,
    /// The end of the window last asked for.
    pub requested_until: u64,
    /// When a byte last arrived (or the transfer started).
    pub last_progress_ms: u64,
    /// Windows asked for again since the last byte arrived: a source that
    /// never answers (gone quiet, or lying) is given up after
    /// [`MAX_STALLS`].
    pub stalls: u32,
}

/// Times a stalled transfer is asked for again before it is given up (a
/// later offer starts afresh).
pub const MAX_STALLS: u32 = 5;

impl Incoming {
    /// Takes a chunk if it continues the transfer; returns whether it did.
    pub fn accept(
        &mut self,
        id: Hash32,
        offset: u64,
        total: u64,
        chunk: &[u8],
        now_ms: u64,
    ) -> bool {
        let fits = self.id == id
            && self.total == total
            && offset == self.bytes.len() as u64
            && offset + chunk.len() as u64 <= total;
        if fits {
            // Room for the whole snapshot once a quarter of it came: one
            // copy of that quarter, where growing by doubling copies up to
            // half of it at once (a million keys: 16 MB, one task of 56 ms
            // in Chromium). Not before: `total` is the sender's claim, and
            // reserving it as offered would let one message hold up to
            // `max_snapshot` of a page's memory.
            let received = self.bytes.len() + chunk.len();
            if received.saturating_mul(4) as u64 >= total {
                self.bytes.reserve_exact(total as usize - self.bytes.len());
            }
            self.bytes.extend_from_slice(chunk);
            self.last_progress_ms = now_ms;
            self.stalls = 0;
        }
        fits
    }

    pub fn received(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_complete(&self) -> bool {
        self.received() == self.total
    }

    /// Whether to ask for the next window now: half of what was asked for
    /// is in, so the next one is on its way while the rest arrives (two
    /// windows in flight keep the channel busy across the request's round
    /// trip).
    pub fn wants_next_window(&self) -> bool {
        self.requested_until < self.total
            && self.requested_until - self.received().min(self.requested_until) <= WINDOW_BYTES / 2
    }

    pub fn is_stalled(&self, now_ms: u64, patience_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_progress_ms) > patience_ms
    }
}

/// The most seals of a snapshot handed to a verifier elsewhere in one
/// batch: a page's Workers take batches in turn, so a large snapshot keeps
/// them all busy, and a batch is ~50 ms of a worker's time.
pub const SNAPSHOT_SEALS_PER_BATCH: usize = 4 * seal::BATCH;

/// Events of a snapshot decoded, or whose runs are opened (form checked,
/// digests computed), or loaded, in one go, a timer's task: a few ms
/// natively.
pub const SNAPSHOT_SLICE: usize = 16 * 1024;

/// A snapshot that came in whole, decoded a slice at a time; `clock` is
/// the one its offer named, which it must have.
pub struct Decoding {
    pub from: PeerId,
    pub clock: VectorClock,
    pub snapshot: snapshot::Decoding,
}

/// A snapshot checked (and its seals verified), loaded a slice at a time.
pub struct Loading {
    pub from: PeerId,
    pub load: SnapshotLoad,
}

/// A snapshot that came in whole, its seals being verified elsewhere: its
/// runs are opened a slice at a time ([`open_slice`](Self::open_slice)),
/// each batch handed out as it fills, and it is loaded once every batch's
/// verdicts are back. Its batches have ids `first_batch..`.
pub struct Verifying {
    pub from: PeerId,
    pub snapshot: StateSnapshot,
    pub seals: SnapshotSeals,
    /// Every run is opened.
    opened: bool,
    /// Batches kept for it: ids `first_batch..first_batch + batches`.
    batches: usize,
    /// Seals handed out so far.
    handed: usize,
    first_batch: u64,
    /// Per batch handed out, its verdicts once back.
    verdicts: Vec<Option<Vec<u8>>>,
}

impl Verifying {
    /// The seals `snapshot` carries: they fill
    /// `seals.div_ceil(SNAPSHOT_SEALS_PER_BATCH)` batches, whose ids
    /// `first_batch..` are kept for it.
    pub fn seals_in(snapshot: &StateSnapshot) -> usize {
        snapshot.events.iter().filter(|e| e.seal.is_some()).count()
    }

    /// `snapshot`, with `seals` of them ([`seals_in`](Self::seals_in)),
    /// its batches' ids from `first_batch`.
    pub fn new(from: PeerId, snapshot: StateSnapshot, seals: usize, first_batch: u64) -> Self {
        Verifying {
            from,
            snapshot,
            seals: SnapshotSeals::default(),
            opened: false,
            batches: seals.div_ceil(SNAPSHOT_SEALS_PER_BATCH),
            handed: 0,
            first_batch,
            verdicts: Vec::new(),
        }
    }

    /// Opens the next [`SNAPSHOT_SLICE`] events' runs: the batches
    /// they fill (all that is left, once every run is opened), to hand
    /// out.
    pub fn open_slice(&mut self) -> Result<Vec<(u64, Vec<u8>)>, SealError> {
        self.opened = self
            .seals
            .open_some(&self.snapshot.events, SNAPSHOT_SLICE)?;
        let mut out = Vec::new();
        while self.seals.len() - self.handed >= SNAPSHOT_SEALS_PER_BATCH
            || (self.opened && self.handed < self.seals.len())
        {
            let end = self.seals.len().min(self.handed + SNAPSHOT_SEALS_PER_BATCH);
            let batch = self.first_batch + self.verdicts.len() as u64;
            // One seal an event that carries one: no more than counted.
            debug_assert!(self.verdicts.len() < self.batches);
            out.push((batch, self.seals.pack(self.handed..end)));
            self.verdicts.push(None);
            self.handed = end;
        }
        Ok(out)
    }

    /// Whether every run is opened (and every batch handed out).
    pub fn is_open(&self) -> bool {
        self.opened && self.handed == self.seals.len()
    }

    /// Takes `batch`'s verdicts if it is one of ours handed out (and not
    /// answered yet); returns whether it was ours.
    pub fn take(&mut self, batch: u64, verdicts: &[u8]) -> bool {
        let Some(slot) = batch
            .checked_sub(self.first_batch)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.verdicts.get_mut(i))
        else {
            return false;
        };
        slot.get_or_insert_with(|| verdicts.to_vec());
        true
    }

    /// A verdict per seal, in order, once every run is opened and every
    /// batch's verdicts are back. A batch answered with too few has 0 for
    /// the rest (too many: the rest are not read), so no seal is judged by
    /// another's verdict.
    pub fn all_verdicts(&self) -> Option<Vec<u8>> {
        if !self.is_open() {
            return None;
        }
        let mut all = Vec::with_capacity(self.seals.len());
        for verdicts in &self.verdicts {
            let verdicts = verdicts.as_deref()?;
            let expected = SNAPSHOT_SEALS_PER_BATCH.min(self.seals.len() - all.len());
            all.extend(verdicts.iter().take(expected));
            all.resize(all.len() + expected - verdicts.len().min(expected), 0);
        }
        Some(all)
    }

    /// Opens what is left here: for a verifier that failed.
    pub fn open_rest(&mut self) -> Result<(), SealError> {
        self.opened = self.seals.open_some(&self.snapshot.events, usize::MAX)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(total: u64) -> Incoming {
        Incoming {
            from: PeerId(1),
            id: Hash32([7; 32]),
            clock: VectorClock::default(),
            total,
            bytes: Vec::new(),
            requested_until: 0,
            last_progress_ms: 0,
            stalls: 0,
        }
    }

    /// The claimed total is reserved once a quarter of it arrived, not
    /// before, and the bytes are not moved again after.
    #[test]
    fn room_for_the_whole_is_made_once_a_quarter_came() {
        let total = 1000;
        let mut transfer = incoming(total);
        let chunk = [1u8; 50];
        for _ in 0..4 {
            assert!(transfer.accept(Hash32([7; 32]), transfer.received(), total, &chunk, 0));
        }
        assert!(
            transfer.bytes.capacity() < total as usize,
            "reserved at a fifth"
        );
        assert!(transfer.accept(Hash32([7; 32]), 200, total, &chunk, 0));
        assert!(transfer.bytes.capacity() >= total as usize);
        let at = transfer.bytes.as_ptr();
        while !transfer.is_complete() {
            assert!(transfer.accept(Hash32([7; 32]), transfer.received(), total, &chunk, 0));
        }
        assert_eq!(transfer.bytes.as_ptr(), at, "moved after the reserve");
    }
}
