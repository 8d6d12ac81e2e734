// The README's JS examples as a TypeScript user writes them, checked under
// `strict` against the package's .d.ts (`npm test`'s "types" step): a
// type that drifts from the README, or an event whose fields cannot be
// read without a cast, fails here.
import init, { Peer, type PeerEvent, type PeerError } from "cpc-sync";

declare function render(state: unknown): void;

await init();

// The quick start.
{
  const peer = await Peer.open({ room: "notes", signaling: "wss://your-host/signal" });
  peer.addEventListener("change", () => render(peer.state()));
  await peer.set("note/1", { text: "hello", done: false });
}

// The JS API section.
const peer = await Peer.open({
  room: "demo",
  signaling: "wss://example.org/signal",
  storage: "indexeddb",
  secret: "a long random string",
  iceServers: [{ urls: "stun:stun.example.org" }],
  maxConnections: 8,
  connectTimeoutMs: 15000,
  warmUp: true,
  verifyWorkers: 4,
});
peer.addEventListener("change", (e) => console.log("changed", e.keys));
peer.addEventListener("peer", (e) => console.log(e.peer, e.state));
await peer.setPolicy("doc/", "multi-value");
await peer.set("title", { text: "hello" });
await peer.increment("likes", 1);
await peer.add("tags", "rust");
await peer.remove("tags", "rust");
await peer.delete("title");
peer.get("likes");
peer.state();
peer.clock();
const kept: "indexeddb" | "memory" = peer.storage;
void kept;
peer.digest();
peer.conflicts();
await peer.resolve("doc/x", "merged");
peer.onReconcile((key, candidates) => candidates[0].value);
peer.peers();
peer.setPresence({ name: "ada", cursor: 12 });
peer.presence();
peer.goOffline();
peer.goOnline();

// Each event's own fields, without a cast.
peer.addEventListener("change", (e) => console.log(e.keys.length));
peer.addEventListener("conflict", (e) => console.log(e.conflicts.map((c) => c.key), e.resolved));
peer.addEventListener("message", (e) => console.log(e.peer, e.outgoing, e.message));
peer.addEventListener("snapshot", (e) => console.log(e.peer, e.received / e.total));
peer.addEventListener("presence", (e) => console.log(e.presence.map((p) => p.id)));
peer.addEventListener("error", (e) => {
  const error: PeerError = e.error;
  console.log(error.code, e.peer);
});
// One listener for every event, told apart by `type`.
const any = (e: PeerEvent) => (e.type === "peer" ? e.state : e.type);
peer.addEventListener("peer", any);
peer.removeEventListener("peer", any);
// @ts-expect-error: there is no such event
peer.addEventListener("changes", () => {});

// Errors.
try {
  await peer.set("k", 1);
} catch (e) {
  if (e instanceof Error && (e as PeerError).code === "CLOSED") console.log("closed");
}
await peer.close();
