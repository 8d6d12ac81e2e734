//! What a peer does with its node's outputs and its transport's events:
//! commit what the node asks to persist, send what it releases, tell the
//! listeners, and wake the node when it asks to be woken.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use gloo::timers::callback::Timeout;
use wasm_bindgen::prelude::*;

use super::events::{error_event, event_object};
use super::timer::{Now, Timer};
use super::{commit, now_ms, Inner};
use crate::browser::compress;
use crate::browser::convert::{describe, from_json, strings, to_js};
use crate::browser::error::{Code, PeerError};
use crate::browser::transport::TransportEvent;
use crate::browser::verify::Verifiers;
use crate::protocol::event::Hash32;
use crate::protocol::sync::{LinkState, Output};
use crate::protocol::{PeerId, Text};

/// A connection changed state or a frame arrived.
pub(super) fn on_transport(inner: &Weak<RefCell<Inner>>, event: TransportEvent) {
    let Some(inner) = inner.upgrade() else { return };
    if inner.borrow().closed {
        return;
    }
    let now = now_ms();
    match event {
        TransportEvent::Opened(peer, channel) => {
            inner.borrow_mut().node.connect_over(peer, &channel, now);
            emit_link(&inner, peer, LinkState::Open);
        }
        TransportEvent::Link(peer, state) => {
            inner.borrow_mut().node.disconnect(peer);
            emit_link(&inner, peer, state);
        }
        TransportEvent::Frame(peer, bytes) => {
            inner.borrow_mut().node.receive_frame(peer, &bytes, now)
        }
        TransportEvent::Overlay(peer, message) => {
            inner.borrow_mut().node.send_overlay(peer, message)
        }
        TransportEvent::Left(peer) => inner.borrow_mut().node.peer_left(peer),
        TransportEvent::Backlog(peer, backlogged) => {
            inner.borrow_mut().node.set_backlogged(peer, backlogged)
        }
        TransportEvent::Failed { peer, reason } => {
            let error = PeerError::new(Code::Transport, reason);
            let detail = error_event(error, peer.map(|p| p.to_string()));
            emit(&inner, "error", &detail);
            return;
        }
    }
    dispatch(&inner);
}

/// The writes of this task leave together, in a microtask: sealed as one
/// run (one signature), then persisted, then sent.
/// Called by the first write of a burst (the one that set its time).
pub(super) fn schedule_writes(inner: &Rc<RefCell<Inner>>) {
    let inner = inner.clone();
    wasm_bindgen_futures::spawn_local(async move {
        inner.borrow_mut().burst_ms = None;
        dispatch(&inner);
    });
}

