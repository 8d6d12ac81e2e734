//! Workloads on the path a browser peer runs: updates made by signed
//! [`SyncNode`]s through their own writes, taken off the wire as the frames
//! a data channel carries, and a receiving node that takes them through
//! [`SyncNode::receive_frame`] (frame decoding, seal checks, the engine,
//! persist and change outputs) with its digest kept up. Shared by the wasm
//! bench build and the native tests that check it.

use crate::protocol::room::RoomSecret;
use crate::protocol::seal;
use crate::protocol::sync::wire::{self, Decoded, Message};
use crate::protocol::sync::{
    LocalWrite, Output, Refusal, Relay, SyncConfig, SyncNode, VERIFY_WINDOW_MS,
};
use crate::protocol::{
    EngineConfig, EventId, Identity, JsonValue, P2PEvent, PeerId, ReconciliationEngine,
};

/// Wall time of the writers (ms since the epoch, a day in 2001, before the
/// anti-entropy workloads' clock); every later write is a millisecond
/// later.
pub const WRITERS_NOW: u64 = 1_000_000_000_000;

/// The identity seeds of the receiving node and of the neighbour its frames
/// arrive from; writers are seeded from `WRITER_SEEDS` up.
const RECEIVER_SEED: u64 = 1;
const NEIGHBOUR_SEED: u64 = 2;
const WRITER_SEEDS: u64 = 1_000;
/// Listeners' seeds: past the largest workload's writers (C1.2's 30,000).
const LISTENER_SEEDS: u64 = 100_000;

/// The peer every writer sends to (the neighbour that relays to the
/// receiver: its frames are byte for byte the writer's).
pub fn neighbour() -> PeerId {
    Identity::from_seed(NEIGHBOUR_SEED).peer()
}

/// A signed node of the `w`th writer, connected to the neighbour, its
/// opening digest and probe taken.
fn writer(w: u64, neighbour: PeerId) -> SyncNode {
    let identity = Identity::from_seed(WRITER_SEEDS + w);
    let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut node = SyncNode::new(
        engine,
        SyncConfig {
            identity: Some(identity),
            ..SyncConfig::default()
        },
    );
    node.connect(neighbour, WRITERS_NOW);
    node.take_outputs();
    node
}

/// The event frames a node sends to `neighbour` now.
fn event_frames(node: &mut SyncNode, neighbour: PeerId) -> Vec<Vec<u8>> {
    node.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, frame } if to == neighbour => Some(frame),
            _ => None,
        })
        .filter(|f| matches!(wire::decode(f), Ok(Decoded::Message(Message::Events(_)))))
        .collect()
}

fn number(n: u64) -> JsonValue {
    JsonValue::parse(&n.to_string()).expect("a number")
}

/// `n` writers each writing once (to one shared key, or each `key{i}`),
/// writer `i` the value `i`: the frames of B3.1 and C1.2, one signed run
/// each.
pub fn one_write_each(n: u64, same_key: bool) -> Vec<Vec<u8>> {
    writes_each(n, same_key, number)
}

/// `n` writers each writing once to `key{i}` a string of `bytes` bytes:
/// one-event runs whose values dwarf them.
pub fn one_large_write_each(n: u64, bytes: usize) -> Vec<Vec<u8>> {
    writes_each(n, false, |i| {
        let mut text = i.to_string();
        text.extend(std::iter::repeat_n('.', bytes.saturating_sub(text.len())));
        JsonValue::string(&text)
    })
}

fn writes_each(n: u64, same_key: bool, value: impl Fn(u64) -> JsonValue) -> Vec<Vec<u8>> {
    let to = neighbour();
    (0..n)
        .flat_map(|i| {
            let mut node = writer(i, to);
            let key = if same_key {
                "shared".to_string()
            } else {
                format!("key{i}")
            };
            let write = LocalWrite::Set {
                key,
                value: value(i),
            };
            node.apply(write, WRITERS_NOW + i).expect("a write");
            event_frames(&mut node, to)
        })
        .collect()
}

