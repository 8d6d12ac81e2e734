//! What waits to be sent to one socket, bounded in bytes, and the task that
//! writes it. The writer runs apart from the socket's reader, so a peer
//! that stops reading blocks only its writer: the reader still applies the
//! idle timeout, and relays to that peer are dropped once [`OUTBOX_BYTES`]
//! wait, instead of piling up in the server's memory.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::sync::Notify;

use super::stats::Counters;

/// Bytes of messages waiting for one socket at most (the one being sent
/// included); what would go beyond is dropped. A newcomer to a room is
/// called by the peers it will connect to, an offer of a few KiB and a
/// dozen candidates each: 1 MiB is a hundred or so calls at once.
pub const OUTBOX_BYTES: usize = 1 << 20;

/// Bytes of sync frames from the room peer waiting for one socket at most
/// (apart from [`OUTBOX_BYTES`]); a page that lets more pile up is not
/// reading, and its link to the room peer is dropped, as a data channel's
/// is in the browser. Snapshots go out as the page asks for windows of
/// them, so an honest page stays far below it.
pub const FRAME_BYTES: usize = 16 << 20;

/// What a queued frame is counted beyond its bytes: its slot in the queue
/// and its allocation's header. Counted in the bytes alone, a sender of
/// frames of 8 bytes (a relayed message may be a bare address) queued 2M
/// of them for one socket, ~128 MiB against the 16 MiB bound.
pub const FRAME_COST: usize = 64;

/// What a frame of `len` bytes is counted while it waits.
fn charged(len: usize) -> usize {
    len.saturating_add(FRAME_COST)
}

/// Bytes of frames waiting for one socket past which the room peer holds
/// back what the page is owed (`SyncNode::set_backlogged`), as a page does
/// at its data channel's high-water mark: an answer of many megabytes
/// waits in the room's log, not in this queue.
pub const FRAME_HIGH_WATER: usize = 1 << 20;

/// Bytes of frames waiting below which a held-back page is sent to again.
pub const FRAME_LOW_WATER: usize = 256 << 10;

/// One thing to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Text(String),
    /// A sync frame of the room peer.
    Binary(Vec<u8>),
    /// A close frame, the last thing sent.
    Close(u16, &'static str),
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It would take the outbox over [`OUTBOX_BYTES`].
    Full,
    /// The socket is closing or gone.
    Closed,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Out>,
    /// Texts queued or being sent.
    bytes: usize,
    /// Frames queued or being sent.
    frame_bytes: usize,
    /// No more pushes: a close is queued, or the socket is gone.
    closed: bool,
}

pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    /// Told when frames are sent (or the outbox is shut).
    drained: Notify,
    limit: usize,
    counters: Arc<Counters>,
}

