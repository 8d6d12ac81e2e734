//! Identity slots: each open tab of a room holds one Web Lock,
//! `cpc-sync:<room>:slot:<n>`, for as long as its peer is open, so two
//! open tabs never share an identity. A tab remembers its slot in its
//! `sessionStorage` (kept across reloads, one per tab) and asks for that
//! one first: a reloaded tab (its lock released on unload) gets its slot
//! back, and with it the identity and data stored for that slot, even when
//! a lower slot came free meanwhile (taking the lowest, a reloaded tab took
//! a closed tab's identity and hid its own offline writes). A new tab, or
//! one whose slot another holds (a duplicated tab copies `sessionStorage`),
//! takes the lowest free slot.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Slots tried before giving up (that many tabs of one room).
const MAX_SLOTS: u32 = 64;

thread_local! {
    /// This page's peers being closed, by room, each with the promise of
    /// its close: a peer opened in the room meanwhile waits for them and
    /// takes the slot the tab held, where it took the next free one and,
    /// with it, another identity and none of the data (an app closing and
    /// opening again: React's StrictMode, a route change, a hot reload).
    static CLOSING: RefCell<Vec<(String, Promise)>> = const { RefCell::new(Vec::new()) };
    /// The latest `Peer.open` of each room in this page, by a promise
    /// settled as it ends: the next open of the room waits for it, and
    /// so for the app to close what it opened (React's StrictMode closes
    /// the first peer once its open resolves, and mounts again at once).
    static OPENING: RefCell<Vec<(String, Promise)>> = const { RefCell::new(Vec::new()) };
}

/// Notes `done` as the latest open of `room` in this page; the one
/// before it, if any.
pub fn opening(room: &str, done: &Promise) -> Option<Promise> {
    OPENING.with_borrow_mut(|opening| {
        if let Some((_, latest)) = opening.iter_mut().find(|(r, _)| r == room) {
            return Some(std::mem::replace(latest, done.clone()));
        }
        if opening.len() >= MAX_SLOTS as usize {
            drop(opening.remove(0));
        }
        opening.push((room.to_string(), done.clone()));
        None
    })
}

/// Waits for the `earlier` open of the room to settle (at most 10 s: one
/// stuck must not keep this open waiting for good), and then for a task:
/// the app's reactions to it (a close, however many `then`s and `await`s
/// away) run in microtasks, all before the next task (a message to a
/// channel: a timeout's is throttled in a background tab).
pub async fn after(earlier: Option<Promise>) {
    if let Some(earlier) = earlier {
        crate::browser::wait_at_most(&earlier, 10_000).await;
        let _ = crate::browser::compress::next_task().await;
    }
}

/// A peer of `room` in this page is closing; its slot is free once `done`
/// settles.
pub fn closing(room: &str, done: Promise) {
    CLOSING.with_borrow_mut(|closing| {
        // Kept until a peer of the room opens (a handful: one a close).
        if closing.len() >= MAX_SLOTS as usize {
            drop(closing.remove(0));
        }
        closing.push((room.to_string(), done));
    });
}

/// Times the slot a closed peer held is asked for again, 20 ms apart.
const SLOT_RETRIES: u32 = 25;

/// How long an open waits for this page's peers of its room being closed
/// (a close waits for the commits under way: one stuck must not keep the
/// open waiting for good; it takes another slot then).
const CLOSE_WAIT_MS: u32 = 3_000;

/// Waits for this page's peers of `room` being closed, at most
/// [`CLOSE_WAIT_MS`]; whether there were any.
async fn closed(room: &str) -> bool {
    let waiting: Vec<Promise> = CLOSING.with_borrow_mut(|closing| {
        let (of_room, rest) = std::mem::take(closing)
            .into_iter()
            .partition(|(r, _)| r == room);
        *closing = rest;
        of_room.into_iter().map(|(_, done)| done).collect()
    });
    let all = js_sys::Promise::all_settled(&waiting.iter().collect::<js_sys::Array>());
    crate::browser::wait_at_most(&all, CLOSE_WAIT_MS).await;
    !waiting.is_empty()
}

