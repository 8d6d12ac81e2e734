// Yjs: a Y.Map of the keys; y-indexeddb for storage; y-webrtc for the
// network, which syncs tabs of one browser over BroadcastChannel (no
// signaling server given, so no WebRTC connection is made).
import * as Y from "yjs";
import { IndexeddbPersistence } from "y-indexeddb";
import { WebrtcProvider } from "y-webrtc";
import { key, writeInBursts, until } from "../common.js";

const map = (doc) => doc.getMap("m");

/** Keys `from..to` in one transaction, or each in its own. */
function write(doc, from, to, perUpdate = false) {
  const m = map(doc);
  if (perUpdate) {
    for (let i = from; i < to; i++) m.set(key(i), i);
  } else {
    doc.transact(() => {
      for (let i = from; i < to; i++) m.set(key(i), i);
    });
  }
}

const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export default {
  name: "yjs",
  transport: "y-webrtc 10.3, BroadcastChannel between tabs (no signaling server, so no WebRTC)",
  persistence: "y-indexeddb 9.0",

  async init() {},

  memory: {
    open: () => new Y.Doc(),
    write: (doc, from, to) => write(doc, from, to),
    state: (doc) => map(doc).toJSON(),
  },

  codec: {
    async build(n, size) {
      const doc = new Y.Doc();
      await writeInBursts(n, (from, to) => write(doc, from, to), size);
      return doc;
    },
    encode: (doc) => Y.encodeStateAsUpdateV2(doc),
    load(bytes) {
      const doc = new Y.Doc();
      Y.applyUpdateV2(doc, bytes);
      return doc;
    },
    read: (doc) => map(doc).get(key(0)),
    state: (doc) => map(doc).toJSON(),
  },

  stored: {
    async write(name, n) {
      const doc = new Y.Doc();
      const persistence = new IndexeddbPersistence(name, doc);
      await persistence.whenSynced;
      await writeInBursts(n, (from, to) => write(doc, from, to));
      // Each transaction is stored as it happens; closing waits for them.
      await persistence.destroy();
    },
    async load(name) {
      const doc = new Y.Doc();
      const persistence = new IndexeddbPersistence(name, doc);
      await persistence.whenSynced;
      map(doc).get(key(0));
      return { doc, persistence };
    },
    state: ({ doc }) => map(doc).toJSON(),
    close: ({ persistence }) => persistence.destroy(),
  },

  room: {
    async host(name, n, { perUpdate, burst }) {
      const doc = new Y.Doc();
      await writeInBursts(n, (from, to) => write(doc, from, to, perUpdate), burst);
      const provider = new WebrtcProvider(name, doc, { signaling: [] });
      return { doc: { doc, provider }, target: { vector: [...Y.encodeStateVector(doc)] } };
    },
    async join(name, target) {
      const doc = new Y.Doc();
      const provider = new WebrtcProvider(name, doc, { signaling: [] });
      const vector = Uint8Array.from(target.vector);
      await until(() => sameBytes(Y.encodeStateVector(doc), vector), {
        subscribe: (check) => {
          doc.on("update", check);
          return () => doc.off("update", check);
        },
      });
      return { doc: { doc, provider } };
    },
    verify() {},
    state: ({ doc }) => map(doc).toJSON(),
    close: ({ provider }) => provider.destroy(),
  },
};
