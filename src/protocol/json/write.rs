//! What the app is shown as JSON, written by hand: the bytes serde_json
//! writes for each type's `Serialize` form, but for a value's text (see
//! [`JsonValue`]'s). serde_json's serializer was in the wasm for these
//! alone; writing them here took 3.2 KB gzipped off it (BENCHMARKS.md,
//! issue 17's thirty-eighth session).
//!
//! The app's views (`clock()`, `conflicts()`, `peers()`, a reconcile
//! handler's candidates) and the reconciliation messages of the
//! `"message"` event, in the spec's shape, are written here and handed to
//! the browser's `JSON.parse`. Natively the `Serialize` derives stay (the
//! server, the tests); `tests/native/json_compat.rs` holds each writer to
//! `serde_json::to_string` of the same value.

use std::fmt::Write as _;

use super::{write_f64, write_str};
use crate::protocol::clock::{PeerId, VectorClock};
use crate::protocol::engine::{Candidate, Conflict};
use crate::protocol::event::{
    CounterOp, CounterShare, EventId, Operation, P2PEvent, RegisterOp, SetOp,
};
use crate::protocol::reconciliation::{ReconciliationRequest, ReconciliationResponse};
use crate::protocol::seal::Seal;
use crate::protocol::sync::PeerReport;
use crate::protocol::text::Text;
use crate::protocol::value::JsonValue;

/// A value with a JSON form: serde_json's text of its `Serialize` form
/// (a value's text as it is stored).
pub trait WriteJson {
    fn write_json(&self, out: &mut String);

    /// The JSON text alone.
    fn to_json_text(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }
}

/// An object's fields, written in turn: `{"name":value,...}`.
struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, empty: true }
    }

    /// `name` is plain ASCII (a field's name): written as it is.
    fn field(&mut self, name: &str, value: &(impl WriteJson + ?Sized)) -> &mut Self {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        value.write_json(self.out);
        self
    }

    /// The field when there is a value, as `skip_serializing_if` leaves
    /// out `None`.
    fn some(&mut self, name: &str, value: Option<&(impl WriteJson + ?Sized)>) -> &mut Self {
        match value {
            Some(value) => self.field(name, value),
            None => self,
        }
    }

    fn end(&mut self) {
        self.out.push('}');
    }
}

/// `{"tag":value}`: a variant of an externally tagged enum.
fn tagged(out: &mut String, tag: &str, value: &(impl WriteJson + ?Sized)) {
    Object::new(out).field(tag, value).end();
}

/// `{"tag":{fields}}`: a variant with named fields, which `fields` writes.
fn variant(out: &mut String, tag: &str, fields: impl FnOnce(&mut Object<'_>)) {
    out.push_str("{\"");
    out.push_str(tag);
    out.push_str("\":");
    {
        let mut object = Object::new(out);
        fields(&mut object);
        object.end();
    }
    out.push('}');
}

impl WriteJson for str {
    fn write_json(&self, out: &mut String) {
        write_str(out, self);
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut String) {
        write_str(out, self);
    }
}

impl WriteJson for Text {
    fn write_json(&self, out: &mut String) {
        write_str(out, self);
    }
}

impl WriteJson for u64 {
    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl WriteJson for i64 {
    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl WriteJson for u8 {
    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl WriteJson for f64 {
    fn write_json(&self, out: &mut String) {
        write_f64(out, *self);
    }
}

impl WriteJson for bool {
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item.write_json(out);
        }
        out.push(']');
    }
}

impl<T: WriteJson, const N: usize> WriteJson for [T; N] {
    fn write_json(&self, out: &mut String) {
        self[..].write_json(out);
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    fn write_json(&self, out: &mut String) {
        self[..].write_json(out);
    }
}

impl<T: WriteJson> WriteJson for Option<T> {
    fn write_json(&self, out: &mut String) {
        match self {
            Some(value) => value.write_json(out),
            None => out.push_str("null"),
        }
    }
}

impl<T: WriteJson + ?Sized> WriteJson for Box<T> {
    fn write_json(&self, out: &mut String) {
        (**self).write_json(out);
    }
}

/// Its stored text, as `entries()` and `get()` show it. serde wrote what
/// the tree parser made of that text, which is the same text for nearly
/// every value, but not for two kinds:
/// - a peer's value, checked for syntax only (`JsonValue::verbatim`):
///   written as it came (white space, a number beyond `f64`); it is one
///   JSON value, so the text around it stays well formed;
/// - some numbers far from 1: `1.1e24` is stored as
///   `1.0999999999999999e+24`, which the reader (serde_json's, which
///   does not round correctly) reads back as `1.1e+24`.
impl WriteJson for JsonValue {
    fn write_json(&self, out: &mut String) {
        out.push_str(self.as_str());
    }
}

impl WriteJson for PeerId {
    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "\"{self}\"");
    }
}

/// `{ peerId: counter, ... }`, in peer order.
impl WriteJson for VectorClock {
    fn write_json(&self, out: &mut String) {
        out.push('{');
        for (i, (peer, seq)) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{peer}\":{seq}");
        }
        out.push('}');
    }
}

