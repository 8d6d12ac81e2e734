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
use crate::protocol::sync::wire::Gzipped;

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
///
/// With [`SyncConfig::gzip_snapshots`](super::SyncConfig::gzip_snapshots)
/// it is offered gzipped too, once the node's edge has gzipped it (asked
/// by [`Output::GzipSnapshot`](super::Output::GzipSnapshot), or handed
/// over unasked by a durable page's storage, which gzips every fold).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The bytes' hash, which offers and requests name it by: hashed when
    /// it is first offered (most folds are never sent).
    id: Option<Hash32>,
    pub clock: VectorClock,
    pub bytes: Arc<Vec<u8>>,
    gzip: Gzip,
}

/// Where a kept snapshot's gzipped form stands.
#[derive(Debug, Clone)]
enum Gzip {
    /// Not asked for.
    None,
    /// Asked of the edge at this time; offers wait for it.
    Asked { since_ms: u64 },
    /// In hand, and smaller than the snapshot: hashed, as the snapshot
    /// is, when first offered. Never replaced once it is (a transfer may
    /// be reading it).
    Ready {
        id: Option<Hash32>,
        bytes: Arc<Vec<u8>>,
    },
    /// The edge could not gzip it, or it did not shrink, or it took too
    /// long: offered as it is.
    Failed,
}

/// The context of a snapshot's id derived from its gzipped form's.
const RAW_OF_GZIPPED: &str = "cpc-sync 2026 snapshot id from its gzipped form";

/// How long offers wait for a snapshot's gzipped form before they go
/// without it, and a newcomer for its edge to inflate one. A million keys
/// (24 MB) gzip in about a second in Chromium.
pub const GZIP_PATIENCE_MS: u64 = 10_000;

impl Outgoing {
    pub fn new(clock: VectorClock, bytes: Arc<Vec<u8>>) -> Self {
        Outgoing {
            id: None,
            clock,
            bytes,
            gzip: Gzip::None,
        }
    }

    /// Its id, to offer it by: its hash, the first time. With its gzipped
    /// form in hand, a key derived from that form's hash instead: a
    /// function of the same bytes (gzip's output is its input's), for a
    /// third of the hashing, in the task of the offer (~50 ms in wasm for
    /// a million keys' 24 MB).
    pub fn offer_id(&mut self) -> Hash32 {
        if let Some(id) = self.id {
            return id;
        }
        let id = match self.gzip_offer() {
            Some(gzipped) => Hash32(blake3::derive_key(RAW_OF_GZIPPED, &gzipped.id.0)),
            None => Hash32(*blake3::hash(&self.bytes).as_bytes()),
        };
        self.id = Some(id);
        id
    }

    /// Its gzipped form, to offer beside it, when in hand (hashed the
    /// first time).
    pub fn gzip_offer(&mut self) -> Option<Gzipped> {
        let Gzip::Ready { id, bytes } = &mut self.gzip else {
            return None;
        };
        let id = *id.get_or_insert_with(|| Hash32(*blake3::hash(bytes).as_bytes()));
        Some(Gzipped {
            id,
            total: bytes.len() as u64,
        })
    }

    /// The bytes offered as `id`, in either form: the snapshot's, or its
    /// gzipped form's (only an offered snapshot is asked for).
    pub fn bytes_for(&self, id: Hash32) -> Option<&Arc<Vec<u8>>> {
        match &self.gzip {
            _ if self.id == Some(id) => Some(&self.bytes),
            Gzip::Ready {
                id: Some(gzipped),
                bytes,
            } if *gzipped == id => Some(bytes),
            _ => None,
        }
    }

    /// Whether it was ever offered (a transfer of it may be under way).
    pub fn is_offered(&self) -> bool {
        self.id.is_some()
    }

    /// Whether its gzipped form is yet to be asked for.
    pub fn wants_gzip(&self) -> bool {
        matches!(self.gzip, Gzip::None)
    }

