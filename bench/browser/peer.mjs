// Browser benchmarks of the peer (issue 5's figures, measured as issue 16
// asks), in one headless Chromium against a real cpc-signal serving the
// release build. Peers run in a bare page (PEER_PAGE: the package and one
// Peer, no views), tabs find each other over BroadcastChannel:
//
//   latency    write-to-visible between two tabs, as an echo timed by one
//              page on its own clock (a writes `ping` i, b answers `pong`
//              i, a times until it sees pong i); one way = round trip / 2
//   transfer   snapshot transfer throughput to a new tab, each round paired
//              with two raw data-channel blasts of the same bytes (one
//              pushing all it can, one paced like the transfer)
//   appends    batched durable appends to IndexedDB through Peer writes
//              (and in the demo page), beside raw IndexedDB at one record
//              per batch and one per event
//   coldstart  navigation to a ready peer restored from 100k entities
//   keep       a newcomer without WebRTC taking a room of 100k entities
//              from the room's server peer (cpc-signal with KEEP on)
//   bigroom    what a peer costs in a room of 12 tabs (a partial view of
//              at most 8 links each): bytes a second at idle, bytes a
//              write, against the same writes in a room of two
//
// Every scenario runs CPC_BENCH_RUNS times (default 5, 1 when quick) and
// keeps every sample; the report judges goals on medians.
// CPC_PROFILE=<path prefix>: the transfer's snapshot joins CPU-profiled in
// both pages (`<prefix>-sender-<n>.cpuprofile`, `-receiver-`; `node
// bench/cpu-profile.mjs <file>` sums them by function).
//
// `npm run bench:peer` (builds first); `node bench/browser/peer.mjs
// [scenario...]` runs some. CPC_BENCH_QUICK=1 shrinks every size (smoke).
// The run fails if a page reports an error or a scenario has no figure.
// Results go to target/bench/peer.json (bench/report/peer.mjs renders them
// into BENCHMARKS.md through `node bench/report.mjs`) and the rendered table
// to stdout; a run of some scenarios carries the others over from the last
// committed run (bench/results/peer.json), each with its own provenance.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  startServer,
  openPeerPage,
  connected,
  converged,
  launchBrowser,
  reading,
  UNTHROTTLED_ARGS,
} from "../../tests/e2e/harness.mjs";
import { meta, root } from "../meta.mjs";
import { render } from "../report/peer.mjs";

const QUICK = process.env.CPC_BENCH_QUICK === "1";
const RUNS = Number(process.env.CPC_BENCH_RUNS ?? (QUICK ? 1 : 5));
const size = (full, quick) => (QUICK ? quick : full);
const room = (name) => `bench-${name}-${Math.random().toString(36).slice(2)}`;
const MiB = 1024 * 1024;

/** Console errors and uncaught exceptions of every page: any fails the run. */
const pageErrors = [];

// The page the peers run in: the package and one Peer, as an app embedding
// it has them, with the demo page's marks. Not the demo page (www/), whose
// table re-reads every entry on each change and every second: with 100k
// entries that costs more than the peer does (the appends show how much).
const PEER_PAGE = `<!doctype html><title>cpc-sync bench</title>
<link rel="icon" href="data:,">
<link rel="modulepreload" href="/pkg/cpc_sync.js">
<link rel="preload" href="/pkg/cpc_sync_bg.wasm" as="fetch" type="application/wasm" crossorigin>
<body>peer</body>
<script type="module">
  import init, { Peer } from "/pkg/cpc_sync.js";
  const params = new URLSearchParams(location.search);
  await init();
  performance.mark("cpc:wasm-ready");
  performance.mark("cpc:open");
  const options = {
    room: params.get("room"),
    signaling: params.get("signaling") ?? "none",
    storage: params.get("storage") ?? "indexeddb",
  };
  window.cpc = { peer: await Peer.open(options) };
  performance.measure("cpc:Peer.open", "cpc:open");
  performance.mark("cpc:peer-ready");
  document.body.dataset.ready = "true";
</script>`;

/** A context whose pages' errors are kept, serving PEER_PAGE at `bench` and an empty page at `blank`. */
async function newContext(browser, url) {
  const context = await browser.newContext();
  context.on("page", (page) => {
    page.on("console", (m) => m.type() === "error" && pageErrors.push(`${page.url()}: ${m.text()}`));
    page.on("pageerror", (e) => pageErrors.push(`${page.url()}: ${e}`));
  });
  const html = (body) => (route) => route.fulfill({ contentType: "text/html", body });
  await context.route(`${url}bench?*`, html(PEER_PAGE));
  await context.route(`${url}blank`, html("<!doctype html><title>blank</title>"));
  return context;
}

