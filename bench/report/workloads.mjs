// BENCHMARKS.md's "Workloads users ask about" tables, from
// target/bench/workloads.json (bench/browser/workloads.mjs).
import { table, spread, ms, num, provenance } from "./format.mjs";

const NAMES = {
  "cpc-sync": "**cpc-sync**",
  "cpc-sync-engine": "cpc-sync, engine alone (bench build)",
  yjs: "Yjs",
  automerge: "Automerge",
  loro: "Loro",
};
const LIBRARIES = ["cpc-sync", "yjs", "automerge", "loro"];

const bytes = (x) => `${num(x)} B`;
const perKey = (x) => `${num(x)} B`;

/** Median, with every run when there are few. */
function runsOf(f, unit) {
  return f.runs > 1 ? `${unit(f.median)} (${f.samples.map(unit).join(", ")})` : unit(f.median);
}

function memoryTable(memory) {
  const rows = [];
  for (const [n, byLib] of Object.entries(memory)) {
    for (const lib of [...LIBRARIES, "cpc-sync-engine"].filter((l) => byLib[l])) {
      const m = byLib[lib];
      const keys = m.keys < Number(n) ? `${num(m.keys)} (capped)` : num(m.keys);
      rows.push([
        NAMES[lib],
        keys,
        perKey(m.heap_bytes_per_key.median),
        m.wasm_bytes_per_key ? perKey(m.wasm_bytes_per_key.median) : "no wasm",
        `**${runsOf(m.total_bytes_per_key, perKey)}**`,
        ms(m.write_ms.median),
      ]);
    }
  }
  return table(["library", "keys", "JS heap per key", "wasm memory per key", "total per key (runs)", "writing them"], rows);
}

function codecTable(codec) {
  const rows = LIBRARIES.map((lib) => [
    NAMES[lib],
    spread(codec[lib].encode_ms.samples),
    spread(codec[lib].load_ms.samples),
    bytes(codec[lib].bytes.median),
  ]);
  return table(["library", "encode", "load (to the first read)", "size"], rows);
}

function storedTable(stored, libraries) {
  const rows = LIBRARIES.map((lib) => [
    NAMES[lib],
    libraries[lib].persistence,
    spread(stored[lib].load_ms.samples),
    spread(stored[lib].navigation_to_ready_ms.samples),
  ]);
  return table(["library", "storage", "load (to the first read)", "navigation to ready"], rows);
}

/** Long tasks of every run, and the longest of all. */
function longTasks(f) {
  const longest = Math.max(...f.longest_ms.samples);
  return `${f.long_tasks.samples.join(", ")}${longest > 0 ? `; longest ${ms(longest)}` : ""}`;
}

/** The host's longest task (over 50 ms) while each newcomer joined; not
 * measured before 2026-12-02. */
function hostLongest(f) {
  if (!f.host_longest_ms) return "not measured";
  return f.host_longest_ms.samples.map((x) => (x > 0 ? ms(x) : "none")).join(", ");
}

function roomTable(room, libraries) {
  const rows = LIBRARIES.map((lib) => [
    NAMES[lib],
    libraries[lib].transport,
    spread(room[lib].ms.samples),
    longTasks(room[lib]),
    hostLongest(room[lib]),
  ]);
  return table(["library", "network", "open to full state", "long tasks (> 50 ms), each run", "the host's longest task, each run"], rows);
}

/** Issue 17's goal: no long task while cpc-sync ingests. */
function ingestGoal(ingest) {
  const runs = ingest["cpc-sync"].long_tasks.samples;
  const clean = runs.filter((x) => x === 0).length;
  const verdict = ingest["cpc-sync"].long_tasks.median === 0 ? "met on the median run" : "missed on the median run";
  return `Goal (issue 17), zero long tasks while cpc-sync ingests: ${verdict} (${clean} of ${runs.length} runs had none).`;
}

export function render(result) {
  const { meta, libraries } = result;
  const runs = (f) => f.runs;
  const sections = [
    `Times are min / **median** / p90 of the runs.`,
    `#### Memory per key: the JS heap after a forced GC and the wasm linear memory, less the empty document's (medians)`,
    memoryTable(result.memory),
    `#### Encode and load a ${num(result.codec.keys)}-key document (${runs(result.codec["cpc-sync"].encode_ms)} runs, each in a fresh page)`,
    codecTable(result.codec),
    `#### Load a ${num(result.stored.keys)}-key document from IndexedDB in a freshly navigated page (${runs(result.stored["cpc-sync"].load_ms)} runs)`,
    storedTable(result.stored, libraries),
    `#### A newcomer's first full sync with a ${num(result.newcomer.keys)}-key room (${runs(result.newcomer["cpc-sync"].ms)} newcomers)`,
    roomTable(result.newcomer, libraries),
    `#### Long tasks while a newcomer takes in ${num(result.ingest.updates)} updates (${runs(result.ingest["cpc-sync"].ms)} newcomers)`,
    roomTable(result.ingest, libraries),
    ingestGoal(result.ingest),
    provenance(meta),
  ];
  return { workloads: sections.join("\n\n") };
}
