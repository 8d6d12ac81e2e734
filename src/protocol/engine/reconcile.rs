use crate::protocol::text::Text;

use super::view::{candidates, Candidate};
use super::{ConflictPolicy, ReconciliationEngine, MAX_RESOLUTION_BYTES, MAX_WRITE_BYTES};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::entity::{EntityState, Register};
use crate::protocol::error::ReceiveError;
use crate::protocol::event::P2PEvent;
use crate::protocol::key_sort;
use crate::protocol::reconciliation::{
    ReconciliationRequest, ReconciliationResponse, RequestType, ResponseType,
};
use crate::protocol::value::JsonValue;

/// The app's reconcile handler: the value that settles a conflict, or `None`
/// for the default (the Last-Write-Wins value).
pub type ReconcileHandler<'a> = dyn FnMut(&str, &[Candidate]) -> Option<JsonValue> + 'a;

/// What [`ReconciliationEngine::request_reconciliation`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileStep {
    /// Send this request to `target_peer_id`.
    Request(ReconciliationRequest),
    /// This peer is the resolver and wrote the resolution: gossip it.
    Resolved(P2PEvent),
}

/// A request is asked again when no answer came within this time.
pub const RECONCILIATION_RETRY_MS: u64 = 5_000;

/// How many times a resolver is asked about the same siblings, a retry
/// time apart, before it is passed over: a busy one (64 requests a peer an
/// interval), one waiting for the siblings' dependencies or one a large
/// request takes long to reach is not taken for a silent one at once (a
/// resolution made meanwhile by the next would be one more, and a stale
/// one could come after a newer write).
pub const PASS_OVER_AFTER_ASKS: u32 = 3;

/// What a peer asked about a conflicted key: the siblings it saw, when,
/// the resolvers asked about those very siblings, in order (the last is
/// the one asked now; this peer, for a settle of its own that found
/// nothing it could write), and how many times the last was asked.
#[derive(Debug)]
pub(super) struct Asked {
    siblings: VectorClock,
    at: u64,
    resolvers: Vec<PeerId>,
    asks: u32,
}

impl ReconciliationEngine {
    /// Room state is never a conflict: never reconciled, whoever asks.
    fn conflicted_register(&self, key: &str) -> Result<&Register, ReceiveError> {
        if super::is_reserved(key) {
            return Err(ReceiveError::NoConflict(key.to_string()));
        }
        match self.entity(key).map(|e| e.shown()) {
            Some(EntityState::Register(r)) if r.is_conflicted() => Ok(r),
            _ => Err(ReceiveError::NoConflict(key.to_string())),
        }
    }

    /// The resolver of a conflict: the lowest peer id among the origins of
    /// its siblings. Every peer that sees the same siblings picks the same
    /// one; [`request_reconciliation`](Self::request_reconciliation) skips
    /// origins that are not reachable, or that it passed over.
    pub fn resolver(&self, key: &str) -> Option<PeerId> {
        let register = self.conflicted_register(key).ok()?;
        register.siblings().iter().map(|s| s.dot.peer).min()
    }

    /// Conflicted `reconcile` keys with no request in flight (or whose
    /// request went unanswered for [`RECONCILIATION_RETRY_MS`]).
    pub fn pending_reconciliations(&self, now_ms: u64) -> Vec<Text> {
        let mut keys = self
            .books
            .conflicted
            .iter()
            .filter(|key| self.policy(key) == ConflictPolicy::Reconcile)
            .filter(
                |key| match (self.requested.get(*key), self.conflicted_register(key)) {
                    (Some(asked), Ok(r)) => {
                        // (Asked later than now: by a clock since set back.)
                        asked.siblings != r.observed()
                            || now_ms >= asked.at.saturating_add(RECONCILIATION_RETRY_MS)
                            || asked.at > now_ms
                    }
                    _ => true,
                },
            )
            .cloned()
            .collect::<Vec<_>>();
        key_sort::sort_strs(&mut keys);
        keys
    }

