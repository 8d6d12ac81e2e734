//! Seals: an origin's signature over a *run* of its consecutive events,
//! carried by the run's last event.
//!
//! Signing every event would cost an Ed25519 signature per write; a seal
//! costs one per burst of writes (up to [`MAX_RUN`] events), and relays keep
//! it, because it travels inside the event. The price is that a run is
//! verified whole: senders send whole runs ([`whole_runs`]), receivers
//! verify each run before any of its events reaches the engine
//! ([`open_seals`]), and a run that is not whole is not sent at all.
//!
//! What is signed is a 32-byte blake3 digest over a domain tag, the origin,
//! the run's bounds and each event's content (its encoding without the
//! seal), so verifying costs one Ed25519 verification per run plus hashing.

use hashbrown::HashMap;
use std::ops::Range;

use foldhash::fast::FixedState;
use serde::{Deserialize, Serialize};

use super::clock::PeerId;
use super::event::{EventId, P2PEvent};
use super::identity::{peer_id_of, Identity, PublicKey, Signature};
use super::signature;
use crate::protocol::blake3;
use crate::protocol::hashing;

/// The most events one seal covers.
pub const MAX_RUN: usize = 1024;

const DOMAIN: &[u8] = b"cpc-sync seal v1";

/// The signature of a run `first..=last` of one origin's events, `last`
/// being the event that carries it.
///
/// The key is read through [`key`](Self::key): the peer id it signs for
/// ([`signer`](Self::signer), a BLAKE3 of it) is derived once, when the
/// seal is made or decoded, not each time a run is checked, stored or
/// sent (in a room of many writers, a third of a page's hashing). It is
/// not part of the seal's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SealFields")]
pub struct Seal {
    pub first: u64,
    /// The origin's public key; the origin's id must be derived from it.
    key: PublicKey,
    pub signature: Signature,
    #[serde(skip_serializing)]
    signer: PeerId,
}

/// A [`Seal`] as serde reads it, before its signer is derived.
#[derive(Deserialize)]
struct SealFields {
    first: u64,
    #[serde(deserialize_with = "super::identity::bytes::b32")]
    key: PublicKey,
    #[serde(deserialize_with = "super::identity::bytes::signature")]
    signature: Signature,
}

impl From<SealFields> for Seal {
    fn from(f: SealFields) -> Self {
        Seal::new(f.first, f.key, f.signature)
    }
}

impl Seal {
    pub fn new(first: u64, key: PublicKey, signature: Signature) -> Self {
        Seal {
            first,
            key,
            signature,
            signer: peer_id_of(&key),
        }
    }

    /// A seal whose key's peer id is known already: `signer` must be
    /// [`peer_id_of`]`(&key)` (a decoder that read the key from its peer
    /// table, with the id it derived there).
    pub(crate) fn with_signer(
        first: u64,
        key: PublicKey,
        signature: Signature,
        signer: PeerId,
    ) -> Self {
        debug_assert_eq!(signer, peer_id_of(&key));
        Seal {
            first,
            key,
            signature,
            signer,
        }
    }

    /// The signer's public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The peer id [`key`](Self::key) signs for.
    pub fn signer(&self) -> PeerId {
        self.signer
    }
}

/// Why a run of events was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("event {0} arrived without a seal covering it")]
    Unsealed(EventId),
    #[error("the seal on {0} is by a key that does not derive its origin's id")]
    ForeignKey(EventId),
    #[error("the seal on {0} covers events that are not all present in order")]
    BrokenRun(EventId),
    #[error("the seal on {id} covers {len} events; at most {MAX_RUN} are allowed")]
    RunTooLong { id: EventId, len: u64 },
    #[error("the seal on {0} does not verify: forged or altered events")]
    BadSignature(EventId),
}

impl SealError {
    /// Forgery, as opposed to a sender that split a run (a bug, not an
    /// attack): it weighs more against the connection.
    pub fn is_forgery(&self) -> bool {
        matches!(self, SealError::ForeignKey(_) | SealError::BadSignature(_))
    }
}

/// What a seal over `run` (events `first..` of `origin`) signs.
pub fn digest(origin: PeerId, first: u64, run: &[P2PEvent]) -> [u8; 32] {
    // The whole message in one buffer, hashed at once: blake3 takes a
    // long input a chunk at a time rather than a few bytes per call.
    let mut message = Vec::with_capacity(DOMAIN.len() + 24 + run.len() * 64);
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(&origin.0.to_le_bytes());
    message.extend_from_slice(&first.to_le_bytes());
    message.extend_from_slice(&(run.len() as u64).to_le_bytes());
    for event in run {
        let at = message.len();
        message.extend_from_slice(&[0; 8]);
        event.append_content(&mut message);
        let len = (message.len() - at - 8) as u64;
        message[at..at + 8].copy_from_slice(&len.to_le_bytes());
    }
    *blake3::hash(&message).as_bytes()
}

