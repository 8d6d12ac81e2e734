//! The compressor worker: one Web Worker a page that runs
//! `CompressionStream` and `DecompressionStream` off the page's main
//! thread. A million keys' snapshot (24 MB) is a second of deflate; in
//! place it is a hundred tasks of the page's thread, in the worker none:
//! the page pays a copy each way.
//!
//! Its script is a few lines of JS from a `Blob` (no file for a bundler
//! to find; no wasm: the streams are the browser's), started by a peer's
//! warm-up or else by the first job. A worker that cannot start (no
//! `Worker`, a page's CSP without `blob:` workers) or fails is not tried
//! again, and its jobs are done in place ([`super::gzip`] and
//! [`super::gunzip_at_most`] fall back).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MessageEvent, Url, Worker, WorkerOptions};

use crate::browser::convert::describe;
use crate::browser::verify::script_url;

/// The worker's name.
pub const NAME: &str = "cpc-sync compressor";

/// What the worker runs. Each message is `[job, format, bytes, limit]`:
/// "gzip" compresses `bytes`, "gunzip" inflates them and gives up once
/// more than `limit` bytes come out (only that much is ever held). Each is
/// answered `[job, bytes]` or `[job, null, reason]`, buffers transferred.
const SCRIPT: &str = r#"
onmessage = async ({ data: [job, format, bytes, limit] }) => {
  try {
    const transform = format === "gzip" ? new CompressionStream("gzip") : new DecompressionStream("gzip");
    const reader = new Response(bytes).body.pipeThrough(transform).getReader();
    const chunks = [];
    let length = 0;
    for (let read; !(read = await reader.read()).done; ) {
      length += read.value.length;
      if (length > limit) {
        reader.cancel();
        throw new Error(`it inflates to more than the ${limit} bytes offered`);
      }
      chunks.push(read.value);
    }
    const out = new Uint8Array(length);
    let at = 0;
    for (const chunk of chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    postMessage([job, out.buffer], [out.buffer]);
  } catch (e) {
    postMessage([job, null, e instanceof Error ? e.message : String(e)]);
  }
};
"#;

/// The page's worker, if it runs.
struct Compressor {
    worker: Worker,
    url: String,
    /// Each job waiting for its answer: its number, and its promise's
    /// resolve and reject (a few at a time: a vector).
    jobs: Rc<RefCell<Vec<Job>>>,
    next: Cell<u32>,
    /// Set once the worker failed: its jobs were refused, and no more go.
    failed: Rc<Cell<bool>>,
    /// Jobs the worker answered (tests and benchmarks read it).
    answered: Rc<Cell<u64>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(JsValue)>,
}

type Job = (u32, Function, Function);

enum Slot {
    Untried,
    Running(Rc<Compressor>),
    /// It could not start or it failed: jobs are done in place.
    Gone,
}

thread_local! {
    static SLOT: RefCell<Slot> = const { RefCell::new(Slot::Untried) };
}

/// What became of a job.
pub enum Outcome {
    /// The worker's answer: the bytes, or why it refused them (the input's
    /// fault, such as bytes that are not gzip).
    Answered(Result<Vec<u8>, JsValue>),
    /// No worker runs, or it failed before answering: do it in place.
    NoWorker,
}

/// `bytes` gzipped in the worker.
pub async fn gzip(bytes: &[u8]) -> Outcome {
    run("gzip", bytes, f64::INFINITY).await
}

/// `bytes` gunzipped in the worker, refused past `limit` bytes.
pub async fn gunzip_at_most(bytes: &[u8], limit: u64) -> Outcome {
    run("gunzip", bytes, limit as f64).await
}

/// Starts the page's worker if it was not tried yet: a peer's warm-up
/// starts it once done, so that the first job does not wait for it.
pub fn start() {
    running();
}

/// Jobs the page's worker has answered.
pub fn answered() -> u64 {
    SLOT.with(|slot| match &*slot.borrow() {
        Slot::Running(compressor) => compressor.answered.get(),
        _ => 0,
    })
}

async fn run(format: &str, bytes: &[u8], limit: f64) -> Outcome {
    let Some(compressor) = running() else {
        return Outcome::NoWorker;
    };
    let Ok(answer) = compressor.post(format, bytes, limit) else {
        return Outcome::NoWorker;
    };
    // Rejected only when the worker failed.
    let Ok(answer) = JsFuture::from(answer).await else {
        return Outcome::NoWorker;
    };
    let answer: Array = answer.unchecked_into();
    let bytes = answer.get(1);
    Outcome::Answered(if bytes.is_object() {
        Ok(Uint8Array::new(&bytes).to_vec())
    } else {
        Err(answer.get(2))
    })
}

/// The page's worker, started if it was not tried yet.
fn running() -> Option<Rc<Compressor>> {
    SLOT.with(|slot| {
        let mut slot = slot.borrow_mut();
        if matches!(*slot, Slot::Untried) {
            *slot = match Compressor::start() {
                Ok(compressor) => Slot::Running(Rc::new(compressor)),
                Err(e) => {
                    in_place_from_now(&describe(&e));
                    Slot::Gone
                }
            };
        }
        match &*slot {
            Slot::Running(compressor) if !compressor.failed.get() => Some(compressor.clone()),
            _ => None,
        }
    })
}

/// Says once that the page's thread (de)compresses from now on, and why
/// (a page's CSP without `blob:` workers, say).
fn in_place_from_now(reason: &str) {
    web_sys::console::warn_1(
        &format!("cpc-sync: snapshots are gzipped on the page's thread: {reason}").into(),
    );
}

impl Compressor {
    fn start() -> Result<Compressor, JsValue> {
        let url = script_url(SCRIPT)?;
        // Named for a browser's devtools (and the tests, which tell it from
        // the verifier workers by its name).
        let named = WorkerOptions::new();
        named.set_name(NAME);
        let worker = match Worker::new_with_options(&url, &named) {
            Ok(worker) => worker,
            Err(e) => {
                let _ = Url::revoke_object_url(&url);
                return Err(e);
            }
        };
        let jobs: Rc<RefCell<Vec<Job>>> = Rc::default();
        let failed = Rc::new(Cell::new(false));
        let answered = Rc::new(Cell::new(0));
        let (waiting, counted) = (jobs.clone(), answered.clone());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let answer = event.data();
            let job = Reflect::get(&answer, &0.into())
                .ok()
                .and_then(|j| j.as_f64());
            let mut jobs = waiting.borrow_mut();
            let Some(at) = jobs.iter().position(|j| job == Some(j.0 as f64)) else {
                return;
            };
            let (_, resolve, _) = jobs.swap_remove(at);
            drop(jobs);
            counted.set(counted.get() + 1);
            let _ = resolve.call1(&JsValue::UNDEFINED, &answer);
        });
        let (waiting, gone, ended) = (jobs.clone(), failed.clone(), worker.clone());
        let on_error = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            // Its jobs are done in place instead, and so are later ones.
            if !gone.replace(true) {
                let message = Reflect::get(&event, &"message".into()).ok();
                let reason = message.and_then(|m| m.as_string());
                in_place_from_now(reason.as_deref().unwrap_or("the worker failed"));
            }
            ended.terminate();
            for (_, _, reject) in waiting.borrow_mut().drain(..) {
                let _ = reject.call0(&JsValue::UNDEFINED);
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        worker.set_onmessageerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Compressor {
            worker,
            url,
            jobs,
            next: Cell::new(0),
            failed,
            answered,
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    /// Hands the worker a copy of `bytes`; the promise resolves with its
    /// answer, and is rejected if the worker fails first.
    fn post(&self, format: &str, bytes: &[u8], limit: f64) -> Result<Promise, JsValue> {
        let job = self.next.get();
        self.next.set(job.wrapping_add(1));
        let mut entry = None;
        let answer = Promise::new(&mut |resolve, reject| entry = Some((resolve, reject)));
        if let Some((resolve, reject)) = entry {
            self.jobs.borrow_mut().push((job, resolve, reject));
        }
        let copy = Uint8Array::from(bytes).buffer();
        let message = Array::of4(&job.into(), &format.into(), &copy, &limit.into());
        let posted = self
            .worker
            .post_message_with_transfer(&message, &Array::of1(&copy));
        if posted.is_err() {
            self.jobs.borrow_mut().retain(|j| j.0 != job);
        }
        posted.map(|()| answer)
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.set_onmessageerror(None);
        self.worker.terminate();
        let _ = Url::revoke_object_url(&self.url);
    }
}