impl WriteJson for EventId {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("peer", &self.peer)
            .field("seq", &self.seq)
            .end();
    }
}

impl WriteJson for CounterShare {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("peer", &self.peer)
            .field("seq", &self.seq)
            .field("sum", &self.sum)
            .end();
    }
}

/// Externally tagged, in snake case: `{"register":{"write":{...}}}`.
impl WriteJson for Operation {
    fn write_json(&self, out: &mut String) {
        match self {
            Operation::Register(op) => tagged(out, "register", op),
            Operation::Counter(op) => tagged(out, "counter", op),
            Operation::Set(op) => tagged(out, "set", op),
        }
    }
}

impl WriteJson for RegisterOp {
    fn write_json(&self, out: &mut String) {
        match self {
            RegisterOp::Write {
                value,
                observed,
                resolution,
            } => variant(out, "write", |o| {
                o.field("value", value)
                    .field("observed", observed)
                    .field("resolution", resolution);
            }),
            RegisterOp::Delete { observed } => variant(out, "delete", |o| {
                o.field("observed", observed);
            }),
        }
    }
}

impl WriteJson for CounterOp {
    fn write_json(&self, out: &mut String) {
        match self {
            CounterOp::Increment { by, sum } => variant(out, "increment", |o| {
                o.field("by", by).field("sum", sum);
            }),
            CounterOp::Delete { observed } => variant(out, "delete", |o| {
                o.field("observed", observed);
            }),
        }
    }
}

impl WriteJson for SetOp {
    fn write_json(&self, out: &mut String) {
        match self {
            SetOp::Add { member, observed } => variant(out, "add", |o| {
                o.field("member", member).field("observed", observed);
            }),
            SetOp::Remove { member, observed } => variant(out, "remove", |o| {
                o.field("member", member).field("observed", observed);
            }),
            SetOp::Delete { observed } => variant(out, "delete", |o| {
                o.field("observed", observed);
            }),
        }
    }
}

/// Its first sequence number, key and signature (the signer, derived from
/// the key, is not written).
impl WriteJson for Seal {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("first", &self.first)
            .field("key", self.key())
            .field("signature", &self.signature)
            .end();
    }
}

impl WriteJson for P2PEvent {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("id", &self.id)
            .field("key", &self.key)
            .field("op", &self.op)
            .field("deps", &self.deps)
            .field("hlc", &self.hlc.0)
            .field("seal", &self.seal)
            .end();
    }
}

impl WriteJson for ReconciliationRequest {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("type", "RECONCILIATION_REQUEST")
            .field("source_peer_id", &self.source_peer_id)
            .field("target_peer_id", &self.target_peer_id)
            .field("key", &self.key)
            .field("conflicting_events", &self.conflicting_events)
            .end();
    }
}

impl WriteJson for ReconciliationResponse {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("type", "RECONCILIATION_RESPONSE")
            .field("source_peer_id", &self.source_peer_id)
            .field("target_peer_id", &self.target_peer_id)
            .field("resolution_events", &self.resolution_events)
            .end();
    }
}

impl WriteJson for Candidate {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("value", &self.value)
            .field("peer", &self.peer)
            .end();
    }
}

impl WriteJson for Conflict {
    fn write_json(&self, out: &mut String) {
        Object::new(out)
            .field("key", &self.key)
            .field("candidates", &self.candidates)
            .end();
    }
}

/// In camel case; absent options and false flags left out.
impl WriteJson for PeerReport {
    fn write_json(&self, out: &mut String) {
        let mut object = Object::new(out);
        object
            .field("id", &self.id)
            .field("state", self.state)
            .some("rtt", self.rtt.as_ref())
            .field("rejected", &self.rejected)
            .some("lastError", self.last_error.as_ref())
            .field("bytesIn", &self.bytes_in)
            .field("bytesOut", &self.bytes_out)
            .field("buffered", &self.buffered)
            .some("clock", self.clock.as_ref())
            .some("digest", self.digest.as_ref())
            .some("standing", self.standing);
        if self.server {
            object.field("server", &true);
        }
        if self.relayed {
            object.field("relayed", &true);
        }
        object.end();
    }
}