/// Signs `run`, consecutive events of `identity`'s own origin, and attaches
/// the seal to its last event.
pub fn seal(identity: &Identity, run: &mut [P2PEvent]) {
    let Some(first) = run.first().map(|e| e.id.seq) else {
        return;
    };
    debug_assert!(run.len() <= MAX_RUN);
    debug_assert!(run
        .iter()
        .enumerate()
        .all(|(i, e)| e.id.peer == identity.peer() && e.id.seq == first + i as u64));
    let seal = Seal::with_signer(
        first,
        identity.public_key(),
        identity.sign(&digest(identity.peer(), first, run)),
        identity.peer(),
    );
    if let Some(last) = run.last_mut() {
        last.seal = Some(Box::new(seal));
    }
}

/// A run whose form checked, its signature not yet: what a batch
/// verifies.
struct Pending {
    last: EventId,
    key: PublicKey,
    digest: [u8; 32],
    signature: Signature,
}

/// Checks a run's form and computes what its seal must sign: `run` ends
/// with the sealed event and must be exactly its `first..=last`.
fn check_run(run: &[P2PEvent]) -> Result<Option<Pending>, SealError> {
    let Some(last) = run.last() else {
        return Ok(None);
    };
    let Some(seal) = &last.seal else {
        return Err(SealError::Unsealed(last.id));
    };
    let len = last.id.seq.saturating_sub(seal.first) + 1;
    if seal.first == 0 || seal.first > last.id.seq || len > MAX_RUN as u64 {
        return Err(SealError::RunTooLong { id: last.id, len });
    }
    let in_order = run.len() as u64 == len
        && run
            .iter()
            .enumerate()
            .all(|(i, e)| e.id.peer == last.id.peer && e.id.seq == seal.first + i as u64);
    if !in_order {
        return Err(SealError::BrokenRun(last.id));
    }
    if seal.signer() != last.id.peer {
        return Err(SealError::ForeignKey(last.id));
    }
    Ok(Some(Pending {
        last: last.id,
        key: seal.key,
        digest: digest(last.id.peer, seal.first, run),
        signature: seal.signature,
    }))
}

/// The most seals verified in one batch: the gain per signature levels
/// off well before, and a batch is one uninterrupted computation.
pub const BATCH: usize = 256;

/// The indices of the forged among `pending` (see [`forged_items`]).
fn forged<'a>(pending: impl IntoIterator<Item = &'a Pending>) -> Vec<usize> {
    forged_items(&items(pending))
}

fn items<'a>(pending: impl IntoIterator<Item = &'a Pending>) -> Vec<signature::Item<'a>> {
    pending
        .into_iter()
        .map(|p| (&p.key, &p.digest[..], &p.signature))
        .collect()
}

/// Which of `items` do not verify, by index: each chunk of [`BATCH`] at
/// once, and only a chunk that fails one by one.
fn forged_items(items: &[signature::Item]) -> Vec<usize> {
    let mut out = Vec::new();
    for (c, items) in items.chunks(BATCH).enumerate() {
        if !signature::verify_batch(items) {
            let bad = items
                .iter()
                .enumerate()
                .filter(|(_, i)| !signature::verify(**i));
            out.extend(bad.map(|(i, _)| c * BATCH + i));
        }
    }
    out
}

/// Verifies one run: `run` ends with the sealed event and must be exactly
/// its `first..=last`.
pub fn verify_run(run: &[P2PEvent]) -> Result<(), SealError> {
    match check_run(run)? {
        Some(p) if !forged(std::slice::from_ref(&p)).is_empty() => {
            Err(SealError::BadSignature(p.last))
        }
        _ => Ok(()),
    }
}

/// Verifies events sorted by id that must all be in whole sealed runs (a
/// snapshot's): the first run that does not verify is the error.
pub fn verify_runs(events: &[P2PEvent]) -> Result<(), SealError> {
    SnapshotSeals::open(events)?.verify()
}

/// A snapshot's runs, their form checked and their seals not yet
/// verified: opened all at once ([`open`](Self::open)) or a slice at a
/// time ([`open_some`](Self::open_some)), then verified here
/// ([`verify`](Self::verify)), or handed to a verifier elsewhere in
/// packed batches ([`pack`](Self::pack)) and settled by its verdicts
/// ([`settle`](Self::settle)).
#[derive(Default)]
pub struct SnapshotSeals {
    pending: Vec<Pending>,
    /// The events before this one are opened (it starts a run).
    opened: usize,
}

impl SnapshotSeals {
    /// Checks that `events`, sorted by id, are all in whole sealed runs,
    /// and computes what each seal must sign: the first run that is not
    /// whole is the error.
    pub fn open(events: &[P2PEvent]) -> Result<Self, SealError> {
        let mut seals = SnapshotSeals::default();
        seals.open_some(events, usize::MAX)?;
        Ok(seals)
    }

