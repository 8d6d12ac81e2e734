// The page only renders: everything it shows comes from the wasm module.
//
// URL parameters: `room` (default "demo"), `signaling` (a cpc-signal URL,
// or "none" for tabs of this browser only; default: the server that served
// the page, if it is cpc-signal), `storage` ("indexeddb" or "memory").
import init, * as cpc from "/pkg/cpc_sync.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

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

/** Keys shown; a large state is summarized, not laid out whole. */
const SHOWN = 200;

function render(peer) {
  $("peer-id").textContent = peer.id;
  const state = peer.state();
  const keys = Object.keys(state);
  const shown = Object.fromEntries(keys.slice(0, SHOWN).map((k) => [k, state[k]]));
  const more = keys.length > SHOWN ? `\n… and ${keys.length - SHOWN} more keys` : "";
  $("state").textContent = JSON.stringify(shown, null, 2) + more;
  const list = $("peers");
  list.replaceChildren(
    ...peer.peers().map((p) => {
      const item = document.createElement("li");
      const rtt = p.rtt === undefined ? "" : ` · ${p.rtt.toFixed(1)} ms`;
      item.textContent = `${p.id} · ${p.state}${rtt}`;
      return item;
    }),
  );
}

async function main() {
  try {
    await init();
    performance.mark("cpc:wasm-ready");
    $("version").textContent = `engine v${cpc.version()}`;
    window.cpc = { module: cpc };
    const room = params.get("room") ?? "demo";
    const signaling = await signalingUrl();
    const storage = params.get("storage") ?? "indexeddb";
    $("room").textContent = room;
    $("signaling").textContent = signaling === "none" ? "this browser's tabs" : signaling;
    performance.mark("cpc:open");
    const peer = await cpc.Peer.open({ room, signaling, storage });
    // Time to a ready peer, for benchmarks and the curious.
    performance.measure("cpc:Peer.open", "cpc:open");
    performance.mark("cpc:peer-ready");
    window.cpc.peer = peer;
    // At most one render per frame, however many changes arrive.
    let scheduled = false;
    const schedule = () => {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        render(peer);
      });
    };
    for (const type of ["change", "peer"]) peer.addEventListener(type, schedule);
    render(peer);
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