impl Outbox {
    pub fn new(limit: usize, counters: Arc<Counters>) -> Outbox {
        Outbox {
            queue: Mutex::default(),
            ready: Notify::new(),
            drained: Notify::new(),
            limit,
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `text`, or drops it (counted) when it does not fit.
    pub fn push(&self, text: String) -> Result<(), Refused> {
        let mut queue = self.lock();
        if queue.closed {
            return Err(Refused::Closed);
        }
        if queue.bytes + text.len() > self.limit {
            self.counters.dropped_outbox_full.fetch_add(1, Relaxed);
            return Err(Refused::Full);
        }
        queue.bytes += text.len();
        self.counters
            .queued_bytes
            .fetch_add(text.len() as u64, Relaxed);
        queue.items.push_back(Out::Text(text));
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    /// Queues a sync frame, or refuses it when [`FRAME_BYTES`] wait.
    pub fn push_frame(&self, frame: Vec<u8>) -> Result<(), Refused> {
        let mut queue = self.lock();
        if queue.closed {
            return Err(Refused::Closed);
        }
        let cost = charged(frame.len());
        if queue.frame_bytes + cost > FRAME_BYTES {
            return Err(Refused::Full);
        }
        queue.frame_bytes += cost;
        queue.items.push_back(Out::Binary(frame));
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    /// Bytes of frames queued or being sent, each counted with
    /// [`FRAME_COST`].
    pub fn frame_bytes(&self) -> usize {
        self.lock().frame_bytes
    }

    /// Waits until at most `limit` bytes of frames wait (or the outbox is
    /// shut).
    pub async fn frames_at_most(&self, limit: usize) {
        loop {
            // Listening before the check: a send between the two is not
            // missed.
            let sent = self.drained.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            {
                let queue = self.lock();
                if queue.frame_bytes <= limit || queue.closed {
                    return;
                }
            }
            sent.await;
        }
    }

    /// Queues a close frame after what is queued; nothing more is taken.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut queue = self.lock();
        if queue.closed {
            return;
        }
        queue.closed = true;
        queue.items.push_back(Out::Close(code, reason));
        drop(queue);
        self.ready.notify_one();
    }

    /// Whether a close is queued (or the socket is gone).
    pub fn is_closing(&self) -> bool {
        self.lock().closed
    }

    /// The socket is gone: drops what waits and takes nothing more.
    pub fn shut(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.items.clear();
        queue.frame_bytes = 0;
        self.counters
            .queued_bytes
            .fetch_sub(std::mem::take(&mut queue.bytes) as u64, Relaxed);
        drop(queue);
        self.ready.notify_one();
        self.drained.notify_waiters();
    }

    /// The next thing to send; `None` once shut or after the close frame.
    async fn next(&self) -> Option<Out> {
        loop {
            {
                let mut queue = self.lock();
                if let Some(out) = queue.items.pop_front() {
                    return Some(out);
                }
                if queue.closed {
                    return None;
                }
            }
            // One consumer: a notification while it was not waiting is
            // kept as a permit, so none is lost between unlock and here.
            self.ready.notified().await;
        }
    }

    /// A frame of `len` bytes taken by [`Outbox::next`] has been sent (or
    /// failed).
    fn frame_sent(&self, len: usize) {
        let mut queue = self.lock();
        queue.frame_bytes -= charged(len).min(queue.frame_bytes);
        drop(queue);
        self.drained.notify_waiters();
    }

    /// A text taken by [`Outbox::next`] has been sent (or failed).
    fn sent(&self, len: usize) {
        let mut queue = self.lock();
        let len = len.min(queue.bytes);
        queue.bytes -= len;
        self.counters.queued_bytes.fetch_sub(len as u64, Relaxed);
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    #[cfg(test)]
    pub fn take(&self) -> Vec<Out> {
        let mut queue = self.lock();
        let items: Vec<Out> = queue.items.drain(..).collect();
        for out in &items {
            if let Out::Text(text) = out {
                queue.bytes -= text.len();
                self.counters
                    .queued_bytes
                    .fetch_sub(text.len() as u64, Relaxed);
            }
        }
        items
    }
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// It sent the close frame queued by [`Outbox::close`].
    Closed,
    /// The socket failed, or a send took longer than the timeout.
    Failed,
    /// The outbox was shut.
    Shut,
}

/// Sends what `outbox` holds until it is shut or closed; a send that takes
/// longer than `timeout` (a peer that stopped reading) ends it.
pub async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    outbox: Arc<Outbox>,
    timeout: Duration,
) -> Written {
    while let Some(out) = outbox.next().await {
        let (message, text_len, frame_len) = match out {
            Out::Text(text) => {
                let len = text.len();
                (Message::Text(text.into()), len, 0)
            }
            Out::Binary(frame) => {
                let len = frame.len();
                (Message::Binary(frame.into()), 0, len)
            }
            Out::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let close = sink.send(Message::Close(Some(frame)));
                return match tokio::time::timeout(timeout, close).await {
                    Ok(Ok(())) => Written::Closed,
                    _ => Written::Failed,
                };
            }
        };
        let sent = tokio::time::timeout(timeout, sink.send(message)).await;
        outbox.sent(text_len);
        outbox.frame_sent(frame_len);
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Written::Failed,
            Err(_) => {
                outbox.counters.send_timeouts.fetch_add(1, Relaxed);
                return Written::Failed;
            }
        }
    }
    Written::Shut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_and_counted() {
        let counters = Arc::new(Counters::default());
        let outbox = Outbox::new(100, counters.clone());
        assert_eq!(outbox.push("a".repeat(60)), Ok(()));
        assert_eq!(outbox.push("b".repeat(41)), Err(Refused::Full));
        assert_eq!(outbox.push("c".repeat(40)), Ok(()));
        assert_eq!(outbox.bytes(), 100);
        let stats = counters.snapshot(0);
        assert_eq!((stats.queued_bytes, stats.dropped_outbox_full), (100, 1));
        outbox.shut();
        assert_eq!(counters.snapshot(0).queued_bytes, 0);
        assert_eq!(outbox.push("d".into()), Err(Refused::Closed));
    }

    /// Each frame counted with its [`FRAME_COST`].
    #[test]
    fn frames_of_the_room_peer_have_a_bound_of_their_own() {
        let outbox = Outbox::new(10, Arc::default());
        let first = FRAME_BYTES - 2 * FRAME_COST - 1;
        assert_eq!(outbox.push_frame(vec![0; first]), Ok(()));
        assert_eq!(outbox.push("signal".into()), Ok(()), "texts are apart");
        assert_eq!(outbox.push_frame(vec![0; 2]), Err(Refused::Full));
        assert_eq!(outbox.push_frame(vec![0; 1]), Ok(()));
        assert_eq!(outbox.push_frame(Vec::new()), Err(Refused::Full));
        outbox.shut();
        assert_eq!(outbox.push_frame(vec![0]), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_close_comes_after_what_was_queued_and_ends_the_queue() {
        let outbox = Outbox::new(100, Arc::default());
        outbox.push("why".into()).unwrap();
        outbox.close(1008, "replaced");
        assert_eq!(outbox.push("late".into()), Err(Refused::Closed));
        assert_eq!(outbox.next().await, Some(Out::Text("why".into())));
        outbox.sent(3);
        assert_eq!(outbox.next().await, Some(Out::Close(1008, "replaced")));
        assert_eq!(outbox.next().await, None);
        assert_eq!(outbox.bytes(), 0);
    }

    /// A wait for the frames to drain ends when sends take them below
    /// the mark, not before, and at once on a shut outbox.
    #[tokio::test]
    async fn a_wait_for_the_frames_to_drain_ends_when_they_do() {
        let outbox = Arc::new(Outbox::new(100, Arc::default()));
        for _ in 0..3 {
            outbox.push_frame(vec![0; 100]).unwrap();
        }
        let one = 100 + FRAME_COST;
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.frames_at_most(one).await }
        });
        for left in [2 * one, one] {
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished(), "drained at {}", left + one);
            let Some(Out::Binary(frame)) = outbox.next().await else {
                panic!("a frame")
            };
            outbox.frame_sent(frame.len());
            assert_eq!(outbox.frame_bytes(), left);
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("told")
            .unwrap();
        outbox.shut();
        outbox.frames_at_most(0).await;
    }
}
