// Loro: a LoroMap of the keys. Loro has neither IndexedDB persistence nor
// a network layer of its own, so both are hand-rolled here and labelled so:
// its snapshot in one IndexedDB record, and a version-vector exchange over
// BroadcastChannel answered with `export({ mode: "update", from })`.
import initLoro, { LoroDoc, VersionVector } from "loro-crdt/web";
import { key, writeInBursts, nextMessage, idb } from "../common.js";

const map = (doc) => doc.getMap("m");

/** Keys `from..to` in one commit, or each in its own. */
function write(doc, from, to, perUpdate = false) {
  const m = map(doc);
  for (let i = from; i < to; i++) {
    m.set(key(i), i);
    if (perUpdate) doc.commit();
  }
  if (!perUpdate) doc.commit();
}

const sameVersion = (a, b) => a.compare(b) === 0;

export default {
  name: "loro",
  transport: "none in Loro: hand-rolled version vector + update export over BroadcastChannel",
  persistence: "none in Loro: hand-rolled, its snapshot in one IndexedDB record",

  async init() {
    await initLoro();
  },

  memory: {
    open: () => new LoroDoc(),
    write: (doc, from, to) => write(doc, from, to),
    state: (doc) => map(doc).toJSON(),
  },

  codec: {
    async build(n, size) {
      const doc = new LoroDoc();
      await writeInBursts(n, (from, to) => write(doc, from, to), size);
      return doc;
    },
    encode: (doc) => doc.export({ mode: "snapshot" }),
    load(bytes) {
      const doc = new LoroDoc();
      doc.import(bytes);
      return doc;
    },
    read: (doc) => map(doc).get(key(0)),
    state: (doc) => map(doc).toJSON(),
  },

  stored: {
    async write(name, n) {
      const doc = new LoroDoc();
      await writeInBursts(n, (from, to) => write(doc, from, to));
      const db = await idb.open(name);
      await idb.put(db, "snapshot", doc.export({ mode: "snapshot" }));
      db.close();
    },
    async load(name) {
      const db = await idb.open(name);
      const bytes = await idb.get(db, "snapshot");
      db.close();
      const doc = new LoroDoc();
      doc.import(bytes);
      map(doc).get(key(0));
      return doc;
    },
    state: (doc) => map(doc).toJSON(),
    close: () => {},
  },

  room: {
    async host(name, n, { perUpdate, burst }) {
      const doc = new LoroDoc();
      await writeInBursts(n, (from, to) => write(doc, from, to, perUpdate), burst);
      // Answers every newcomer's version vector with what it lacks.
      const channel = new BroadcastChannel(name);
      channel.onmessage = ({ data }) => {
        if (!data.want) return;
        const update = doc.export({ mode: "update", from: VersionVector.decode(data.want) });
        channel.postMessage({ update });
      };
      return { doc: { doc, channel }, target: { version: [...doc.oplogVersion().encode()] } };
    },
    async join(name, target) {
      const doc = new LoroDoc();
      const channel = new BroadcastChannel(name);
      const reply = nextMessage(channel, (data) => data.update);
      channel.postMessage({ want: doc.oplogVersion().encode() });
      doc.import((await reply).update);
      if (!sameVersion(doc.oplogVersion(), VersionVector.decode(Uint8Array.from(target.version)))) {
        throw new Error("loro: the update did not bring the newcomer level");
      }
      return { doc: { doc, channel } };
    },
    verify() {},
    state: ({ doc }) => map(doc).toJSON(),
    close: ({ channel }) => channel.close(),
  },
};
