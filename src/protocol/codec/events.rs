//! Events as runs in columns: the one binary form of a list of events, on
//! the wire (`Events` and reconciliation messages), in storage (a log
//! record) and in a snapshot.
//!
//! Consecutive events of one origin form a *run*: the origin is an index
//! into the batch's peer table and the sequence numbers are implicit after
//! the first. Each field of the events is a column of its own (ops, key
//! references, timestamps, value lengths, value bytes, clock entries,
//! counter numbers, seals), so like bytes sit together and compress.
//!
//! - peer table: each peer once, as its 32-byte public key when a seal
//!   names it (its id is derived from the key), else as its 8-byte id;
//! - keys: a per-batch table, each key spelled once, then referred to by
//!   index;
//! - timestamps: the millisecond delta from the previous event, zigzag,
//!   with the logical counter only when it is not zero;
//! - clock entries (observed dots, dependency deltas): a peer index and the
//!   delta from the last sequence number the batch named for that peer;
//! - seals: the 64-byte signature; the key comes from the peer table.
//!
//! ```text
//! batch = FORMAT:u8, coded:varint, the 12 column lengths (varints), the 12 columns
//!         peers clock runs ops keys key-bytes times lengths values entries numbers seals
//! ```
//!
//! `coded` marks (bit `i` for column `i`) the columns written as runs of
//! equal values ([`super::runs`]): the key references, timestamps and
//! value lengths, each where that is shorter. A burst of writes has one
//! timestamp delta and one value length over and over: a byte an event
//! each, otherwise. Format 1, read still (a page's stored log records and
//! snapshots), has no `coded` and no run-coded column.
//!
//! Decoding bounds every count by the bytes left in its column before it
//! reserves anything and checks every field: a batch decodes to exactly
//! the events it was encoded from, or to a typed error. A run-coded
//! column expands to at most [`EXPANSION`] bytes an op byte (each event
//! has one): no run can make the decoder allocate more than the batch's
//! own size allows.

use hashbrown::HashMap;
use std::ops::Range;
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::key_table::{Found, KeyTable, KeyWords};
use super::varint::{self, zigzag, Reader};
use super::CodecError;
use crate::protocol::clock::{Entries, PeerId, Timestamp, VectorClock, MAX_CLOCK_ENTRIES};
use crate::protocol::event::{
    CounterOp, CounterShare, EventId, Operation, P2PEvent, RegisterOp, SetOp,
};
use crate::protocol::identity::{peer_id_of, PublicKey};
use crate::protocol::seal::Seal;
use crate::protocol::text::Text;
use crate::protocol::value::JsonValue;
use crate::protocol::{hashing, prefetch};

/// The batch layout's version, its first byte.
pub const FORMAT: u8 = 2;

/// The format before run-coded columns, still read.
const FORMAT_PLAIN: u8 = 1;

/// The columns that may be run-coded (`coded`'s bits).
const CODABLE: u64 = 1 << KEYS | 1 << TIMES | 1 << LENGTHS;

/// A run-coded column's plain form is at most this many bytes an event
/// (the ops column's length) and [`EXPANSION_SLACK`] more: an event has one
/// key reference (a varint), one or two timestamp varints (the logical
/// counter's is at most 3 bytes) and at most one value length.
const EXPANSION: usize = 13;
const EXPANSION_SLACK: usize = 16;

const PEERS: usize = 0;
const CLOCK: usize = 1;
const RUNS: usize = 2;
const OPS: usize = 3;
const KEYS: usize = 4;
const KEY_BYTES: usize = 5;
const TIMES: usize = 6;
const LENGTHS: usize = 7;
const VALUES: usize = 8;
const ENTRIES: usize = 9;
const NUMBERS: usize = 10;
const SEALS: usize = 11;
const NAMES: [&str; 12] = [
    "peers",
    "clock",
    "runs",
    "ops",
    "keys",
    "key bytes",
    "times",
    "lengths",
    "values",
    "entries",
    "numbers",
    "seals",
];

// The op byte: the operation's code, then flags.
const CODE: u8 = 0b111;
const REGISTER_WRITE: u8 = 0;
const REGISTER_DELETE: u8 = 1;
const COUNTER_INCREMENT: u8 = 2;
const COUNTER_DELETE: u8 = 3;
const SET_ADD: u8 = 4;
const SET_REMOVE: u8 = 5;
const SET_DELETE: u8 = 6;
const RESOLUTION: u8 = 1 << 3;
const DEPS: u8 = 1 << 4;
/// Bits 5-6: the observed clock is empty (0), one entry (1), or a count
/// and its entries (2).
const OBSERVED_SHIFT: u8 = 5;
const OBSERVED: u8 = 0b11 << OBSERVED_SHIFT;
const NEW_KEY: u8 = 1 << 7;

// A peer table entry's tag.
const PEER_ID: u8 = 0;
const PEER_KEY: u8 = 1;

// A seal's flags.
const SEAL_OWN_KEY: u8 = 1;
const SEAL_FIRST: u8 = 2;

/// A decoded batch: the events, and the clock encoded with them (empty
/// but in snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub clock: VectorClock,
    pub events: Vec<P2PEvent>,
    /// Whether the events are sorted by id, each once (as a snapshot's
    /// must be): found run by run while decoding, since a run's own
    /// events are in order (a walk over a million decoded events after
    /// was ~10 ms of reading them back from memory).
    pub sorted: bool,
}

/// Encodes `events` (any order; runs are found as they come) with `clock`.
pub fn encode<'a>(events: impl IntoIterator<Item = &'a P2PEvent>, clock: &VectorClock) -> Vec<u8> {
    let events: Vec<&P2PEvent> = events.into_iter().collect();
    let mut out = Vec::new();
    encode_into(&mut out, &events, clock, None);
    out
}

