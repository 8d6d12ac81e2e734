// The side-by-side workloads, run in the page; `bench/browser/compare.mjs`
// builds this with Vite, opens it in headless Chromium and calls
// `window.bench.run(options)`.
import * as Y from "yjs";
import * as A from "@automerge/automerge/slim";
import automergeWasm from "@automerge/automerge/automerge.wasm?url";
import { LoroDoc, VersionVector } from "loro-crdt/base64";
import initCpc, * as cpc from "../../../target/bench/pkg/cpc_sync.js";

const now = () => performance.now();

/** How each library makes one peer's single write, and applies many. */
const LIBRARIES = {
  "cpc-sync": {
    updates: (n, sameKey) => cpc.oneWriteEach(n, sameKey),
    target: () => new cpc.BenchReplica(4_000_000),
    applyAll: (t, updates) => {
      for (const u of updates) t.apply(u);
    },
    vvBytes: (t) => t.clockBytes(),
  },
  // The same in a signed room: every update carries its origin's seal,
  // verified before it is applied.
  "cpc-sync (verified)": {
    updates: (n, sameKey) => cpc.oneWriteEachSigned(n, sameKey),
    target: () => new cpc.BenchReplica(4_000_000),
    applyAll: (t, updates) => {
      for (const u of updates) t.applyVerified(u);
    },
    vvBytes: (t) => t.clockBytes(),
  },
  yjs: {
    updates: (n, sameKey) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        const doc = new Y.Doc();
        doc.clientID = i + 1;
        doc.getMap("m").set(sameKey ? "shared" : `key${i}`, i);
        out.push(Y.encodeStateAsUpdate(doc));
      }
      return out;
    },
    target: () => new Y.Doc(),
    // Merging first is much faster than applying updates one by one.
    applyAll: (t, updates) => Y.applyUpdate(t, Y.mergeUpdates(updates)),
    vvBytes: (t) => Y.encodeStateVector(t).length,
  },
  automerge: {
    updates: (n, sameKey) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        let doc = A.init({ actor: (i + 1).toString(16).padStart(16, "0") });
        doc = A.change(doc, (d) => {
          d[sameKey ? "shared" : `key${i}`] = i;
        });
        out.push(A.getLastLocalChange(doc));
      }
      return out;
    },
    target: () => ({ doc: A.init() }),
    applyAll: (t, updates) => {
      [t.doc] = A.applyChanges(t.doc, updates);
    },
    // Automerge tracks causality by change hashes, not a version vector:
    // its "heads" (32 bytes each) are the nearest equivalent.
    vvBytes: (t) => A.getHeads(t.doc).length * 32,
  },
  loro: {
    updates: (n, sameKey) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        const doc = new LoroDoc();
        doc.setPeerId(BigInt(i + 1));
        doc.getMap("m").set(sameKey ? "shared" : `key${i}`, i);
        doc.commit();
        out.push(doc.export({ mode: "update" }));
      }
      return out;
    },
    target: () => new LoroDoc(),
    applyAll: (t, updates) => t.importBatch(updates),
    vvBytes: (t) => t.oplogVersion().encode().length,
  },
};

/**
 * Sync: two replicas of `n` updates from one writer over 10k keys (each
 * write sets its key to the round number, so no write is a no-op), the
 * second lacking the last `d`; each library's own sync protocol brings
 * them level. Replicas are built by the same writer identity doing the
 * same writes, so their shared history is identical.
 */
const SYNC = {
  "cpc-sync": (n, d) => {
    const r = cpc.syncOverhead(n, 1, d);
    return { a_to_b: r.a_to_b, b_to_a: r.b_to_a, round_trips: r.round_trips };
  },
  yjs: (n, d) => {
    const writer = () => {
      const doc = new Y.Doc();
      doc.clientID = 1;
      return doc;
    };
    const [a, b] = [writer(), writer()];
    for (let i = 0; i < n; i++) {
      a.getMap("m").set(`key${i % 10_000}`, Math.floor(i / 10_000));
      if (i < n - d) b.getMap("m").set(`key${i % 10_000}`, Math.floor(i / 10_000));
    }
    // y-protocols: each side sends its state vector (step 1) and answers
    // the other's with the update it lacks (step 2).
    const [svA, svB] = [Y.encodeStateVector(a), Y.encodeStateVector(b)];
    const [forB, forA] = [Y.encodeStateAsUpdate(a, svB), Y.encodeStateAsUpdate(b, svA)];
    Y.applyUpdate(b, forB);
    Y.applyUpdate(a, forA);
    if (Y.encodeStateVector(a).toString() !== Y.encodeStateVector(b).toString()) throw new Error("yjs did not settle");
    return { a_to_b: svA.length + forB.length, b_to_a: svB.length + forA.length, round_trips: 1 };
  },
  automerge: (n, d) => {
    const writer = () => ({ doc: A.init({ actor: "0001" }) });
    const [a, b] = [writer(), writer()];
    for (let i = 0; i < n; i++) {
      const write = (doc) => {
        doc[`key${i % 10_000}`] = Math.floor(i / 10_000);
      };
      a.doc = A.change(a.doc, { time: 0 }, write);
      if (i < n - d) b.doc = A.change(b.doc, { time: 0 }, write);
    }
    let [sa, sb] = [A.initSyncState(), A.initSyncState()];
    const bytes = [0, 0];
    let messages = 0;
    for (;;) {
      let ma, mb;
      [sa, ma] = A.generateSyncMessage(a.doc, sa);
      [sb, mb] = A.generateSyncMessage(b.doc, sb);
      if (!ma && !mb) break;
      if (ma) {
        bytes[0] += ma.length;
        messages++;
        [b.doc, sb] = A.receiveSyncMessage(b.doc, sb, ma);
      }
      if (mb) {
        bytes[1] += mb.length;
        messages++;
        [a.doc, sa] = A.receiveSyncMessage(a.doc, sa, mb);
      }
      if (messages > 100) throw new Error("automerge did not settle");
    }
    // Messages cross in rounds (both sides send at once); two rounds are
    // one round trip.
    return { a_to_b: bytes[0], b_to_a: bytes[1], round_trips: Math.ceil(messages / 2 / 2) };
  },
  loro: (n, d) => {
    const writer = () => {
      const doc = new LoroDoc();
      doc.setPeerId(1n);
      return doc;
    };
    const [a, b] = [writer(), writer()];
    for (let i = 0; i < n; i++) {
      a.getMap("m").set(`key${i % 10_000}`, Math.floor(i / 10_000));
      a.commit();
      if (i < n - d) {
        b.getMap("m").set(`key${i % 10_000}`, Math.floor(i / 10_000));
        b.commit();
      }
    }
    const [vvA, vvB] = [a.oplogVersion().encode(), b.oplogVersion().encode()];
    const forB = a.export({ mode: "update", from: VersionVector.decode(vvB) });
    const forA = b.export({ mode: "update", from: VersionVector.decode(vvA) });
    b.import(forB);
    a.import(forA);
    return { a_to_b: vvA.length + forB.length, b_to_a: vvB.length + forA.length, round_trips: 1 };
  },
};

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** n peers write once each; one peer applies every update, each library
 * with its fastest documented way of taking many (batch import where it
 * has one): ms (median of `runs` after a warm-up), bytes per update,
 * version-vector bytes. */
