//! Identity slots: each open tab of a room holds one Web Lock,
//! `cpc-sync:<room>:slot:<n>`, for as long as its peer is open. A new tab
//! takes the lowest free slot, so two open tabs never share an identity,
//! and a reloaded tab (its lock released on unload) gets its slot back, and
//! with it the identity and data stored for that slot.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Slots tried before giving up (that many tabs of one room).
const MAX_SLOTS: u32 = 64;

/// A held slot; dropping it releases the lock.
pub struct Slot {
    pub index: u32,
    release: Option<Function>,
    _callback: Closure<dyn FnMut(JsValue) -> JsValue>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// Takes the lowest free slot of `room`; `None` without Web Locks (an old
/// browser, or a page that is no secure context, such as plain http on an
/// address other than localhost: Chromium and Firefox alike). Then no slot
/// can be held: two tabs taking the same one would write as one peer,
/// reusing its sequence numbers.
pub async fn claim(room: &str) -> Result<Option<Slot>, JsValue> {
    let navigator = web_sys::window().ok_or("no window")?.navigator();
    let locks = Reflect::get(&navigator, &"locks".into())?;
    if locks.is_undefined() {
        return Ok(None);
    }
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    for index in 0..MAX_SLOTS {
        let release = Rc::new(RefCell::new(None::<Function>));
        let mut answer = None::<Function>;
        let granted = Promise::new(&mut |resolve, _| answer = Some(resolve));
        let answer = answer.ok_or("promise executor did not run")?;
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
        request.call3(&locks, &name, &options, callback.as_ref().unchecked_ref())?;
        if JsFuture::from(granted).await?.is_truthy() {
            let release = release.borrow_mut().take();
            return Ok(Some(Slot {
                index,
                release,
                _callback: callback,
            }));
        }
    }
    Err(JsError::new(&format!(
        "more than {MAX_SLOTS} tabs of room {room:?} are open"
    ))
    .into())
}
