// Sync: two replicas of `n` updates by one writer over 10k keys (each
// write sets its key to the round number, so no write is a no-op), the
// second lacking the last `d`; each library's own sync protocol brings them
// level. The writer writes in bursts of `burst` (1: a write per task, as a
// page making one change at a time; more: one change, transaction or
// sealed run per burst). Bytes each way and round trips.
import * as Y from "yjs";
import * as A from "@automerge/automerge/slim";
import { LoroDoc, VersionVector } from "loro-crdt/base64";
import * as cpc from "../../../target/bench/pkg/cpc_sync.js";

const write = (i) => [`key${i % 10_000}`, Math.floor(i / 10_000)];

/**
 * Calls `burst(from, to)` for each burst of the writes `from..to`; bursts
 * restart at `split` (where the second replica stops: it synced there,
 * then the writer went on).
 */
function bursts(from, to, size, split, burst) {
  for (let i = from; i < to; ) {
    const end = Math.min(to, i + size, i < split ? split : Infinity);
    burst(i, end);
    i = end;
  }
}

const randomHex = (bytes) =>
  Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

/** Automerge's sync protocol until both sides have nothing to send. */
function automergeSync(a, b, states) {
  let [sa, sb] = states ?? [A.initSyncState(), A.initSyncState()];
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
  return { bytes, states: [sa, sb], round_trips: Math.ceil(messages / 4) };
}

export const SYNC = {
  // Signed replicas (every run sealed by the writer), as a browser peer
  // sends them.
  "cpc-sync": (n, d, burst) => cpc.syncOverhead(n, d, burst, false),
  // The same in a room with a secret: its handshake (Hello, Proof) first.
  "cpc-sync, room secret": (n, d, burst) => cpc.syncOverhead(n, d, burst, true),
  yjs: (n, d, burst) => {
    const client = crypto.getRandomValues(new Uint32Array(1))[0];
    const writer = () => {
      const doc = new Y.Doc();
      doc.clientID = client;
      return doc;
    };
    const [a, b] = [writer(), writer()];
    const writes = (doc, to) =>
      bursts(0, to, burst, n - d, (from, end) =>
        doc.transact(() => {
          for (let i = from; i < end; i++) doc.getMap("m").set(...write(i));
        }),
      );
    writes(a, n);
    writes(b, n - d);
    // y-protocols: each side sends its state vector (step 1) and answers
    // the other's with the update it lacks (step 2).
    const [svA, svB] = [Y.encodeStateVector(a), Y.encodeStateVector(b)];
    const [forB, forA] = [Y.encodeStateAsUpdate(a, svB), Y.encodeStateAsUpdate(b, svA)];
    Y.applyUpdate(b, forB);
    Y.applyUpdate(a, forA);
    if (Y.encodeStateVector(a).toString() !== Y.encodeStateVector(b).toString()) throw new Error("yjs did not settle");
    a.destroy();
    b.destroy();
    return { a_to_b: svA.length + forB.length, b_to_a: svB.length + forA.length, round_trips: 1, settled: 1 };
  },
  // First contact: fresh sync states on both sides, as between two peers
  // that never synced (or did not keep their sync state).
  "automerge, first contact": (n, d, burst) => {
    const actor = randomHex(16);
    const [a, b] = [{ doc: A.init({ actor }) }, { doc: A.init({ actor }) }];
    automergeWrites(a, 0, n, burst, n - d);
    automergeWrites(b, 0, n - d, burst, n - d);
    const { bytes, round_trips } = automergeSync(a, b);
    return automergeOutcome(a, b, bytes, round_trips);
  },
  // Warm: the two synced before the writer's last d writes, and kept their
  // sync states.
  "automerge, warm": (n, d, burst) => {
    const actor = randomHex(16);
    const [a, b] = [{ doc: A.init({ actor }) }, { doc: A.init({ actor }) }];
    automergeWrites(a, 0, n - d, burst, n - d);
    automergeWrites(b, 0, n - d, burst, n - d);
    const { states } = automergeSync(a, b);
    automergeWrites(a, n - d, n, burst, n - d);
    const { bytes, round_trips } = automergeSync(a, b, states);
    return automergeOutcome(a, b, bytes, round_trips);
  },
  loro: (n, d, burst) => {
    const peer = crypto.getRandomValues(new BigUint64Array(1))[0];
    const writer = () => {
      const doc = new LoroDoc();
      doc.setPeerId(peer);
      return doc;
    };
    const [a, b] = [writer(), writer()];
    const writes = (doc, to) =>
      bursts(0, to, burst, n - d, (from, end) => {
        for (let i = from; i < end; i++) doc.getMap("m").set(...write(i));
        doc.commit();
      });
    writes(a, n);
    writes(b, n - d);
    const [vvA, vvB] = [a.oplogVersion().encode(), b.oplogVersion().encode()];
    const forB = a.export({ mode: "update", from: VersionVector.decode(vvB) });
    const forA = b.export({ mode: "update", from: VersionVector.decode(vvA) });
    b.import(forB);
    a.import(forA);
    const settled = JSON.stringify(a.getMap("m").toJSON()) === JSON.stringify(b.getMap("m").toJSON());
    a.free();
    b.free();
    return { a_to_b: vvA.length + forB.length, b_to_a: vvB.length + forA.length, round_trips: 1, settled: settled ? 1 : 0 };
  },
};

function automergeWrites(replica, from, to, burst, split) {
  bursts(from, to, burst, split, (start, end) => {
    // A fixed time: replicas that make the same writes make the same changes.
    replica.doc = A.change(replica.doc, { time: 0 }, (doc) => {
      for (let i = start; i < end; i++) {
        const [k, v] = write(i);
        doc[k] = v;
      }
    });
  });
}

function automergeOutcome(a, b, bytes, round_trips) {
  const settled = A.getHeads(a.doc).join() === A.getHeads(b.doc).join();
  A.free(a.doc);
  A.free(b.doc);
  return { a_to_b: bytes[0], b_to_a: bytes[1], round_trips, settled: settled ? 1 : 0 };
}
