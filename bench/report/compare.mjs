// BENCHMARKS.md's side-by-side tables, from target/bench/compare.json
// (bench/browser/compare.mjs).
import { median } from "../stats.mjs";
import { num, ms, spread, table, provenance, verdict } from "./format.mjs";

const PEERS = ["yjs", "yjs, mergeUpdates", "automerge", "loro"];
const HEADLINE = "cpc-sync";

const TITLES = {
  B3_1: (s) => `B3.1: ${num(s.b31)} writers set the same key; apply all at one peer`,
  C1_2: (s) => `C1.2: ${num(s.c12)} writers set a key each; apply all at one peer`,
  run_heavy: (s) =>
    `Run-heavy: ${s.runHeavy.writers} writers × ${num(s.runHeavy.updates)} updates over ${num(s.runHeavy.keys)} keys, in bursts of ${s.runHeavy.burst}; apply all at one peer`,
};

/** "3.2× slower" / "2.0× faster" of `x` against the headline `base`. */
function against(x, base) {
  if (x === base) return "";
  return x >= base ? `${(x / base).toFixed(1)}× slower` : `${(base / x).toFixed(1)}× faster`;
}

function manyTable(workload, rows, floor, sizes) {
  const base = median(rows[HEADLINE].ms);
  const body = Object.entries(rows).map(([row, r]) => {
    const name =
      row === HEADLINE
        ? `**${row}** (signed, through the wire${floor.workers ? `, seals in ${floor.workers} Web Workers` : ""})`
        : row;
    const vs = row === HEADLINE ? "" : `${against(base, median(r.ms))}`;
    return [name, spread(r.ms), num(r.bytes_per_write, 1), num(r.vv_bytes), vs];
  });
  // The headline verifies in `floor.workers` Web Workers (runs before
  // they did: on the page's thread, the floor whole).
  const workers = floor.workers ?? 1;
  const under = floor.ms / workers;
  body.push([
    `batch verification of every seal (${num(floor.seals)} seals × ${num(floor.us_per_seal)} µs, on one thread)` +
      (workers > 1 ? `, divided by the ${workers} workers` : ""),
    `**${ms(under)}**`,
    "",
    "",
    "the floor under the signed path",
  ]);
  const fastest = Math.min(...PEERS.filter((p) => rows[p]).map((p) => median(rows[p].ms)));
  const peer = PEERS.find((p) => rows[p] && median(rows[p].ms) === fastest);
  const goal =
    workload === "run_heavy"
      ? `Goal, on the signed path: ≥ 5× faster than the fastest peer. cpc-sync ${ms(base)} against ${peer} ${ms(fastest)}: ` +
        (fastest / base >= 5 ? `met (${(fastest / base).toFixed(1)}×).` : `missed: ${base <= fastest ? `${(fastest / base).toFixed(1)}× faster` : `${(base / fastest).toFixed(1)}× slower`}, not 5×.`)
      : `Goal, on the signed path: at the verification floor. cpc-sync takes ${(base / under).toFixed(2)}× the floor ` +
        `(${verdict(base / under, 1.1)} against 1.1×), and is ${base <= fastest ? `${(fastest / base).toFixed(1)}× faster than` : `${(base / fastest).toFixed(1)}× slower than`} the fastest peer (${peer}).`;
  return [
    `**${TITLES[workload](sizes)}**`,
    "",
    table(["row", "apply all: min / **median** / p90", "bytes per write", "version vector, bytes", "cpc-sync is"], body),
    "",
    goal,
  ].join("\n");
}

function syncTables(sync, sizes) {
  const out = [];
  for (const burst of sizes.bursts) {
    const libraries = Object.keys(sync);
    const rows = sizes.diffs.map((d) => [
      num(d),
      ...libraries.map((l) => {
        const r = sync[l][burst][d];
        return `${num(r.a_to_b)} / ${num(r.b_to_a)} B, ${r.round_trips} RT`;
      }),
    ]);
    const how = burst === 1 ? "one write per task (a change, transaction or seal each)" : `bursts of ${num(burst)} writes`;
    out.push(`**${num(sizes.sync)} updates, written in ${how}**`, "", table(["d", ...libraries], rows), "");
  }
  return out.join("\n");
}

function cpcTable(c) {
  const s = c.snapshot;
  const rows = [
    [
      `causal apply: ${num(c.causal_apply.events)} events, 64 writers, 20% displaced`,
      `${spread(c.causal_apply.us_per_event, (x) => `${x.toFixed(2)} µs`)} per event; in causal order ${num(median(c.causal_apply.in_order_us_per_event), 2)} µs`,
    ],
    [
      "seals: sign / verify, per event",
      `runs of 1: ${num(c.seal.run_of_1.sign_us_per_event)} / ${num(c.seal.run_of_1.verify_us_per_event)} µs; runs of 1,024: ${num(c.seal.run_of_1024.sign_us_per_event, 2)} / ${num(c.seal.run_of_1024.verify_us_per_event, 2)} µs`,
    ],
    [
      `verified snapshot of ${num(s.entities)} entities (64 signed origins, runs of ${s.run})`,
      `${num(s.bytes)} B (gzipped JSON of the state ${num(s.json_gzip_bytes)} B); encode ${ms(s.encode_ms)}, decode ${ms(s.decode_ms)}, verify ${ms(s.verify_ms)}, decode + verify + load ${ms(s.ready_ms)}`,
    ],
    ...c.snapshot_verified.map((v) => [
      `verified snapshot of ${num(v.entities)} entities, runs of ${num(v.run)}`,
      `${num(v.bytes)} B; encode ${ms(v.encode_ms)}, decode + verify + load ${ms(v.ready_ms)}`,
    ]),
    ["room key (Argon2id, default cost), per derivation", ms(c.room_key_ms)],
  ];
  return table(["workload", "measured (wasm)"], rows);
}

function bundleTable(bundle) {
  const rows = Object.entries(bundle)
    .sort(([, a], [, b]) => a.total_gzip - b.total_gzip)
    .map(([name, b]) => [name === HEADLINE ? `**${name}**` : name, num(b.js_gzip), b.wasm_gzip ? num(b.wasm_gzip) : "", num(b.total_gzip)]);
  const ours = bundle[HEADLINE].total_gzip;
  return [
    table(["library", "JS, B", "wasm, B", "total, B"], rows),
    "",
    `Goal ≤ 150 KB (153,600 B): ${verdict(ours, 153_600)}.`,
  ].join("\n");
}

export function render(result) {
  const { meta, sizes } = result;
  // A section carried over from another run (`provenance.<section>`)
  // keeps that run's date, commit and versions.
  const own = (section) => result.provenance?.[section] ?? meta;
  const manySizes = result.sizesOf?.many ?? sizes;
  const note = provenance(own("many"), `${manySizes.runs} runs per row, each in a fresh page.`);
  const sections = {};
  if (result.many) {
    sections["compare-many"] = [
      ...Object.keys(TITLES)
        .filter((w) => result.many[w])
        .map((w) => manyTable(w, result.many[w], result.floor[w], manySizes)),
      note,
    ].join("\n\n");
  }
  if (result.sync) sections["compare-sync"] = `${syncTables(result.sync, sizes)}\n${provenance(own("sync"))}`;
  if (result.cpc) sections["compare-cpc"] = `${cpcTable(result.cpc)}\n\n${provenance(own("cpc"))}`;
  if (result.bundle) sections["compare-bundle"] = `${bundleTable(result.bundle)}\n\n${provenance(own("bundle"))}`;
  return sections;
}