    /// [`open`](Self::open)s the runs of `events` after those opened
    /// already: whole runs, until they hold `budget` events or more, or
    /// `events` end. Returns whether every event is opened.
    pub fn open_some(&mut self, events: &[P2PEvent], budget: usize) -> Result<bool, SealError> {
        let begin = self.opened;
        let mut start = begin;
        for (i, event) in events.iter().enumerate().skip(begin) {
            let Some(seal) = &event.seal else {
                let next_is_other_origin =
                    events.get(i + 1).is_none_or(|n| n.id.peer != event.id.peer);
                if next_is_other_origin {
                    return Err(SealError::Unsealed(events[start].id));
                }
                continue;
            };
            // The run is `seal.first..=event.id.seq`, and must start at `start`.
            let len = event.id.seq.saturating_sub(seal.first).saturating_add(1);
            let run_start = usize::try_from(len)
                .ok()
                .and_then(|len| (i + 1).checked_sub(len))
                .ok_or(SealError::BrokenRun(event.id))?;
            if run_start != start {
                return Err(if run_start > start {
                    SealError::Unsealed(events[start].id)
                } else {
                    SealError::BrokenRun(event.id)
                });
            }
            self.pending.extend(check_run(&events[start..=i])?);
            start = i + 1;
            self.opened = start;
            if start - begin >= budget {
                break;
            }
        }
        Ok(self.opened == events.len())
    }

    /// How many seals are opened.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Verifies every seal opened: the first that does not is the error.
    pub fn verify(&self) -> Result<(), SealError> {
        match forged(&self.pending).first() {
            Some(&bad) => Err(SealError::BadSignature(self.pending[bad].last)),
            None => Ok(()),
        }
    }

    /// The seals of `range` (in opening order), packed for a verifier
    /// elsewhere ([`verify_packed`]).
    pub fn pack(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let seals = &self.pending[range];
        pack_pending(seals.iter(), seals.len())
    }

    /// By the verdicts of a verifier elsewhere, one per seal in opening
    /// order: a seal verifies only with a verdict of 1, and the first that
    /// does not is the error.
    pub fn settle(&self, verdicts: &[u8]) -> Result<(), SealError> {
        let bad = (0..self.pending.len()).find(|&i| verdicts.get(i) != Some(&1));
        match bad {
            Some(bad) => Err(SealError::BadSignature(self.pending[bad].last)),
            None => Ok(()),
        }
    }
}

/// A received batch, its runs' form checked and their seals not yet
/// verified ([`check_runs`]); [`verify_opened`] verifies several at once.
///
/// The events stay in the vector the decoder made, each run a range of it
/// (an event moved is ~160 bytes copied; a frame's events used to be
/// moved into a vector per origin, then into one again); only events of
/// runs refused for their form are removed, at once.
#[derive(Default)]
pub struct Opened {
    /// The events of the runs whose form checked, and nothing else.
    events: Vec<P2PEvent>,
    /// Those runs as ranges of `events`, one per seal of `pending`, in
    /// order, together covering it.
    runs: Vec<Range<usize>>,
    pending: Vec<Pending>,
    /// The runs refused for their form.
    errors: Vec<SealError>,
}

impl Opened {
    /// Seals waiting to be verified.
    pub fn seals(&self) -> usize {
        self.pending.len()
    }

    /// Events in the runs waiting to be verified.
    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// About how much memory those events take decoded
    /// ([`P2PEvent::held_size`]).
    pub fn held_size(&self) -> usize {
        self.events.iter().map(P2PEvent::held_size).sum()
    }

    /// Drops the runs `known` says are held already as they are (their
    /// seals were verified when they first came): the id of each one's
    /// last event, and its length.
    pub fn forget_known(
        &mut self,
        mut known: impl FnMut(&[P2PEvent]) -> bool,
    ) -> Vec<(EventId, usize)> {
        let mut forgotten = Vec::new();
        let mut runs = Vec::with_capacity(self.runs.len());
        let mut pending = Vec::with_capacity(self.pending.len());
        for (run, seal) in self.runs.drain(..).zip(self.pending.drain(..)) {
            if known(&self.events[run.clone()]) {
                forgotten.push((self.events[run.end - 1].id, run.len()));
            } else {
                runs.push(run);
                pending.push(seal);
            }
        }
        if !forgotten.is_empty() {
            keep_runs(&mut self.events, &mut runs);
        }
        (self.runs, self.pending) = (runs, pending);
        forgotten
    }

