// How each library's writers make the workloads' updates, and the ways a
// peer takes them in (a row each). Ids are what each library makes by
// default: random uint32 client ids (Yjs), random u64 peer ids (Loro),
// random 16-byte actors (Automerge), identity-derived ids (cpc-sync).
import * as Y from "yjs";
import * as A from "@automerge/automerge/slim";
import { LoroDoc } from "loro-crdt/base64";
import * as cpc from "../../../target/bench/pkg/cpc_sync.js";
import { runHeavyWrite } from "./workloads.js";

/** The verifier workers a page's peer starts by default. Declared before
 * `LIBRARIES`, whose rows read it as they are made: read earlier, a
 * `const` throws, and the bundler's `var` is `undefined` (0 workers, which
 * until 2026-12-01 the bench node took as 1). */
export const VERIFY_WORKERS = Math.min(Math.max(navigator.hardwareConcurrency || 1, 1), 4);

const key = (sameKey, i) => (sameKey ? "shared" : `key${i}`);

/** The bursts of the run-heavy workload, writer by writer in turn. */
function eachBurst({ writers, updates, burst }, write) {
  for (let j = 0; j < updates; j += burst) {
    for (let w = 0; w < writers; w++) write(w, j, Math.min(updates, j + burst));
  }
}

/**
 * Per library: `oneWriteEach(n, sameKey)` and `runHeavy(sizes)` return
 * `{ updates, winner }` (`winner`: the value its rule keeps when every
 * write is to one key), and `rows` the ways of applying them.
 */
export const LIBRARIES = {
  "cpc-sync": {
    // Signed writers' frames as a data channel delivers them; the last
    // writer has the latest timestamp, and last-writer-wins keeps it.
    oneWriteEach: (n, sameKey) => ({ updates: cpc.oneWriteEach(n, sameKey), winner: n - 1 }),
    runHeavy: ({ writers, updates, keys, burst }) => ({ updates: cpc.runHeavy(writers, updates, keys, burst) }),
    rows: {
      // The headline: a signed browser peer's node, frame by frame
      // through receive_frame (seal checks, persist and change outputs),
      // its seals verified in Web Workers as a page's peer has them by
      // default (`verifyWorkers`: one per core, at most 4), its digest
      // brought up to date at the end.
      "cpc-sync": pooled(VERIFY_WORKERS),
      // The same node verifying every seal on the page's thread
      // (`verifyWorkers: 0`).
      "cpc-sync, seals verified in place": node(() => new cpc.BenchNode()),
      // The engine alone on the same frames (no seal checks, no outputs).
      "cpc-sync, engine only": node(() => new cpc.BenchReplica()),
    },
  },
  yjs: {
    oneWriteEach: (n, sameKey) => {
      const updates = [];
      let best = { client: -1, value: null };
      // Random 32-bit ids collide among 30,000 writers about one time in
      // ten, and Yjs takes a second writer with the same id for a
      // duplicate: drawn again, so every library applies every write.
      const clients = new Set();
      for (let i = 0; i < n; i++) {
        const doc = new Y.Doc();
        while (clients.has(doc.clientID)) doc.clientID = crypto.getRandomValues(new Uint32Array(1))[0];
        clients.add(doc.clientID);
        doc.getMap("m").set(key(sameKey, i), i);
        updates.push(Y.encodeStateAsUpdateV2(doc));
        // Concurrent map writes: the higher client id wins.
        if (doc.clientID > best.client) best = { client: doc.clientID, value: i };
        doc.destroy();
      }
      return { updates, winner: best.value };
    },
    runHeavy: (sizes) => {
      const updates = [];
      const docs = Array.from({ length: sizes.writers }, () => {
        const doc = new Y.Doc();
        doc.on("updateV2", (u) => updates.push(u));
        return doc;
      });
      eachBurst(sizes, (w, from, to) =>
        docs[w].transact(() => {
          for (let j = from; j < to; j++) docs[w].getMap("m").set(...runHeavyWrite(w, j, sizes.writers, sizes.keys));
        }),
      );
      docs.forEach((d) => d.destroy());
      return { updates };
    },
    rows: {
      // As crdt-benchmarks does: each update applied in one transaction.
      yjs: yjs((t, updates) =>
        t.transact(() => {
          for (const u of updates) Y.applyUpdateV2(t, u);
        }),
      ),
      // Merging first: one apply, but the merge re-sorts on every pass.
      "yjs, mergeUpdates": yjs((t, updates) => Y.applyUpdateV2(t, Y.mergeUpdatesV2(updates))),
    },
  },
  automerge: {
    oneWriteEach: (n, sameKey) => {
      const updates = [];
      let best = { actor: "", value: null };
      for (let i = 0; i < n; i++) {
        const doc = A.change(A.init(), (d) => {
          d[key(sameKey, i)] = i;
        });
        updates.push(A.getLastLocalChange(doc));
        // Concurrent puts: the greatest op id (counter, then actor) wins;
        // every counter here is 1.
        const actor = A.getActorId(doc);
        if (actor > best.actor) best = { actor, value: i };
        A.free(doc);
      }
      return { updates, winner: best.value };
    },
    runHeavy: (sizes) => {
      const updates = [];
      const docs = Array.from({ length: sizes.writers }, () => A.init());
      eachBurst(sizes, (w, from, to) => {
        docs[w] = A.change(docs[w], (d) => {
          for (let j = from; j < to; j++) {
            const [k, v] = runHeavyWrite(w, j, sizes.writers, sizes.keys);
            d[k] = v;
          }
        });
        updates.push(A.getLastLocalChange(docs[w]));
      });
      docs.forEach((d) => A.free(d));
      return { updates };
    },
    rows: {
      automerge: {
        target: () => ({ doc: A.init() }),
        apply: (t, updates) => {
          [t.doc] = A.applyChanges(t.doc, updates);
        },
        state: (t) => A.toJS(t.doc),
        // Automerge tracks causality by change hashes, not a version
        // vector: its heads (32 bytes each) are the nearest equivalent.
        vvBytes: (t) => A.getHeads(t.doc).length * 32,
        free: (t) => A.free(t.doc),
      },
    },
  },
  loro: {
    oneWriteEach: (n, sameKey) => {
      const updates = [];
      let best = { peer: -1n, value: null };
      for (let i = 0; i < n; i++) {
        const doc = new LoroDoc();
        doc.getMap("m").set(key(sameKey, i), i);
        doc.commit();
        updates.push(doc.export({ mode: "update" }));
        // Map writes: the greater Lamport time wins, then the greater
        // peer id; every Lamport time here is 0.
        if (BigInt(doc.peerId) > best.peer) best = { peer: BigInt(doc.peerId), value: i };
        doc.free();
      }
      return { updates, winner: best.value };
    },
    runHeavy: (sizes) => {
      const updates = [];
      const docs = Array.from({ length: sizes.writers }, () => new LoroDoc());
      eachBurst(sizes, (w, from, to) => {
        const before = docs[w].oplogVersion();
        for (let j = from; j < to; j++) docs[w].getMap("m").set(...runHeavyWrite(w, j, sizes.writers, sizes.keys));
        docs[w].commit();
        updates.push(docs[w].export({ mode: "update", from: before }));
      });
      docs.forEach((d) => d.free());
      return { updates };
    },
    rows: {
      loro: {
        target: () => new LoroDoc(),
        apply: (t, updates) => t.importBatch(updates),
        state: (t) => t.getMap("m").toJSON(),
        vvBytes: (t) => t.oplogVersion().encode().length,
        free: (t) => t.free(),
      },
    },
  },
};