/// [`encode`], appended to `out` (a snapshot's header is before it: its
/// tens of megabytes are then written once, not copied after it), with
/// the events' keys hashed by whoever read them last (`keys`, each pushed
/// in order: a snapshot's events are gathered run by run first, and a
/// million events are then not read again for their keys) or not.
pub fn encode_into(
    out: &mut Vec<u8>,
    events: &[&P2PEvent],
    clock: &VectorClock,
    keys: Option<KeyWords>,
) {
    debug_assert!(keys.as_ref().is_none_or(|k| k.len() == events.len()));
    let keys = keys.filter(|k| k.len() == events.len());
    let mut e = Encoder::new(events, keys);
    for (peer, seq) in clock.iter() {
        let index = e.peer(peer);
        varint::put(&mut e.cols[CLOCK], index);
        varint::put(&mut e.cols[CLOCK], seq);
    }
    let mut runs = 0u64;
    let mut at = 0;
    while at < events.len() {
        at = e.run(events, at);
        runs += 1;
    }
    e.finish(out, clock.len(), runs);
}

/// Whether `next` extends the run that `last` ends: `last` has no seal,
/// and `next` is its origin's next event.
fn continues(last: &P2PEvent, next: &P2PEvent) -> bool {
    last.seal.is_none()
        && next.id.peer == last.id.peer
        && Some(next.id.seq) == last.id.seq.checked_add(1)
}

struct Encoder<'a> {
    cols: [Vec<u8>; 12],
    peers: HashMap<PeerId, u64, FixedState>,
    /// Per peer: its id, and the key its first seal named (when that key
    /// derives the id).
    table: Vec<(PeerId, Option<PublicKey>)>,
    /// The batch's key table, worked out for the whole batch first.
    keys: KeyTable,
    /// The batch, and the index in it of the event being encoded: the
    /// clocks of the events to come are asked for ahead
    /// ([`Encoder::prefetch`]).
    batch: &'a [&'a P2PEvent],
    at: usize,
    /// Per peer index: the last sequence number a clock entry named, and
    /// where its next run is expected to start.
    cursors: Vec<u64>,
    next_run: Vec<u64>,
    millis: u64,
    /// The peer looked up last, and its index.
    last_peer: Option<(PeerId, u64)>,
    /// Peers looked up lately, by their id's low bits: in front of
    /// `peers`, whose hashing was most of encoding a snapshot's clock
    /// entries in the size-optimized wasm (ids are hashes of keys, so
    /// their low bits spread; colliding ids only fall through to `peers`).
    recent: Vec<(PeerId, u64)>,
    /// The peers of the last observed clock and the last deps encoded, by
    /// place, and their indices: a room's clocks of one role name its
    /// writers in the same order, so the peer at an entry's place in the
    /// last one is most often the entry's.
    places: [Vec<(PeerId, u64)>; 2],
}

/// Which of [`Encoder::places`] a clock's entries are looked up in.
#[derive(Clone, Copy)]
enum Role {
    Observed,
    Deps,
}

/// Slots of [`Encoder::recent`]: a room's writers, most of the time.
const RECENT: usize = 256;

/// How many events ahead a clock is asked for.
const AHEAD: usize = 16;

