//! What a peer does with its node's outputs and its transport's events:
//! persist, then send; tell the listeners.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::{now_ms, Inner};
use crate::browser::convert::{error, from_json, to_js};
use crate::browser::transport::TransportEvent;
use crate::protocol::sync::{LinkState, Output};

/// The timer: gossip, compaction, and what they output.
pub(super) fn tick(inner: &Weak<RefCell<Inner>>) {
    let Some(inner) = inner.upgrade() else { return };
    inner.borrow_mut().node.tick(now_ms());
    dispatch(&inner);
    let _ = flush(&inner);
}

/// A connection changed state or a frame arrived.
pub(super) fn on_transport(inner: &Weak<RefCell<Inner>>, event: TransportEvent) {
    let Some(inner) = inner.upgrade() else { return };
    let now = now_ms();
    match event {
        TransportEvent::Link(peer, state) => {
            {
                let mut i = inner.borrow_mut();
                if i.closed {
                    return;
                }
                if state == LinkState::Open {
                    i.node.connect(peer, now);
                } else {
                    i.node.disconnect(peer);
                }
            }
            let fields = [
                ("peer", JsValue::from(peer.to_string())),
                ("state", JsValue::from(state.as_str())),
            ];
            emit(&inner, "peer", &event_object("peer", &fields));
        }
        TransportEvent::Frame(peer, bytes) => {
            inner.borrow_mut().node.receive_frame(peer, &bytes, now)
        }
    }
    dispatch(&inner);
    let _ = flush(&inner);
}

/// The writes of this tick leave together, in a microtask queued before
/// their commit: sealed as one run (one signature), then persisted and sent.
pub(super) fn schedule_writes(inner: &Rc<RefCell<Inner>>) {
    if std::mem::replace(&mut inner.borrow_mut().writes_scheduled, true) {
        return;
    }
    let inner = inner.clone();
    wasm_bindgen_futures::spawn_local(async move {
        inner.borrow_mut().writes_scheduled = false;
        dispatch(&inner);
    });
}

/// Carries out the node's outputs in order: what to persist is queued for
/// the next commit, and a frame sent after it waits for that commit; changes
/// go to the listeners.
pub(super) fn dispatch(inner: &Rc<RefCell<Inner>>) {
    let outputs = inner.borrow_mut().node.take_outputs();
    for output in outputs {
        match output {
            Output::Send { to, frame } => {
                let mut i = inner.borrow_mut();
                if i.storage.is_some() && (!i.unsaved.is_empty() || i.unsaved_snapshot.is_some()) {
                    i.held.push((to, frame));
                } else if let Some(transport) = &i.transport {
                    transport.send(to, frame);
                }
            }
            Output::Close { peer, reason } => {
                web_sys::console::warn_1(&format!("cpc-sync: closing {peer}: {reason}").into());
                if let Some(transport) = &inner.borrow().transport {
                    transport.close(peer);
                }
            }
            Output::PersistEvents(events) => {
                let mut i = inner.borrow_mut();
                if i.storage.is_some() {
                    i.unsaved.extend(events);
                }
            }
            Output::PersistSnapshot(bytes) => {
                let mut i = inner.borrow_mut();
                if i.storage.is_some() {
                    // The snapshot covers every event so far.
                    i.unsaved.clear();
                    i.unsaved_snapshot = Some(bytes);
                }
            }
            Output::Changed(keys) => {
                let schedule = {
                    let mut i = inner.borrow_mut();
                    i.changed.extend(keys);
                    !std::mem::replace(&mut i.change_scheduled, true)
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
            } => {
                let fields = [
                    ("peer", JsValue::from(from.to_string())),
                    ("received", JsValue::from(received as f64)),
                    ("total", JsValue::from(total as f64)),
                ];
                emit(inner, "snapshot", &event_object("snapshot", &fields));
            }
            Output::Rejected { peer, error } => {
                // Counted per peer by the node (see `peers()`).
                web_sys::console::warn_1(&format!("cpc-sync: refused from {peer}: {error}").into());
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
}

/// One "change" event for every key changed since the last one (a burst of
/// writes in one task is one event), and a "conflict" event if any of them
/// is conflicted. Runs in a microtask, before any awaiting caller resumes.
fn emit_changes(inner: &Rc<RefCell<Inner>>) {
    let (keys, conflicts) = {
        let mut i = inner.borrow_mut();
        i.change_scheduled = false;
        let mut keys = std::mem::take(&mut i.changed);
        let heard = |kind: &str| i.listeners.get(kind).is_some_and(|l| !l.is_empty());
        if !heard("change") && !heard("conflict") {
            // Nobody listens: no strings cross into JS (100k of them, when
            // a new peer catches up, would stall the page).
            return;
        }
        keys.sort_unstable();
        keys.dedup();
        let mut conflicts = i.node.engine().conflicts();
        conflicts.retain(|c| keys.binary_search_by(|k| (**k).cmp(c.key.as_str())).is_ok());
        (keys, conflicts)
    };
    if keys.is_empty() {
        return;
    }
    let list: js_sys::Array = keys.iter().map(|k| JsValue::from_str(k)).collect();
    emit(
        inner,
        "change",
        &event_object("change", &[("keys", list.into())]),
    );
    if !conflicts.is_empty() {
        let fields = [("conflicts", to_js(&conflicts))];
        emit(inner, "conflict", &event_object("conflict", &fields));
    }
}

/// `{ type, ...fields }`, what a listener receives.
pub(super) fn event_object(kind: &str, fields: &[(&str, JsValue)]) -> JsValue {
    let detail = Object::new();
    let _ = Reflect::set(&detail, &"type".into(), &kind.into());
    for (name, value) in fields {
        let _ = Reflect::set(&detail, &(*name).into(), value);
    }
    detail.into()
}

pub(super) fn emit(inner: &Rc<RefCell<Inner>>, kind: &str, detail: &JsValue) {
    // Clone the list first: a listener may add or remove listeners, or write.
    let listeners = inner
        .borrow()
        .listeners
        .get(kind)
        .cloned()
        .unwrap_or_default();
    for listener in listeners {
        let _ = listener.call1(&JsValue::NULL, detail);
    }
}

/// The commit of everything unsaved, shared by all writes of this tick: the
/// first write schedules it after the current task's microtasks, later ones
/// join it. Resolves once the IndexedDB transaction has committed; then the
/// frames that waited for it go out.
pub(super) fn flush(inner: &Rc<RefCell<Inner>>) -> Promise {
    let pending = {
        let state = inner.borrow();
        if state.storage.is_none() {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        state.flush.clone()
    };
    if let Some(pending) = pending {
        return pending;
    }
    let shared = inner.clone();
    let commit = future_to_promise(async move {
        // Let the rest of this tick's writes join the batch.
        JsFuture::from(Promise::resolve(&JsValue::UNDEFINED)).await?;
        let (storage, events, snapshot, held) = {
            let mut state = shared.borrow_mut();
            state.flush = None;
            (
                state.storage.clone(),
                std::mem::take(&mut state.unsaved),
                state.unsaved_snapshot.take(),
                std::mem::take(&mut state.held),
            )
        };
        if let Some(storage) = storage {
            if let Some(bytes) = snapshot {
                storage.write_snapshot(&bytes).await.map_err(error)?;
            }
            if !events.is_empty() {
                storage.append(&events).await.map_err(error)?;
            }
        }
        if let Some(transport) = &shared.borrow().transport {
            for (to, frame) in held {
                transport.send(to, frame);
            }
        }
        Ok(JsValue::UNDEFINED)
    });
    inner.borrow_mut().flush = Some(commit.clone());
    commit
}