/** A task boundary without a timer's clamp, as between two data channel
 * messages. */
const channel = new MessageChannel();
const task = () =>
  new Promise((resolve) => {
    channel.port1.onmessage = resolve;
    channel.port2.postMessage(0);
  });

/** A node whose seals `workers` Web Workers verify: frames come 16 to a
 * task, as a data channel delivers them, so the workers' answers are taken
 * in between; done once every batch out is settled. The workers run before
 * the timed run starts, as a page's do once it has warmed up (`warmUp`). */
function pooled(workers) {
  return {
    target: () => cpc.BenchNode.withWorkers(workers),
    ready: async (t) => {
      // The row names its workers: a pool of another size is a harness bug.
      if (t.workers() !== workers) throw new Error(`the pool runs ${t.workers()} workers, not ${workers}`);
      while (!t.ready()) await new Promise((r) => setTimeout(r, 2));
    },
    apply: async (t, updates) => {
      for (let i = 0; i < updates.length; i += 16) {
        for (const u of updates.slice(i, i + 16)) t.receive(u);
        await task();
      }
      t.finish();
      // Done when the last verdict is applied: told by the node, as a page
      // is by its peer's change callback (not a timer's clamped polling).
      await new Promise((resolve) => t.whenSettled(resolve));
      t.verifying(); // throws if a worker failed
      t.finish();
    },
    state: (t) => JSON.parse(t.stateJson()),
    vvBytes: (t) => t.clockBytes(),
    free: (t) => t.free(),
  };
}

function node(make) {
  return {
    target: make,
    apply: (t, updates) => {
      for (const u of updates) t.receive(u);
      t.finish();
    },
    state: (t) => JSON.parse(t.stateJson()),
    vvBytes: (t) => t.clockBytes(),
    free: (t) => t.free(),
  };
}

function yjs(apply) {
  return {
    target: () => new Y.Doc(),
    apply,
    state: (t) => t.getMap("m").toJSON(),
    vvBytes: (t) => Y.encodeStateVector(t).length,
    free: (t) => t.destroy(),
  };
}

/** Every row, by name, with the library that makes its updates. */
export const ROWS = Object.fromEntries(
  Object.entries(LIBRARIES).flatMap(([library, lib]) =>
    Object.entries(lib.rows).map(([row, impl]) => [row, { library, ...impl }]),
  ),
);