function manyPeers(lib, n, sameKey, runs) {
  const updates = lib.updates(n, sameKey);
  const bytes = updates.reduce((s, u) => s + u.length, 0) / updates.length;
  const times = [];
  let target;
  for (let r = 0; r <= runs; r++) {
    target = lib.target();
    const start = now();
    lib.applyAll(target, updates);
    if (r > 0) times.push(now() - start);
  }
  return { ms: median(times), runs: times, bytes_per_update: bytes, vv_bytes: lib.vvBytes(target) };
}

async function gzipLength(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

async function run({
  b31 = 1540,
  c12 = 30_000,
  runs = 5,
  causal = 1_000_000,
  snapshot = 1_000_000,
  sync = 100_000,
  diffs = [0, 1, 100, 10_000],
  only = null,
}) {
  const wanted = (section) => !only || only === section;
  await initCpc();
  await A.initializeWasm(automergeWasm);
  const results = {};
  if (wanted("many")) {
    results.B3_1 = {};
    results.C1_2 = {};
    for (const [name, lib] of Object.entries(LIBRARIES)) {
      results.B3_1[name] = manyPeers(lib, b31, true, runs);
      results.C1_2[name] = manyPeers(lib, c12, false, runs);
    }
  }
  if (wanted("sync")) {
    results.sync = { updates: sync };
    for (const [name, measure] of Object.entries(SYNC)) {
      results.sync[name] = Object.fromEntries(diffs.map((d) => [d, measure(sync, d)]));
    }
  }
  if (only && only !== "cpc") return results;
  // Seal cost per event: runs of one event (a write alone) and of 1,024.
  const sealRuns = (len, runs) => {
    const samples = [];
    for (let r = 0; r < Math.max(1, Math.min(runs, 5)); r++) samples.push(cpc.sealCost(len, Math.ceil(2_000 / len) + 1));
    const events = len * (Math.ceil(2_000 / len) + 1);
    return {
      sign_us_per_event: (median(samples.map((s) => s.sign_ms)) * 1000) / events,
      verify_us_per_event: (median(samples.map((s) => s.verify_ms)) * 1000) / events,
    };
  };
  results.seal = { run_of_1: sealRuns(1, runs), run_of_1024: sealRuns(1024, runs) };
  const causalRuns = [];
  for (let r = 0; r < Math.max(1, Math.min(runs, 3)); r++) causalRuns.push(cpc.causalApply(causal, 64, Math.min(10_000, causal), 0.2));
  results.causal_apply = {
    events: causal,
    ms: median(causalRuns.map((c) => c.ms)),
    us_per_event: (median(causalRuns.map((c) => c.ms)) * 1000) / causal,
    in_order_us_per_event: (median(causalRuns.map((c) => c.in_order_ms)) * 1000) / causal,
    held: causalRuns[0].held,
  };
  // Verified snapshots (signed runs, 64 origins): the headline size, and
  // issue 13's figure at 100k entities with runs of 16 and of 1,024.
  const verified = async (entities, run) => {
    const s = cpc.snapshot(entities, run);
    return {
      requested: entities,
      entities: s.entities,
      run,
      encode_ms: s.encode_ms,
      decode_ms: s.decode_ms,
      verify_ms: s.verify_ms,
      ready_ms: s.ready_ms,
      bytes: s.bytes,
      entity_bytes: s.entity_bytes,
      json_bytes: s.json.length,
      json_gzip_bytes: await gzipLength(s.json),
    };
  };
  results.snapshot = await verified(snapshot, 16);
  const small = Math.min(snapshot, 100_000);
  results.snapshot_verified = [await verified(small, 16), await verified(small, 1024)];
  results.room_key_ms = cpc.roomKeyCost(5);
  return results;
}

window.bench = { run };
document.getElementById("out").textContent = "ready";
document.body.dataset.ready = "true";
