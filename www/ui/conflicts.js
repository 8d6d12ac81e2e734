// Conflicts: each key's concurrent values side by side, a button to keep
// one, and the reconciliation requests still waiting for a response.
import { el, json, short } from "./dom.js";

export function conflictsView(peer, report) {
  const list = el("div", { class: "conflicts" });
  const waiting = el("ul", { class: "waiting" });
  /** Reconciliation requests seen, by conflicting key, until answered. */
  const inFlight = new Map();

  function onMessage(event) {
    const m = event.message;
    // A request names its key: in a signed room its events are the whole
    // runs holding the siblings, which may hold other keys too.
    const keys = m.key != null
      ? [m.key]
      : new Set((m.conflicting_events ?? m.resolution_events ?? []).map((e) => e.key));
    for (const key of keys) {
      if (m.type === "RECONCILIATION_REQUEST") {
        inFlight.set(key, { from: m.source_peer_id, to: m.target_peer_id });
      } else if (inFlight.get(key)?.to === m.source_peer_id) {
        // An answer names no key (its events are whole runs): it ends the
        // requests it could answer, those sent to its sender.
        inFlight.delete(key);
      }
    }
  }

  let shownConflicts = null;

  function render() {
    const conflicts = peer.conflicts();
    const signature = JSON.stringify(conflicts);
    renderWaiting(conflicts);
    if (signature === shownConflicts) return; // keep buttons in place
    shownConflicts = signature;
    list.replaceChildren(
      ...conflicts.map((c) =>
        el(
          "article",
          { class: "conflict", "data-key": c.key },
          el("h3", { class: "mono" }, c.key),
          el(
            "div",
            { class: "siblings" },
            c.candidates.map((candidate) =>
              el(
                "div",
                { class: "sibling" },
                el("div", { class: "mono value" }, json(candidate.value)),
                el(
                  "div",
                  { class: "muted mono", title: candidate.peer },
                  candidate.peer === peer.id ? `from ${short(candidate.peer)} (you)` : `from ${short(candidate.peer)}`,
                ),
                el(
                  "button",
                  {
                    type: "button",
                    "data-action": "keep",
                    on: {
                      click: () =>
                        peer.resolve(c.key, candidate.value).catch((e) => report(`resolve failed: ${e.message ?? e}`)),
                    },
                  },
                  "keep this",
                ),
              ),
            ),
          ),
        ),
      ),
    );
    if (conflicts.length === 0) list.append(el("p", { class: "muted" }, "No conflicts."));
  }

  function renderWaiting(conflicts) {
    const open = [...inFlight].filter(([key]) => conflicts.some((c) => c.key === key));
    waiting.replaceChildren(
      ...open.map(([key, r]) =>
        el("li", { class: "mono" }, `${key}: reconciliation asked of ${short(r.to)} by ${short(r.from)}`),
      ),
    );
  }
  const node = el(
    "section",
    { class: "card", id: "conflicts-card" },
    el("h2", {}, "Conflicts"),
    list,
    waiting,
  );
  return { node, render, onMessage };
}
