// The shared state as a live, editable table, and a form for every write.
import { el, json, short } from "./dom.js";

/** The room's policies for a key prefix: what each does with concurrent writes. */
const POLICIES = {
  lww: "last writer wins: concurrent writes settle on the newest",
  "multi-value": "concurrent writes are all kept and shown as a conflict until one is chosen",
  reconcile: "one peer's app settles concurrent writes (its reconcile handler), for everyone",
};

/** Rows shown at most; a filter narrows a large state. */
const ROWS = 300;

export function stateView(peer, report) {
  const filter = el("input", { type: "search", placeholder: "filter keys", "aria-label": "filter keys" });
  const body = el("tbody");
  const count = el("span", { class: "muted" });
  const run = (what, promise) => promise.catch((e) => report(`${what} failed: ${e.message ?? e}`));

  function controls(entry) {
    const { key, kind } = entry;
    const input = el("input", { class: "inline", "aria-label": `new value for ${key}`, placeholder: "JSON" });
    const parse = () => {
      try {
        return JSON.parse(input.value);
      } catch {
        return input.value; // plain text is a string
      }
    };
    const button = (label, action, title) =>
      el("button", { type: "button", title, "data-action": label, on: { click: action } }, label);
    const del = button("delete", () => run("delete", peer.delete(key)), `delete ${key}`);
    // Enter in the value box does what its first button does (set, add).
    const onEnter = (action) =>
      input.addEventListener("keydown", (e) => e.key === "Enter" && (e.preventDefault(), action()));
    if (kind === "counter") {
      return [
        button("+1", () => run("increment", peer.increment(key, 1)), "increment"),
        button("−1", () => run("increment", peer.increment(key, -1)), "decrement"),
        del,
      ];
    }
    if (kind === "set") {
      const add = () => run("add", peer.add(key, parse()));
      onEnter(add);
      return [
        input,
        button("add", add, "add the member"),
        button("remove", () => run("remove", peer.remove(key, parse())), "remove the member"),
        del,
      ];
    }
    input.value = JSON.stringify(entry.value);
    const set = () => run("set", peer.set(key, parse()));
    onEnter(set);
    return [input, button("set", set, "write this value"), del];
  }

  /** Rows by key, kept across renders so that an input being typed in
   * and a button being clicked stay in place; only changed cells change. */
  const rows = new Map();
  const more = el("tr", {}, el("td", { colspan: 5, class: "muted" }));

  function row(e) {
    let r = rows.get(e.key);
    if (!r) {
      r = {
        tr: el("tr", { "data-key": e.key }),
        value: el("td", { class: "mono value" }),
        kind: el("td", {}),
        writer: el("td", { class: "mono" }),
        actions: el("td", { class: "actions" }),
        last: {},
      };
      r.tr.append(el("td", { class: "mono key" }, e.key), r.value, r.kind, r.writer, r.actions);
      rows.set(e.key, r);
    }
    const text = json(e.value);
    if (r.last.text !== text) {
      r.value.textContent = text;
      r.value.title = json(e.value, 10_000);
      const input = r.actions.querySelector("input");
      if (e.kind === "register" && input && document.activeElement !== input) input.value = JSON.stringify(e.value);
    }
    if (r.last.kind !== e.kind) {
      r.kind.replaceChildren(el("span", { class: `kind ${e.kind}` }, e.kind));
      r.actions.replaceChildren(...controls(e));
    }
    if (r.last.writer !== e.writer) {
      r.writer.textContent = short(e.writer);
      r.writer.title = e.writer ?? "";
    }
    r.tr.classList.toggle("conflicted", e.conflicted);
    r.last = { text, kind: e.kind, writer: e.writer };
    return r.tr;
  }

  function render() {
    const wanted = filter.value.trim();
    const entries = peer.entries().filter((e) => !wanted || e.key.includes(wanted));
    count.textContent = `${entries.length} key${entries.length === 1 ? "" : "s"}`;
    const shown = entries.slice(0, ROWS);
    const keep = new Set(shown.map((e) => e.key));
    for (const [key, r] of rows) {
      if (!keep.has(key)) {
        r.tr.remove();
        rows.delete(key);
      }
    }
    // Insert in key order, moving a row only when it is out of place.
    let at = body.firstElementChild;
    for (const e of shown) {
      const tr = row(e);
      if (tr === at) {
        at = at.nextElementSibling;
      } else {
        body.insertBefore(tr, at);
      }
    }
    more.remove();
    if (entries.length > ROWS) {
      more.firstElementChild.textContent = `… ${entries.length - ROWS} more; filter to find them`;
      body.append(more);
    }
  }
  filter.addEventListener("input", render);

  // The write form: any operation on any key.
  const key = el("input", { name: "key", placeholder: "key", required: true, "aria-label": "key" });
  const value = el("input", { name: "value", placeholder: 'value (JSON, or text)', "aria-label": "value" });
  const op = el(
    "select",
    { name: "op", "aria-label": "operation" },
    ["set", "increment", "add", "remove", "delete", "resolve"].map((o) => el("option", { value: o }, o)),
  );
  const form = el(
    "form",
    {
      class: "write",
      on: {
        submit: (event) => {
          event.preventDefault();
          let v;
          try {
            v = JSON.parse(value.value);
          } catch {
            v = value.value;
          }
          const k = key.value.trim();
          if (!k) return;
          const calls = {
            set: () => peer.set(k, v),
            increment: () => peer.increment(k, Number(value.value || 1)),
            add: () => peer.add(k, v),
            remove: () => peer.remove(k, v),
            delete: () => peer.delete(k),
            resolve: () => peer.resolve(k, v),
          };
          run(op.value, calls[op.value]());
        },
      },
    },
    key,
    op,
    value,
    el("button", { type: "submit" }, "write"),
  );

  const prefix = el("input", { placeholder: "key prefix", "aria-label": "policy prefix" });
  const policy = el(
    "select",
    { "aria-label": "policy" },
    Object.entries(POLICIES).map(([p, title]) => el("option", { value: p, title }, p)),
  );
  const policyForm = el(
    "form",
    {
      class: "write",
      on: {
        submit: async (event) => {
          event.preventDefault();
          try {
            await peer.setPolicy(prefix.value, policy.value);
            report(`policy of "${prefix.value}*" is now ${policy.value} (for the whole room)`);
          } catch (e) {
            report(`policy failed: ${e.message ?? e}`);
          }
        },
      },
    },
    prefix,
    policy,
    el("button", { type: "submit" }, "set policy"),
  );

  const node = el(
    "section",
    { class: "card wide", id: "state-card" },
    el("h2", {}, "Shared state ", count),
    form,
    el("div", { class: "tools" }, filter, policyForm),
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { id: "state-table" },
        el("thead", {}, el("tr", {}, ["Key", "Value", "Kind", "Last writer", ""].map((h) => el("th", {}, h)))),
        body,
      ),
    ),
  );
  return { node, render };
}