/// A held slot; dropping it releases the lock.
pub struct Slot {
    pub index: u32,
    /// The room it is of, as its lock names it.
    pub room: String,
    release: Option<Function>,
    _callback: Closure<dyn FnMut(JsValue) -> JsValue>,
    _refused: Closure<dyn FnMut(JsValue)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// Takes this tab's slot of `room` (the one it held before a reload) or
/// else the lowest free one; `None` without Web Locks (an old browser, or
/// a page that is no secure context, such as plain http on an address
/// other than localhost: Chromium and Firefox alike). Then no slot can be
/// held: two tabs taking the same one would write as one peer, reusing its
/// sequence numbers.
pub async fn claim(room: &str) -> Result<Option<Slot>, JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let locks = Reflect::get(&window.navigator(), &"locks".into())?;
    if locks.is_undefined() {
        return Ok(None);
    }
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    let remembered = format!("cpc-sync:{room}:slot");
    let before = session_item(&window, &remembered, None)
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|&i| i < MAX_SLOTS);
    if let (true, Some(index)) = (closed(room).await, before) {
        // The lock the closed peer held is released as its close settles,
        // and granted to a new request a moment after: asked for again
        // every 20 ms for half a second.
        for _ in 0..SLOT_RETRIES {
            if let Some(slot) = try_slot(&locks, &request, room, index).await? {
                return Ok(Some(slot));
            }
            crate::browser::sleep(20).await;
        }
    }
    let order = before
        .into_iter()
        .chain((0..MAX_SLOTS).filter(|&i| Some(i) != before));
    for index in order {
        let tried = match try_slot(&locks, &request, room, index).await {
            // Locks refused to this page (an opaque origin, storage
            // blocked): no slot can be held, as without Web Locks.
            Err(e)
                if Reflect::get(&e, &"name".into())
                    .ok()
                    .and_then(|n| n.as_string())
                    .as_deref()
                    == Some("SecurityError") =>
            {
                return Ok(None)
            }
            tried => tried?,
        };
        if let Some(slot) = tried {
            session_item(&window, &remembered, Some(&index.to_string()));
            return Ok(Some(slot));
        }
    }
    Err(JsError::new(&format!(
        "more than {MAX_SLOTS} tabs of room {room:?} are open"
    ))
    .into())
}

/// Slot `index` of `room`, if no other tab holds it.
async fn try_slot(
    locks: &JsValue,
    request: &Function,
    room: &str,
    index: u32,
) -> Result<Option<Slot>, JsValue> {
    let release = Rc::new(RefCell::new(None::<Function>));
    let mut answer = None::<(Function, Function)>;
    let granted = Promise::new(&mut |resolve, reject| answer = Some((resolve, reject)));
    let (answer, refuse) = answer.ok_or("promise executor did not run")?;
    let held = release.clone();
    let callback = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |lock: JsValue| {
        if lock.is_null() {
            let _ = answer.call1(&JsValue::NULL, &JsValue::FALSE);
            return JsValue::NULL;
        }
        // Holding the lock = keeping this promise pending until release.
        let hold = Promise::new(&mut |resolve, _| *held.borrow_mut() = Some(resolve));
        let _ = answer.call1(&JsValue::NULL, &JsValue::TRUE);
        hold.into()
    });
    let options = Object::new();
    Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE)?;
    let name = JsValue::from_str(&format!("cpc-sync:{room}:slot:{index}"));
    let requested: Promise = request
        .call3(locks, &name, &options, callback.as_ref().unchecked_ref())?
        .dyn_into()?;
    // A request the page may not make (an opaque origin, storage blocked)
    // never calls back: its promise rejects (a SecurityError).
    let refused = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        let _ = refuse.call1(&JsValue::NULL, &e);
    });
    let _ = requested.catch(&refused);
    if !JsFuture::from(granted).await?.is_truthy() {
        return Ok(None);
    }
    let release = release.borrow_mut().take();
    Ok(Some(Slot {
        index,
        room: room.to_string(),
        release,
        _callback: callback,
        _refused: refused,
    }))
}

/// The tab's `sessionStorage` item `key`, set to `value` if one is
/// given; `None` where there is none or the page may not use it (storage
/// disabled, a sandboxed frame: then a reload only loses its slot).
fn session_item(window: &web_sys::Window, key: &str, value: Option<&str>) -> Option<String> {
    let storage = Reflect::get(window, &"sessionStorage".into()).ok()?;
    let method = if value.is_some() {
        "setItem"
    } else {
        "getItem"
    };
    let call: Function = Reflect::get(&storage, &method.into())
        .ok()?
        .dyn_into()
        .ok()?;
    let value = value.map_or(JsValue::UNDEFINED, JsValue::from_str);
    call.call2(&storage, &key.into(), &value).ok()?.as_string()
}