/// The key and value of update `j` of writer `w` among `writers` over
/// `keys` keys: each writer has its own keys (so the final state does not
/// depend on any library's tie-break), and each key is written many times.
pub fn run_heavy_write(w: u64, j: u64, writers: u64, keys: u64) -> (String, u64) {
    (format!("key{}", (j * writers + w) % keys), j)
}

/// `writers` writers making `updates` updates each over `keys` keys, in
/// bursts of `burst` (a page's task: one sealed run, one frame or a few);
/// the writers' bursts interleaved as they would arrive.
pub fn run_heavy(writers: u64, updates: u64, keys: u64, burst: u64) -> Vec<Vec<u8>> {
    let to = neighbour();
    let mut nodes: Vec<SyncNode> = (0..writers).map(|w| writer(w, to)).collect();
    let mut frames = Vec::new();
    let mut j = 0;
    while j < updates {
        let end = (j + burst).min(updates);
        for (w, node) in nodes.iter_mut().enumerate() {
            for u in j..end {
                let (key, value) = run_heavy_write(w as u64, u, writers, keys);
                let write = LocalWrite::Set {
                    key,
                    value: number(value),
                };
                node.apply(write, WRITERS_NOW + u).expect("a write");
            }
            frames.extend(event_frames(node, to));
        }
        j = end;
    }
    frames
}

/// What a writing page's thread does: a signed node that stores its
/// writes, linked to `links` peers, making `updates` writes over 10,000
/// keys in bursts of `burst` (a task each: the writes applied, then the
/// node's outputs taken, each record committed at once, the frames
/// dropped). Returns the node, to be dropped after the timing.
pub fn write_thread(links: u64, updates: u64, burst: u64) -> SyncNode {
    let identity = Identity::from_seed(WRITER_SEEDS);
    let engine = ReconciliationEngine::new(identity.peer(), EngineConfig::default());
    let mut node = SyncNode::new(
        engine,
        SyncConfig {
            identity: Some(identity),
            durable: true,
            ..SyncConfig::default()
        },
    );
    for n in 0..links {
        node.connect(Identity::from_seed(LISTENER_SEEDS + n).peer(), WRITERS_NOW);
    }
    let mut u = 0;
    while u < updates {
        for _ in 0..burst.min(updates - u) {
            let (key, value) = run_heavy_write(0, u, 1, 10_000);
            let write = LocalWrite::Set {
                key,
                value: number(value),
            };
            node.apply(write, WRITERS_NOW + u).expect("a write");
            u += 1;
        }
        // The record asked for, committed; then the frames it held.
        for _ in 0..2 {
            for output in node.take_outputs() {
                if let Output::Persist { token, .. } = output {
                    node.persisted(token);
                }
            }
        }
    }
    node
}

/// `total` writes of one signed writer over 10k keys (each changing its
/// key's value, as in [`super::workload::history`]), made in bursts of
/// `burst` that restart at `split` (a replica that stops there synced
/// there, then the writer went on): the events with their seals, one per
/// burst.
pub fn signed_history(total: u64, burst: u64, split: u64) -> Vec<P2PEvent> {
    let to = neighbour();
    let mut node = writer(0, to);
    let mut events = Vec::with_capacity(total as usize);
    let mut i = 0;
    while i < total {
        let end = (i + burst)
            .min(total)
            .min(if i < split { split } else { u64::MAX });
        for u in i..end {
            let write = LocalWrite::Set {
                key: format!("key{}", u % 10_000),
                value: number(u / 10_000),
            };
            node.apply(write, WRITERS_NOW + u).expect("a write");
        }
        for frame in event_frames(&mut node, to) {
            if let Ok(Decoded::Message(Message::Events(batch))) = wire::decode(&frame) {
                events.extend(batch);
            }
        }
        i = end;
    }
    debug_assert!(seal::verify_runs(&events).is_ok());
    events
}

