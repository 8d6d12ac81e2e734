//! Errors a JS caller can act on: every rejection is an `Error` (a
//! `TypeError` for an argument of the wrong type, a `RangeError` for a value
//! out of bounds) with a stable `code`, listed in the README and the
//! `.d.ts`.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use crate::browser::convert::describe;
use crate::browser::storage::StorageError;
use crate::protocol::{SnapshotError, WriteError};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** The `code` of every error cpc-sync throws, rejects with, or reports in
 * an "error" event. */
export type ErrorCode =
  | "INVALID_OPTION"
  | "INVALID_ARGUMENT"
  | "INVALID_JSON"
  | "KIND_MISMATCH"
  | "RESERVED_KEY"
  | "CLOSED"
  | "STORAGE"
  | "TRANSPORT"
  | "CLOCK_SKEW"
  | "PROTOCOL_VERSION"
  | "UNSUPPORTED"
  | "EXHAUSTED"
  | "TOO_LARGE"
  | "REENTRANT";
/** An error of cpc-sync: `Error`, `TypeError` or `RangeError`, with a code. */
export interface PeerError extends Error {
  code: ErrorCode;
}
"#;

/// What went wrong, as the app's code sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// An option of `Peer.open` has the wrong type or value.
    InvalidOption,
    /// An argument has the wrong type or is out of bounds.
    InvalidArgument,
    /// A value is not JSON (undefined, a function, a cycle, a BigInt).
    InvalidJson,
    /// An operation of one kind on a key that holds another.
    KindMismatch,
    /// A key of the room's own state (`"\u0000cpc/"...`): not the app's.
    ReservedKey,
    /// The peer is closed.
    Closed,
    /// IndexedDB failed (quota, a blocked upgrade, a private window).
    Storage,
    /// Signaling or a connection failed (reported as an "error" event).
    Transport,
    /// A peer's clock is off from this device's by more than the skew a
    /// peer allows (reported as an "error" event).
    ClockSkew,
    /// A peer speaks another protocol version: the two do not sync until
    /// both run the same release (reported as an "error" event).
    ProtocolVersion,
    /// The browser lacks something needed (crypto, IndexedDB, a window).
    Unsupported,
    /// This peer has used up its sequence numbers.
    Exhausted,
    /// A write too large to travel to other peers.
    TooLarge,
    /// A method of the peer called from inside its `onReconcile` handler,
    /// which runs while the peer is at work.
    Reentrant,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidOption => "INVALID_OPTION",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::InvalidJson => "INVALID_JSON",
            Code::KindMismatch => "KIND_MISMATCH",
            Code::ReservedKey => "RESERVED_KEY",
            Code::Closed => "CLOSED",
            Code::Storage => "STORAGE",
            Code::Transport => "TRANSPORT",
            Code::ClockSkew => "CLOCK_SKEW",
            Code::ProtocolVersion => "PROTOCOL_VERSION",
            Code::Unsupported => "UNSUPPORTED",
            Code::Exhausted => "EXHAUSTED",
            Code::TooLarge => "TOO_LARGE",
            Code::Reentrant => "REENTRANT",
        }
    }
}

/// Which JS class an error is made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Error,
    /// An argument of the wrong type.
    Type,
    /// A value out of bounds.
    Range,
}

/// An error on its way to JS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerError {
    pub code: Code,
    pub class: Class,
    pub message: String,
}

impl PeerError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        PeerError {
            code,
            class: Class::Error,
            message: message.into(),
        }
    }

    /// A `TypeError`: an argument of the wrong type.
    pub fn type_error(code: Code, message: impl Into<String>) -> Self {
        PeerError {
            class: Class::Type,
            ..PeerError::new(code, message)
        }
    }

    /// A `RangeError`: a value out of bounds.
    pub fn range_error(code: Code, message: impl Into<String>) -> Self {
        PeerError {
            class: Class::Range,
            ..PeerError::new(code, message)
        }
    }

    pub fn closed() -> Self {
        PeerError::new(Code::Closed, "the peer is closed")
    }

    /// A method called from inside the `onReconcile` handler.
    pub fn reentrant() -> Self {
        PeerError::new(
            Code::Reentrant,
            "the peer's methods cannot be called from inside its onReconcile handler: \
             read what the handler needs before, or from its candidates",
        )
    }

    pub fn unsupported(what: &str) -> Self {
        PeerError::new(Code::Unsupported, format!("this browser has no {what}"))
    }
}

impl From<PeerError> for JsValue {
    fn from(e: PeerError) -> JsValue {
        let error: js_sys::Error = match e.class {
            Class::Error => js_sys::Error::new(&e.message),
            Class::Type => js_sys::TypeError::new(&e.message).into(),
            Class::Range => js_sys::RangeError::new(&e.message).into(),
        };
        let _ = Reflect::set(&error, &"code".into(), &e.code.as_str().into());
        error.into()
    }
}

impl From<WriteError> for PeerError {
    fn from(e: WriteError) -> Self {
        let message = e.to_string();
        match e {
            WriteError::KindMismatch { .. } => PeerError::new(Code::KindMismatch, message),
            WriteError::InvalidValue(_) => PeerError::type_error(Code::InvalidJson, message),
            WriteError::ReservedKey { .. } => PeerError::range_error(Code::ReservedKey, message),
            WriteError::SequenceExhausted => PeerError::new(Code::Exhausted, message),
            WriteError::TooLarge { .. } => PeerError::range_error(Code::TooLarge, message),
            WriteError::CounterOverflow { .. } => {
                PeerError::range_error(Code::InvalidArgument, message)
            }
        }
    }
}

impl From<StorageError> for PeerError {
    fn from(e: StorageError) -> Self {
        PeerError::new(Code::Storage, e.to_string())
    }
}

impl From<SnapshotError> for PeerError {
    fn from(e: SnapshotError) -> Self {
        PeerError::new(
            Code::Storage,
            format!("the stored snapshot is unreadable: {e}"),
        )
    }
}

/// A JS exception from a browser API (crypto, a lock) as an error of ours.
pub fn from_js(code: Code, what: &str, e: JsValue) -> PeerError {
    PeerError::new(code, format!("{what}: {}", describe(&e)))
}