/** A PEER_PAGE for `query` (room, storage), once its peer is open. */
const openPeer = (context, url, query) => openPeerPage(context, `${url}bench`, query);

/** Two tabs of `context` opened with `query`, connected to each other. */
async function connectedPair(context, url, query) {
  const a = await openPeer(context, url, query);
  const b = await openPeer(context, url, query);
  await connected(a.page, b.id);
  await connected(b.page, a.id);
  return [a, b];
}

// In the page: `count` writes of `${prefix}j`, in batches of `batch`, each
// batch awaited (durable). Per batch, the ms until durable, and of those the
// ms the `set` calls themselves took (the rest is waiting for the commit).
async function writeBatches({ prefix, count, batch = 10_000, kind, salt = 0 }) {
  const value = {
    number: (j) => j + salt,
    text: () => "x".repeat(100),
    // Random hex: gzips to about half (a snapshot travels gzipped).
    random: () => Array.from({ length: 100 }, () => ((Math.random() * 16) | 0).toString(16)).join(""),
    entity: (j) => ({ n: j, name: `entity ${j}` }),
  }[kind];
  const [batch_ms, calls_ms] = [[], []];
  for (let i = 0; i < count; i += batch) {
    const start = performance.now();
    const writes = [];
    for (let j = i; j < Math.min(count, i + batch); j++) writes.push(window.cpc.peer.set(`${prefix}${j}`, value(j)));
    calls_ms.push(performance.now() - start);
    await Promise.all(writes);
    batch_ms.push(performance.now() - start);
  }
  return { batch_ms, calls_ms };
}

// --- latency -------------------------------------------------------------

// In tab b: every `ping` seen is answered with a `pong` of the same value.
function answerPings() {
  const peer = window.cpc.peer;
  peer.addEventListener("change", (e) => {
    if (e.keys.includes("ping")) peer.set("pong", peer.get("ping"));
  });
}

// In tab a: writes `ping` i, and times on its own clock until its peer
// reports `pong` i; the round trips in ms. The clock starts before the
// write, so both commits to IndexedDB (a's ping, b's pong) are inside it.
async function timeEchoes({ writes, gap }) {
  const peer = window.cpc.peer;
  let waiting = null;
  peer.addEventListener("change", (e) => {
    if (waiting && e.keys.includes("pong") && peer.get("pong").i === waiting.i) waiting.seen(performance.now());
  });
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const rtt = [];
  for (let i = 0; i < writes; i++) {
    const seen = new Promise((resolve, reject) => {
      waiting = { i, seen: resolve };
      setTimeout(() => reject(new Error(`no pong ${i} within 10 s`)), 10_000);
    });
    const start = performance.now();
    const written = peer.set("ping", { i });
    rtt.push((await seen) - start);
    await written;
    await sleep(gap);
  }
  return rtt;
}

async function latency(browser, url) {
  const writes = size(1000, 50);
  const gap = 5;
  const runs = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await newContext(browser, url);
    const [a, b] = await connectedPair(context, url, `room=${room("latency")}`);
    await b.page.evaluate(answerPings);
    const rtt = await a.page.evaluate(timeEchoes, { writes, gap });
    await context.close();
    runs.push({ rtt_ms: rtt.map((x) => Math.round(x * 100) / 100) });
  }
  return { writes, gap_ms: gap, storage: "indexeddb", runs };
}

// --- transfer --------------------------------------------------------------

// The size of a snapshot chunk's frame: 60 KiB of snapshot (the node's
// `snapshot_chunk`) plus the message's header, ids, varints and check.
const FRAME_BYTES = 60 * 1024 + 50;
// The transport's bufferedAmount thresholds (connection.rs) and the
// transfer's window (transfer.rs).
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const WINDOW_BYTES = 1024 * 1024;
// Sent before the raw blast's timed bytes, untimed: see rawBlast. The
// stall it absorbs comes within the first 3 MiB here, in quick runs too.
const WARMUP_BYTES = 4 * MiB;

// In every page of the transfer's context, before its scripts: keeps the
// page's RTCPeerConnections, to read what Chromium discarded on send.
function keepPeerConnections() {
  const Native = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.peerConnections.push(this);
    }
  };
}

// In the page: packets its newest connection could not send (Chromium drops
// them when its socket's send queue is full; SCTP then has to retransmit).
async function discardedOnSend() {
  const stats = await window.peerConnections.at(-1).getStats();
  let discarded = 0;
  for (const s of stats.values()) if (s.type === "candidate-pair") discarded += s.packetsDiscardedOnSend ?? 0;
  return discarded;
}