/// A signed node (the identity of `seed`) holding `events`, in a room with
/// `room`'s secret if given: one side of the deployed anti-entropy
/// benchmark ([`super::workload::settle`] connects two).
pub fn signed_node_with(events: &[P2PEvent], seed: u64, room: Option<RoomSecret>) -> SyncNode {
    let identity = Identity::from_seed(seed);
    let engine = super::workload::engine_with(events, identity.peer());
    SyncNode::new(
        engine,
        SyncConfig {
            identity: Some(identity),
            room,
            ..super::workload::sync_config()
        },
    )
}

/// A signed, durable node taking frames from one neighbour, as a browser
/// peer does: every output is handled as the page handles it (persist
/// requests acknowledged at once, as if storage were instant; change
/// reports and sends dropped), refusals returned.
pub struct Receiver {
    node: SyncNode,
    neighbour: PeerId,
    now_ms: u64,
    /// Batches handed out for verification ([`Receiver::offloading`]).
    verify: Vec<(u64, Vec<u8>)>,
    /// The frames sent, kept when asked for ([`Receiver::keeping_sent`]).
    sent: Option<Vec<(PeerId, Vec<u8>)>>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    pub fn new() -> Self {
        Self::with(false)
    }

    /// A receiver that hands its seals out for verification
    /// ([`SyncConfig::offload_seals`]): the batches wait in
    /// [`take_verify`](Self::take_verify) until [`verified`](Self::verified)
    /// answers them.
    pub fn offloading() -> Self {
        Self::with(true)
    }

    /// An [`offloading`](Self::offloading) receiver that floods what it
    /// takes to `listeners` more peers, as the room peer relays to its
    /// pages (what it sends them is dropped).
    pub fn relaying(listeners: u64) -> Self {
        let mut receiver = Self::configured(SyncConfig {
            offload_seals: true,
            relay: Relay::Flood,
            ..Self::config()
        });
        for n in 0..listeners {
            let peer = Identity::from_seed(LISTENER_SEEDS + n).peer();
            receiver.node.connect(peer, receiver.now_ms);
        }
        receiver.node.take_outputs();
        receiver
    }

    fn with(offload_seals: bool) -> Self {
        Self::configured(SyncConfig {
            offload_seals,
            ..Self::config()
        })
    }

    /// A page's: signed, stored, seals verified a window at a time.
    fn config() -> SyncConfig {
        SyncConfig {
            identity: Some(Identity::from_seed(RECEIVER_SEED)),
            durable: true,
            verify_window_ms: Some(VERIFY_WINDOW_MS),
            ..SyncConfig::default()
        }
    }

    fn configured(config: SyncConfig) -> Self {
        let peer = Identity::from_seed(RECEIVER_SEED).peer();
        let engine = ReconciliationEngine::new(peer, EngineConfig::default());
        let mut node = SyncNode::new(engine, config);
        // Later than every write, so no timestamp is from the future.
        let now_ms = WRITERS_NOW + 100_000_000;
        let neighbour = neighbour();
        node.connect(neighbour, now_ms);
        node.take_outputs();
        Receiver {
            node,
            neighbour,
            now_ms,
            verify: Vec::new(),
            sent: None,
        }
    }

    /// This receiver, keeping the frames it sends for
    /// [`take_sent`](Self::take_sent) rather than dropping them.
    pub fn keeping_sent(mut self) -> Self {
        self.sent = Some(Vec::new());
        self
    }

