//! A received `Events` frame, kept as it came while its events apply.
//!
//! When every event of the frame applies on its own (none a duplicate,
//! none refused, none held, none releasing a held one), the node's log
//! gains exactly those events, so the frame's bytes are what encoding
//! them again would give a peer that lacks them all, and its batch is
//! what storage would record. The node then forwards the frame and
//! stores the batch as they are instead of encoding the events once per
//! link and once more for storage.
//!
//! Nothing of a whole frame is particular to its link (its check is a
//! hash of its bytes), and its bytes decoded here to the events that
//! applied, so they decode to the same events wherever they go: a sender
//! cannot get other bytes forwarded or stored than what it had applied.

use std::ops::Range;

use crate::protocol::sync::wire;

#[derive(Debug)]
pub(super) struct Batch {
    frame: Vec<u8>,
    /// Where the event batch is in `frame` ([`wire::event_batch_at`]).
    batch: Range<usize>,
    /// How many events the batch holds.
    pub(super) count: usize,
}

impl Batch {
    /// A copy of `frame`, if it is a whole `Events` frame of `count`
    /// events.
    pub(super) fn of(frame: &[u8], count: usize) -> Option<Batch> {
        Some(Batch {
            batch: wire::event_batch_at(frame)?,
            frame: frame.to_vec(),
            count,
        })
    }

    /// The frame as it came.
    pub(super) fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Its event batch: the record [`Persist::events`] would encode from
    /// the events, when they are applied, all of them and nothing else.
    ///
    /// [`Persist::events`]: super::Persist::events
    pub(super) fn bytes(&self) -> &[u8] {
        &self.frame[self.batch.clone()]
    }
}