/** MB/s over `progress` ({ t, received }) from its first entry at or past `from` bytes, and the ms each MiB after it took. */
function throughput(progress, from = 0) {
  const start = progress.findIndex((p) => p.received >= from);
  const first = progress[start];
  const last = progress.at(-1);
  const mib_ms = [];
  let [next, at] = [first.received + MiB, first.t];
  for (const p of progress.slice(start)) {
    for (; p.received >= next; next += MiB) {
      mib_ms.push(Math.round(p.t - at));
      at = p.t;
    }
  }
  return { MBps: (last.received - first.received) / 1e6 / ((last.t - first.t) / 1000), mib_ms };
}

/** A new tab joins `r`, where `a` holds the snapshot of digest `digest`, and receives it. */
async function snapshotJoin(context, url, a, r, digest) {
  const sender = await profiling(context, a.page);
  const b = await openPeer(context, url, `room=${r}&storage=memory`);
  // From its peer's open on (the transfer starts after it).
  const receiver = await profiling(context, b.page);
  await b.page.evaluate(() => {
    window.progress = [];
    window.cpc.peer.addEventListener("snapshot", (e) => {
      window.progress.push({ t: performance.now(), received: e.received, total: e.total });
    });
  });
  await b.page.waitForFunction((d) => window.cpc.peer.digest() === d, digest, { timeout: 120_000 });
  const done = await b.page.evaluate(() => performance.now());
  await sender.save("sender");
  await receiver.save("receiver");
  const progress = await b.page.evaluate(() => window.progress);
  const discarded = await a.page.evaluate(discardedOnSend);
  await b.page.close();
  if (progress.length < 3) throw new Error("no snapshot transfer happened (log replayed instead)");
  // The bytes as sent (gzipped between pages); the load is its own
  // figure: from the last chunk to the state in place (inflating,
  // decoding, verifying, loading).
  return {
    bytes: progress.at(-1).total,
    ...throughput(progress),
    load_ms: Math.round(done - progress.at(-1).t),
    discarded_packets: discarded,
  };
}

let profiles = 0;

/** With CPC_PROFILE, a CPU profile of `page` from now on (samples every
 * 100 µs), written by `save(role)`; without, nothing. */
async function profiling(context, page) {
  const prefix = process.env.CPC_PROFILE;
  if (!prefix) return { save: async () => {} };
  const cdp = await context.newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  await cdp.send("Profiler.start");
  return {
    async save(role) {
      const { profile } = await cdp.send("Profiler.stop");
      const file = `${prefix}-${role}-${Math.floor(profiles++ / 2)}.cpuprofile`;
      await writeFile(file, JSON.stringify(profile));
      console.log(`profile: ${file}`);
    },
  };
}

// In a blank page: a data channel like the transport's (negotiated,
// reliable, ordered, binary).
function rawChannel() {
  const pc = new RTCPeerConnection();
  const channel = pc.createDataChannel("blast", { negotiated: true, id: 0, ordered: true });
  channel.binaryType = "arraybuffer";
  window.raw = { pc, channel };
}

// In a blank page: takes the remote description if given, and returns the
// local one once ICE gathering is complete (no trickling needed).
async function localDescription(remote) {
  const { pc } = window.raw;
  if (remote) await pc.setRemoteDescription(remote);
  await pc.setLocalDescription();
  while (pc.iceGatheringState !== "complete") {
    await new Promise((r) => pc.addEventListener("icegatheringstatechange", r, { once: true }));
  }
  return pc.localDescription.toJSON();
}

// In the receiving page: from now on, notes every message's arrival;
// `window.received` resolves once `bytes` are in. With a `window`, it asks
// for the bytes as the snapshot transfer does: a window at a time, the next
// once half of the last one is in.
function receiveBytes({ bytes, window: windowBytes }) {
  const { channel } = window.raw;
  let [received, asked] = [0, 0];
  const ask = () => {
    asked = Math.min(bytes, asked + windowBytes);
    channel.send(String(asked));
  };
  window.received = new Promise((resolve) => {
    const progress = [];
    channel.onmessage = ({ data }) => {
      received += data.byteLength;
      progress.push({ t: performance.now(), received });
      if (windowBytes && asked < bytes && asked - received <= windowBytes / 2) ask();
      if (received >= bytes) resolve(progress);
    };
  });
  if (!windowBytes) return;
  if (channel.readyState === "open") ask();
  else channel.onopen = ask;
}