    /// The frames sent since the last call, with whom to (none unless
    /// [`keeping_sent`](Self::keeping_sent)).
    pub fn take_sent(&mut self) -> Vec<(PeerId, Vec<u8>)> {
        self.sent.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Takes one frame from the neighbour.
    pub fn receive(&mut self, frame: &[u8]) -> Result<(), Refusal> {
        self.receive_at(frame, 0)
    }

    /// Takes one frame from the neighbour `elapsed_ms` after the first:
    /// the node's timer fires first if it is due by then, as a page's
    /// would between two frames (so seals held for verification together
    /// are those of one verification window, not of the whole workload).
    pub fn receive_at(&mut self, frame: &[u8], elapsed_ms: u64) -> Result<(), Refusal> {
        self.tick_at(elapsed_ms)?;
        self.frame_at(frame, elapsed_ms)
    }

    /// The node's timer `elapsed_ms` after the first frame, if it is due
    /// by then.
    pub fn tick_at(&mut self, elapsed_ms: u64) -> Result<(), Refusal> {
        let now = self.now_ms + elapsed_ms;
        if self.node.next_timer() <= now {
            self.node.tick(now);
        }
        self.outputs()
    }

    /// One frame from the neighbour, `elapsed_ms` after the first, and
    /// not the timer: a page's timer and its data channel's messages are
    /// separate tasks, each reading the clock when it runs (see
    /// [`receive_at`](Self::receive_at) for both at one time).
    pub fn frame_at(&mut self, frame: &[u8], elapsed_ms: u64) -> Result<(), Refusal> {
        self.node
            .receive_frame(self.neighbour, frame, self.now_ms + elapsed_ms);
        self.outputs()
    }

    /// Handles the node's outputs as a page does; the last refusal is the
    /// error.
    fn outputs(&mut self) -> Result<(), Refusal> {
        let mut refused = Ok(());
        for output in self.node.take_outputs() {
            match output {
                Output::Persist { token, .. } => self.node.persisted(token),
                Output::Rejected { refusal, .. } => refused = Err(refusal),
                Output::Verify { batch, seals } => self.verify.push((batch, seals)),
                Output::Send { to, frame } => {
                    if let Some(sent) = &mut self.sent {
                        sent.push((to, frame));
                    }
                }
                _ => {}
            }
        }
        refused
    }

    /// Verifies what is held for verification (the timer at the end of
    /// the window), then brings the digest up to date (what the node's
    /// timer does between gossip rounds) and returns its root; a refusal
    /// among the last frames is the error (every batch is answered
    /// first).
    pub fn finish(&mut self, elapsed_ms: u64) -> Result<String, Refusal> {
        self.node.verify_received(self.now_ms + elapsed_ms);
        let mut refused = self.outputs();
        // Handed out: verified here, as a page's Workers would.
        for (batch, seals) in self.take_verify() {
            let answer = self.verified(batch, &seal::verify_packed(&seals), elapsed_ms);
            refused = refused.and(answer);
        }
        refused.map(|()| self.node.digest().to_string())
    }

    /// The batches handed out for verification since the last call.
    pub fn take_verify(&mut self) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut self.verify)
    }

    /// Brings a handed-out batch's verdicts, `elapsed_ms` after the first
    /// frame.
    pub fn verified(
        &mut self,
        batch: u64,
        verdicts: &[u8],
        elapsed_ms: u64,
    ) -> Result<(), Refusal> {
        self.node
            .verified(batch, verdicts, self.now_ms + elapsed_ms);
        self.outputs()
    }

    /// Verifies (or hands out) what is held for verification, as the
    /// window's timer does, `elapsed_ms` after the first frame.
    pub fn verify_held(&mut self, elapsed_ms: u64) -> Result<(), Refusal> {
        self.node.verify_received(self.now_ms + elapsed_ms);
        self.outputs()
    }

    /// Stops handing seals out and verifies what is out, then what is
    /// held, `elapsed_ms` after the first frame (a page whose Workers
    /// failed).
    pub fn verify_here(&mut self, elapsed_ms: u64) -> Result<(), Refusal> {
        self.node.verify_here(self.now_ms + elapsed_ms);
        self.node.verify_received(self.now_ms + elapsed_ms);
        self.outputs()
    }

    pub fn node(&self) -> &SyncNode {
        &self.node
    }
}

