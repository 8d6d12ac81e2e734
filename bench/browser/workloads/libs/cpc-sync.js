// cpc-sync through its public `Peer` (the release package, pkg/), except
// the encode/load workload: `Peer` has no call that encodes or loads a
// snapshot alone, so that one uses the bench build's `WorkloadDoc`
// (target/bench/pkg, src/browser/bench/workloads.rs), which runs the same
// snapshot code with verification (see also ./cpc-sync-engine.js).
import { key, writeInBursts, until, sleep } from "../common.js";

let cpc;
let bench;

/** The room's writes of `from..to` as one task's `Peer.set` calls (one
 * sealed run, one commit); resolves once they are durable. */
const burstOf = (peer) => (from, to) => {
  const writes = [];
  for (let i = from; i < to; i++) writes.push(peer.set(key(i), i));
  return Promise.all(writes);
};

/** Whether version vector `clock` has every entry of `target`. */
function covers(clock, target) {
  return Object.entries(target).every(([peer, n]) => (clock[peer] ?? 0) >= n);
}

export default {
  name: "cpc-sync",
  transport: "WebRTC data channel, signaled over BroadcastChannel (`signaling: \"none\"`)",
  persistence: "its own (`storage: \"indexeddb\"`)",

  async init(workload) {
    if (workload === "codec") {
      bench = await import("../../../../target/bench/pkg/cpc_sync.js");
      await bench.default();
    } else {
      cpc = await import("../../../../pkg/cpc_sync.js");
      await cpc.default();
    }
  },

  memory: {
    async open() {
      const peer = await cpc.Peer.open({ room: `memory-${Math.random()}`, signaling: "none", storage: "memory" });
      return { peer, write: burstOf(peer) };
    },
    write: (doc, from, to) => doc.write(from, to),
    state: (doc) => doc.peer.state(),
  },

  codec: {
    async build(n, size) {
      const doc = new bench.WorkloadDoc();
      await writeInBursts(n, (from, to) => doc.write(from, to), size);
      return doc;
    },
    encode: (doc) => doc.encode(),
    load: (bytes) => bench.WorkloadDoc.load(bytes),
    read: (doc) => JSON.parse(doc.getJson(key(0))),
    state: (doc) => JSON.parse(doc.stateJson()),
  },

  stored: {
    async write(name, n) {
      const peer = await cpc.Peer.open({ room: name, signaling: "none", storage: "indexeddb" });
      await writeInBursts(n, burstOf(peer));
      // close() folds the log into one snapshot, so the next start reads
      // that (what a tab closed cleanly leaves).
      await peer.close();
    },
    async load(name) {
      const peer = await cpc.Peer.open({ room: name, signaling: "none", storage: "indexeddb" });
      peer.get(key(0));
      return peer;
    },
    state: (peer) => peer.state(),
    close: (peer) => peer.close(),
  },

  room: {
    async host(name, n, { perUpdate, burst }) {
      // With 100k separate updates the log is never folded, so a newcomer
      // gets events; else the default folds it into a snapshot every 50k
      // events and a newcomer gets that snapshot. `hostStorage=indexeddb`
      // in the query (`CPC_ROOM_HOST_STORAGE=indexeddb`): a host that keeps
      // its state, and offers the snapshot its fold stored.
      const peer = await cpc.Peer.open({
        room: name,
        signaling: "none",
        storage: new URLSearchParams(location.search).get("hostStorage") ?? "memory",
        ...(perUpdate ? { compactAfter: 1e9 } : {}),
      });
      await writeInBursts(n, burstOf(peer), burst);
      // The fold runs on the peer's next timer tick.
      if (!perUpdate) await sleep(2_000);
      return { doc: peer, target: { clock: peer.clock(), digest: peer.digest() } };
    },
    /** Before a newcomer keeping its state in IndexedDB joins (untimed):
     * what an earlier newcomer of this page's profile stored is deleted, so
     * this one is new too, not a restart. */
    async prepare(name) {
      if (new URLSearchParams(location.search).get("storage") !== "indexeddb") return;
      for (const { name: db } of await indexedDB.databases()) {
        if (!db.includes(name)) continue;
        await new Promise((resolve, reject) => {
          const request = indexedDB.deleteDatabase(db);
          request.onsuccess = resolve;
          request.onerror = () => reject(request.error);
          request.onblocked = () => reject(new Error(`${db} is still open`));
        });
      }
    },
    /** Opens a peer of the room; resolves once it holds `target`'s clock. */
    async join(name, target) {
      // `warmUp=0` in the page's query: the A/B of the receive path's
      // warm-up (`CPC_WARM_UP=0 node bench/browser/workloads.mjs`).
      const query = new URLSearchParams(location.search);
      const warmUp = query.get("warmUp") !== "0";
      // `storage=indexeddb` in the query: a newcomer that keeps its state
      // (`CPC_ROOM_STORAGE=indexeddb node bench/browser/workloads.mjs`).
      const storage = query.get("storage") ?? "memory";
      const peer = await cpc.Peer.open({ room: name, signaling: "none", storage, warmUp });
      const transfer = { bytes: 0 };
      peer.addEventListener("snapshot", (e) => (transfer.bytes = e.total));
      // `listen=1` in the query: a newcomer with a "change" listener, as a
      // page that renders on it (`CPC_ROOM_LISTEN=1`); it counts the keys.
      const changed = { keys: 0 };
      if (query.get("listen") === "1") peer.addEventListener("change", (e) => (changed.keys += e.keys.length));
      // Polled, not on "change": a listener makes every changed key cross
      // into JS, which an app that only needs "done" would not pay.
      await until(() => covers(peer.clock(), target.clock), { every: 20 });
      return { doc: peer, snapshot_bytes: transfer.bytes };
    },
    verify(peer, target) {
      if (peer.digest() !== target.digest) throw new Error("cpc-sync: same clock, different digest");
    },
    state: (peer) => peer.state(),
    close: (peer) => peer.close(),
  },
};