// In the sending page: `bytes` in frames of `frame` bytes, as fast as the
// channel takes them, with the transport's bufferedAmount thresholds; with
// a `window`, only as far as the receiver asked. `window.sent` resolves once
// all are handed to the channel.
function sendBytes({ bytes, frame, high, low, window: windowBytes }) {
  const { channel } = window.raw;
  const data = new Uint8Array(frame);
  channel.bufferedAmountLowThreshold = low;
  let [sent, allowed] = [0, windowBytes ? 0 : bytes];
  window.sent = new Promise((resolve) => {
    const pump = () => {
      while (sent < allowed && channel.bufferedAmount < high) {
        const n = Math.min(frame, allowed - sent);
        channel.send(data.subarray(0, n));
        sent += n;
      }
      if (sent >= bytes) resolve();
    };
    channel.onmessage = ({ data }) => {
      allowed = Number(data);
      pump();
    };
    channel.onbufferedamountlow = pump;
    if (channel.readyState === "open") pump();
    else channel.onopen = pump;
  });
}

/**
 * One raw leg of the baseline: the same bytes over the same kind of
 * channel, between two blank tabs (no peer, no page code), in frames of the
 * transport's size under its bufferedAmount thresholds, with nothing to
 * encode, check or copy. On a fresh channel Chromium discards hundreds of
 * packets on send as SCTP's congestion window opens, and SCTP waits out a
 * retransmission timeout (~1 s) that a snapshot transfer, asking for a
 * window at a time, does not trigger. So each leg sends WARMUP_BYTES
 * untimed first, then the timed bytes; the cold rate (from the first byte)
 * is kept beside. With `windowBytes` (the transfer's), the receiver paces
 * the sender as the transfer does; without, the sender pushes all it can.
 */
async function rawBlast(context, url, bytes, windowBytes = 0) {
  const [rx, tx] = [await context.newPage(), await context.newPage()];
  await Promise.all([rx, tx].map((p) => p.goto(`${url}blank`)));
  await Promise.all([rx, tx].map((p) => p.evaluate(rawChannel)));
  const offer = await tx.evaluate(localDescription, null);
  const answer = await rx.evaluate(localDescription, offer);
  // Both ends listen before the channel can open (the sender has the
  // answer last), so no message meets a page without its handler.
  const total = WARMUP_BYTES + bytes;
  await rx.evaluate(receiveBytes, { bytes: total, window: windowBytes });
  const frames = { frame: FRAME_BYTES, high: HIGH_WATER, low: LOW_WATER };
  await tx.evaluate(sendBytes, { bytes: total, ...frames, window: windowBytes });
  await tx.evaluate((d) => window.raw.pc.setRemoteDescription(d), answer);
  await tx.evaluate(() => window.sent);
  const progress = await rx.evaluate(() => window.received);
  const discarded = await tx.evaluate(discardedOnSend);
  await rx.close();
  await tx.close();
  return {
    bytes,
    warmup_bytes: WARMUP_BYTES,
    ...throughput(progress, WARMUP_BYTES),
    cold_MBps: throughput(progress).MBps,
    discarded_packets: discarded,
  };
}

async function transfer(browser, url) {
  // The page's peer folds its log into a snapshot past 50k events (a new
  // tab behind that gets the snapshot, not the log): 50k at the least.
  const entities = size(100_000, 50_000);
  const context = await newContext(browser, url);
  await context.addInitScript(keepPeerConnections);
  const r = room("transfer");
  const a = await openPeer(context, url, `room=${r}&storage=memory`);
  await a.page.evaluate(writeBatches, { prefix: "key", count: entities, kind: "random" });
  // The fold happens on the peer's next tick.
  await a.page.waitForTimeout(1500);
  const digest = await a.page.evaluate(() => window.cpc.peer.digest());
  // Each round: a snapshot transfer, a raw blast of its bytes and the same
  // blast paced by the transfer's windows, back to back. The first round
  // transfers first (the blasts need the size); then the order reverses
  // each round, so none always runs on a warmer machine. Neither raw leg is
  // always the faster on this loaded machine (both lose packets to
  // Chromium's full send queue, at different times), so the baseline is the
  // faster of the two in the round: the most the channel carried of these
  // bytes then.
  const steps = {
    snapshot: () => snapshotJoin(context, url, a, r, digest),
    blast: (bytes) => rawBlast(context, url, bytes),
    windowed: (bytes) => rawBlast(context, url, bytes, WINDOW_BYTES),
  };
  const rounds = [];
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? ["snapshot", "blast", "windowed"] : ["windowed", "blast", "snapshot"];
    const round = { order };
    for (const step of order) round[step] = await steps[step]((rounds[0] ?? round).snapshot?.bytes);
    round.baseline_MBps = Math.max(round.blast.MBps, round.windowed.MBps);
    round.ratio = round.snapshot.MBps / round.baseline_MBps;
    rounds.push(round);
  }
  await context.close();
  return { entities, frame_bytes: FRAME_BYTES, window_bytes: WINDOW_BYTES, rounds };
}