impl<'a> Encoder<'a> {
    /// An encoder for `batch`, its keys hashed already or not.
    fn new(batch: &'a [&'a P2PEvent], keys: Option<KeyWords>) -> Self {
        let events = batch.len();
        let key = |i: usize| -> &str { &batch[i].key };
        let mut e = Encoder {
            cols: Default::default(),
            peers: HashMap::with_hasher(hashing::state()),
            table: Vec::new(),
            keys: match keys {
                Some(words) => KeyTable::from_words(words, key),
                None => KeyTable::new(events, key),
            },
            batch,
            at: 0,
            cursors: Vec::new(),
            next_run: Vec::new(),
            millis: 0,
            last_peer: None,
            recent: Vec::new(),
            places: Default::default(),
        };
        if events >= RECENT {
            // No peer's index is `u64::MAX`: every slot starts empty. (A
            // small batch goes without: its few peers hash quickly.)
            e.recent = vec![(PeerId(0), u64::MAX); RECENT];
        }
        for col in [OPS, KEYS, TIMES, LENGTHS] {
            e.cols[col].reserve(events);
        }
        e
    }

    fn peer(&mut self, peer: PeerId) -> u64 {
        // Most lookups are for the peer of the last one.
        if let Some((_, index)) = self.last_peer.filter(|(p, _)| *p == peer) {
            return index;
        }
        let slot = peer.0 as usize % RECENT;
        if let Some(&(p, index)) = self.recent.get(slot) {
            if p == peer && index != u64::MAX {
                self.last_peer = Some((peer, index));
                return index;
            }
        }
        let index = self.peer_in_table(peer);
        if let Some(entry) = self.recent.get_mut(slot) {
            *entry = (peer, index);
        }
        index
    }

    fn peer_in_table(&mut self, peer: PeerId) -> u64 {
        let next = self.table.len() as u64;
        let index = *self.peers.entry(peer).or_insert_with(|| {
            self.table.push((peer, None));
            self.cursors.push(0);
            self.next_run.push(1);
            next
        });
        self.last_peer = Some((peer, index));
        index
    }

    /// The run starting at `events[start]` (consecutive sequence numbers
    /// of one origin, up to a seal), its events encoded as it is found:
    /// where the next one starts. Its header goes after them (the runs'
    /// column is its own), so that each event is read once, not once to
    /// find the run's end and again to encode it.
    fn run(&mut self, events: &[&'a P2PEvent], start: usize) -> usize {
        let head = events[start].id;
        let origin = self.peer(head.peer);
        self.event(events[start]);
        let mut end = start + 1;
        while end < events.len() && continues(events[end - 1], events[end]) {
            self.event(events[end]);
            end += 1;
        }
        let len = end - start;
        let at = origin as usize;
        let delta = head.seq.wrapping_sub(self.next_run[at]) as i64;
        self.next_run[at] = head.seq.wrapping_add(len as u64);
        let last = events[end - 1];
        let seal = last.seal.as_deref();
        varint::put(&mut self.cols[RUNS], origin);
        varint::put(&mut self.cols[RUNS], zigzag(delta));
        varint::put(
            &mut self.cols[RUNS],
            ((len as u64) << 1) | u64::from(seal.is_some()),
        );
        if let Some(seal) = seal {
            self.seal(origin, head.seq, last.id, seal);
        }
        end
    }

    fn seal(&mut self, origin: u64, first: u64, last: EventId, seal: &Seal) {
        let entry = &mut self.table[origin as usize];
        if entry.1.is_none() && seal.signer() == entry.0 {
            entry.1 = Some(*seal.key());
        }
        let own_key = entry.1 != Some(*seal.key());
        let flags = bit(own_key, SEAL_OWN_KEY) | bit(seal.first != first, SEAL_FIRST);
        let out = &mut self.cols[SEALS];
        out.push(flags);
        if own_key {
            out.extend_from_slice(seal.key());
        }
        if seal.first != first {
            varint::put(out, last.seq.wrapping_sub(seal.first));
        }
        out.extend_from_slice(&seal.signature[0]);
        out.extend_from_slice(&seal.signature[1]);
    }

    fn event(&mut self, event: &'a P2PEvent) {
        let (code, observed, value) = match &event.op {
            Operation::Register(RegisterOp::Write {
                value,
                observed,
                resolution,
            }) => (
                REGISTER_WRITE | bit(*resolution, RESOLUTION),
                Some(observed),
                Some(value),
            ),
            Operation::Register(RegisterOp::Delete { observed }) => {
                (REGISTER_DELETE, Some(observed), None)
            }
            Operation::Counter(CounterOp::Increment { by, sum }) => {
                varint::put(&mut self.cols[NUMBERS], zigzag(*by));
                varint::put(&mut self.cols[NUMBERS], zigzag(*sum));
                (COUNTER_INCREMENT, None, None)
            }
            Operation::Counter(CounterOp::Delete { observed }) => {
                varint::put(&mut self.cols[NUMBERS], observed.len() as u64);
                for share in observed {
                    let index = self.peer(share.peer);
                    let out = &mut self.cols[NUMBERS];
                    varint::put(out, index);
                    varint::put(out, share.seq);
                    varint::put(out, zigzag(share.sum));
                }
                (COUNTER_DELETE, None, None)
            }
            Operation::Set(SetOp::Add { member, observed }) => {
                (SET_ADD, Some(observed), Some(member))
            }
            Operation::Set(SetOp::Remove { member, observed }) => {
                (SET_REMOVE, Some(observed), Some(member))
            }
            Operation::Set(SetOp::Delete { observed }) => (SET_DELETE, Some(observed), None),
        };
        let observed_form = match observed.map_or(0, VectorClock::len) {
            0 => 0,
            1 => 1,
            _ => 2,
        };
        let key: &'a str = &event.key;
        self.prefetch(event);
        let found = self.keys.next();
        let flags = code
            | bit(!event.deps.is_empty(), DEPS)
            | (observed_form << OBSERVED_SHIFT)
            | bit(matches!(found, Found::New(_)), NEW_KEY);
        self.cols[OPS].push(flags);
        match found {
            Found::Known(index) => varint::put(&mut self.cols[KEYS], u64::from(index)),
            Found::New(_) => {
                varint::put(&mut self.cols[KEYS], key.len() as u64);
                self.cols[KEY_BYTES].extend_from_slice(key.as_bytes());
            }
        }
        let time = event.hlc;
        let delta = time.millis().wrapping_sub(self.millis) as i64;
        self.millis = time.millis();
        let logical = time.logical();
        varint::put(
            &mut self.cols[TIMES],
            (zigzag(delta) << 1) | u64::from(logical != 0),
        );
        if logical != 0 {
            varint::put(&mut self.cols[TIMES], u64::from(logical));
        }
        if let Some(value) = value {
            varint::put(&mut self.cols[LENGTHS], value.as_str().len() as u64);
            self.cols[VALUES].extend_from_slice(value.as_str().as_bytes());
        }
        if let Some(observed) = observed {
            self.clock(observed, observed_form == 2, Role::Observed);
        }
        if !event.deps.is_empty() {
            self.clock(&event.deps, true, Role::Deps);
        }
    }

    /// Asks for the clocks of the event [`AHEAD`] of `event` (the one
    /// being encoded, `batch[at]`), natively (see
    /// [`prefetch`](crate::protocol::prefetch)): a clock of more than one
    /// entry is on the heap, and its first read a cache miss.
    fn prefetch(&mut self, event: &P2PEvent) {
        let at = self.at;
        debug_assert!(std::ptr::eq(self.batch[at], event));
        self.at += 1;
        if !prefetch::AVAILABLE {
            return;
        }
        if let Some(event) = self.batch.get(at + AHEAD) {
            event.deps.prefetch();
            if let Some(observed) = event.op.observed_clock() {
                observed.prefetch();
            }
        }
    }

    /// A clock's entries (by peer id), each a peer index and the delta
    /// from that peer's cursor.
    fn clock(&mut self, clock: &VectorClock, counted: bool, role: Role) {
        if counted {
            varint::put(&mut self.cols[ENTRIES], clock.len() as u64);
        }
        for (place, (peer, seq)) in clock.iter().enumerate() {
            let index = match self.places[role as usize].get(place) {
                Some(&(p, index)) if p == peer => index,
                _ => {
                    let index = self.peer(peer);
                    let places = &mut self.places[role as usize];
                    if place < places.len() {
                        places[place] = (peer, index);
                    } else if place == places.len() && place < RECENT {
                        places.push((peer, index));
                    }
                    index
                }
            };
            let cursor = &mut self.cursors[index as usize];
            let delta = seq.wrapping_sub(*cursor) as i64;
            *cursor = seq;
            varint::put(&mut self.cols[ENTRIES], index);
            varint::put(&mut self.cols[ENTRIES], zigzag(delta));
        }
    }

    fn finish(mut self, out: &mut Vec<u8>, clock_len: usize, runs: u64) {
        let mut peers = Vec::with_capacity(self.table.len() * 33 + 5);
        varint::put(&mut peers, self.table.len() as u64);
        for (id, key) in &self.table {
            match key {
                Some(key) => {
                    peers.push(PEER_KEY);
                    peers.extend_from_slice(key);
                }
                None => {
                    peers.push(PEER_ID);
                    peers.extend_from_slice(&id.0.to_le_bytes());
                }
            }
        }
        self.cols[PEERS] = peers;
        prefix_count(&mut self.cols[CLOCK], clock_len as u64);
        prefix_count(&mut self.cols[RUNS], runs);
        let limit = self.cols[OPS].len() * EXPANSION + EXPANSION_SLACK;
        let mut coded = 0u64;
        for col in [KEYS, TIMES, LENGTHS] {
            if self.cols[col].len() > limit {
                continue;
            }
            if let Some(runs) = super::runs::encode(&self.cols[col]) {
                self.cols[col] = runs;
                coded |= 1 << col;
            }
        }
        let total: usize = self.cols.iter().map(Vec::len).sum();
        out.reserve_exact(2 + 12 * 10 + total);
        out.push(FORMAT);
        varint::put(out, coded);
        for col in &self.cols {
            varint::put(out, col.len() as u64);
        }
        for col in &self.cols {
            out.extend_from_slice(col);
        }
    }
}

