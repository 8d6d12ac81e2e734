// The protocol log: recent messages and events, newest first, as JSON.
import { el } from "./dom.js";

const KEPT = 60;

export function logView() {
  const list = el("ol", { class: "log", reversed: true });
  function add(kind, detail) {
    const time = new Date().toLocaleTimeString();
    list.prepend(
      el(
        "li",
        { "data-kind": kind },
        el("span", { class: "muted" }, `${time} `),
        el("strong", {}, kind),
        el("pre", { class: "mono" }, JSON.stringify(detail, null, 2)),
      ),
    );
    while (list.children.length > KEPT) list.lastElementChild.remove();
  }
  const node = el("section", { class: "card wide", id: "log-card" }, el("h2", {}, "Protocol log"), list);
  return { node, add };
}
