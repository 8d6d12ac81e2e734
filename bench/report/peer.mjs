// Renders target/bench/peer.json (bench/browser/peer.mjs) as BENCHMARKS.md's
// "peer" section: the goals judged on medians over runs, the details
// behind them, and the transfer's paired rounds. Scenarios missing from
// the result are left out.
import { median, quantile } from "../stats.mjs";
import { table, spread, ms, num, provenance, verdict } from "./format.mjs";

const ratio = (x) => num(x, 2);
const MBps = (x) => `${num(x, 1)} MB/s`;
const perSecond = (x) => `${num(x)}/s`;
const runsOf = (samples) => `${samples.length} run${samples.length === 1 ? "" : "s"}`;

/** One row: the figure, min / **median** / p90 of its samples, and its goal judged on the median. */
function judged(figure, samples, unit, goal) {
  if (!goal) return [figure, spread(samples, unit), "", ""];
  return [figure, spread(samples, unit), goal.text, verdict(median(samples), goal.value, goal)];
}

/** One row of pooled samples (not runs): min / **median** / p90, and the largest. */
function pooled(figure, samples, unit) {
  return [figure, `${spread(samples, unit)}; largest ${unit(Math.max(...samples))}`, "", ""];
}

function latencyRows(latency) {
  const medians = latency.runs.map((run) => median(run.rtt_ms));
  const p99s = latency.runs.map((run) => quantile(run.rtt_ms, 0.99));
  const pooled = latency.runs.flatMap((run) => run.rtt_ms);
  const echoes = `${num(latency.writes)} echoes a run, IndexedDB storage`;
  const roundTrip = [0, 0.5, 0.9, 0.99, 1].map((q) => ms(quantile(pooled, q))).join(" / ");
  return [
    judged(`write-to-visible, one way (echo round trip ÷ 2), each run's median; ${echoes}`, medians.map((x) => x / 2), ms, {
      text: "≤ 10 ms",
      value: 10,
    }),
    judged("write-to-visible, one way (round trip ÷ 2), each run's p99", p99s.map((x) => x / 2), ms, {
      text: "≤ 30 ms",
      value: 30,
    }),
    [`echo round trip, all ${num(pooled.length)} echoes pooled: min / median / p90 / p99 / max`, roundTrip, "", ""],
  ];
}

function transferRows(transfer) {
  const { rounds } = transfer;
  const megabytes = num(rounds[0].snapshot.bytes / 1e6, 1);
  return [
    judged(
      `snapshot transfer ÷ the faster raw blast of its round, ${num(transfer.entities)} entities (${megabytes} MB)`,
      rounds.map((r) => r.ratio),
      ratio,
      { text: "≥ 0.80", value: 0.8, higherIsBetter: true },
    ),
    judged("snapshot transfer to a new tab (chunks in, before the load)", rounds.map((r) => r.snapshot.MBps), MBps),
    judged("then loading it (decode, verify, rebuild) before its last progress event", rounds.map((r) => r.snapshot.load_ms), ms),
    judged("the baseline: the faster raw blast of the round", rounds.map((r) => r.baseline_MBps), MBps),
    judged("raw blast pushing all it can, after a warm-up", rounds.map((r) => r.blast.MBps), MBps),
    judged(
      `raw blast paced by the transfer's windows (${num(transfer.window_bytes / 2 ** 20)} MiB, the next asked for at half), after a warm-up`,
      rounds.map((r) => r.windowed.MBps),
      MBps,
    ),
    judged("raw blast pushing all it can, from its first byte (a cold channel)", rounds.map((r) => r.blast.cold_MBps), MBps),
  ];
}

function appendsRows(appends) {
  const { runs, batch } = appends;
  const events = `${num(appends.events)} events`;
  return [
    judged(
      `batched durable appends: ${events} through \`Peer.set\`, awaited batches of ${num(batch)} (one transaction and one record each)`,
      runs.map((r) => r.peer_events_per_s),
      perSecond,
      { text: "≥ 200,000/s", value: 200_000, higherIsBetter: true },
    ),
    judged(
      "the same writes in the demo page (www/), whose table re-reads every entry on each change",
      runs.map((r) => r.demo_page_events_per_s),
      perSecond,
    ),
    pooled(`a batch of ${num(batch)} until durable, every batch of every run`, runs.flatMap((r) => r.batch_ms), ms),
    pooled("of which the `set` calls themselves", runs.flatMap((r) => r.calls_ms), ms),
    judged(
      `raw IndexedDB, one record per batch (the peer's own ${num(appends.record_bytes)}-byte record of a batch), one transaction each`,
      runs.map((r) => r.raw_batch_events_per_s),
      perSecond,
    ),
    judged(
      `raw IndexedDB, one record per event (that record in ${num(batch)} slices), one transaction per batch`,
      runs.map((r) => r.raw_event_events_per_s),
      perSecond,
    ),
  ];
}