/// Carries out the node's outputs in order. The node has already held back
/// every frame that must wait for a commit, so frames go out as they come.
pub(super) fn dispatch(inner: &Rc<RefCell<Inner>>) {
    let outputs = inner.borrow_mut().node.take_outputs();
    for output in outputs {
        match output {
            Output::Send { to, frame } => {
                if let Some(transport) = &inner.borrow().transport {
                    transport.send(to, frame);
                }
            }
            Output::Close { peer, reason } => {
                web_sys::console::warn_1(&format!("cpc-sync: closing {peer}: {reason}").into());
                if let Some(transport) = &inner.borrow().transport {
                    transport.close(peer);
                }
            }
            Output::Persist { token, write } => inner.borrow_mut().commits.push(token, write),
            Output::Verify { batch, seals } => verify(inner, batch, &seals),
            Output::GzipSnapshot { bytes } => gzip_snapshot(inner, bytes),
            Output::GunzipSnapshot { id, bytes, limit } => gunzip_snapshot(inner, id, bytes, limit),
            Output::Changed { keys, last } => {
                let schedule = {
                    let mut i = inner.borrow_mut();
                    i.listeners.changed.extend(keys);
                    i.listeners.report_ended |= last;
                    !std::mem::replace(&mut i.listeners.change_scheduled, true)
                };
                if schedule {
                    let inner = inner.clone();
                    wasm_bindgen_futures::spawn_local(async move { emit_changes(&inner) });
                }
            }
            Output::SnapshotProgress {
                from,
                received,
                total,
                dropped,
            } => {
                let fields = [
                    ("peer", JsValue::from(from.to_string())),
                    ("received", JsValue::from(received as f64)),
                    ("total", JsValue::from(total as f64)),
                    ("dropped", JsValue::from(dropped)),
                ];
                emit(inner, "snapshot", &event_object("snapshot", &fields));
            }
            Output::ClockSkew { peer, offset_ms } if peer == inner.borrow().node.peer() => {
                let message = format!(
                    "this device's writes are dated {} s ahead of its clock (it was ahead when \
                     they were made): peers refuse them until real time reaches their dates",
                    offset_ms.unsigned_abs() / 1000
                );
                let error = PeerError::new(Code::ClockSkew, message);
                emit(inner, "error", &error_event(error, Some(peer.to_string())));
            }
            Output::ClockSkew { peer, offset_ms } => {
                let (by, way) = (
                    offset_ms.unsigned_abs() / 1000,
                    if offset_ms > 0 { "ahead of" } else { "behind" },
                );
                let message = format!(
                    "the clock of peer {peer} is {by} s {way} this device's, more than the {} s a peer \
                     allows: the one behind refuses the writes of the one ahead until a clock is \
                     set right",
                    inner.borrow().node.engine().config().max_clock_skew_ms / 1000
                );
                let error = PeerError::new(Code::ClockSkew, message);
                emit(inner, "error", &error_event(error, Some(peer.to_string())));
            }
            Output::OtherVersion { peer, version } => {
                let ours = crate::protocol::sync::wire::PROTOCOL_VERSION;
                let newer = if version > ours {
                    "a newer"
                } else {
                    "an older"
                };
                let server =
                    (inner.borrow().transport.as_ref()).is_some_and(|t| t.keeper() == Some(peer));
                let remedy = match (server, version > ours) {
                    (true, true) => "reload this page",
                    (true, false) => "the server is to be updated",
                    (false, _) => "reload the page of the older",
                };
                let who = if server {
                    "the server's room peer"
                } else {
                    "peer"
                };
                let message = format!(
                    "{who} {peer} runs {newer} release of cpc-sync (protocol version {version}; \
                     this page speaks {ours}): the two do not sync until both run the same one \
                     ({remedy})"
                );
                let error = PeerError::new(Code::ProtocolVersion, message);
                emit(inner, "error", &error_event(error, Some(peer.to_string())));
            }
            Output::Rejected { peer, refusal } => {
                // Counted per peer by the node (see `peers()`).
                web_sys::console::warn_1(
                    &format!("cpc-sync: refused from {peer}: {refusal}").into(),
                );
            }
            Output::Reconciliation {
                peer,
                outgoing,
                json,
            } => {
                let fields = [
                    ("peer", JsValue::from(peer.to_string())),
                    ("outgoing", JsValue::from(outgoing)),
                    ("message", from_json(&json)),
                ];
                emit(inner, "message", &event_object("message", &fields));
            }
        }
    }
    commit::start(inner);
    {
        // A shuffle heard goes to the partial view (which may answer, dial
        // or hang up: through the transport's events, in a microtask).
        let mut i = inner.borrow_mut();
        let overlay = i.node.take_overlay();
        if let Some(transport) = &i.transport {
            for (from, message) in overlay {
                transport.overlay_message(from, message);
            }
        }
    }
    {
        let mut i = inner.borrow_mut();
        let durable = i.node.durable_upto();
        i.commits.settle(durable);
    }
    let presence = {
        let mut i = inner.borrow_mut();
        (i.node.take_presence_changed() && i.listeners.heard("presence"))
            .then(|| super::presence_list(&i.node))
    };
    if let Some(presence) = presence {
        emit(
            inner,
            "presence",
            &event_object("presence", &[("presence", presence)]),
        );
    }
    arm_timer(inner);
}

/// Gzips a snapshot to offer (in the compressor worker); the node's
/// offers of it wait for the answer. Not when a commit stores it: that
/// gzips it too, and hands the node its form (a durable page's fold,
/// offered before storage is done with it).
fn gzip_snapshot(inner: &Rc<RefCell<Inner>>, bytes: Arc<Vec<u8>>) {
    if inner.borrow().commits.stores(&bytes) {
        return;
    }
    let inner = Rc::downgrade(inner);
    wasm_bindgen_futures::spawn_local(async move {
        let gzipped = compress::gzip(&bytes).await.map_err(|e| describe(&e));
        let Some(inner) = inner.upgrade().filter(|i| !i.borrow().closed) else {
            return;
        };
        inner.borrow_mut().node.snapshot_gzipped(&bytes, gzipped);
        dispatch(&inner);
    });
}