    /// The events of the runs whose seal is not `forged` (asked once per
    /// seal, in order), and the errors of the others after the form's.
    fn settle(self, mut forged: impl FnMut() -> bool) -> (Vec<P2PEvent>, Vec<SealError>) {
        let Opened {
            mut events,
            runs,
            pending,
            mut errors,
        } = self;
        let mut kept = Vec::with_capacity(runs.len());
        for (run, seal) in runs.into_iter().zip(pending) {
            if forged() {
                errors.push(SealError::BadSignature(seal.last));
            } else {
                kept.push(run);
            }
        }
        keep_ranges(&mut events, &kept);
        (events, errors)
    }
}

/// Keeps the events of `events` inside `ranges` (in order, disjoint), in
/// one pass; nothing moves when they cover it all.
fn keep_ranges(events: &mut Vec<P2PEvent>, ranges: &[Range<usize>]) {
    if ranges.iter().map(ExactSizeIterator::len).sum::<usize>() == events.len() {
        return;
    }
    let mut ranges = ranges.iter().peekable();
    let mut at = 0;
    events.retain(|_| {
        while ranges.next_if(|r| r.end <= at).is_some() {}
        let keep = ranges.peek().is_some_and(|r| r.start <= at);
        at += 1;
        keep
    });
}

/// Keeps the events of `runs` (ranges of `events`, in order, disjoint),
/// and makes the ranges those of the events kept.
fn keep_runs(events: &mut Vec<P2PEvent>, runs: &mut [Range<usize>]) {
    keep_ranges(events, runs);
    let mut at = 0;
    for run in runs {
        *run = at..at + run.len();
        at = run.end;
    }
}

/// Splits a received batch into whole runs whose form checks, to verify,
/// and the errors of those that do not (a refused run's events are all
/// dropped). Events of one origin must come in sequence order, each run
/// whole.
///
/// A sender sends each run's events together; when one interleaves
/// origins instead (nothing forbids it), the runs are gathered per origin
/// first ([`gathered`]).
pub fn check_runs(mut events: Vec<P2PEvent>) -> Opened {
    let Some(mut out) = runs_in_place(&events) else {
        return gathered(events);
    };
    // Refused events go now, not when the batch settles: what waits for
    // verification is bounded by the runs' events, which are counted.
    keep_runs(&mut events, &mut out.runs);
    out.events = events;
    out
}

/// [`check_runs`] for a batch whose open runs are not interrupted by
/// another origin's events: the runs as ranges of `events` (which the
/// caller puts in), or `None` when a run is interrupted.
fn runs_in_place(events: &[P2PEvent]) -> Option<Opened> {
    let mut out = Opened::default();
    let mut start = 0;
    for (i, event) in events.iter().enumerate() {
        if start < i && events[start].id.peer != event.id.peer {
            return None;
        }
        let Some(seal) = &event.seal else {
            if i + 1 - start > MAX_RUN {
                // Cannot be covered by any seal: refuse now.
                out.errors.push(SealError::Unsealed(events[start].id));
                start = i + 1;
            }
            continue;
        };
        // Events before the seal's first belong to no seal.
        if let Some(stray) = events[start..=i]
            .iter()
            .position(|e| e.id.seq >= seal.first)
        {
            if stray > 0 {
                out.errors.push(SealError::Unsealed(events[start].id));
                start += stray;
            }
        }
        match check_run(&events[start..=i]) {
            Ok(Some(checked)) => {
                out.runs.push(start..i + 1);
                out.pending.push(checked);
            }
            Ok(None) => {}
            Err(e) => out.errors.push(e),
        }
        start = i + 1;
    }
    if let Some(open) = events.get(start) {
        out.errors.push(SealError::Unsealed(open.id));
    }
    Some(out)
}

/// [`check_runs`] for a batch that interleaves origins: each run gathered
/// from its origin's events in order, the events of those whose form
/// checks moved together in the order their seals came.
fn gathered(events: Vec<P2PEvent>) -> Opened {
    let mut open: HashMap<PeerId, Vec<P2PEvent>, FixedState> =
        HashMap::with_hasher(hashing::state());
    let mut out = Opened::default();
    for event in events {
        let origin = event.id.peer;
        let sealed = event.seal.is_some();
        let run = open.entry(origin).or_default();
        run.push(event);
        if !sealed {
            if run.len() > MAX_RUN {
                // Cannot be covered by any seal: refuse now, keep memory bounded.
                out.errors.push(SealError::Unsealed(run[0].id));
                run.clear();
            }
            continue;
        }
        // Events before the seal's first belong to no seal.
        let first = run
            .last()
            .and_then(|e| e.seal.as_ref())
            .map_or(0, |s| s.first);
        if let Some(stray) = run.iter().position(|e| e.id.seq >= first) {
            if stray > 0 {
                out.errors.push(SealError::Unsealed(run[0].id));
                run.drain(..stray);
            }
        }
        match check_run(run) {
            Ok(Some(checked)) => {
                let start = out.events.len();
                out.events.append(run);
                out.runs.push(start..out.events.len());
                out.pending.push(checked);
            }
            Ok(None) => {}
            Err(e) => {
                out.errors.push(e);
                run.clear();
            }
        }
    }
    for (_, run) in open {
        if let Some(first) = run.first() {
            out.errors.push(SealError::Unsealed(first.id));
        }
    }
    out
}