// --- appends ----------------------------------------------------------------

// In a page whose peer has just committed one batch: the records of its log
// store, as { bytes, base64 } (the peer's database is the only `cpc-sync:`
// one).
async function logRecords() {
  const [{ name }] = (await indexedDB.databases()).filter((d) => d.name.startsWith("cpc-sync:"));
  const db = await new Promise((resolve, reject) => {
    const open = indexedDB.open(name);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  const records = await new Promise((resolve, reject) => {
    const get = db.transaction("log").objectStore("log").getAll();
    get.onsuccess = () => resolve(get.result);
    get.onerror = () => reject(get.error);
  });
  db.close();
  return records.map((record) => {
    const bytes = new Uint8Array(record.buffer ?? record, record.byteOffset ?? 0, record.byteLength);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { bytes: bytes.length, base64: btoa(text) };
  });
}

/** The record the peer writes for one batch: its bytes, from a peer's real log. */
async function batchRecord(browser, url, batch) {
  const context = await newContext(browser, url);
  const p = await openPeer(context, url, `room=${room("record")}`);
  await p.page.evaluate(writeBatches, { prefix: "k", count: batch, batch, kind: "number" });
  const records = await p.page.evaluate(logRecords);
  await context.close();
  if (records.length !== 1) throw new Error(`one batch of ${batch} writes left ${records.length} log records, not 1`);
  return records[0];
}

// In the page: raw IndexedDB at the peer's rate of transactions (one per
// batch), once with the peer's batch record as one record, once split into
// one record per event (slices of the same bytes); events per second each.
async function rawAppends({ events, batch, record }) {
  const bytes = Uint8Array.from(atob(record), (c) => c.charCodeAt(0));
  const each = Math.ceil(bytes.length / batch);
  // Copies, not views: a view would store its whole buffer.
  const slices = Array.from({ length: batch }, (_, k) => bytes.slice(k * each, (k + 1) * each));
  const open = (name) =>
    new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("log", { autoIncrement: true });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  const rate = async (records) => {
    const name = `raw-${Math.random()}`;
    const db = await open(name);
    const start = performance.now();
    for (let i = 0; i < events; i += batch) {
      const tx = db.transaction("log", "readwrite");
      for (const r of records) tx.objectStore("log").add(r);
      await new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onerror = tx.onabort = () => reject(tx.error);
      });
    }
    const ms = performance.now() - start;
    db.close();
    indexedDB.deleteDatabase(name);
    return events / (ms / 1000);
  };
  return { raw_batch_events_per_s: await rate([bytes]), raw_event_events_per_s: await rate(slices) };
}

/** `events` writes through the peer of a new page at `pageUrl`; its peer closed after, the page left open. */
async function appendRun(context, pageUrl, events, batch) {
  const p = await openPeerPage(context, pageUrl, `room=${room("appends")}&signaling=none`);
  const batches = await p.page.evaluate(writeBatches, { prefix: "k", count: events, batch, kind: "number" });
  await p.page.evaluate(() => window.cpc.peer.close());
  const ms = batches.batch_ms.reduce((sum, x) => sum + x, 0);
  const rounded = (xs) => xs.map((x) => Math.round(x * 10) / 10);
  return {
    page: p.page,
    events_per_s: events / (ms / 1000),
    batch_ms: rounded(batches.batch_ms),
    calls_ms: rounded(batches.calls_ms),
  };
}

async function appends(browser, url) {
  const events = size(200_000, 10_000);
  const batch = 10_000;
  const record = await batchRecord(browser, url, batch);
  const runs = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await newContext(browser, url);
    const { page, events_per_s, ...batches } = await appendRun(context, `${url}bench`, events, batch);
    // The same writes in the demo page, for what its table costs.
    const demo = await appendRun(context, url, events, batch);
    // The raw baselines run in the first page, its peer closed.
    const raw = await page.evaluate(rawAppends, { events, batch, record: record.base64 });
    await context.close();
    runs.push({ peer_events_per_s: events_per_s, ...batches, demo_page_events_per_s: demo.events_per_s, ...raw });
  }
  return { events, batch, record_bytes: record.bytes, runs };
}