    /// The protocol's `request_reconciliation` for a conflicted key. The
    /// resolver is the lowest reachable origin among the siblings (this peer
    /// counts as reachable) not passed over (asked about the same siblings
    /// [`PASS_OVER_AFTER_ASKS`] times without an answer): when
    /// that is this peer it runs `handler` and writes the resolution;
    /// otherwise it builds the request for it.
    pub fn request_reconciliation(
        &mut self,
        key: &str,
        handler: &mut ReconcileHandler<'_>,
        reachable: &dyn Fn(PeerId) -> bool,
        now_ms: u64,
    ) -> Result<ReconcileStep, ReceiveError> {
        let register = self.conflicted_register(key)?;
        let me = self.peer;
        let siblings = register.observed();
        // Asked about these very siblings before, and no answer settled
        // them: those resolvers are passed over, the lowest origin left
        // asked (this peer, when none is: it settles itself). A resolver
        // that never answers (one that leaves the key to its app, or a
        // member who keeps quiet) would otherwise keep it open for good.
        let (mut resolvers, asks) = match self.requested.get(key) {
            Some(asked) if asked.siblings == siblings => (asked.resolvers.clone(), asked.asks),
            _ => (Vec::new(), 0),
        };
        // The one asked last is asked again until it had its asks.
        let passed = match asks >= PASS_OVER_AFTER_ASKS {
            true => &resolvers[..],
            false => &resolvers[..resolvers.len().saturating_sub(1)],
        };
        let resolver = register
            .siblings()
            .iter()
            .map(|s| s.dot.peer)
            .filter(|&p| p == me || (reachable(p) && !passed.contains(&p)))
            .min()
            .unwrap_or(me);
        let asks = match resolvers.last() == Some(&resolver) {
            true => asks + 1,
            false => {
                resolvers.retain(|&p| p != resolver);
                resolvers.push(resolver);
                1
            }
        };
        let asked = Asked {
            siblings,
            at: now_ms,
            resolvers,
            asks,
        };
        if resolver == self.peer {
            let settled = self.settle(key, handler, now_ms);
            if settled.is_err() {
                // No value it can write (each too large to copy): tried
                // again when the siblings change, or after the retry time,
                // as an unanswered request is, not at every tick.
                self.requested.insert(key.into(), asked);
            }
            return settled.map(ReconcileStep::Resolved);
        }
        let request = ReconciliationRequest {
            message_type: RequestType::ReconciliationRequest,
            source_peer_id: self.peer,
            target_peer_id: resolver,
            key: Some(key.into()),
            conflicting_events: self.events_of(&asked.siblings),
        };
        self.requested.insert(key.into(), asked);
        Ok(ReconcileStep::Request(request))
    }

    /// Runs [`request_reconciliation`](Self::request_reconciliation) for
    /// every pending key. Keys whose conflict vanished meanwhile are skipped.
    pub fn reconcile(
        &mut self,
        handler: &mut ReconcileHandler<'_>,
        reachable: &dyn Fn(PeerId) -> bool,
        now_ms: u64,
    ) -> Vec<ReconcileStep> {
        // Keys settled other than by an event (a snapshot's or a leaf's
        // state joined) leave their requests here.
        if !self.requested.is_empty() {
            let conflicted = &self.books.conflicted;
            self.requested.retain(|key, _| conflicted.contains(&**key));
        }
        let keys = self.pending_reconciliations(now_ms);
        keys.iter()
            .filter_map(|key| {
                self.request_reconciliation(key, handler, reachable, now_ms)
                    .ok()
            })
            .collect()
    }

    /// The resolver's side. It applies the conflicting events it lacks, then
    /// settles the conflict with `handler`; if the conflict is already
    /// settled it answers with the events that settled it. `Ok(None)` when
    /// some conflicting event still waits for its dependencies here: the
    /// requester asks again later.
    pub fn handle_reconciliation_request(
        &mut self,
        request: &ReconciliationRequest,
        handler: &mut ReconcileHandler<'_>,
        now_ms: u64,
    ) -> Result<Option<ReconciliationResponse>, ReceiveError> {
        if request.target_peer_id != self.peer {
            return Err(ReceiveError::Malformed(format!(
                "reconciliation request for {} reached {}",
                request.target_peer_id, self.peer
            )));
        }
        let Some(first) = request.conflicting_events.first() else {
            return Err(ReceiveError::Malformed(
                "reconciliation request without events".into(),
            ));
        };
        let key = request.key.clone().unwrap_or_else(|| first.key.clone());
        if request.conflicting_events.iter().any(|e| e.key != key) {
            return Err(ReceiveError::Malformed(
                "reconciliation request holds events of a key other than its own".into(),
            ));
        }
        if super::is_reserved(&key) {
            // A resolution written here would be refused by every peer
            // (room state is never reconciled) and stall our origin.
            return Err(ReceiveError::Malformed(format!(
                "reconciliation request for {}, a key of room state (never reconciled)",
                crate::protocol::error::quoted_key(&key)
            )));
        }
        // Only a key this peer reconciles: one it leaves to its app
        // (multi-value) is not settled by a signed write on another's word.
        if self.policy(&key) != ConflictPolicy::Reconcile {
            return Err(ReceiveError::NoConflict(key.to_string()));
        }
        for event in &request.conflicting_events {
            self.receive(event.clone(), now_ms)?;
        }
        if request
            .conflicting_events
            .iter()
            .any(|e| e.id.seq > self.applied.get(e.id.peer))
        {
            return Ok(None);
        }
        let resolution_events = match self.conflicted_register(&key) {
            Ok(_) => vec![self.settle(&key, handler, now_ms)?],
            Err(_) => match self.entity(&key).map(|e| e.shown()) {
                Some(EntityState::Register(r)) => self.events_of(&r.observed()),
                _ => Vec::new(),
            },
        };
        Ok(Some(ReconciliationResponse {
            message_type: ResponseType::ReconciliationResponse,
            source_peer_id: self.peer,
            target_peer_id: request.source_peer_id,
            resolution_events,
        }))
    }