/// Verifies the seals of several checked batches together (in chunks of
/// [`BATCH`]): per batch, the events of its runs that verify and the
/// errors of the others, its form errors first.
pub fn verify_opened(batches: Vec<Opened>) -> Vec<(Vec<P2PEvent>, Vec<SealError>)> {
    let mut forged = forged(batches.iter().flat_map(|b| &b.pending))
        .into_iter()
        .peekable();
    settle_with(batches, |i| forged.next_if_eq(&i).is_some())
}

/// The verdicts [`verify_packed`] gives for [`pack`]`(batches)`, verified
/// here without packing: for a batch that waits, verified, behind those
/// handed out.
pub fn verdicts(batches: &[Opened]) -> Vec<u8> {
    verdicts_of(&items(batches.iter().flat_map(|b| &b.pending)))
}

/// One verdict per item: 1 if it verifies, 0 if not.
fn verdicts_of(items: &[signature::Item]) -> Vec<u8> {
    let mut verdicts = vec![1; items.len()];
    for i in forged_items(items) {
        verdicts[i] = 0;
    }
    verdicts
}

/// Bytes of a seal handed to a verifier elsewhere ([`pack`]): the
/// signer's key, the digest it signed, the signature.
pub const PACKED_SEAL: usize = 32 + 32 + 64;

/// The seals of checked batches, in order, for a verifier elsewhere (a
/// page's Workers, [`verify_packed`]): [`PACKED_SEAL`] bytes each. Their
/// verdicts come back to [`settle`].
pub fn pack(batches: &[Opened]) -> Vec<u8> {
    let count = batches.iter().map(Opened::seals).sum();
    pack_pending(batches.iter().flat_map(|b| &b.pending), count)
}

/// [`PACKED_SEAL`] bytes for each of the `count` `seals`, in order.
fn pack_pending<'a>(seals: impl Iterator<Item = &'a Pending>, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * PACKED_SEAL);
    for p in seals {
        out.extend_from_slice(&p.key);
        out.extend_from_slice(&p.digest);
        out.extend_from_slice(&p.signature[0]);
        out.extend_from_slice(&p.signature[1]);
    }
    out
}

/// Verifies [`pack`]ed seals as [`verify_opened`] does (chunks of
/// [`BATCH`] at once, a failing chunk one by one): a verdict per seal, 1
/// when it verifies, 0 when not. Bytes past the last whole seal get none.
pub fn verify_packed(bytes: &[u8]) -> Vec<u8> {
    let seals: Vec<(PublicKey, [u8; 32], Signature)> = bytes
        .chunks_exact(PACKED_SEAL)
        .map(|seal| {
            let at = |from: usize| {
                let mut out = [0; 32];
                out.copy_from_slice(&seal[from..from + 32]);
                out
            };
            (at(0), at(32), [at(64), at(96)])
        })
        .collect();
    let items: Vec<signature::Item> = seals.iter().map(|(k, d, s)| (k, &d[..], s)).collect();
    verdicts_of(&items)
}

/// [`verify_opened`] with the verdicts of a verifier elsewhere, one per
/// seal in [`pack`]'s order: a seal verifies only with a verdict of 1; a
/// missing verdict (too few came back) or any other value refuses it.
pub fn settle(batches: Vec<Opened>, verdicts: &[u8]) -> Vec<(Vec<P2PEvent>, Vec<SealError>)> {
    settle_with(batches, |i| verdicts.get(i) != Some(&1))
}

/// Per batch, the events of its runs whose seal is not `forged` (asked
/// once per seal, by its index across the batches, in order) and the
/// errors of the others, its form errors first.
fn settle_with(
    batches: Vec<Opened>,
    mut forged: impl FnMut(usize) -> bool,
) -> Vec<(Vec<P2PEvent>, Vec<SealError>)> {
    let mut index = 0;
    batches
        .into_iter()
        .map(|batch| {
            batch.settle(|| {
                index += 1;
                forged(index - 1)
            })
        })
        .collect()
}

/// Splits a received batch into the events of runs that verify, and the
/// errors of those that do not (a refused run's events are all dropped).
/// Events of one origin must come in sequence order, each run whole.
pub fn open_seals(events: Vec<P2PEvent>) -> (Vec<P2PEvent>, Vec<SealError>) {
    verify_opened(vec![check_runs(events)])
        .pop()
        .unwrap_or_default()
}