    /// Records that the edge was asked to gzip it.
    pub fn gzip_asked(&mut self, now_ms: u64) {
        self.gzip = Gzip::Asked { since_ms: now_ms };
    }

    /// Whether offers wait for its gzipped form.
    pub fn gzip_pending(&self) -> bool {
        matches!(self.gzip, Gzip::Asked { .. })
    }

    /// Whether the edge has kept offers waiting for its gzipped form
    /// longer than [`GZIP_PATIENCE_MS`].
    pub fn gzip_overdue(&self, now_ms: u64) -> bool {
        // (`abs_diff`: a time ahead of now was read off a clock since set back.)
        matches!(self.gzip, Gzip::Asked { since_ms } if now_ms.abs_diff(since_ms) > GZIP_PATIENCE_MS)
    }

    /// Takes the edge's answer: the gzipped form, if smaller than the
    /// snapshot; else it is offered as it is. A form in hand (or given up)
    /// stays: an id offered must keep naming the same bytes.
    pub fn take_gzip(&mut self, gzipped: Result<Vec<u8>, String>) {
        if !matches!(self.gzip, Gzip::None | Gzip::Asked { .. }) {
            return;
        }
        self.gzip = match gzipped {
            Ok(bytes) if bytes.len() < self.bytes.len() => Gzip::Ready {
                id: None,
                bytes: Arc::new(bytes),
            },
            _ => Gzip::Failed,
        };
    }

    /// Gives up waiting for the gzipped form.
    pub fn gzip_failed(&mut self) {
        if self.gzip_pending() {
            self.gzip = Gzip::Failed;
        }
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
    /// When the transfer last made progress (or a window was asked for):
    /// [`PROGRESS_BYTES`] more arrived, or the window asked for did.
    pub last_progress_ms: u64,
    /// What had arrived at that progress.
    pub progress_mark: u64,
    /// Patience periods without progress since the last progress (each
    /// asks for the window again while the source is connected): a source
    /// that never answers (gone quiet, gone, or lying) is given up after
    /// [`MAX_STALLS`].
    pub stalls: u32,
    /// When the bytes are the snapshot gzipped: the length of the snapshot
    /// they must inflate to (what its offer named).
    pub inflate_to: Option<u64>,
}

/// A snapshot that came in gzipped, out with the edge to be inflated
/// ([`Output::GunzipSnapshot`](super::Output::GunzipSnapshot)); `id` names
/// the gzipped bytes, `total` the length they must inflate to.
pub struct Inflating {
    pub from: PeerId,
    pub id: Hash32,
    pub clock: VectorClock,
    pub total: u64,
    /// When it went out: an edge that has not answered within
    /// [`GZIP_PATIENCE_MS`] is not waited for (a later offer is taken).
    pub since_ms: u64,
}

/// Times a stalled transfer is asked for again before it is given up (a
/// later offer starts afresh).
pub const MAX_STALLS: u32 = 5;

/// What must arrive for a transfer to count as progressing (short of
/// the whole window asked for): a source is waited on while it
/// progresses, and other offers meanwhile are not taken, so a source
/// sending a byte (or nothing) now and then must not count as one.
pub const PROGRESS_BYTES: u64 = 16 * 1024;

impl Incoming {
    /// The same snapshot offered by `from`, to resume from: a snapshot's
    /// bytes come from one source, so another source starts it over (put
    /// together from two, a failure could be blamed on neither: a member
    /// splicing bad bytes into an honest peer's transfer would have the
    /// honest peer cut off).
    pub fn resume_from(&mut self, from: PeerId) {
        if self.from != from {
            self.from = from;
            self.bytes.clear();
            self.progress_mark = 0;
        }
    }