fn bit(on: bool, bit: u8) -> u8 {
    if on {
        bit
    } else {
        0
    }
}

fn prefix_count(column: &mut Vec<u8>, count: u64) {
    let mut head = Vec::with_capacity(column.len() + 5);
    varint::put(&mut head, count);
    head.extend_from_slice(column);
    *column = head;
}

/// Decodes a batch; any defect is a typed error.
pub fn decode(bytes: &[u8]) -> Result<Batch, CodecError> {
    decode_as(bytes, Read::default())
}

/// How a batch is read: its text shared ([`decode_shared`]), of at most
/// `limit` events ([`decode_at_most`]), and, for a snapshot's, of no
/// more events than its clock counts (a snapshot's are distinct and
/// within its clock), refused before any is decoded.
#[derive(Clone, Copy)]
pub struct Read {
    pub shared: bool,
    pub limit: usize,
    pub within_clock: bool,
}

impl Default for Read {
    fn default() -> Self {
        Read {
            shared: false,
            limit: usize::MAX,
            within_clock: false,
        }
    }
}

/// Decodes a batch of at most `limit` events, or refuses it before
/// decoding any ([`CodecError::TooManyEvents`]): an event takes 160
/// bytes decoded, and as little as one in a batch (its op byte, its key
/// and time run-coded: a delete of a key named before), so a batch of a
/// few MB of a peer's decodes to gigabytes (the events' room is reserved
/// at once, before the first is read).
pub fn decode_at_most(bytes: &[u8], limit: usize) -> Result<Batch, CodecError> {
    decode_as(
        bytes,
        Read {
            limit,
            ..Read::default()
        },
    )
}

/// Decodes a batch whose keys and values are ranges of two buffers, its
/// key and value columns, instead of one allocation each (see
/// [`Text`]): for our own stored snapshot, whose events are all kept
/// while the state rests on them.
pub fn decode_shared(bytes: &[u8]) -> Result<Batch, CodecError> {
    decode_as(
        bytes,
        Read {
            shared: true,
            ..Read::default()
        },
    )
}

/// The length of the batch `bytes` starts with, its header and its
/// columns (a storage record may hold several batches back to back).
pub fn batch_len(bytes: &[u8]) -> Result<usize, CodecError> {
    let mut header = Reader::new(bytes, "header");
    header_coded(&mut header)?;
    let mut columns = 0usize;
    for _ in 0..12 {
        columns = columns.saturating_add(header.at_most(bytes.len())?);
    }
    let len = (bytes.len() - header.remaining()).saturating_add(columns);
    if len > bytes.len() {
        return Err(CodecError::Truncated("header"));
    }
    Ok(len)
}

/// The format byte and the run-coded columns' bits, read.
fn header_coded(header: &mut Reader) -> Result<u64, CodecError> {
    match header.u8()? {
        FORMAT_PLAIN => Ok(0),
        FORMAT => {
            let coded = header.u64()?;
            if coded & !CODABLE != 0 {
                return Err(CodecError::Invalid(
                    "a column that cannot be run-coded is marked so",
                ));
            }
            Ok(coded)
        }
        format => Err(CodecError::Format(format)),
    }
}

/// A batch's columns: ranges of its bytes, and of `plain` for the
/// run-coded ones (their plain form).
struct Columns {
    ranges: [Range<usize>; 12],
    coded: u64,
    plain: Vec<u8>,
}

impl Columns {
    /// The columns of the batch `bytes`, the run-coded ones expanded, if
    /// it holds at most `limit` events (one op byte each).
    fn of(bytes: &[u8], limit: usize) -> Result<Self, CodecError> {
        let (mut ranges, coded) = layout(bytes)?;
        let count = ranges[OPS].len();
        if count > limit {
            return Err(CodecError::TooManyEvents {
                count: count as u64,
                limit: limit as u64,
            });
        }
        let mut plain = Vec::new();
        if coded != 0 {
            let limit = ranges[OPS]
                .len()
                .saturating_mul(EXPANSION)
                .saturating_add(EXPANSION_SLACK);
            for (i, range) in ranges.iter_mut().enumerate() {
                if coded & 1 << i != 0 {
                    let start = plain.len();
                    super::runs::expand_into(&mut plain, &bytes[range.clone()], limit, NAMES[i])?;
                    *range = start..plain.len();
                }
            }
        }
        Ok(Columns {
            ranges,
            coded,
            plain,
        })
    }

    /// Each column read up to what is `left` of it.
    fn left(&mut self, left: [usize; 12]) {
        for (range, left) in self.ranges.iter_mut().zip(left) {
            range.start = range.end - left;
        }
    }

    /// A reader of each column.
    fn readers<'a>(&'a self, bytes: &'a [u8]) -> [Reader<'a>; 12] {
        std::array::from_fn(|i| {
            let source = if self.coded & 1 << i != 0 {
                &self.plain
            } else {
                bytes
            };
            Reader::new(&source[self.ranges[i].clone()], NAMES[i])
        })
    }
}