/// Inflates a snapshot that came gzipped (in the compressor worker) to at
/// most `limit` bytes; the node takes no other snapshot meanwhile.
fn gunzip_snapshot(inner: &Rc<RefCell<Inner>>, id: Hash32, bytes: Vec<u8>, limit: u64) {
    let inner = Rc::downgrade(inner);
    wasm_bindgen_futures::spawn_local(async move {
        let inflated = compress::gunzip_at_most(bytes, limit).await;
        let Some(inner) = inner.upgrade().filter(|i| !i.borrow().closed) else {
            return;
        };
        inner.borrow_mut().node.snapshot_gunzipped(
            id,
            inflated.map_err(|e| describe(&e)),
            now_ms(),
        );
        dispatch(&inner);
    });
}

/// Hands a batch of seals to the verifier workers, started by the first
/// batch that needs them.
fn verify(inner: &Rc<RefCell<Inner>>, batch: u64, seals: &[u8]) {
    start_verifiers(inner);
    let sent = inner
        .borrow()
        .verifiers
        .as_ref()
        .map(|v| v.verify(batch, seals));
    if let Some(Err(e)) = sent {
        verifiers_failed(&Rc::downgrade(inner), describe(&e));
    }
    // No pool: it failed, and the node verified what was out (this batch
    // with it) when it learnt so.
}

/// Starts the verifier workers, unless they run, or there are to be none
/// (`verifyWorkers: 0`, or they failed). At open with `warmUp` (their
/// modules start while the page is idle), else with the first batch.
pub(super) fn start_verifiers(inner: &Rc<RefCell<Inner>>) {
    let count = {
        let i = inner.borrow();
        if i.verifiers.is_some() || i.verify_workers == 0 {
            return;
        }
        i.verify_workers
    };
    let answered = Rc::downgrade(inner);
    let failed = Rc::downgrade(inner);
    let started = Verifiers::start(
        count,
        move |batch, verdicts| on_verdicts(&answered, batch, &verdicts),
        move |reason| verifiers_failed(&failed, reason),
    );
    match started {
        Ok(pool) => inner.borrow_mut().verifiers = Some(pool),
        Err(e) => verifiers_failed(&Rc::downgrade(inner), describe(&e)),
    }
}

fn on_verdicts(inner: &Weak<RefCell<Inner>>, batch: u64, verdicts: &[u8]) {
    let Some(inner) = inner.upgrade() else { return };
    if inner.borrow().closed {
        return;
    }
    inner.borrow_mut().node.verified(batch, verdicts, now_ms());
    dispatch(&inner);
}

/// The workers cannot verify (they did not start, or one failed): the node
/// verifies what is out, and everything after it, in place. In a task of
/// its own, as the pool is dropped (it may be calling us).
fn verifiers_failed(inner: &Weak<RefCell<Inner>>, reason: String) {
    let inner = inner.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let Some(inner) = inner.upgrade() else { return };
        let pool = {
            let mut i = inner.borrow_mut();
            if i.verify_workers == 0 {
                return;
            }
            i.verify_workers = 0;
            i.node.verify_here(now_ms());
            i.verifiers.take()
        };
        drop(pool);
        web_sys::console::warn_1(
            &format!("cpc-sync: seals are verified on the page's thread: {reason}").into(),
        );
        dispatch(&inner);
    });
}

/// Sets the one timer to the node's next wake-up (the gossip interval when
/// idle; sooner while a large change is being hashed into the digest).
pub(super) fn arm_timer(inner: &Rc<RefCell<Inner>>) {
    let mut i = inner.borrow_mut();
    if i.closed {
        return;
    }
    let at = i.node.next_timer();
    // A timeout due no later is kept: waking early is harmless (the tick
    // does what is due, and `wake` arms again). So a burst of frames while
    // the digest catches up does not make a timeout per frame.
    if i.timer.as_ref().is_some_and(|(armed, _)| *armed <= at) {
        return;
    }
    let delay = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
    let weak = Rc::downgrade(inner);
    if delay == 0 {
        // Due now: a message, not a timeout clamped to 4 ms (see
        // `timer.rs`). Without a channel, a timeout all the same.
        if i.now.is_none() {
            i.now = Now::new(weak.clone(), wake).ok();
        }
        if i.now.as_ref().is_some_and(|now| now.post().is_ok()) {
            i.timer = Some((at, Timer::Now));
            return;
        }
    }
    // Replacing a pending timeout cancels it (it is not the one running:
    // `wake` takes that one out first).
    let timeout = Timeout::new(delay, move || wake(&weak));
    i.timer = Some((at, Timer::Later { _pending: timeout }));
}

