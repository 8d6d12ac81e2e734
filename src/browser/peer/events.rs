//! The app's listeners and what they receive.

use crate::protocol::Text;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::browser::error::PeerError;
use crate::protocol::heap_sort::heap_sort_by;
use crate::protocol::sorted_map::SortedMap;

/// Listeners by event type, and the keys changed since the last "change".
#[derive(Default)]
pub struct Listeners {
    by_kind: SortedMap<String, Vec<Function>>,
    /// Keys changed the node reported since the last "change" event was
    /// scheduled, whether its report ended among them, and whether an
    /// event is scheduled.
    pub changed: Vec<Text>,
    pub report_ended: bool,
    pub change_scheduled: bool,
    /// A report in parts, told of once its last part is in: each part's
    /// keys made JS strings as it came (an array each), and those of them
    /// in conflict then.
    pub change_parts: Vec<JsValue>,
    pub part_conflicts: Vec<Text>,
    /// Keys a "conflict" event named as in conflict, sorted: a change that
    /// leaves one without a conflict is told as `resolved` (the app would
    /// otherwise show a conflict that ended). Kept while "conflict" is
    /// heard.
    pub told_conflicts: Vec<Text>,
    /// Those of them the parts of a report so far left resolved.
    pub part_resolved: Vec<Text>,
}

impl Listeners {
    /// As the DOM's: a listener added twice for one event is called once.
    pub fn add(&mut self, kind: String, listener: Function) {
        let list = self.by_kind.get_or_insert_with(kind, Vec::new);
        if !list.contains(&listener) {
            list.push(listener);
        }
    }

    pub fn remove(&mut self, kind: &str, listener: &Function) {
        if let Some(list) = self.by_kind.get_mut(kind) {
            list.retain(|f| f != listener);
        }
    }

    /// Whether `listener` still listens to `kind`: one removed while an
    /// event is dispatched (by a listener called before it, or by
    /// `close()`) is not called for it, as in the DOM.
    pub fn listens(&self, kind: &str, listener: &Function) -> bool {
        self.by_kind.get(kind).is_some_and(|l| l.contains(listener))
    }

    pub fn heard(&self, kind: &str) -> bool {
        self.by_kind.get(kind).is_some_and(|l| !l.is_empty())
    }

    /// The listeners of `kind`, cloned: a listener may add or remove
    /// listeners, or write, while the list is walked.
    pub fn of(&self, kind: &str) -> Vec<Function> {
        self.by_kind.get(kind).cloned().unwrap_or_default()
    }

    pub fn clear(&mut self) {
        self.by_kind.clear();
        self.forget_changes();
    }

    /// Drops the keys gathered for a "change" event (nobody listens).
    pub fn forget_changes(&mut self) {
        self.changed.clear();
        self.report_ended = false;
        self.change_parts.clear();
        self.part_conflicts.clear();
        self.part_resolved.clear();
    }

    /// Those of `keys` (changed) that a "conflict" event named and that
    /// `in_conflict` no longer says are.
    pub fn resolved<'a>(
        &self,
        keys: impl Iterator<Item = &'a Text>,
        in_conflict: impl Fn(&str) -> bool,
    ) -> Vec<Text> {
        if self.told_conflicts.is_empty() {
            return Vec::new();
        }
        keys.filter(|k| self.told_conflicts.binary_search(k).is_ok() && !in_conflict(k))
            .cloned()
            .collect()
    }

    /// Notes what a "conflict" event told: `named` in conflict, `resolved`
    /// no longer. Sorted whole, not inserted one by one: a newcomer's
    /// snapshot may name thousands at once.
    pub fn note_told(&mut self, named: impl Iterator<Item = Text>, resolved: &[Text]) {
        let told = &mut self.told_conflicts;
        if !resolved.is_empty() {
            let mut gone = resolved.to_vec();
            heap_sort_by(&mut gone, |a, b| a < b);
            told.retain(|k| gone.binary_search(k).is_err());
        }
        told.extend(named);
        heap_sort_by(told, |a, b| a < b);
        told.dedup();
    }
}

/// `{ type, ...fields }`, what a listener receives.
pub fn event_object(kind: &str, fields: &[(&str, JsValue)]) -> JsValue {
    let detail = event_object_fields(fields);
    let _ = Reflect::set(&detail, &"type".into(), &kind.into());
    detail
}

/// `{ ...fields }`.
pub fn event_object_fields(fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (name, value) in fields {
        let _ = Reflect::set(&object, &(*name).into(), value);
    }
    object.into()
}

/// The "error" event's detail: `{ type: "error", error, peer? }`.
pub fn error_event(error: PeerError, peer: Option<String>) -> JsValue {
    let mut fields = vec![("error", JsValue::from(error))];
    if let Some(peer) = peer {
        fields.push(("peer", peer.into()));
    }
    event_object("error", &fields)
}