/// Which of `events` to send to a peer, one flag per event: those it
/// `lacks`, widened to whole runs (a run is verified whole). With `signed`,
/// events no seal in `events` covers (a partial run) are left out: the
/// receiver would refuse them. Events of one origin must be contiguous and
/// in sequence order. Flags rather than events, so a caller that owns the
/// events keeps them without a copy.
pub fn whole_runs(
    events: &[&P2PEvent],
    lacks: impl Fn(&P2PEvent) -> bool,
    signed: bool,
) -> Vec<bool> {
    // Backwards: a run's seal comes before its other events.
    // The batch encoder's map type: one hash table of it in the wasm.
    let mut covered: HashMap<PeerId, u64, FixedState> = HashMap::with_hasher(hashing::state());
    let mut out = vec![false; events.len()];
    for (event, send) in events.iter().zip(out.iter_mut()).rev() {
        let origin = event.id.peer;
        let mut keep = false;
        if let Some(seal) = &event.seal {
            if lacks(event) {
                covered.insert(origin, seal.first);
                keep = true;
            } else {
                covered.remove(&origin);
            }
        } else if covered
            .get(&origin)
            .is_some_and(|&from| event.id.seq >= from)
        {
            keep = true;
        } else {
            keep = !signed && lacks(event);
        }
        *send = keep;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(origin: PeerId, seq: u64, value: &str) -> P2PEvent {
        crate::protocol::event::sample(origin, seq, value)
    }

    /// The signed message is what it always was: each event's length and
    /// content, hashed as a stream (seals made before it was one buffer
    /// still verify).
    #[test]
    fn the_digest_is_the_streamed_one() {
        let origin = PeerId(42);
        let run: Vec<P2PEvent> = (5..=9).map(|s| event(origin, s, &s.to_string())).collect();
        let mut hasher = blake3::Hasher::new();
        hasher.update(DOMAIN);
        hasher.update(&origin.0.to_le_bytes());
        hasher.update(&5u64.to_le_bytes());
        hasher.update(&(run.len() as u64).to_le_bytes());
        for event in &run {
            let content = postcard::to_allocvec(&(
                &event.id,
                &*event.key,
                &event.op,
                &event.deps,
                &event.hlc,
            ))
            .unwrap();
            assert_eq!(content, event.content_bytes());
            hasher.update(&(content.len() as u64).to_le_bytes());
            hasher.update(&content);
        }
        assert_eq!(digest(origin, 5, &run), *hasher.finalize().as_bytes());
    }

    fn sealed(identity: &Identity, seqs: std::ops::RangeInclusive<u64>) -> Vec<P2PEvent> {
        let mut run: Vec<P2PEvent> = seqs
            .map(|s| event(identity.peer(), s, &s.to_string()))
            .collect();
        seal(identity, &mut run);
        run
    }

    #[test]
    fn a_sealed_run_verifies_and_survives_encoding() {
        let a = Identity::from_seed(1);
        let run = sealed(&a, 1..=5);
        assert!(run[..4].iter().all(|e| e.seal.is_none()));
        assert_eq!(verify_run(&run), Ok(()));
        let decoded = P2PEvent::decode_batch(&P2PEvent::encode_batch(&run)).unwrap();
        assert_eq!(verify_run(&decoded), Ok(()));
        let (accepted, errors) = open_seals(decoded);
        assert_eq!((accepted.len(), errors.len()), (5, 0));
    }

    #[test]
    fn altered_forged_and_split_runs_are_refused() {
        let a = Identity::from_seed(1);
        let mallory = Identity::from_seed(2);

        let mut altered = sealed(&a, 1..=3);
        altered[1] = event(a.peer(), 2, "\"evil\"");
        assert_eq!(
            verify_run(&altered),
            Err(SealError::BadSignature(altered[2].id))
        );

        // Mallory signs events claiming to be a's: her key is not a's id.
        let mut forged: Vec<P2PEvent> = (1..=2).map(|s| event(a.peer(), s, "1")).collect();
        forged[1].seal = Some(Box::new(Seal::new(
            1,
            mallory.public_key(),
            mallory.sign(&digest(a.peer(), 1, &forged)),
        )));
        assert_eq!(
            verify_run(&forged),
            Err(SealError::ForeignKey(forged[1].id))
        );
        // And so when it comes through the codec, which derives each
        // seal's signer from the key it carries.
        let decoded = P2PEvent::decode_batch(&P2PEvent::encode_batch(&forged)).unwrap();
        assert_eq!(decoded[1].seal.as_ref().unwrap().signer(), mallory.peer());
        assert_eq!(
            open_seals(decoded).1,
            vec![SealError::ForeignKey(forged[1].id)]
        );
        assert!(SealError::ForeignKey(forged[1].id).is_forgery());

        // A run missing its middle, or events with no seal at all.
        let run = sealed(&a, 1..=3);
        let (accepted, errors) = open_seals(vec![run[0].clone(), run[2].clone()]);
        assert!(accepted.is_empty());
        assert_eq!(errors, vec![SealError::BrokenRun(run[2].id)]);
        let (accepted, errors) = open_seals(vec![run[0].clone(), run[1].clone()]);
        assert!(accepted.is_empty());
        assert_eq!(errors, vec![SealError::Unsealed(run[0].id)]);
    }

    #[test]
    fn a_bad_run_does_not_take_good_ones_with_it() {
        let a = Identity::from_seed(1);
        let b = Identity::from_seed(2);
        let mut bad = sealed(&b, 1..=2);
        bad[0] = event(b.peer(), 1, "666");
        let mut batch = sealed(&a, 1..=2);
        batch.extend(bad);
        batch.extend(sealed(&a, 3..=4));
        let (accepted, errors) = open_seals(batch);
        assert_eq!(accepted.len(), 4);
        assert!(accepted.iter().all(|e| e.id.peer == a.peer()));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].is_forgery());
    }

    /// Runs checked in place (each run's events together, as senders
    /// send them) are refused and taken exactly as when gathered per
    /// origin, the way a batch that interleaves origins is checked: broken,
    /// forged and unsealed runs, strays before a seal's first, in either
    /// order.
    #[test]
    fn runs_checked_in_place_are_runs_gathered_per_origin() {
        let mut rng = crate::protocol::testing::Rng::from_env(
            "runs_checked_in_place_are_runs_gathered_per_origin",
        );
        let writers: Vec<Identity> = (0..3).map(|i| Identity::from_seed(40 + i)).collect();
        for _ in 0..200 {
            // Per writer, its runs in sequence order, some spoiled.
            let mut streams: Vec<Vec<Vec<P2PEvent>>> = Vec::new();
            for w in &writers {
                let mut seq = 1;
                let mut runs = Vec::new();
                for _ in 0..rng.below(4) {
                    let len = 1 + rng.below(4) as u64;
                    let mut run = sealed(w, seq..=seq + len - 1);
                    seq += len;
                    match rng.below(8) {
                        0 if run.len() > 1 => {
                            run.remove(rng.below(run.len() - 1));
                        }
                        1 => {
                            let at = rng.below(run.len());
                            let seal = run[at].seal.take();
                            run[at] = event(w.peer(), run[at].id.seq, "\"forged\"");
                            run[at].seal = seal;
                        }
                        2 => {
                            run.last_mut().unwrap().seal = None;
                        }
                        3 => {
                            // A stray of an earlier sequence before the run.
                            run.insert(0, event(w.peer(), run[0].id.seq - 1, "0"));
                        }
                        _ => {}
                    }
                    runs.push(run);
                }
                streams.push(runs);
            }
            let contiguous: Vec<P2PEvent> = {
                let mut runs: Vec<(usize, Vec<P2PEvent>)> = Vec::new();
                let mut next = vec![0; streams.len()];
                let mut left: usize = streams.iter().map(Vec::len).sum();
                while left > 0 {
                    let w = rng.below(streams.len());
                    if let Some(run) = streams[w].get(next[w]) {
                        runs.push((w, run.clone()));
                        next[w] += 1;
                        left -= 1;
                    }
                }
                runs.into_iter().flat_map(|(_, run)| run).collect()
            };
            let interleaved: Vec<P2PEvent> = {
                let mut per: Vec<std::collections::VecDeque<P2PEvent>> =
                    streams.iter().map(|r| r.concat().into()).collect();
                let mut out = Vec::new();
                while per.iter().any(|p| !p.is_empty()) {
                    let w = rng.below(per.len());
                    out.extend(per[w].pop_front());
                }
                out
            };
            for batch in [contiguous, interleaved] {
                let checked = verify_opened(vec![check_runs(batch.clone())]);
                let reference = verify_opened(vec![gathered(batch.clone())]);
                assert_eq!(checked, reference, "batch {batch:?}");
                let opened = check_runs(batch.clone());
                // What waits for verification holds no refused event.
                let in_runs: usize = opened.runs.iter().map(ExactSizeIterator::len).sum();
                assert_eq!(opened.events.len(), in_runs);
                let verdicts: Vec<u8> = (0..opened.seals()).map(|_| rng.below(2) as u8).collect();
                assert_eq!(
                    settle(vec![opened], &verdicts),
                    settle(vec![gathered(batch)], &verdicts)
                );
            }
        }
    }

    /// Seals verified elsewhere (a page's Workers): packed, verified from
    /// the bytes alone, and settled with the verdicts, they give what
    /// verifying here gives; a verdict that is missing, or anything but 1,
    /// refuses its run and only its run.
    #[test]
    fn seals_verified_elsewhere_settle_as_seals_verified_here() {
        let writers: Vec<Identity> = (0..300).map(|i| Identity::from_seed(500 + i)).collect();
        let mut frames: Vec<Vec<P2PEvent>> = writers
            .chunks(100)
            .map(|ws| ws.iter().flat_map(|w| sealed(w, 1..=2)).collect())
            .collect();
        // A forgery in the second frame, a broken run in the third.
        let seal = frames[1][7].seal.take();
        frames[1][7] = event(frames[1][7].id.peer, 2, "\"forged\"");
        frames[1][7].seal = seal;
        frames[2].remove(10);
        let opened = || frames.iter().cloned().map(check_runs).collect::<Vec<_>>();
        let here = verify_opened(opened());

        let batches = opened();
        let packed = pack(&batches);
        assert_eq!(packed.len(), 299 * PACKED_SEAL, "a seal for each whole run");
        let verdicts = verify_packed(&packed);
        assert_eq!(verdicts.iter().filter(|&&v| v == 0).count(), 1);
        assert_eq!(verdicts, super::verdicts(&batches), "packed or not");
        assert_eq!(settle(batches, &verdicts), here);
        assert_eq!(here[1].1, vec![SealError::BadSignature(frames[1][7].id)]);

        // A verifier that lies or falls short refuses runs, never takes
        // one that did not verify.
        let mut short = verdicts.clone();
        short.truncate(250);
        let settled = settle(opened(), &short);
        let taken: usize = settled.iter().map(|(events, _)| events.len()).sum();
        assert_eq!(taken, 2 * 249, "the 249 seals with a verdict of 1");
        let mut odd = verdicts.clone();
        odd[0] = 2;
        assert_eq!(settle(opened(), &odd)[0].1.len(), 1);
        // Bytes past the last whole seal get no verdict.
        assert_eq!(verify_packed(&packed[..PACKED_SEAL + 5]).len(), 1);
    }

    /// Seals are verified in batches: forgeries in two batches are found
    /// and named, and every other run of both batches is taken.
    #[test]
    fn forgeries_are_found_in_batches_of_many_seals() {
        let writers: Vec<Identity> = (0..300).map(|i| Identity::from_seed(100 + i)).collect();
        let mut batch: Vec<P2PEvent> = writers.iter().flat_map(|w| sealed(w, 1..=1)).collect();
        for at in [10, BATCH + 24] {
            let seal = batch[at].seal.take();
            batch[at] = event(batch[at].id.peer, 1, "\"forged\"");
            batch[at].seal = seal;
        }
        let (accepted, errors) = open_seals(batch.clone());
        assert_eq!(accepted.len(), 298);
        assert_eq!(
            errors,
            vec![
                SealError::BadSignature(batch[10].id),
                SealError::BadSignature(batch[BATCH + 24].id)
            ]
        );
        let mut sorted = batch;
        sorted.sort_by_key(|e| e.id);
        assert!(verify_runs(&sorted).unwrap_err().is_forgery());
    }

    #[test]
    fn verify_runs_takes_whole_runs_only() {
        let a = Identity::from_seed(1);
        let b = Identity::from_seed(2);
        let mut events = sealed(&a, 1..=3);
        events.extend(sealed(&a, 4..=5));
        events.extend(sealed(&b, 1..=2));
        assert_eq!(verify_runs(&events), Ok(()));
        let mut gap = events.clone();
        gap.remove(3);
        assert!(verify_runs(&gap).is_err());
        let tail = &events[1..];
        assert!(verify_runs(tail).is_err());
        let mut altered = events.clone();
        altered[5] = event(b.peer(), 1, "\"evil\"");
        assert!(verify_runs(&altered).unwrap_err().is_forgery());
    }

    #[test]
    fn whole_runs_widens_to_runs_and_drops_partial_ones() {
        let a = Identity::from_seed(1);
        let mut events = sealed(&a, 1..=3);
        events.extend(sealed(&a, 4..=6));
        events.push(event(a.peer(), 7, "7")); // not sealed yet
        let seqs = |sent: Vec<bool>| {
            events
                .iter()
                .zip(sent)
                .filter_map(|(e, send)| send.then_some(e.id.seq))
                .collect::<Vec<_>>()
        };
        let refs: Vec<&P2PEvent> = events.iter().collect();
        // The peer has 1..=4: it gets the whole second run, not the tail.
        let lacks = |e: &P2PEvent| e.id.seq > 4;
        assert_eq!(seqs(whole_runs(&refs, lacks, true)), vec![4, 5, 6]);
        // Unsigned, a tail goes as it is.
        assert_eq!(seqs(whole_runs(&refs, lacks, false)), vec![4, 5, 6, 7]);
        assert_eq!(
            seqs(whole_runs(&refs, |_| true, true)),
            vec![1, 2, 3, 4, 5, 6]
        );
    }
}
