//! Commits what the node asks to persist, one IndexedDB transaction at a
//! time, and reports each commit back to the node (which then releases the
//! frames that waited for it); settles the write promises once durable.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::io::{dispatch, emit};
use super::Inner;
use crate::browser::error::PeerError;
use crate::browser::peer::events::error_event;
use crate::browser::sleep;
use crate::browser::storage::Storage;
use crate::protocol::sync::Persist;

/// A write promise, settled once its sequence number is durable: the
/// promise of every write up to `seq` made since the last commit began.
struct Waiter {
    seq: u64,
    resolve: Function,
    reject: Function,
}

/// Persist requests not yet committed, and who waits for them.
#[derive(Default)]
pub struct Commits {
    queue: Vec<(u64, Persist)>,
    running: bool,
    waiting: Vec<Waiter>,
    /// The promise of the writes not yet taken into a commit (the last of
    /// `waiting`): they share it, so a burst of writes makes one promise,
    /// not one each. Closed when a commit takes the queue, so writes of an
    /// earlier commit are not kept waiting for a later one.
    open: Option<Promise>,
    /// `close()` waits here for the queue to drain.
    drained: Vec<(Function, Function)>,
    /// The snapshot the running commit stores.
    storing: Option<Arc<Vec<u8>>>,
}

/// The snapshot a batch of writes stores: its last ([`Persist::commit`]).
fn stored<'a>(writes: impl DoubleEndedIterator<Item = &'a Persist>) -> Option<&'a Arc<Vec<u8>>> {
    writes.rev().find_map(|w| match w {
        Persist::Snapshot(bytes) => Some(bytes),
        Persist::Events { .. } => None,
    })
}

impl Commits {
    pub fn push(&mut self, token: u64, write: Persist) {
        self.queue.push((token, write));
    }

    /// Whether a commit queued or running stores `snapshot`: it gzips it,
    /// and hands the node that form (so the node's own request to gzip it
    /// needs no second gzip).
    pub fn stores(&self, snapshot: &Arc<Vec<u8>>) -> bool {
        let queued = stored(self.queue.iter().map(|(_, w)| w));
        [self.storing.as_ref(), queued]
            .into_iter()
            .flatten()
            .any(|s| Arc::ptr_eq(s, snapshot))
    }

    /// A promise for the write `seq`, settled when it is durable.
    pub fn wait_for(&mut self, seq: u64) -> Promise {
        if let (Some(promise), Some(last)) = (&self.open, self.waiting.last_mut()) {
            last.seq = last.seq.max(seq);
            return promise.clone();
        }
        let mut waiter = None;
        let promise = Promise::new(&mut |resolve, reject| {
            waiter = Some(Waiter {
                seq,
                resolve,
                reject,
            })
        });
        self.waiting.extend(waiter);
        self.open = Some(promise.clone());
        promise
    }

    /// What is queued, to commit now; later writes get a new promise.
    fn take(&mut self) -> Vec<(u64, Persist)> {
        self.open = None;
        std::mem::take(&mut self.queue)
    }

    /// Resolves the writes durable up to `durable`.
    pub fn settle(&mut self, durable: u64) {
        self.waiting.retain(|w| {
            let done = w.seq <= durable;
            if done {
                let _ = w.resolve.call0(&JsValue::NULL);
            }
            !done
        });
        // The open promise is the last to settle: once it has, the next
        // write needs a new one.
        if self.waiting.is_empty() {
            self.open = None;
        }
    }

