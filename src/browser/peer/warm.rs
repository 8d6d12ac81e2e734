//! Warms the receive path while the page is idle after `Peer.open` (see
//! `protocol::sync::warm`): a few steps of the scratch sync per task, each
//! task a few milliseconds, until it is done or the peer closes; then
//! starts the page's compressor worker.

use std::cell::RefCell;
use std::rc::Weak;

use wasm_bindgen_futures::spawn_local;

use super::{now_ms, Inner};
use crate::browser::compress;
use crate::protocol::sync::warm::WarmUp;

/// Steps run in one task until this much time has passed: one step while
/// the code is cold, several once it is warm, never a long task.
const TASK_BUDGET_MS: f64 = 8.0;

pub(super) fn start(inner: Weak<RefCell<Inner>>) {
    spawn_local(async move {
        let mut warm = None;
        loop {
            // Each slice in a task of its own, after whatever is queued
            // (the transport's connection, frames already arriving). The
            // scratch sync is made in the first, not in the task that
            // opened the peer (a fifth of that task, ~15 ms, while cold).
            crate::browser::sleep(0).await;
            let open = inner.upgrade().is_some_and(|i| !i.borrow().closed);
            if !open {
                return;
            }
            let start = js_sys::Date::now();
            let warm = warm.get_or_insert_with(|| WarmUp::new(now_ms()));
            while warm.step() && js_sys::Date::now() - start < TASK_BUDGET_MS {}
            if warm.is_done() {
                // Then the compressor worker, so that a page's first gzip
                // does not wait for it (not at the open: its start would
                // share the cores with the cold start's load).
                if compress::available() {
                    compress::worker::start();
                }
                return;
            }
        }
    });
}