/// The batch's 12 columns, as ranges of `bytes` (the header before them:
/// the format byte, the run-coded columns' bits and their lengths), and
/// those bits.
fn layout(bytes: &[u8]) -> Result<([Range<usize>; 12], u64), CodecError> {
    let mut header = Reader::new(bytes, "header");
    let coded = header_coded(&mut header)?;
    let mut lengths = [0usize; 12];
    for length in &mut lengths {
        *length = header.at_most(bytes.len())?;
    }
    let mut at = bytes.len() - header.remaining();
    let mut ranges: [Range<usize>; 12] = Default::default();
    for (range, length) in ranges.iter_mut().zip(lengths) {
        header.take(length)?;
        *range = at..at + length;
        at += length;
    }
    header.finish()?;
    Ok((ranges, coded))
}

/// Decodes a batch as `read` says.
pub fn decode_as(bytes: &[u8], read: Read) -> Result<Batch, CodecError> {
    let columns = Columns::of(bytes, read.limit)?;
    let cols = columns.readers(bytes);
    let column_text = |col: usize, what| match read.shared {
        true => std::str::from_utf8(cols[col].rest())
            .map(|text| Some(Arc::from(text)))
            .map_err(|_| CodecError::Utf8(what)),
        false => Ok(None),
    };
    let state = Tables {
        key_text: column_text(KEY_BYTES, "key bytes")?,
        value_text: column_text(VALUES, "values")?,
        ..Tables::default()
    };
    let mut d = Decoder::resume(cols, state);
    let clock = d.head()?;
    if read.within_clock {
        within(d.cols[OPS].remaining(), &clock)?;
    }
    let (events, sorted) = d.events()?;
    for col in &d.cols {
        col.finish()?;
    }
    Ok(Batch {
        clock,
        events,
        sorted,
    })
}

/// A batch decoded a few runs at a time ([`step`](Self::step)), its
/// bytes owned: a newcomer's snapshot of a million events is a third of a
/// second of a page's thread decoded in one go, and each slice here is a
/// task of its own. What it decodes, and every check, is what [`decode`]
/// does.
pub struct Resumable {
    bytes: Vec<u8>,
    /// What is left of each column: a range of `bytes`, or of the plain
    /// form of a run-coded one.
    cols: Columns,
    tables: Tables,
    clock: VectorClock,
    /// Runs not begun yet.
    runs: usize,
    /// The run begun and not finished, and its next sequence number: a
    /// slice may end inside a run (an unsigned room's one writer's
    /// events are all one run).
    current: Option<(Run, u64)>,
    /// Its events (one op byte each), reserved at the first step.
    count: usize,
    events: Vec<P2PEvent>,
    sorted: bool,
}

impl Resumable {
    /// The batch at `bytes[start..]`: its header, peer table and clock
    /// are read here (a few bytes a writer), its runs by [`step`](Self::step).
    /// Read as `read` says, but for its text (never shared); room for
    /// its events is reserved by the first step.
    pub fn new(bytes: Vec<u8>, start: usize, read: Read) -> Result<Self, CodecError> {
        let body = bytes.get(start..).ok_or(CodecError::Truncated("header"))?;
        let mut cols = Columns::of(body, read.limit)?;
        for (i, col) in cols.ranges.iter_mut().enumerate() {
            if cols.coded & 1 << i == 0 {
                *col = col.start + start..col.end + start;
            }
        }
        let mut d = Decoder::resume(cols.readers(&bytes), Tables::default());
        let clock = d.head()?;
        let count = d.cols[OPS].remaining();
        if read.within_clock {
            within(count, &clock)?;
        }
        let runs = d.cols[RUNS].count(3)?;
        let (left, tables) = d.pause();
        cols.left(left);
        Ok(Resumable {
            bytes,
            cols,
            tables,
            clock,
            runs,
            current: None,
            count,
            events: Vec::new(),
            sorted: true,
        })
    }

    /// The events the batch holds, bounded by [`Read::limit`].
    pub fn events(&self) -> usize {
        self.count
    }

    /// Decodes `events` more events, or what is left; returns whether the
    /// batch is decoded (then every column must have been read to its
    /// end). After an error the batch is of no more use.
    pub fn step(&mut self, events: usize) -> Result<bool, CodecError> {
        let Resumable {
            bytes,
            cols,
            tables,
            runs,
            current,
            count,
            events: decoded,
            sorted,
            ..
        } = self;
        if decoded.capacity() == 0 {
            decoded.reserve_exact(*count);
        }
        let until = decoded.len().saturating_add(events.max(1));
        let mut d = Decoder::resume(cols.readers(bytes), std::mem::take(tables));
        while decoded.len() < until {
            let (run, next) = match current.take() {
                Some(begun) => begun,
                None if *runs > 0 => {
                    *runs -= 1;
                    let run = d.run_head(decoded.last(), sorted)?;
                    (run, run.first)
                }
                None => break,
            };
            let room = (until - decoded.len()) as u64;
            let to = run.end.min(next.saturating_add(room));
            d.run_events(&run, next, to, decoded)?;
            if to < run.end {
                *current = Some((run, to));
            } else {
                d.run_seal(&run, decoded)?;
            }
        }
        let done = *runs == 0 && current.is_none();
        if done {
            for col in &d.cols {
                col.finish()?;
            }
        }
        let (left, t) = d.pause();
        cols.left(left);
        *tables = t;
        Ok(done)
    }

    /// The batch, once [`step`](Self::step) said it is decoded (else
    /// `None`, and nothing is taken).
    pub fn take(&mut self) -> Option<Batch> {
        (self.runs == 0 && self.current.is_none()).then(|| Batch {
            clock: std::mem::take(&mut self.clock),
            events: std::mem::take(&mut self.events),
            sorted: self.sorted,
        })
    }
}

/// Refuses a batch of `count` events that its `clock` cannot hold.
fn within(count: usize, clock: &VectorClock) -> Result<(), CodecError> {
    let counted = clock.total();
    if count as u64 > counted {
        return Err(CodecError::TooManyEvents {
            count: count as u64,
            limit: counted,
        });
    }
    Ok(())
}