    /// A promise settled once nothing waits to be committed.
    pub fn drained(&mut self) -> Promise {
        if self.queue.is_empty() && !self.running {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        let mut slot = None;
        let promise = Promise::new(&mut |resolve, reject| slot = Some((resolve, reject)));
        self.drained.extend(slot);
        promise
    }

    fn fail(&mut self, error: &PeerError) {
        let value = JsValue::from(error.clone());
        self.open = None;
        for w in self.waiting.drain(..) {
            let _ = w.reject.call1(&JsValue::NULL, &value);
        }
        for (_, reject) in self.drained.drain(..) {
            let _ = reject.call1(&JsValue::NULL, &value);
        }
    }

    fn finish(&mut self) {
        self.running = false;
        for (resolve, _) in self.drained.drain(..) {
            let _ = resolve.call0(&JsValue::NULL);
        }
    }
}

/// Starts committing the queue unless a commit is running: batches go one
/// after another, each what gathered while the previous one committed.
pub fn start(inner: &Rc<RefCell<Inner>>) {
    {
        let mut i = inner.borrow_mut();
        if i.commits.running || i.commits.queue.is_empty() {
            return;
        }
        i.commits.running = true;
    }
    let inner = inner.clone();
    wasm_bindgen_futures::spawn_local(async move {
        // Let the rest of this task's writes join the first batch.
        let _ = JsFuture::from(Promise::resolve(&JsValue::UNDEFINED)).await;
        loop {
            let (storage, batch) = {
                let mut i = inner.borrow_mut();
                (i.storage.clone(), i.commits.take())
            };
            let (Some(storage), Some(&(last, _))) = (storage, batch.last()) else {
                if !batch.is_empty() {
                    // Closed with writes waiting: not stored, and told so.
                    inner.borrow_mut().commits.fail(&PeerError::closed());
                }
                break;
            };
            let (tokens, writes): (Vec<u64>, Vec<Persist>) = batch.into_iter().unzip();
            inner.borrow_mut().commits.storing = stored(writes.iter()).cloned();
            let committed = storage.commit(&writes).await;
            inner.borrow_mut().commits.storing = None;
            match committed {
                Ok(gzipped) => {
                    {
                        let mut i = inner.borrow_mut();
                        // The snapshot stored is offered gzipped as
                        // storage gzipped it.
                        if let (Some(stored), Some(gzipped)) = (stored(writes.iter()), gzipped) {
                            i.node.snapshot_gzipped(stored, Ok(gzipped));
                        }
                        i.node.persisted(last);
                    }
                    dispatch(&inner);
                }
                Err(e) => {
                    // IndexedDB aborts the transactions in flight before
                    // it fires the connection's `close`: a task later, a
                    // commit failed by the database deleted under the page
                    // knows it.
                    if !storage.lost() {
                        sleep(0).await;
                    }
                    let lost = storage.lost();
                    let error = PeerError::from(e);
                    {
                        // Kept, to be tried again with the next commit.
                        let mut i = inner.borrow_mut();
                        if let Some(stored) = stored(writes.iter()) {
                            // Offers that wait for its gzip go without it.
                            i.node.snapshot_gzipped(stored, Err(error.message.clone()));
                        }
                        let mut back: Vec<(u64, Persist)> =
                            tokens.into_iter().zip(writes).collect();
                        back.append(&mut i.commits.queue);
                        i.commits.queue = back;
                    }
                    if lost {
                        // Made anew and given the whole state, these
                        // writes with it.
                        return recover(inner, storage).await;
                    }
                    // What waited on them is told now.
                    {
                        let mut i = inner.borrow_mut();
                        i.commits.fail(&error);
                        i.commits.running = false;
                    }
                    emit(&inner, "error", &error_event(error, None));
                    return;
                }
            }
        }
        inner.borrow_mut().commits.finish();
    });
}

/// Tries to make the database anew: the browser may still be deleting
/// it (an open meanwhile fails, "the connection was closed"), so again
/// after 100, 200 and 400 ms.
async fn reopen(lost: &Storage) -> Result<Storage, crate::browser::storage::StorageError> {
    let mut wait = 100;
    loop {
        match lost.reopen().await {
            Err(_) if wait <= 400 => {
                sleep(wait).await;
                wait *= 2;
            }
            done => return done,
        }
    }
}

/// Makes the database anew after the browser deleted it under the page,
/// and has the node store its whole state there (a snapshot at its next
/// wake, which the queued writes then commit with). Commits wait
/// meanwhile (`running` stays set). If it cannot be made, the writes
/// waiting are failed as any commit's.
async fn recover(inner: Rc<RefCell<Inner>>, lost: Rc<Storage>) {
    web_sys::console::warn_1(
        &"cpc-sync: this page's IndexedDB database was deleted (the site's data cleared?): \
          storing the state again"
            .into(),
    );
    match reopen(&lost).await {
        Ok(storage) => {
            {
                let mut i = inner.borrow_mut();
                i.storage = Some(Rc::new(storage));
                // The whole state queued now, so the writes waiting are
                // committed with it, not before it in a database that
                // holds neither their base nor their identity.
                i.node.storage_lost();
                i.node.tick(super::now_ms());
                i.commits.running = false;
            }
            dispatch(&inner);
        }
        Err(e) => {
            let error = PeerError::from(e);
            {
                let mut i = inner.borrow_mut();
                i.commits.fail(&error);
                i.commits.running = false;
            }
            emit(&inner, "error", &error_event(error, None));
        }
    }
}