    /// The requester's side: applies the resolution. Returns how many events
    /// were applied (0 when they were already known or are held), or every
    /// refusal: whole runs in a signed room, each taken whole or refused
    /// whole, and each refused one is its sender's to answer for (the rest
    /// are applied).
    pub fn handle_reconciliation_response(
        &mut self,
        response: &ReconciliationResponse,
        now_ms: u64,
    ) -> Result<usize, Vec<ReceiveError>> {
        let before = self.stats.applied;
        let taken = self.receive_runs(response.resolution_events.clone(), now_ms);
        match taken.refused.is_empty() {
            true => Ok((self.stats.applied - before) as usize),
            false => Err(taken.refused),
        }
    }

    /// Writes the resolution of `key`'s conflict: the handler's value, or the
    /// LWW value, observing every sibling.
    fn settle(
        &mut self,
        key: &str,
        handler: &mut ReconcileHandler<'_>,
        now_ms: u64,
    ) -> Result<P2PEvent, ReceiveError> {
        let register = self.conflicted_register(key)?;
        // A resolution copies its value: one too large to copy is passed
        // over, for the last writer's among those that are not. With none
        // left the conflict stays for the app (the write below fails).
        let fits = |v: &JsonValue| key.len() + v.as_str().len() <= MAX_RESOLUTION_BYTES;
        let lww = match register.winner() {
            Some(w) if fits(&w.value) => Some(w),
            _ => register.last_written(|s| fits(&s.value)),
        };
        // The handler's own value is a write like any: within our writes'
        // bound, unless it is a sibling's, copied.
        let ours = |v: &JsonValue| {
            key.len() + v.as_str().len() <= MAX_WRITE_BYTES
                || (fits(v) && register.siblings().iter().any(|s| s.value == *v))
        };
        let value = (handler(key, &candidates(register)).filter(ours))
            .or_else(|| lww.or(register.winner()).map(|w| w.value.clone()))
            .unwrap_or_else(JsonValue::null);
        Ok(self.write(key, value, true, now_ms)?)
    }

    /// The siblings' events: in the log, or (after a compaction, a fold or
    /// a snapshot) in the archive, which keeps every event the state rests
    /// on; so a request is complete whenever it is made.
    fn events_of(&self, dots: &VectorClock) -> Vec<P2PEvent> {
        dots.iter()
            .filter_map(|(peer, seq)| {
                self.kept_event(crate::protocol::event::EventId::new(peer, seq))
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::engine::snapshot::Trust;
    use crate::protocol::engine::EngineConfig;
    use crate::protocol::snapshot::StateSnapshot;

    const NOW: u64 = 1 << 40;

    fn peer(id: u64) -> ReconciliationEngine {
        let mut e = ReconciliationEngine::new(PeerId(id), EngineConfig::default());
        e.set_policy("doc/", ConflictPolicy::Reconcile);
        e
    }

    /// A request whose conflict a joined snapshot settles (not an event
    /// applied here, which drops it as it applies) is dropped at the next
    /// reconcile: it used to stay, one entry a settled key, for good.
    #[test]
    fn a_request_settled_by_a_joined_snapshot_is_dropped() {
        let (mut one, mut three) = (peer(1), peer(3));
        let e1 = one
            .set("doc/t", JsonValue::string("one"), NOW)
            .expect("written");
        three
            .set("doc/t", JsonValue::string("three"), NOW)
            .expect("written");
        three.receive(e1, NOW).expect("taken");
        let mut keep = |_: &str, _: &[_]| None;
        let steps = three.reconcile(&mut keep, &|_| true, NOW);
        let [ReconcileStep::Request(request)] = &steps[..] else {
            panic!("three asks one: {steps:?}")
        };
        assert_eq!(three.requested.len(), 1);
        // One settles it; three takes the settled state whole.
        let answer = one
            .handle_reconciliation_request(request, &mut keep, NOW)
            .expect("answered");
        assert!(answer.is_some());
        assert!(one.conflicts().is_empty());
        let snapshot = StateSnapshot::decode(&one.encode_snapshot()).expect("decodes");
        three
            .load_snapshot(snapshot, Trust::from_peer(NOW))
            .expect("joined");
        assert!(three.conflicts().is_empty(), "settled by the join");
        assert_eq!(three.get("doc/t"), one.get("doc/t"));
        assert!(three.reconcile(&mut keep, &|_| true, NOW + 1).is_empty());
        assert!(three.requested.is_empty(), "the request is dropped");
    }
}
