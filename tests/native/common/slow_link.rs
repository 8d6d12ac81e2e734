//! A slow link for tests of pacing: frames go out at a rate, arrive a
//! latency later, and the sender hears of a backlog as a page's data
//! channel tells it.

use std::collections::VecDeque;

/// One direction of a link of `bytes_per_ms` and `latency_ms`: frames
/// wait in the sender's buffer, go out at the link's rate, and arrive a
/// latency later, in order. The sender is told of a backlog as a page's
/// data channel tells it.
pub struct SlowLink {
    bytes_per_ms: usize,
    latency_ms: u64,
    /// Frames not yet on the wire, and their bytes.
    buffer: VecDeque<Vec<u8>>,
    buffered: usize,
    /// Of the buffer's first frame, bytes already sent.
    sent_of_first: usize,
    /// On the wire: when each arrives.
    wire: VecDeque<(u64, Vec<u8>)>,
    backlogged: bool,
}

impl SlowLink {
    /// Backlogged over 1 MiB buffered, drained under 256 KiB.
    const HIGH: usize = 1 << 20;
    const LOW: usize = 256 << 10;

    pub fn new(bytes_per_ms: usize, latency_ms: u64) -> Self {
        SlowLink {
            bytes_per_ms,
            latency_ms,
            buffer: VecDeque::new(),
            buffered: 0,
            sent_of_first: 0,
            wire: VecDeque::new(),
            backlogged: false,
        }
    }

    pub fn push(&mut self, frame: Vec<u8>) {
        self.buffered += frame.len();
        self.buffer.push_back(frame);
    }

    /// A millisecond of sending; the backlog, if it changed.
    pub fn step(&mut self, now: u64) -> Option<bool> {
        let mut budget = self.bytes_per_ms;
        while let Some(first) = self.buffer.front() {
            let sent = (first.len() - self.sent_of_first).min(budget);
            budget -= sent;
            self.sent_of_first += sent;
            self.buffered -= sent;
            if self.sent_of_first < first.len() {
                break;
            }
            let frame = self.buffer.pop_front().expect("the first frame");
            self.sent_of_first = 0;
            self.wire.push_back((now + self.latency_ms, frame));
        }
        let backlogged = self.buffered
            > if self.backlogged {
                Self::LOW
            } else {
                Self::HIGH
            };
        (backlogged != std::mem::replace(&mut self.backlogged, backlogged)).then_some(backlogged)
    }

    pub fn arrived(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.wire.front().is_some_and(|(at, _)| *at <= now) {
            out.extend(self.wire.pop_front().map(|(_, frame)| frame));
        }
        out
    }

    pub fn is_idle(&self) -> bool {
        self.buffer.is_empty() && self.wire.is_empty()
    }
}
