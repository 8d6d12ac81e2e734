// Automerge: a document whose root map holds the keys. In memory and for
// save/load, the plain library; for IndexedDB and the network,
// automerge-repo with its IndexedDB storage and BroadcastChannel network
// adapters (what Automerge offers a browser app for both).
import * as A from "@automerge/automerge/slim";
import automergeWasm from "@automerge/automerge/automerge.wasm?url";
import { Repo } from "@automerge/automerge-repo/slim";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { BroadcastChannelNetworkAdapter } from "@automerge/automerge-repo-network-broadcastchannel";
import { key, writeInBursts, until } from "../common.js";

/** A change callback setting keys `from..to`. */
const setKeys = (from, to) => (d) => {
  for (let i = from; i < to; i++) d[key(i)] = i;
};

/** Writes keys `from..to` through a repo's handle in one change. */
const change = (handle, from, to) => handle.change(setKeys(from, to));

/**
 * A document of n changes of one key each, made through the wasm backend
 * (only the newcomer's ingestion of it is measured). The same history
 * through a repo handle's `change` would take the better part of an hour:
 * each change costs more as the document grows (5,000 took 11 s here,
 * 10,000 took 29 s).
 */
function changePerKey(n) {
  const backend = A.getBackend(A.init());
  for (let i = 0; i < n; i++) {
    backend.put("_root", key(i), i, "int");
    backend.commit();
  }
  return backend.save();
}

const sameHeads = (a, b) => a.length === b.length && [...a].sort().every((h, i) => h === [...b].sort()[i]);

export default {
  name: "automerge",
  transport: "automerge-repo 2.5 with its BroadcastChannel network adapter",
  persistence: "automerge-repo 2.5 with its IndexedDB storage adapter",

  async init() {
    await A.initializeWasm(automergeWasm);
  },

  memory: {
    open: () => ({ doc: A.init() }),
    write(holder, from, to) {
      holder.doc = A.change(holder.doc, setKeys(from, to));
    },
    state: (holder) => A.toJS(holder.doc),
  },

  codec: {
    async build(n, size) {
      let doc = A.init();
      await writeInBursts(n, (from, to) => (doc = A.change(doc, setKeys(from, to))), size);
      return doc;
    },
    encode: (doc) => A.save(doc),
    load: (bytes) => A.load(bytes),
    read: (doc) => doc[key(0)],
    state: (doc) => A.toJS(doc),
  },

  stored: {
    async write(name, n) {
      const repo = new Repo({ storage: new IndexedDBStorageAdapter(name), network: [] });
      const handle = repo.create();
      await writeInBursts(n, (from, to) => change(handle, from, to));
      await repo.flush();
      // The document's URL is what an app keeps to find it again.
      localStorage.setItem(name, handle.url);
      await repo.shutdown();
    },
    async load(name) {
      const repo = new Repo({ storage: new IndexedDBStorageAdapter(name), network: [] });
      const handle = await repo.find(localStorage.getItem(name));
      handle.doc()[key(0)];
      return { repo, handle };
    },
    state: ({ handle }) => A.toJS(handle.doc()),
    close: ({ repo }) => repo.shutdown(),
  },

  room: {
    async host(name, n, { perUpdate, burst }) {
      const repo = new Repo({ network: [new BroadcastChannelNetworkAdapter({ channelName: name })] });
      let handle;
      if (perUpdate) {
        handle = repo.import(changePerKey(n));
      } else {
        handle = repo.create();
        await writeInBursts(n, (from, to) => change(handle, from, to), burst);
      }
      return { doc: { repo, handle }, target: { url: handle.url, heads: A.getHeads(handle.doc()) } };
    },
    async join(name, target) {
      const repo = new Repo({ network: [new BroadcastChannelNetworkAdapter({ channelName: name })] });
      const handle = await repo.find(target.url);
      await until(() => sameHeads(A.getHeads(handle.doc()), target.heads), {
        subscribe: (check) => {
          handle.on("change", check);
          return () => handle.off("change", check);
        },
      });
      return { doc: { repo, handle } };
    },
    verify() {},
    state: ({ handle }) => A.toJS(handle.doc()),
    close: ({ repo }) => repo.shutdown(),
  },
};
