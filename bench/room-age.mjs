// What a room costs Yjs and Loro as it ages: the workloads of
// `examples/room_age.rs` (the same random stream, SplitMix64 seeded 42,
// drawn in the same order), three devices, each burst one transaction
// sent to the others. Prints each library's stored document after `n`
// writes, raw and gzipped, and the time to load it into a fresh document.
//
//   node bench/room-age.mjs <overwrite|list_keys|origin_churn> [n]
//
// cpc-sync's figures: `cargo run --profile bench --features testing
// --example room_age -- <workload> [n]`.
import * as Y from "yjs";
import { LoroDoc } from "loro-crdt";
import { gzipSync } from "node:zlib";
import assert from "node:assert/strict";

const [workload = "overwrite", n = "10000"] = process.argv.slice(2);
const writes = Number(n);
const KEYS = 100n;
const LIVE_ITEMS = 100;

// cpc_sync::protocol::testing::Rng.
let state = 42n;
const mask = (1n << 64n) - 1n;
function next() {
  state = (state + 0x9e3779b97f4a7c15n) & mask;
  let z = state;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
  return z ^ (z >> 31n);
}

// A device of each library: a burst applied as one transaction, what it
// sends another, what it stores, a load of what another stored, and its
// state (checked against what the writes should leave, as
// `examples/room_age.rs` checks cpc-sync's).
function yjsDevice() {
  const doc = new Y.Doc();
  return {
    doc,
    apply(ops) {
      doc.transact(() => {
        const map = doc.getMap("room");
        for (const [key, value] of ops) value === undefined ? map.delete(key) : map.set(key, value);
      });
    },
    sendTo(other) {
      Y.applyUpdateV2(other.doc, Y.encodeStateAsUpdateV2(doc, Y.encodeStateVector(other.doc)));
    },
    stored: () => Y.encodeStateAsUpdateV2(doc),
    load(bytes) {
      Y.applyUpdateV2(doc, bytes);
    },
    state: () => doc.getMap("room").toJSON(),
  };
}

function loroDevice() {
  const doc = new LoroDoc();
  return {
    doc,
    apply(ops) {
      const map = doc.getMap("room");
      for (const [key, value] of ops) value === undefined ? map.delete(key) : map.set(key, value);
      doc.commit();
    },
    sendTo(other) {
      other.doc.import(doc.export({ mode: "update", from: other.doc.oplogVersion() }));
    },
    stored: () => doc.export({ mode: "snapshot" }),
    load(bytes) {
      doc.import(bytes);
    },
    state: () => doc.getMap("room").toJSON(),
  };
}

function run(make) {
  state = 42n;
  const devices = [make(), make(), make()];
  const expected = new Map();
  let next_ = 0, oldest = 0, at = 2 ** 40, written = 0;
  while (written < writes) {
    const d = Number(next() % BigInt(devices.length));
    const burst = 1 + Number(next() % 8n);
    const ops = [];
    for (let i = 0; i < Math.min(burst, writes - written); i++) {
      at += 1000;
      if (workload === "overwrite" || workload === "origin_churn") {
        const key = next() % KEYS;
        ops.push([`key${key}`, { v: at, text: "some value of a setting" }]);
      } else if (workload === "list_keys") {
        if (next_ - oldest < LIVE_ITEMS || next() % 2n === 0n) {
          ops.push([`item/${next_}`, { text: `buy milk ${next_}`, done: false }]);
          next_++;
        } else {
          ops.push([`item/${oldest}`, undefined]);
          oldest++;
        }
      } else {
        throw new Error(`no workload ${workload}: overwrite, list_keys, origin_churn`);
      }
      written++;
    }
    devices[d].apply(ops);
    for (const [key, value] of ops) value === undefined ? expected.delete(key) : expected.set(key, value);
    for (const other of devices) if (other !== devices[d]) devices[d].sendTo(other);
    if (workload === "origin_churn" && written >= 1000 && written % 1000 < burst) {
      const fresh = make();
      fresh.load(devices[0].stored());
      devices.splice(1, 1);
      devices.push(fresh);
    }
  }
  const sorted = (state) => Object.fromEntries([...Object.entries(state)].sort());
  const want = sorted(Object.fromEntries(expected));
  for (const device of devices) assert.deepStrictEqual(sorted(device.state()), want);
  const stored = devices[0].stored();
  const started = performance.now();
  const loaded = make();
  loaded.load(stored);
  const loadMs = performance.now() - started;
  assert.deepStrictEqual(sorted(loaded.state()), want);
  return { raw: stored.length, gzipped: gzipSync(stored, { level: 9 }).length, loadMs };
}

for (const [name, make] of [["yjs", yjsDevice], ["loro", loroDevice]]) {
  const { raw, gzipped, loadMs } = run(make);
  console.log(
    `${name}: ${workload}, ${writes} writes, 3 devices (state checked): stored ${raw} B, ${gzipped} B gzipped; ` +
      `loaded in ${loadMs.toFixed(1)} ms`,
  );
}
