// Who is connected, how far, and who is behind: this peer's clock and
// digest beside each connected peer's.
import { el, short } from "./dom.js";

/** A version vector as short ids and counters, one per line. */
const clockText = (clock) =>
  Object.entries(clock)
    .map(([id, n]) => `${short(id)}: ${n}`)
    .join("\n") || "{}";

/** Who is here, by the names their pages set (`setPresence`). */
function hereText(peer) {
  const names = peer
    .presence()
    .filter((p) => p.value && typeof p.value.name === "string")
    .map((p) => (p.id === peer.id ? `${p.value.name} (you)` : p.value.name))
    .sort();
  return names.length ? names.join(", ") : "—";
}

export function peersView(peer) {
  const body = el("tbody");
  const here = el("p", { id: "here" }, "");
  function render() {
    here.textContent = `Here: ${hereText(peer)}`;
    const clock = peer.clock();
    const digest = peer.digest();
    const rows = [
      el(
        "tr",
        { class: "me" },
        el("td", { class: "mono", title: peer.id }, `${short(peer.id)} (you)`),
        el("td", {}, "—"),
        el("td", {}, "—"),
        el("td", { class: "mono clock", title: JSON.stringify(clock) }, el("pre", {}, clockText(clock))),
        el("td", { class: "mono", title: digest }, digest.slice(0, 12)),
        el("td", {}, ""),
      ),
    ];
    for (const p of peer.peers()) {
      const stand = p.standing ?? "";
      rows.push(
        el(
          "tr",
          {
            "data-peer": p.id,
            "data-state": p.state,
            ...(p.server ? { "data-server": "" } : {}),
            ...(p.relayed ? { "data-relayed": "" } : {}),
          },
          el(
            "td",
            { class: "mono", title: p.id },
            p.server ? `${short(p.id)} (server)` : p.relayed ? `${short(p.id)} (relayed)` : short(p.id),
          ),
          el("td", {}, el("span", { class: `link ${p.state}` }, p.state)),
          el("td", { class: "rtt" }, p.rtt === undefined ? "—" : `${p.rtt.toFixed(1)} ms`),
          el("td", { class: "mono clock", title: JSON.stringify(p.clock ?? {}) }, p.clock ? el("pre", {}, clockText(p.clock)) : "—"),
          el("td", { class: "mono", title: p.digest ?? "" }, p.digest ? p.digest.slice(0, 12) : "—"),
          el(
            "td",
            { title: p.lastError ?? "" },
            stand && el("span", { class: `standing ${stand.replaceAll(" ", "-")}` }, stand),
            p.rejected ? el("span", { class: "bad" }, ` ${p.rejected} refused`) : "",
          ),
        ),
      );
    }
    body.replaceChildren(...rows);
  }
  const node = el(
    "section",
    { class: "card", id: "peers-card" },
    el("h2", {}, "Peers"),
    here,
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { id: "peers-table" },
        el("thead", {}, el("tr", {}, ["Peer", "Link", "RTT", "Version vector", "Digest", ""].map((h) => el("th", {}, h)))),
        body,
      ),
    ),
  );
  return { node, render };
}