// --- coldstart ----------------------------------------------------------------

/** Reloads `page` and returns its marks: navigation to ready, `Peer.open`, wasm. */
async function reloadTimed(page) {
  await page.reload();
  await page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
  return page.evaluate(() => ({
    ready_ms: performance.getEntriesByName("cpc:peer-ready")[0].startTime,
    open_ms: performance.getEntriesByName("cpc:Peer.open")[0].duration,
    wasm_ms: performance.getEntriesByName("cpc:wasm-ready")[0].startTime,
    entities: Object.keys(window.cpc.peer.state()).length,
  }));
}

async function coldstart(browser) {
  const entities = size(100_000, 5_000);
  const tail = size(20_000, 1_000);
  // The page served as a file by a server of its own, as an app's page is:
  // a routed page has the harness intercept every request it makes (the
  // package's script and wasm), which added tens of ms to each load.
  const www = await mkdtemp(path.join(os.tmpdir(), "cpc-cold-bench-"));
  await writeFile(path.join(www, "bench.html"), PEER_PAGE);
  const server = await startServer(0, { CPC_WWW: www });
  try {
    return await coldstartAt(browser, `${server.url}bench.html`, entities, tail);
  } finally {
    await server.stop();
    await rm(www, { recursive: true, force: true });
  }
}

async function coldstartAt(browser, url, entities, tail) {
  const context = await browser.newContext();
  const p = await openPeerPage(context, url, `room=${room("cold")}`);
  await p.page.evaluate(writeBatches, { prefix: "key", count: entities, kind: "entity" });
  // Let the timer fold the log into a snapshot, then close cleanly.
  await p.page.waitForTimeout(2500);
  await p.page.evaluate(() => window.cpc.peer.close());
  const clean = [];
  for (let run = 0; run < RUNS; run++) {
    clean.push(await reloadTimed(p.page));
    await p.page.evaluate(() => window.cpc.peer.close());
  }
  // Unclean: a tab closed without close() leaves the log since the last
  // fold, which the next start replays. Each run writes the same keys anew
  // (`salt`), and a clean close afterwards folds them, so every run starts
  // from one snapshot and `tail` logged events.
  const unclean = [];
  for (let run = 0; run < RUNS; run++) {
    await reloadTimed(p.page);
    await p.page.evaluate(writeBatches, { prefix: "tail", count: tail, kind: "number", salt: run });
    unclean.push(await reloadTimed(p.page));
    await p.page.evaluate(() => window.cpc.peer.close());
  }
  pageErrors.push(...p.errors.map((e) => `${url}: ${e}`));
  await context.close();
  const restored = [...clean.map((run) => run.entities), ...unclean.map((run) => run.entities - tail)];
  if (restored.some((n) => n !== entities)) throw new Error(`cold starts restored ${restored} entities, not ${entities}`);
  return { entities, unclean_log_events: tail, clean, unclean };
}

// --- keep ---------------------------------------------------------------------

// In the newcomer's page: opens its peer (signaling through the server,
// memory storage) and times until its clock covers `target`; the page has
// no RTCPeerConnection, so everything comes from the room's server peer.
async function takeRoom({ room, target }) {
  const start = performance.now();
  const { Peer } = await import("/pkg/cpc_sync.js");
  const peer = await Peer.open({ room, signaling: "/signal", storage: "memory" });
  const opened = performance.now();
  const covers = () => Object.entries(target).every(([p, n]) => (peer.clock()[p] ?? 0) >= n);
  while (!covers()) await new Promise((r) => setTimeout(r, 10));
  const full = performance.now();
  const result = { open_ms: opened - start, full_ms: full - start, entities: Object.keys(peer.state()).length };
  await peer.close();
  return result;
}

/**
 * A page writes `entities` entities with the room's server peer linked and
 * closes once the server has committed them; each run a fresh page whose
 * WebRTC is gone (RTCPeerConnection deleted) opens the room and times its
 * way to the full state, all of it from the server peer over the page's
 * signaling socket. The server's room is loaded (its writer left within
 * `KEEP_IDLE_MS`); `tests/native/keep.rs`'s figures time a room loaded from disk.
 */
