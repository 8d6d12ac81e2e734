// cpc-sync's own workloads, generated, applied and timed inside wasm (too
// large to cross the JS boundary event by event): seals, causal apply,
// verified snapshots, the room key's KDF.
import * as cpc from "../../../target/bench/pkg/cpc_sync.js";
import { median } from "../../stats.mjs";

async function gzipLength(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

/** Batch verification of 1,024 lone seals (chunks of 256, as a node
 * verifies a frame), the median of `runs`: µs per seal. */
export function batchVerifyCost(runs) {
  const samples = [];
  for (let r = 0; r < runs; r++) {
    const s = cpc.batchVerifyCost(1024);
    if (!Number.isFinite(s.verify_ms)) throw new Error("batch verification refused honest seals");
    samples.push((s.verify_ms * 1000) / s.signatures);
  }
  return { us_per_seal: median(samples), samples };
}

/** Signing and verifying seals over runs of `len` events: µs per event. */
export function sealCost(len, runs) {
  const count = Math.ceil(2_000 / len) + 1;
  const samples = [];
  for (let r = 0; r < Math.max(1, runs); r++) samples.push(cpc.sealCost(len, count));
  const events = len * count;
  return {
    sign_us_per_event: (median(samples.map((s) => s.sign_ms)) * 1000) / events,
    verify_us_per_event: (median(samples.map((s) => s.verify_ms)) * 1000) / events,
    verify_us_samples: samples.map((s) => (s.verify_ms * 1000) / events),
  };
}

/**
 * The page's thread while `call()` runs and until its promise settles: a
 * message a task on a channel of its own, so every gap between two is a
 * task of something else (over 1 ms counted). `{ value, wall_ms, busy_ms,
 * tasks, longest_ms }`. The pings keep the page's thread spinning, so
 * another thread (a worker) has one core less to run on.
 */
async function onThePageThread(call) {
  const channel = new MessageChannel();
  let [last, busy, tasks, longest, running] = [performance.now(), 0, 0, 0, true];
  channel.port1.onmessage = () => {
    const now = performance.now();
    const gap = now - last;
    last = now;
    if (gap > 1) [busy, tasks, longest] = [busy + gap, tasks + 1, Math.max(longest, gap)];
    if (running) channel.port2.postMessage(null);
  };
  const start = performance.now();
  channel.port2.postMessage(null);
  const value = await call();
  const wall_ms = performance.now() - start;
  running = false;
  // The task that settled the call, and the ping behind it.
  await new Promise((r) => setTimeout(r, 10));
  channel.port1.close();
  return { value, wall_ms, busy_ms: busy, tasks, longest_ms: longest };
}

/**
 * A signed room's snapshot of `entities` entities gzipped and inflated
 * back as pages do it (a fold stored, an offer, a newcomer's inflate), in
 * the compressor worker and in place on the page's thread, alternated:
 * what each costs the page's thread. Every inflate is checked equal to the
 * snapshot.
 */
export async function gzipCost(entities, runs) {
  const bytes = cpc.gzipPrepare(entities);
  const rows = { worker: [], in_place: [] };
  for (let r = 0; r < Math.max(2, runs); r++) {
    for (const inPlace of r % 2 ? [true, false] : [false, true]) {
      const jobs = cpc.gzipWorkerJobs();
      const gzip = await onThePageThread(() => cpc.gzipKept(inPlace));
      const gunzip = await onThePageThread(() => cpc.gunzipKept(inPlace));
      if (!gzip.value || !gunzip.value) throw new Error("the snapshot did not gzip and inflate back whole");
      if (cpc.gzipWorkerJobs() - jobs !== (inPlace ? 0 : 2)) throw new Error("the jobs went to the wrong thread");
      const { value: gzipped_bytes, ...gzipped } = gzip;
      const { value: _, ...inflated } = gunzip;
      rows[inPlace ? "in_place" : "worker"].push({ gzipped_bytes, gzip: gzipped, gunzip: inflated });
    }
  }
  return { entities, bytes, ...rows };
}

export async function cpcOnly({ runs, causal, snapshot }) {
  const results = {};
  results.seal = { run_of_1: sealCost(1, Math.min(runs, 5)), run_of_1024: sealCost(1024, Math.min(runs, 5)) };
  const causalRuns = [];
  for (let r = 0; r < Math.max(1, Math.min(runs, 3)); r++) {
    const run = cpc.causalApply(causal, 64, Math.min(10_000, causal), 0.2);
    // A run that refused or held events timed less work than it claims.
    if (run.applied !== causal || run.in_order_applied !== causal) {
      throw new Error(`causal apply took ${run.applied} and ${run.in_order_applied} of ${causal} events`);
    }
    causalRuns.push(run);
  }
  results.causal_apply = {
    events: causal,
    us_per_event: causalRuns.map((c) => (c.ms * 1000) / causal),
    in_order_us_per_event: causalRuns.map((c) => (c.in_order_ms * 1000) / causal),
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