    /// Takes a chunk from `from` if it continues the transfer (only the
    /// source's do: another peer's would be taken in its place); returns
    /// whether it did.
    pub fn accept(
        &mut self,
        from: PeerId,
        id: Hash32,
        offset: u64,
        total: u64,
        chunk: &[u8],
        now_ms: u64,
    ) -> bool {
        let fits = self.fits(from, id, offset, total, chunk.len());
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
            let received = self.received();
            if received - self.progress_mark >= PROGRESS_BYTES || received >= self.requested_until {
                self.last_progress_ms = now_ms;
                self.progress_mark = received;
                self.stalls = 0;
            }
        }
        fits
    }

    /// Whether a chunk of `len` bytes from `from` continues the transfer.
    pub fn fits(&self, from: PeerId, id: Hash32, offset: u64, total: u64, len: usize) -> bool {
        self.from == from
            && self.id == id
            && self.total == total
            && len > 0
            && offset == self.bytes.len() as u64
            && offset.saturating_add(len as u64) <= total
    }

    pub fn received(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The bytes its buffer takes once `chunk` more are taken (see
    /// [`accept`](Self::accept): room for the whole once a quarter came,
    /// growing by doubling before).
    pub fn would_hold(&self, chunk: usize) -> u64 {
        let after = (self.bytes.len() as u64).saturating_add(chunk as u64);
        if after.saturating_mul(4) >= self.total {
            self.total.max(after)
        } else {
            (self.bytes.capacity() as u64).max(after.saturating_mul(2))
        }
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
        // (`abs_diff`: progress ahead of now was read off a clock since
        // set back, and would never stall.)
        now_ms.abs_diff(self.last_progress_ms) > patience_ms
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
            progress_mark: 0,
            stalls: 0,
            inflate_to: None,
        }
    }

    /// The form an id was offered as keeps naming the same bytes: a late
    /// second answer from the edge does not replace it, nor one that is
    /// no smaller than the snapshot count.
    #[test]
    fn a_gzipped_form_once_in_hand_is_kept() {
        let mut kept = Outgoing::new(VectorClock::default(), Arc::new(vec![0; 1000]));
        assert!(kept.wants_gzip());
        kept.gzip_asked(5);
        assert!(kept.gzip_pending() && !kept.gzip_overdue(5 + GZIP_PATIENCE_MS));
        assert!(kept.gzip_overdue(6 + GZIP_PATIENCE_MS));
        kept.take_gzip(Ok(vec![1; 10]));
        let offered = kept.gzip_offer().expect("in hand");
        assert_eq!(offered.total, 10);
        kept.take_gzip(Ok(vec![2; 5]));
        assert_eq!(kept.gzip_offer(), Some(offered));
        assert_eq!(kept.bytes_for(offered.id).map(|b| b.len()), Some(10));
        assert!(kept.bytes_for(offered.id).is_some());

        let mut large = Outgoing::new(VectorClock::default(), Arc::new(vec![0; 10]));
        large.gzip_asked(0);
        large.take_gzip(Ok(vec![1; 10]));
        assert_eq!(large.gzip_offer(), None);
        assert!(!large.wants_gzip() && !large.gzip_pending());
    }

    /// The claimed total is reserved once a quarter of it arrived, not
    /// before, and the bytes are not moved again after.
    #[test]
    fn room_for_the_whole_is_made_once_a_quarter_came() {
        let total = 1000;
        let mut transfer = incoming(total);
        let chunk = [1u8; 50];
        // The source's next chunk, at the offset it reached.
        let next = |transfer: &mut Incoming| {
            let at = transfer.received();
            transfer.accept(PeerId(1), Hash32([7; 32]), at, total, &chunk, 0)
        };
        for _ in 0..4 {
            assert!(next(&mut transfer));
        }
        assert!(
            transfer.bytes.capacity() < total as usize,
            "reserved at a fifth"
        );
        assert!(next(&mut transfer));
        assert!(transfer.bytes.capacity() >= total as usize);
        let at = transfer.bytes.as_ptr();
        while !transfer.is_complete() {
            assert!(next(&mut transfer));
        }
        assert_eq!(transfer.bytes.as_ptr(), at, "moved after the reserve");
    }
}
