//! The peer's one timer: a `setTimeout` for a wake-up later, a message on
//! a `MessageChannel` for one due now.
//!
//! Browsers clamp a timeout set from inside a timeout's own callback to at
//! least 4 ms once five are nested, and a node due again at once (a
//! snapshot decoded, opened and loaded a slice at each wake: ~30 slices
//! for 100k keys) sets its next from the last: 4 ms idle between slices.
//! A message posted to a channel is a task of its own, with no clamp, and
//! input and rendering still run between two of them.

use std::cell::RefCell;
use std::rc::Weak;

use gloo::timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use web_sys::{MessageChannel, MessageEvent};

use super::Inner;

/// A wake-up armed: which one fires first does not matter (waking early
/// is harmless: the node's tick does what is due).
pub(super) enum Timer {
    /// Cancelled when dropped.
    Later { _pending: Timeout },
    /// A message posted to the peer's channel ([`Now`]): it cannot be
    /// taken back, and wakes the peer once when it arrives.
    Now,
}

/// The channel that wakes the peer at once, and its handler.
pub(super) struct Now {
    channel: MessageChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Now {
    /// A channel whose messages call `wake` with the peer.
    pub(super) fn new(
        inner: Weak<RefCell<Inner>>,
        wake: fn(&Weak<RefCell<Inner>>),
    ) -> Result<Now, JsValue> {
        let channel = MessageChannel::new()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |_: MessageEvent| {
            wake(&inner);
        });
        channel
            .port1()
            .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Ok(Now {
            channel,
            _on_message: on_message,
        })
    }

    /// Wakes the peer in a task of its own, as soon as the browser runs
    /// one.
    pub(super) fn post(&self) -> Result<(), JsValue> {
        self.channel.port2().post_message(&JsValue::NULL)
    }
}

impl Drop for Now {
    fn drop(&mut self) {
        self.channel.port1().set_onmessage(None);
        self.channel.port1().close();
        self.channel.port2().close();
    }
}