async function keep(browser) {
  const entities = size(100_000, 2_000);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "cpc-keep-bench-"));
  // The bare peer page served by the server itself, as an app's page is:
  // a page routed in by the browser would be a public one, whose socket
  // to 127.0.0.1 Chromium blocks (local network access).
  const www = path.join(dataDir, "www");
  await mkdir(www);
  await writeFile(path.join(www, "bench.html"), PEER_PAGE);
  const server = await startServer(0, { KEEP: "on", DATA_DIR: dataDir, CPC_WWW: www });
  try {
    const url = server.url;
    const name = room("keep");
    const writer = await browser.newContext();
    const w = await openPeerPage(writer, `${url}bench.html`, `room=${name}&signaling=%2Fsignal&storage=memory`);
    await w.page.waitForFunction(() => window.cpc.peer.peers().some((p) => p.server && p.state === "open"), null, {
      timeout: 30_000,
    });
    await w.page.evaluate(writeBatches, { prefix: "key", count: entities, kind: "entity" });
    const target = await w.page.evaluate(() => window.cpc.peer.clock());
    // Polled, not timed: until the server's database holds every write
    // (told, not waited on for good, if it never does).
    const deadline = Date.now() + 120_000;
    let persisted = 0;
    while ((persisted = await reading(server, "cpc_signal_keep_events_persisted_total")) < entities) {
      if (Date.now() > deadline) throw new Error(`the room peer stored ${persisted} of ${entities} writes in 2 minutes`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await writer.close();
    const runs = [];
    for (let run = 0; run < RUNS; run++) {
      const context = await browser.newContext();
      await context.addInitScript(() => {
        delete window.RTCPeerConnection;
        delete window.webkitRTCPeerConnection;
      });
      const page = await context.newPage();
      page.on("pageerror", (e) => pageErrors.push(`${page.url()}: ${e}`));
      await page.goto(`${url}bench.html?room=${room("unused")}&signaling=none&storage=memory`);
      await page.waitForSelector("body[data-ready=true]");
      await page.evaluate(() => window.cpc.peer.close());
      const result = await page.evaluate(takeRoom, { room: name, target });
      await context.close();
      if (result.entities !== entities) throw new Error(`the newcomer has ${result.entities} entities, not ${entities}`);
      runs.push(result);
    }
    return { entities, runs };
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** In the page: the bytes this peer has sent over its links, and its open links. */
function sent() {
  const peers = window.cpc.peer.peers();
  return { bytes: peers.reduce((sum, p) => sum + p.bytesOut, 0), links: peers.filter((p) => p.state === "open").length };
}

/** Every page's `sent()`, summed, and when. */
async function sentBy(pages) {
  const each = await Promise.all(pages.map((p) => p.page.evaluate(sent)));
  return {
    at: Date.now(),
    bytes: each.reduce((sum, e) => sum + e.bytes, 0),
    links: each.map((e) => e.links),
  };
}

/** Bytes a second all of `pages` send while nothing is written, over `seconds`. */
async function idleRate(pages, seconds) {
  const before = await sentBy(pages);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = await sentBy(pages);
  return { Bps: (after.bytes - before.bytes) / ((after.at - before.at) / 1000), links: after.links };
}

/**
 * `writes` writes from `pages[0]`, each awaited alone (each its own signed
 * run), until every page has them: the bytes all pages sent a write, less
 * what they send at idle in that time.
 */
async function bytesPerWrite(pages, writes, idleBps, prefix) {
  const before = await sentBy(pages);
  await pages[0].page.evaluate(
    async ({ writes, prefix }) => {
      for (let i = 0; i < writes; i++) await window.cpc.peer.set(`${prefix}${i}`, i);
    },
    { writes, prefix },
  );
  await converged(pages.map((p) => p.page), 60_000);
  const after = await sentBy(pages);
  const idle = (idleBps * (after.at - before.at)) / 1000;
  return Math.max(0, after.bytes - before.bytes - idle) / writes;
}

/**
 * A room bigger than a full mesh: 12 tabs over BroadcastChannel, each at
 * most 8 links (the default maxConnections), presence unset. Once every
 * tab has written and the room settled, the bytes all tabs send at idle
 * (anti-entropy digests, shuffles), then a run of single writes from one
 * tab. The minimum to judge the write against: the same writes in a room
 * of two, times the tabs that must receive them.
 */
async function bigroom(browser, url) {
  const tabs = size(12, 9);
  const idleSeconds = size(20, 3);
  const writes = size(200, 10);
  const runs = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await newContext(browser, url);
    const query = `room=${room("big")}&storage=memory`;
    const pages = [];
    for (let i = 0; i < tabs; i++) pages.push(await openPeer(context, url, query));
    await Promise.all(pages.map((p) => p.page.evaluate((id) => window.cpc.peer.set(`hello-${id}`, 1), p.id)));
    await converged(pages.map((p) => p.page), 60_000);
    // A shuffle interval (10 s) for the links to settle.
    await new Promise((r) => setTimeout(r, size(12_000, 1_000)));
    const idle = await idleRate(pages, idleSeconds);
    const perWrite = await bytesPerWrite(pages, writes, idle.Bps, "w");
    for (const p of pages) await p.page.close();
    const [a, b] = await connectedPair(context, url, `room=${room("pair")}&storage=memory`);
    await converged([a.page, b.page]);
    const pairIdle = await idleRate([a, b], size(5, 1));
    const pairPerWrite = await bytesPerWrite([a, b], writes, pairIdle.Bps, "w");
    await context.close();
    const links = idle.links.reduce((sum, n) => sum + n, 0);
    runs.push({
      tabs,
      writes,
      links: idle.links,
      most_links: Math.max(...idle.links),
      idle_Bps_per_peer: idle.Bps / tabs,
      idle_Bps_per_link: idle.Bps / links,
      write_bytes_per_peer: perWrite / tabs,
      pair_write_bytes: pairPerWrite,
      redundancy: perWrite / ((tabs - 1) * pairPerWrite),
    });
  }
  return { runs };
}

const SCENARIOS = { latency, transfer, appends, coldstart, keep, bigroom };

/** The figures each scenario must produce: none, or one not a positive number, fails the run. */
const FIGURES = {
  latency: (r) => r.runs.flatMap((run) => run.rtt_ms),
  transfer: (r) =>
    r.rounds.flatMap((round) => [round.ratio, round.snapshot.load_ms, round.blast.cold_MBps, round.windowed.MBps]),
  appends: (r) =>
    r.runs.flatMap((run) => [
      run.peer_events_per_s,
      run.demo_page_events_per_s,
      run.raw_batch_events_per_s,
      run.raw_event_events_per_s,
    ]),
  coldstart: (r) => [...r.clean, ...r.unclean].map((run) => run.ready_ms),
  keep: (r) => r.runs.map((run) => run.full_ms),
  bigroom: (r) => r.runs.flatMap((run) => [run.idle_Bps_per_link, run.write_bytes_per_peer, run.redundancy]),
};

function checkFigures(name, result) {
  const figures = FIGURES[name](result);
  if (!figures.length || !figures.every((x) => Number.isFinite(x) && x > 0)) {
    throw new Error(`${name} produced no figure, or a bad one: ${JSON.stringify(figures.slice(0, 20))}`);
  }
}

/**
 * The scenarios not run this time keep the figures of the last committed
 * run (bench/results/peer.json) with that run's provenance, so that a run
 * of some scenarios, rendered by `node bench/report.mjs` (as `npm run
 * bench` does), does not drop the others' rows from BENCHMARKS.md.
 */
async function carryOver(results, ran) {
  let previous;
  try {
    previous = JSON.parse(await readFile(path.join(root, "bench/results/peer.json"), "utf8"));
  } catch {
    return [];
  }
  if (!previous.meta || previous.meta.quick) return [];
  const carried = Object.keys(SCENARIOS).filter((name) => !ran.includes(name) && previous[name]);
  for (const name of carried) {
    results[name] = previous[name];
    results.provenance ??= {};
    results.provenance[name] = previous.provenance?.[name] ?? previous.meta;
  }
  return carried;
}

async function main() {
  const chosen = process.argv.slice(2);
  const unknown = chosen.filter((name) => !SCENARIOS[name]);
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(", ")}; known: ${Object.keys(SCENARIOS)}`);
  const names = chosen.length ? chosen : Object.keys(SCENARIOS);
  const server = await startServer();
  const browser = await launchBrowser(UNTHROTTLED_ARGS);
  const results = { meta: meta({ browser: `Chromium ${browser.version()}`, quick: QUICK }) };
  try {
    for (const name of names) {
      const started = Date.now();
      results[name] = await SCENARIOS[name](browser, server.url);
      checkFigures(name, results[name]);
      console.log(`${name}: ${RUNS} run${RUNS === 1 ? "" : "s"} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  } finally {
    await browser.close();
    await server.stop();
  }
  const carried = QUICK ? [] : await carryOver(results, names);
  if (carried.length) console.log(`carried over from bench/results/peer.json: ${carried.join(", ")}`);
  await mkdir("target/bench", { recursive: true });
  await writeFile("target/bench/peer.json", JSON.stringify(results, null, 1));
  console.log(render(results).peer);
  if (pageErrors.length) {
    throw new Error(`pages reported ${pageErrors.length} errors:\n${pageErrors.slice(0, 20).join("\n")}`);
  }
}

await main();
