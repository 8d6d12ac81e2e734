// The page only renders what the peer reports, and calls its API.
//
// URL parameters: `room` (default "demo"), `signaling` (a cpc-signal URL,
// or "none" for tabs of this browser only; default: the server that served
// the page, if it is cpc-signal), `storage` ("indexeddb" or "memory").
// A room's secret goes in the fragment, `#secret=...`, which browsers never
// send to a server; with one, only pages that know it join the room.
import init, * as cpc from "/pkg/cpc_sync.js";
import { stateView } from "./ui/state.js";
import { peersView } from "./ui/peers.js";
import { conflictsView } from "./ui/conflicts.js";
import { logView } from "./ui/log.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const secret = new URLSearchParams(location.hash.slice(1)).get("secret") || undefined;
// The page is of one room: a link pasted into this tab that differs only in
// its fragment (another secret, or none) does not reload it, and the tab
// stayed in the room it had, writing there.
addEventListener("hashchange", () => location.reload());

/** The signaling URL: `?signaling=`, else this server's if it is cpc-signal. */
async function signalingUrl() {
  const chosen = params.get("signaling");
  if (chosen !== null) return chosen;
  try {
    const response = await fetch("/.well-known/cpc-signal");
    if (response.ok) return (await response.json()).signaling;
  } catch {
    // Not served by cpc-signal: tabs of this browser only.
  }
  return "none";
}

function notify(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => (notice.hidden = true), 6000);
}

/** What this tab's settings of a room are stored under: its name, and a
 * hash of its secret (a room with a secret is another room). */
async function roomKey(room) {
  if (!secret) return room;
  // `crypto.subtle` is there in secure contexts only (https, localhost).
  if (!crypto.subtle) return `${room}#secret`;
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret));
  const hex = [...new Uint8Array(hash, 0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${room}#${hex}`;
}

function header(peer, room, settingsKey, signaling) {
  $("room").textContent = secret ? `${room} (secret)` : room;
  const link = new URL(location.pathname, location.href);
  link.searchParams.set("room", room);
  if (params.get("signaling")) link.searchParams.set("signaling", params.get("signaling"));
  if (secret) link.hash = new URLSearchParams({ secret }).toString();
  $("share").href = link.href;
  $("copy").addEventListener("click", () =>
    navigator.clipboard?.writeText(link.href).then(() => notify("link copied"), () => notify(link.href)),
  );
  $("private-room").addEventListener("click", () => location.assign(privateRoomLink()));
  $("signaling").textContent = signaling === "none" ? "this browser's tabs (BroadcastChannel)" : signaling;
  $("peer-id").textContent = peer.id;
  // Offline stays offline across a reload of this tab (as its identity slot does).
  const offline = `cpc-page:${settingsKey}:offline`;
  const online = $("online");
  const remembered = (value) => {
    try {
      if (value === undefined) return sessionStorage.getItem(offline);
      sessionStorage.setItem(offline, value);
    } catch {} // storage disabled: forgotten on reload
  };
  if (remembered() === "true") {
    online.checked = false;
    peer.goOffline();
  }
  online.addEventListener("change", (e) => {
    if (e.target.checked) peer.goOnline();
    else peer.goOffline();
    remembered(String(!e.target.checked));
  });
}

/**
 * A link to a new room with a random 128-bit secret. The secret lives in
 * the fragment, which browsers never send to a server; the room's keys come
 * from it through a slow KDF, so the opaque room id the server sees cannot
 * be tested against guesses at hash speed.
 */
function privateRoomLink() {
  const hex = (n) => [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const link = new URL(location.pathname, location.href);
  link.searchParams.set("room", `private-${hex(4)}`);
  for (const kept of ["signaling", "storage"]) if (params.get(kept)) link.searchParams.set(kept, params.get(kept));
  link.hash = new URLSearchParams({ secret: hex(16) }).toString();
  return link.href;
}

function transferBar(event) {
  const done = event.dropped || event.received >= event.total;
  $("transfer").hidden = done;
  $("transfer-peer").textContent = event.peer.slice(0, 8);
  $("transfer-progress").value = event.total ? event.received / event.total : 0;
  $("transfer-bytes").textContent = `${(event.received / 1e6).toFixed(1)} of ${(event.total / 1e6).toFixed(1)} MB`;
}

async function main() {
  try {
    // The signaling lookup is a request of its own: it runs while the
    // wasm compiles.
    const lookup = signalingUrl();
    await init();
    performance.mark("cpc:wasm-ready");
    $("version").textContent = `v${cpc.version()} · protocol ${cpc.protocolVersion()}`;
    window.cpc = { module: cpc };
    const room = params.get("room") || "demo";
    const signaling = await lookup;
    const storage = params.get("storage") ?? "indexeddb";
    performance.mark("cpc:open");
    const peer = await cpc.Peer.open({ room, signaling, storage, secret });
    // Time to a ready peer, for benchmarks and the curious.
    performance.measure("cpc:Peer.open", "cpc:open");
    performance.mark("cpc:peer-ready");
    window.cpc.peer = peer;
    header(peer, room, await roomKey(room), signaling);

    const views = [stateView(peer, notify), peersView(peer), conflictsView(peer, notify)];
    const log = logView();
    $("app").append(...views.map((v) => v.node), log.node);
    // At most one render per frame, however many events arrive.
    let scheduled = false;
    const render = () => {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        for (const v of views) v.render();
      });
    };
    peer.addEventListener("change", (e) => {
      log.add("change", { keys: e.keys.length > 10 ? [...e.keys.slice(0, 10), "…"] : e.keys });
      render();
    });
    peer.addEventListener("peer", (e) => {
      log.add("peer", { peer: e.peer, state: e.state });
      render();
    });
    peer.addEventListener("message", (e) => {
      log.add(`${e.message.type} ${e.outgoing ? "to" : "from"} ${e.peer.slice(0, 8)}`, e.message);
      views[2].onMessage(e);
      render();
    });
    // Who is here: a name (`?name=`, else the peer's short id), shown to
    // the room while the page is open; gone from the others when it hides.
    const presence = { name: params.get("name") ?? `guest ${peer.id.slice(0, 8)}` };
    peer.setPresence(presence);
    // Not once the app closed the peer (setPresence then throws).
    const show = (value) => {
      try {
        peer.setPresence(value);
      } catch {}
    };
    addEventListener("pagehide", () => show(null));
    addEventListener("pageshow", (e) => e.persisted && show(presence));
    peer.addEventListener("presence", render);
    peer.addEventListener("snapshot", (e) => {
      if (e.dropped) log.add("snapshot dropped", { from: e.peer, received: e.received, of: e.total });
      else if (e.received === e.total) log.add("snapshot", { from: e.peer, bytes: e.total });
      transferBar(e);
    });
    // What no call could be told of: the signaling server gone, a
    // connection failed, a commit to IndexedDB.
    peer.addEventListener("error", (e) => {
      log.add("error", { code: e.error.code, message: e.error.message, ...(e.peer ? { peer: e.peer } : {}) });
      notify(`${e.error.code}: ${e.error.message}`);
    });
    // Clocks, digests and round trips change without a change event.
    setInterval(render, 1000);
    render();
    $("status").textContent = "ready";
    document.body.dataset.ready = "true";
  } catch (error) {
    $("status").textContent = `failed to load: ${error}`;
    $("status").classList.add("error");
    document.body.dataset.ready = "error";
    throw error;
  }
}

main();