function coldstartRows(coldstart) {
  const { clean, unclean } = coldstart;
  const entities = `${num(coldstart.entities)} entities`;
  return [
    judged(`cold start, ${entities}: navigation to a ready peer`, clean.map((r) => r.ready_ms), ms, {
      text: "≤ 250 ms",
      value: 250,
    }),
    judged("of which `Peer.open` (IndexedDB read, snapshot decode)", clean.map((r) => r.open_ms), ms),
    judged("of which the wasm ready (navigation to instantiated)", clean.map((r) => r.wasm_ms), ms),
    judged(
      `cold start after an unclean close: ${entities} + ${num(coldstart.unclean_log_events)} logged events to replay`,
      unclean.map((r) => r.ready_ms),
      ms,
    ),
  ];
}

function keepRows(keep) {
  return [
    judged(
      `a newcomer without WebRTC: open to the full state of ${num(keep.entities)} entities, all from the room's server peer`,
      keep.runs.map((r) => r.full_ms),
      ms,
    ),
    judged("of which `Peer.open` (memory storage)", keep.runs.map((r) => r.open_ms), ms),
  ];
}

function bigroomRows(bigroom) {
  const { runs } = bigroom;
  const { tabs, writes } = runs[0];
  const bytes = (x) => `${num(x)} B`;
  return [
    judged(
      `a room of ${tabs} tabs (at most 8 links each; most held: ${Math.max(...runs.map((r) => r.most_links))}): bytes a second a link sends at idle`,
      runs.map((r) => r.idle_Bps_per_link),
      (x) => `${num(x)} B/s`,
    ),
    judged("the same, a peer (all its links)", runs.map((r) => r.idle_Bps_per_peer), (x) => `${num(x)} B/s`),
    judged(`bytes a peer sends a write (${writes} single writes from one tab)`, runs.map((r) => r.write_bytes_per_peer), bytes),
    judged("the same writes in a room of two: bytes a write, both tabs", runs.map((r) => r.pair_write_bytes), bytes),
    judged(
      `redundancy: the room's bytes a write ÷ (${tabs - 1} × the pair's)`,
      runs.map((r) => r.redundancy),
      ratio,
      { text: "≤ 2×", value: 2 },
    ),
  ];
}

const LEGS = { snapshot: "snapshot", blast: "pushing", windowed: "windowed" };

/** The transfer's rounds one by one: each ratio is of legs run back to back. */
function roundsTable(transfer) {
  const legs = (r, pick) => [r.snapshot, r.blast, r.windowed].map((leg) => num(pick(leg))).join(" / ");
  const rows = transfer.rounds.map((r, i) => [
    i + 1,
    r.order.map((leg) => LEGS[leg]).join(", "),
    MBps(r.snapshot.MBps),
    MBps(r.blast.MBps),
    MBps(r.windowed.MBps),
    MBps(r.blast.cold_MBps),
    `**${ratio(r.ratio)}**`,
    legs(r, (leg) => median(leg.mib_ms)),
    legs(r, (leg) => Math.max(...leg.mib_ms)),
    legs(r, (leg) => leg.discarded_packets),
  ]);
  return table(
    [
      "round",
      "order",
      "snapshot",
      "raw, pushing",
      "raw, windowed",
      "raw, pushing, cold",
      "ratio to the faster raw",
      "median ms a MiB: snapshot / pushing / windowed",
      "slowest MiB, ms",
      "packets discarded on send",
    ],
    rows,
  );
}

const ROWS = {
  latency: latencyRows,
  transfer: transferRows,
  appends: appendsRows,
  coldstart: coldstartRows,
  keep: keepRows,
  bigroom: bigroomRows,
};

export function render(result) {
  const present = Object.keys(ROWS).filter((name) => result[name]);
  const rows = present.flatMap((name) => ROWS[name](result[name]));
  const runs = present.map((name) => {
    const r = result[name];
    return `${name} ${runsOf(r.runs ?? r.rounds ?? r.clean)}`;
  });
  const parts = [
    table(["figure", "min / **median** / p90 over runs", "goal", "on the median"], rows),
    result.transfer ? `Transfer rounds (a snapshot transfer and two raw blasts back to back):\n\n${roundsTable(result.transfer)}` : "",
    provenance(result.meta, `Runs: ${runs.join(", ")}.`),
    // Scenarios carried over from another run keep that run's provenance.
    ...Object.entries(result.provenance ?? {})
      .filter(([name]) => result[name])
      .map(([name, meta]) => `The ${name} figures: ${provenance(meta)}`),
  ];
  return { peer: parts.filter(Boolean).join("\n\n") };
}