fn wake(inner: &Weak<RefCell<Inner>>) {
    let Some(inner) = inner.upgrade() else { return };
    {
        let mut i = inner.borrow_mut();
        // This timeout (if it is one) is running: it is dropped at the
        // next wake, not from inside its own callback.
        i.spent_timer = i.timer.take().map(|(_, t)| t);
        if i.closed {
            return;
        }
        i.node.tick(now_ms());
        // The partial view keeps near links: it hears the round trips the
        // sync layer measures (a few sessions: cheap at every wake).
        if let Some(transport) = &i.transport {
            for (peer, stats) in i.node.sessions() {
                if let Some(rtt) = stats.rtt() {
                    transport.rtt(peer, rtt);
                }
            }
        }
    }
    dispatch(&inner);
}

/// One "change" event for every key changed since the last one (a burst of
/// writes in one task is one event), and a "conflict" event if any of them
/// is conflicted. Runs in a microtask, before any awaiting caller resumes.
fn emit_changes(inner: &Rc<RefCell<Inner>>) {
    let (keys, conflicts, resolved) = {
        let mut i = inner.borrow_mut();
        let i = &mut *i;
        let listeners = &mut i.listeners;
        listeners.change_scheduled = false;
        if !listeners.heard("change") && !listeners.heard("conflict") {
            // Nobody listens: no strings cross into JS (100k of them, when
            // a new peer catches up, would stall the page).
            return listeners.forget_changes();
        }
        // The node's parts of one report name each key once.
        let keys = std::mem::take(&mut listeners.changed);
        let ended = std::mem::take(&mut listeners.report_ended);
        let engine = i.node.engine();
        let resolved = listeners.resolved(keys.iter(), |k| engine.in_conflict(k));
        if ended && listeners.change_parts.is_empty() {
            let conflicts = engine.conflicts_of(keys.iter().map(|k| &**k));
            (strings(&keys), conflicts, resolved)
        } else {
            // A report in parts: this part's strings are made now, in this
            // task, and its conflicted keys noted; the event waits for the
            // last part.
            if !keys.is_empty() {
                listeners.change_parts.push(strings(&keys));
            }
            listeners
                .part_conflicts
                .extend(keys.into_iter().filter(|k| engine.in_conflict(k)));
            listeners.part_resolved.extend(resolved);
            if !ended {
                return;
            }
            let parts = js_sys::Array::from_iter(listeners.change_parts.drain(..));
            // Those still in conflict, as they are now; those resolved by
            // one part and in conflict again by a later one are not.
            let named = std::mem::take(&mut listeners.part_conflicts);
            let mut resolved = std::mem::take(&mut listeners.part_resolved);
            resolved.retain(|k| !engine.in_conflict(k));
            let conflicts = engine.conflicts_of(named.iter().map(|k| &**k));
            (parts.flat(1).into(), conflicts, resolved)
        }
    };
    emit(inner, "change", &event_object("change", &[("keys", keys)]));
    if conflicts.is_empty() && resolved.is_empty() {
        return;
    }
    {
        let mut i = inner.borrow_mut();
        if !i.listeners.heard("conflict") {
            return;
        }
        let named = conflicts.iter().map(|c| Text::from(c.key.as_str()));
        i.listeners.note_told(named, &resolved);
    }
    let fields = [
        ("conflicts", to_js(&conflicts)),
        ("resolved", strings(&resolved)),
    ];
    emit(inner, "conflict", &event_object("conflict", &fields));
}

/// Tells the app a link to `peer` is now in `state` (a `peer` event).
fn emit_link(inner: &Rc<RefCell<Inner>>, peer: PeerId, state: LinkState) {
    let fields = [
        ("peer", JsValue::from(peer.to_string())),
        ("state", JsValue::from(state.as_str())),
    ];
    emit(inner, "peer", &event_object("peer", &fields));
}

pub(super) fn emit(inner: &Rc<RefCell<Inner>>, kind: &str, detail: &JsValue) {
    let listeners = inner.borrow().listeners.of(kind);
    for listener in listeners {
        if !inner.borrow().listeners.listens(kind, &listener) {
            continue;
        }
        if let Err(e) = listener.call1(&JsValue::NULL, detail) {
            report_error(&e);
        }
    }
}

/// A listener's exception, reported as the DOM reports one of its event
/// listeners' (`reportError`: the console and the global `error` event),
/// the other listeners called all the same; it vanished without a word.
fn report_error(e: &JsValue) {
    let global = js_sys::global();
    match js_sys::Reflect::get(&global, &"reportError".into()) {
        Ok(report) if report.is_function() => {
            let _ = report.unchecked_ref::<js_sys::Function>().call1(&global, e);
        }
        _ => web_sys::console::error_2(&"cpc-sync: a listener threw".into(), e),
    }
}