/// What stays on a page's thread when Workers verify the seals: `frames`
/// through a signed node that hands its seals out, each batch answered at
/// once with its verdicts from `verdicts`, computed there the first time
/// a batch comes (the same batches come each run, so a first, untimed run
/// fills it). Returns the final digest, and the node (to be dropped
/// after the timing: a page does not drop its node).
pub fn page_thread(
    frames: &[Vec<u8>],
    verdicts: &mut std::collections::HashMap<u64, Vec<u8>>,
) -> Result<(String, Receiver), Refusal> {
    through(Receiver::offloading(), frames, verdicts)
}

/// [`page_thread`]'s work on a node that relays to `listeners` peers
/// ([`Receiver::relaying`]): the room peer's thread, its seals verified
/// elsewhere.
pub fn relay_thread(
    listeners: u64,
    frames: &[Vec<u8>],
    verdicts: &mut std::collections::HashMap<u64, Vec<u8>>,
) -> Result<(String, Receiver), Refusal> {
    through(Receiver::relaying(listeners), frames, verdicts)
}

fn through(
    mut receiver: Receiver,
    frames: &[Vec<u8>],
    verdicts: &mut std::collections::HashMap<u64, Vec<u8>>,
) -> Result<(String, Receiver), Refusal> {
    let mut answer = |receiver: &mut Receiver| {
        for (batch, seals) in receiver.take_verify() {
            let answer = verdicts
                .entry(batch)
                .or_insert_with(|| seal::verify_packed(&seals));
            receiver.verified(batch, answer, 0)?;
        }
        Ok::<(), Refusal>(())
    };
    for frame in frames {
        receiver.receive_at(frame, 0)?;
        answer(&mut receiver)?;
    }
    receiver.verify_held(0)?;
    answer(&mut receiver)?;
    Ok((receiver.finish(0)?, receiver))
}

/// The events of each `Events` frame of `frames` (others skipped).
pub fn events_of(frames: &[Vec<u8>]) -> Vec<Vec<P2PEvent>> {
    frames
        .iter()
        .filter_map(|f| match wire::decode(f) {
            Ok(Decoded::Message(Message::Events(events))) => Some(events),
            _ => None,
        })
        .collect()
}

/// `event` as its writer signed it: without the seal a run's last event
/// carries.
pub fn unsealed(event: &P2PEvent) -> P2PEvent {
    P2PEvent {
        seal: None,
        ..event.clone()
    }
}

/// The events of `frames` as their writers signed them, by id: what a
/// fuzzer checks each event a node took against.
pub fn signed_events(frames: &[Vec<u8>]) -> std::collections::HashMap<EventId, P2PEvent> {
    events_of(frames)
        .iter()
        .flatten()
        .map(|e| (e.id, unsealed(e)))
        .collect()
}

/// Valid frames of three signed writers (runs of four writes, over six
/// keys), one run a frame and then three, as a peer repairing another's
/// gaps sends them; then a digest and two queries: a stream a node takes
/// from a peer. What the fuzzers mutate (`tests/native/fuzz.rs`, the
/// signaling server's).
pub fn signed_stream() -> Vec<Vec<u8>> {
    let runs = events_of(&run_heavy(3, 12, 6, 4));
    let (alone, together) = runs.split_at(3);
    let batches: Vec<Vec<P2PEvent>> = alone
        .iter()
        .cloned()
        .chain(together.chunks(3).map(|c| c.concat()))
        .collect();
    let mut frames: Vec<Vec<u8>> = batches
        .into_iter()
        .flat_map(|events| wire::encode(&Message::Events(events), 5))
        .collect();
    let mut e = ReconciliationEngine::new(PeerId(77), EngineConfig::default());
    e.increment("c", 1, 5).expect("a write");
    let messages = [
        Message::Digest {
            clock: e.clock().clone(),
            root: e.digest(),
        },
        Message::MerkleQuery { depth: 1, index: 1 },
        Message::LeafQuery { index: 3 },
    ];
    frames.extend(messages.iter().flat_map(|m| wire::encode(m, 5)));
    frames
}