/// What a decoder carries from one run to the next besides its columns:
/// a [`Resumable`] keeps it between slices.
#[derive(Default)]
struct Tables {
    /// With [`decode_shared`]: the key and value columns, whole, that
    /// keys and values are ranges of.
    key_text: Option<Arc<str>>,
    value_text: Option<Arc<str>>,
    table: Vec<(PeerId, Option<PublicKey>)>,
    keys: Vec<Text>,
    cursors: Vec<u64>,
    next_run: Vec<u64>,
    millis: u64,
}

/// A run's header: its origin (an index into the peer table), its
/// sequence numbers `first..end`, and whether a seal ends it.
#[derive(Clone, Copy)]
struct Run {
    origin: usize,
    first: u64,
    end: u64,
    sealed: bool,
}

/// A decoder over a batch's columns.
///
/// Its first error sticks ([`fail`](Self::fail)): a read that fails, and
/// every read after it, gives a default (zero, empty; every column is
/// emptied, so no count or length read after reserves or loops over
/// anything), and a lookup by a bad index gives a default entry. An event
/// is then straight-line code, where a `?` on each of its fields built an
/// error path of its own, dropping what was read before it. The first
/// error is returned, as the `?`s did (what comes before it is read the
/// same way, in the same order), once a part: the peer table and clock, a
/// run's events (checked after each, so nothing is kept after an error),
/// its seal (checked before it is made). A run's header keeps its `?`s:
/// the tables are indexed by what it reads.
struct Decoder<'a> {
    cols: [Reader<'a>; 12],
    t: Tables,
    error: Option<CodecError>,
}

impl<'a> Decoder<'a> {
    fn resume(cols: [Reader<'a>; 12], t: Tables) -> Self {
        Decoder {
            cols,
            t,
            error: None,
        }
    }

    /// The tables, to resume from, and how much is left of each column.
    fn pause(self) -> ([usize; 12], Tables) {
        (std::array::from_fn(|i| self.cols[i].remaining()), self.t)
    }

    /// Records `error` unless an earlier one stuck; nothing is read after.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, error: CodecError) {
        self.error.get_or_insert(error);
        for col in &mut self.cols {
            *col = Reader::new(&[], col.column);
        }
    }

