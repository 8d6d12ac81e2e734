//! A snapshot gzipped and inflated as a page does it, in the compressor
//! worker or in place on the page's thread: the page times its own thread
//! around each call (`bench/browser/compare/cpc-only.js`). The bytes stay
//! in the wasm between calls, as a peer's snapshot does.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use super::{engine, NOW};
use crate::browser::compress;
use crate::protocol::testing::workload;

thread_local! {
    /// The snapshot, and its gzipped form once made.
    static BYTES: RefCell<(Vec<u8>, Vec<u8>)> = RefCell::default();
}

/// Encodes the snapshot of a signed room of `entities` entities (64
/// writers, runs of 16) and keeps it: its length.
#[wasm_bindgen(js_name = gzipPrepare)]
pub fn gzip_prepare(entities: u32) -> f64 {
    let events = workload::signed_rounds(entities as usize, 64, entities as u64, 16, 9);
    let mut state = engine(0);
    workload::apply_verified(&mut state, events, NOW);
    let bytes = state.encode_snapshot();
    let length = bytes.len() as f64;
    BYTES.with(|b| *b.borrow_mut() = (bytes, Vec::new()));
    length
}

/// Gzips the kept snapshot (`in_place`: on this thread, a slice a task;
/// else in the compressor worker) and keeps that form: its length.
#[wasm_bindgen(js_name = gzipKept)]
pub async fn gzip_kept(in_place: bool) -> Result<f64, JsValue> {
    let bytes = BYTES.with(|b| std::mem::take(&mut b.borrow_mut().0));
    let gzipped = match in_place {
        true => compress::gzip_in_place(&bytes).await,
        false => compress::gzip(&bytes).await,
    };
    let length = gzipped.as_ref().map_or(0, Vec::len) as f64;
    BYTES.with(|b| *b.borrow_mut() = (bytes, gzipped.unwrap_or_default()));
    Ok(length)
}

/// Inflates the kept gzipped form as a newcomer does (at most the
/// snapshot's length; `in_place` as for [`gzip_kept`]): whether it is the
/// snapshot again.
#[wasm_bindgen(js_name = gunzipKept)]
pub async fn gunzip_kept(in_place: bool) -> bool {
    let (bytes, gzipped) = BYTES.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let limit = bytes.len() as u64;
    let inflated = match in_place {
        true => compress::gunzip_at_most_in_place(gzipped.clone(), limit).await,
        false => compress::gunzip_at_most(gzipped.clone(), limit).await,
    };
    let same = inflated.is_ok_and(|i| i == bytes);
    BYTES.with(|b| *b.borrow_mut() = (bytes, gzipped));
    same
}

/// Jobs the page's compressor worker has answered.
#[wasm_bindgen(js_name = gzipWorkerJobs)]
pub fn gzip_worker_jobs() -> f64 {
    compress::worker::answered() as f64
}