    /// The first error since the last check, if there was one.
    fn check(&mut self) -> Result<(), CodecError> {
        match self.error.take() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// `result`'s value, or `default` after recording its error.
    #[inline(always)]
    fn or<T>(&mut self, result: Result<T, CodecError>, default: T) -> T {
        match result {
            Ok(value) => value,
            Err(e) => {
                self.fail(e);
                default
            }
        }
    }

    #[inline(always)]
    fn u8(&mut self, col: usize) -> u8 {
        let read = self.cols[col].u8();
        self.or(read, 0)
    }

    /// `N` bytes as they are.
    fn array<const N: usize>(&mut self, col: usize) -> [u8; N] {
        let read = self.cols[col].array();
        self.or(read, [0; N])
    }

    /// A varint: its one-byte case inlined, the rest out of line.
    #[inline(always)]
    fn u64(&mut self, col: usize) -> u64 {
        match self.cols[col].short() {
            Some(value) => value,
            None => self.long_u64(col),
        }
    }

    /// One call for a varint of more than one byte, as the reader's own.
    #[inline(never)]
    fn long_u64(&mut self, col: usize) -> u64 {
        let read = self.cols[col].long();
        self.or(read, 0)
    }

    #[inline(always)]
    fn i64(&mut self, col: usize) -> i64 {
        varint::unzigzag(self.u64(col))
    }

    /// A varint that must fit `usize` and be at most `max`.
    #[inline(always)]
    fn at_most(&mut self, col: usize, max: usize) -> usize {
        let value = self.u64(col);
        match usize::try_from(value) {
            Ok(v) if v <= max => v,
            _ => {
                let column = self.cols[col].column;
                self.fail(CodecError::Count {
                    column,
                    count: value,
                    limit: max as u64,
                });
                0
            }
        }
    }

    /// A count of items of at least `min_bytes` each of column `col`:
    /// bounded by what is left of it, so it is safe to reserve.
    fn count(&mut self, col: usize, min_bytes: usize) -> usize {
        let max = self.cols[col].remaining() / min_bytes;
        self.at_most(col, max)
    }

    /// The id of the peer at `index` in the table (a default when there is
    /// none).
    fn peer_at(&mut self, index: u64, column: &'static str) -> PeerId {
        match self.peer_index(index, column) {
            Ok(i) => self.t.table[i].0,
            Err(e) => {
                self.fail(e);
                PeerId(0)
            }
        }
    }

    /// The peer table and the clock, before the runs: checked once.
    fn head(&mut self) -> Result<VectorClock, CodecError> {
        self.peers();
        let clock = self.version_vector();
        self.check()?;
        Ok(clock)
    }

    fn peers(&mut self) {
        let count = self.count(PEERS, 9);
        self.t.table.reserve(count);
        for _ in 0..count {
            let entry = match self.u8(PEERS) {
                PEER_ID => (PeerId(u64::from_le_bytes(self.array(PEERS))), None),
                PEER_KEY => {
                    let key: PublicKey = self.array(PEERS);
                    (peer_id_of(&key), Some(key))
                }
                tag => {
                    self.fail(CodecError::Tag {
                        column: "peers",
                        tag,
                    });
                    break;
                }
            };
            self.t.table.push(entry);
        }
        let peers = self.t.table.len();
        self.t.cursors = vec![0; peers];
        self.t.next_run = vec![1; peers];
    }

    fn peer_index(&self, index: u64, column: &'static str) -> Result<usize, CodecError> {
        // A match, not `ok_or`: that builds (and drops) the error every time.
        match usize::try_from(index) {
            Ok(i) if i < self.t.table.len() => Ok(i),
            _ => Err(CodecError::Index { column, index }),
        }
    }

    fn version_vector(&mut self) -> VectorClock {
        let count = self.count(CLOCK, 2);
        let mut entries = Entries::with_capacity(count);
        for _ in 0..count {
            let index = self.u64(CLOCK);
            let peer = self.peer_at(index, "clock");
            let seq = self.u64(CLOCK);
            entries.push((peer, seq));
        }
        // Sorted by peer id, each once, none zero (how `VectorClock::iter`
        // yields them): one form per clock.
        match VectorClock::from_canonical(entries) {
            Some(clock) => clock,
            None => {
                self.fail(CodecError::Clock("clock"));
                VectorClock::new()
            }
        }
    }

    /// The events, and whether they are sorted by id, each once.
    fn events(&mut self) -> Result<(Vec<P2PEvent>, bool), CodecError> {
        let runs = self.cols[RUNS].count(3)?;
        let mut events: Vec<P2PEvent> = Vec::with_capacity(self.cols[OPS].remaining());
        let mut sorted = true;
        for _ in 0..runs {
            self.run(&mut events, &mut sorted)?;
        }
        Ok((events, sorted))
    }

    /// The next run's events, onto `events`; `sorted` is cleared unless
    /// they come after the last one there.
    fn run(&mut self, events: &mut Vec<P2PEvent>, sorted: &mut bool) -> Result<(), CodecError> {
        let run = self.run_head(events.last(), sorted)?;
        self.run_events(&run, run.first, run.end, events)?;
        self.run_seal(&run, events)
    }

    /// The next run's header; `sorted` is cleared unless its first event
    /// comes after `last`.
    fn run_head(&mut self, last: Option<&P2PEvent>, sorted: &mut bool) -> Result<Run, CodecError> {
        let col = &mut self.cols[RUNS];
        let (index, delta, shape) = (col.u64()?, col.i64()?, col.u64()?);
        let origin = self.peer_index(index, "runs")?;
        let len = usize::try_from(shape >> 1)
            .ok()
            .filter(|len| *len >= 1 && *len <= self.cols[OPS].remaining())
            .ok_or(CodecError::Count {
                column: "runs",
                count: shape >> 1,
                limit: self.cols[OPS].remaining() as u64,
            })?;
        let first = self.t.next_run[origin].wrapping_add(delta as u64);
        let end = first
            .checked_add(len as u64)
            .ok_or(CodecError::Invalid("a run's sequence numbers overflow"))?;
        self.t.next_run[origin] = end;
        // A run's events are in order: only its first is compared, with
        // the last before it.
        let peer = self.t.table[origin].0;
        *sorted &= last.is_none_or(|last| last.id < EventId::new(peer, first));
        Ok(Run {
            origin,
            first,
            end,
            sealed: shape & 1 == 1,
        })
    }

    /// Events `from..to` of `run`, onto `events`: up to the first error,
    /// which is returned.
    fn run_events(
        &mut self,
        run: &Run,
        from: u64,
        to: u64,
        events: &mut Vec<P2PEvent>,
    ) -> Result<(), CodecError> {
        let peer = self.t.table[run.origin].0;
        for seq in from..to {
            let event = self.event(EventId::new(peer, seq));
            if self.error.is_some() {
                break;
            }
            events.push(event);
        }
        self.check()
    }

    /// The seal that ends `run`, if it has one, onto its last event (the
    /// last of `events`). Its fields are read as an event's are, checked
    /// once before the seal is made.
    fn run_seal(&mut self, run: &Run, events: &mut [P2PEvent]) -> Result<(), CodecError> {
        if !run.sealed {
            return Ok(());
        }
        let flags = self.u8(SEALS);
        if flags & !(SEAL_OWN_KEY | SEAL_FIRST) != 0 {
            self.fail(CodecError::Tag {
                column: "seals",
                tag: flags,
            });
        }
        // The origin's key from the peer table comes with the id derived
        // from it there; a seal's own key is derived once, here.
        let (key, signer) = if flags & SEAL_OWN_KEY != 0 {
            let key: PublicKey = self.array(SEALS);
            (key, peer_id_of(&key))
        } else {
            match self.t.table[run.origin] {
                (peer, Some(key)) => (key, peer),
                (peer, None) => {
                    self.fail(CodecError::Invalid(
                        "a seal names no key and its origin has none",
                    ));
                    ([0; 32], peer)
                }
            }
        };
        let last = run.end - 1;
        let first = if flags & SEAL_FIRST != 0 {
            last.wrapping_sub(self.u64(SEALS))
        } else {
            run.first
        };
        let signature = [self.array(SEALS), self.array(SEALS)];
        self.check()?;
        if let Some(last) = events.last_mut() {
            last.seal = Some(Box::new(Seal::with_signer(first, key, signature, signer)));
        }
        Ok(())
    }

    /// The next event, `id` (after an error, whatever defaults make).
    fn event(&mut self, id: EventId) -> P2PEvent {
        let flags = self.u8(OPS);
        let key = self.key(flags & NEW_KEY != 0);
        let hlc = self.time();
        let observed_form = (flags & OBSERVED) >> OBSERVED_SHIFT;
        let code = flags & CODE;
        let takes_clock = !matches!(code, COUNTER_INCREMENT | COUNTER_DELETE);
        if observed_form == 3
            || (!takes_clock && observed_form != 0)
            || (code != REGISTER_WRITE && flags & RESOLUTION != 0)
            || code > SET_DELETE
        {
            self.fail(CodecError::Tag {
                column: "ops",
                tag: flags,
            });
        }
        let op = match code {
            REGISTER_WRITE => {
                let value = self.value();
                Operation::Register(RegisterOp::Write {
                    value,
                    observed: self.observed(observed_form),
                    resolution: flags & RESOLUTION != 0,
                })
            }
            COUNTER_INCREMENT => Operation::Counter(CounterOp::Increment {
                by: self.i64(NUMBERS),
                sum: self.i64(NUMBERS),
            }),
            COUNTER_DELETE => Operation::Counter(CounterOp::Delete {
                observed: self.shares(),
            }),
            SET_ADD | SET_REMOVE => {
                let member = self.value();
                let observed = self.observed(observed_form);
                Operation::Set(if code == SET_ADD {
                    SetOp::Add { member, observed }
                } else {
                    SetOp::Remove { member, observed }
                })
            }
            SET_DELETE => Operation::Set(SetOp::Delete {
                observed: self.observed(observed_form),
            }),
            // REGISTER_DELETE, and an unknown code (failed above).
            _ => Operation::Register(RegisterOp::Delete {
                observed: self.observed(observed_form),
            }),
        };
        let deps = if flags & DEPS != 0 {
            self.clock(1)
        } else {
            VectorClock::new()
        };
        P2PEvent {
            id,
            key,
            op,
            deps,
            hlc,
            seal: None,
        }
    }

    fn key(&mut self, new: bool) -> Text {
        if new {
            let len = self.at_most(KEYS, self.cols[KEY_BYTES].remaining());
            match text(&mut self.cols[KEY_BYTES], len, self.t.key_text.as_ref()) {
                Some(key) => {
                    self.t.keys.push(key.clone());
                    key
                }
                None => {
                    self.fail(CodecError::Utf8("key bytes"));
                    Text::from("")
                }
            }
        } else {
            let index = self.u64(KEYS);
            let keys: &[Text] = &self.t.keys;
            match usize::try_from(index) {
                Ok(i) if i < keys.len() => keys[i].clone(),
                _ => {
                    self.fail(CodecError::Index {
                        column: "keys",
                        index,
                    });
                    Text::from("")
                }
            }
        }
    }

    fn time(&mut self) -> Timestamp {
        let packed = self.u64(TIMES);
        let millis = self
            .t
            .millis
            .wrapping_add(varint::unzigzag(packed >> 1) as u64);
        let logical = if packed & 1 == 1 {
            match u16::try_from(self.u64(TIMES)) {
                Ok(l) if l != 0 => l,
                _ => {
                    self.fail(CodecError::Invalid(
                        "a logical counter is zero or beyond 16 bits",
                    ));
                    0
                }
            }
        } else {
            0
        };
        let time = Timestamp::new(millis, logical);
        if time.millis() != millis {
            self.fail(CodecError::Invalid(
                "a timestamp is beyond 48 bits of milliseconds",
            ));
        }
        self.t.millis = millis;
        time
    }

    fn value(&mut self) -> JsonValue {
        let len = self.at_most(LENGTHS, self.cols[VALUES].remaining());
        let text = text(&mut self.cols[VALUES], len, self.t.value_text.as_ref());
        match text.map(JsonValue::verbatim_text) {
            Some(Ok(value)) => value,
            Some(Err(e)) => {
                self.fail(CodecError::Json(e.0));
                JsonValue::null()
            }
            None => {
                self.fail(CodecError::Utf8("values"));
                JsonValue::null()
            }
        }
    }

    /// An observed clock of `form` (see [`OBSERVED`]): empty, one entry,
    /// or counted (two or more: one entry has its own form).
    fn observed(&mut self, form: u8) -> VectorClock {
        match form {
            0 => VectorClock::new(),
            1 => self.entries(1),
            _ => self.clock(2),
        }
    }

    /// A counted clock of at least `min` entries.
    fn clock(&mut self, min: usize) -> VectorClock {
        let count = self.count(ENTRIES, 2);
        if count < min || count > MAX_CLOCK_ENTRIES {
            self.fail(CodecError::Count {
                column: "entries",
                count: count as u64,
                limit: MAX_CLOCK_ENTRIES as u64,
            });
            return VectorClock::new();
        }
        self.entries(count)
    }

    /// `count` (at most [`MAX_CLOCK_ENTRIES`]) entries.
    fn entries(&mut self, count: usize) -> VectorClock {
        if count == 1 {
            // Most clocks (an observed write, a dependency delta): no
            // vector to grow, and the one check `from_canonical` makes.
            let (peer, seq) = self.entry();
            if seq == 0 {
                self.fail(CodecError::Clock("entries"));
                return VectorClock::new();
            }
            return VectorClock::from_canonical_entry(peer, seq);
        }
        // Filled by index: a push is a call in the size-optimized wasm.
        let mut entries = vec![(PeerId(0), 0); count];
        for entry in &mut entries[..] {
            *entry = self.entry();
        }
        match VectorClock::from_canonical(Entries::from_vec(entries)) {
            Some(clock) => clock,
            None => {
                self.fail(CodecError::Clock("entries"));
                VectorClock::new()
            }
        }
    }

    /// One clock entry: a peer index and the delta from its cursor (after
    /// an error, or at an index the table has not, a zero entry).
    #[inline(always)]
    fn entry(&mut self) -> (PeerId, u64) {
        let index = self.u64(ENTRIES);
        let at = match usize::try_from(index) {
            Ok(at) if at < self.t.table.len() && at < self.t.cursors.len() => at,
            _ => {
                self.fail(CodecError::Index {
                    column: "entries",
                    index,
                });
                return (PeerId(0), 0);
            }
        };
        let delta = self.i64(ENTRIES) as u64;
        // Written by index into slices: in the size-optimized wasm a
        // vector's `Index` is a call.
        let (cursors, table): (&mut [u64], &[(PeerId, Option<PublicKey>)]) =
            (&mut self.t.cursors, &self.t.table);
        let seq = cursors[at].wrapping_add(delta);
        cursors[at] = seq;
        (table[at].0, seq)
    }

    fn shares(&mut self) -> Vec<CounterShare> {
        let count = self.count(NUMBERS, 3);
        let mut shares = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.u64(NUMBERS);
            let peer = self.peer_at(index, "numbers");
            shares.push(CounterShare {
                peer,
                seq: self.u64(NUMBERS),
                sum: self.i64(NUMBERS),
            });
        }
        shares
    }
}

/// The next `len` bytes of `col` (at most what is left) as text: a range
/// of `whole`, the column's text, when there is one, else a copy. `None`
/// when they are not text.
#[inline(always)]
fn text(col: &mut Reader, len: usize, whole: Option<&Arc<str>>) -> Option<Text> {
    // Matches, not `ok()?` and `map`: each is a call in the size-optimized
    // wasm, and this runs for every key and value.
    let before = col.remaining();
    let Ok(bytes) = col.take(len) else {
        return None;
    };
    match whole {
        Some(whole) => {
            let start = whole.len() - before;
            Text::slice(whole, start..start + len)
        }
        None => match std::str::from_utf8(bytes) {
            Ok(text) => Some(Text::from(text)),
            Err(_) => None,
        },
    }
}
