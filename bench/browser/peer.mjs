// Browser benchmarks of the peer (issue 5's figures), in one headless
// Chromium run against a real cpc-signal serving the release build:
//
//   latency    write-to-visible between two tabs (BroadcastChannel
//              signaling, WebRTC data channel, IndexedDB storage)
//   transfer   snapshot transfer throughput between two tabs, against a
//              raw data-channel blast between two tabs in the same run
//   appends    batched durable appends to IndexedDB through Peer writes
//   coldstart  navigation to a ready peer restored from 100k entities
//
// `npm run bench:peer` (builds first); `node bench/browser/peer.mjs
// [scenario...]` runs some. CPC_BENCH_QUICK=1 shrinks every size (smoke).
// Figures go to stdout and target/bench/peer.json.
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import { startServer, openPeerPage, connected, CHROMIUM_ARGS } from "../../tests/e2e/harness.mjs";
import { chromium } from "playwright-core";

const QUICK = process.env.CPC_BENCH_QUICK === "1";
const size = (full, quick) => (QUICK ? quick : full);
const room = (name) => `bench-${name}-${Math.random().toString(36).slice(2)}`;

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const median = (xs) => quantile([...xs].sort((a, b) => a - b), 0.5);

async function latency(browser, url) {
  const writes = size(1000, 50);
  const context = await browser.newContext();
  const query = `room=${room("latency")}&signaling=none`;
  const a = await openPeerPage(context, url, query);
  const b = await openPeerPage(context, url, query);
  await connected(a.page, b.id);
  await connected(b.page, a.id);
  await b.page.evaluate(() => {
    window.seen = [];
    window.cpc.peer.addEventListener("change", (e) => {
      if (!e.keys.includes("lat")) return;
      const now = performance.timeOrigin + performance.now();
      const { t } = window.cpc.peer.get("lat");
      window.seen.push(now - t);
    });
  });
  await a.page.evaluate(async (writes) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < writes; i++) {
      await window.cpc.peer.set("lat", { i, t: performance.timeOrigin + performance.now() });
      await sleep(5);
    }
  }, writes);
  await b.page.waitForFunction((n) => window.seen.length >= n, writes, { timeout: 60_000 });
  const seen = (await b.page.evaluate(() => window.seen)).sort((x, y) => x - y);
  await context.close();
  return {
    writes,
    median_ms: quantile(seen, 0.5),
    p99_ms: quantile(seen, 0.99),
    max_ms: seen[seen.length - 1],
    goal: "median <= 10 ms, p99 <= 30 ms",
  };
}

// A raw blast: two tabs connect a bare RTCPeerConnection through a
// BroadcastChannel and push `bytes` in 64 KiB messages with the same
// backpressure thresholds as the transport (1 MiB high, 256 KiB low).
function rawBlastSide(role, name, bytes) {
  return new Promise((resolve, reject) => {
    const signal = new BroadcastChannel(name);
    const pc = new RTCPeerConnection();
    const channel = pc.createDataChannel("blast", { negotiated: true, id: 0 });
    channel.binaryType = "arraybuffer";
    pc.onicecandidate = (e) => e.candidate && signal.postMessage({ candidate: e.candidate.toJSON() });
    let offered = false;
    signal.onmessage = async ({ data }) => {
      if (data.hello && role === "receiver") {
        signal.postMessage({ ready: true });
      } else if (data.ready && role === "sender" && !offered) {
        offered = true;
        await pc.setLocalDescription();
        signal.postMessage({ description: pc.localDescription.toJSON() });
      } else if (data.description) {
        await pc.setRemoteDescription(data.description);
        if (data.description.type === "offer") {
          await pc.setLocalDescription();
          signal.postMessage({ description: pc.localDescription.toJSON() });
        }
      } else if (data.candidate) {
        await pc.addIceCandidate(data.candidate).catch(() => {});
      }
    };
    if (role === "receiver") {
      let got = 0;
      let start = 0;
      channel.onmessage = ({ data }) => {
        if (got === 0) start = performance.now();
        got += data.byteLength;
        if (got >= bytes) resolve({ bytes: got, ms: performance.now() - start });
      };
      signal.postMessage({ ready: true });
    } else {
      signal.postMessage({ hello: true });
      const chunk = new Uint8Array(64 * 1024);
      channel.bufferedAmountLowThreshold = 256 * 1024;
      channel.onopen = () => {
        let sent = 0;
        const pump = () => {
          while (sent < bytes && channel.bufferedAmount < 1024 * 1024) {
            channel.send(chunk);
            sent += chunk.length;
          }
          if (sent >= bytes) resolve({ sent });
        };
        channel.onbufferedamountlow = pump;
        pump();
      };
    }
    setTimeout(() => reject(new Error("raw blast timed out")), 120_000);
  });
}

async function rawBlast(context, url, bytes) {
  const name = room("blast");
  const rx = await context.newPage();
  const tx = await context.newPage();
  await rx.goto(url + "?signaling=none&storage=memory&room=" + name);
  await tx.goto(url + "?signaling=none&storage=memory&room=" + name + "x");
  const received = rx.evaluate(`(${rawBlastSide})("receiver", ${JSON.stringify(name)}, ${bytes})`);
  await tx.evaluate(`(${rawBlastSide})("sender", ${JSON.stringify(name)}, ${bytes})`);
  const blast = await received;
  await rx.close();
  await tx.close();
  return blast.bytes / 1e6 / (blast.ms / 1000);
}

/** A new peer joins the room of `a` and receives its snapshot: MB/s. */
async function snapshotJoin(context, url, r, digest) {
  const b = await openPeerPage(context, url, `room=${r}&signaling=none&storage=memory`);
  await b.page.evaluate(() => {
    window.progress = [];
    window.cpc.peer.addEventListener("snapshot", (e) => {
      window.progress.push({ t: performance.now(), received: e.received, total: e.total });
    });
  });
  await b.page.waitForFunction((d) => window.cpc.peer.digest() === d, digest, { timeout: 120_000 });
  const progress = await b.page.evaluate(() => window.progress);
  await b.page.close();
  if (progress.length < 2) throw new Error("no snapshot transfer happened (log replayed instead)");
  const first = progress[0];
  const last = progress[progress.length - 1];
  return { bytes: last.total, MBps: (last.received - first.received) / 1e6 / ((last.t - first.t) / 1000) };
}

async function transfer(browser, url) {
  const entities = size(100_000, 5_000);
  const rounds = size(3, 1);
  const context = await browser.newContext();
  // a folds its log into a snapshot; then, alternately, a raw blast
  // between two tabs and a new tab joining a's room.
  const r = room("transfer");
  const a = await openPeerPage(context, url, `room=${r}&signaling=none&storage=memory`);
  await a.page.evaluate(async (entities) => {
    const value = "x".repeat(100);
    for (let i = 0; i < entities; i += 10_000) {
      const batch = [];
      for (let j = i; j < Math.min(entities, i + 10_000); j++) {
        batch.push(window.cpc.peer.set(`key${j}`, value));
      }
      await Promise.all(batch);
    }
  }, entities);
  // The page's peer folds its log past 50k events on its next tick.
  await a.page.waitForTimeout(1500);
  const digest = await a.page.evaluate(() => window.cpc.peer.digest());
  const blasts = [];
  const snapshots = [];
  let snapshotBytes = 0;
  for (let i = 0; i < rounds; i++) {
    blasts.push(await rawBlast(context, url, size(16, 4) * 1024 * 1024));
    const s = await snapshotJoin(context, url, r, digest);
    snapshots.push(s.MBps);
    snapshotBytes = s.bytes;
  }
  await context.close();
  return {
    entities,
    snapshot_bytes: snapshotBytes,
    snapshot_MBps: median(snapshots),
    raw_blast_MBps: median(blasts),
    ratio: median(snapshots) / median(blasts),
    rounds,
    snapshot_MBps_each: snapshots,
    raw_blast_MBps_each: blasts,
    goal: ">= 80% of the raw blast",
  };
}

async function appends(browser, url) {
  const total = size(200_000, 10_000);
  const batch = 10_000;
  const context = await browser.newContext();
  const p = await openPeerPage(context, url, `room=${room("appends")}&signaling=none`);
  const result = await p.page.evaluate(
    async ({ total, batch }) => {
      const start = performance.now();
      for (let i = 0; i < total; i += batch) {
        const writes = [];
        for (let j = i; j < i + batch; j++) writes.push(window.cpc.peer.set(`k${j}`, j));
        await Promise.all(writes);
      }
      const peerMs = performance.now() - start;
      // Raw IndexedDB: the same number of 40-byte records, one transaction
      // per batch, for reference.
      const db = await new Promise((resolve, reject) => {
        const open = indexedDB.open(`raw-${Math.random()}`, 1);
        open.onupgradeneeded = () => open.result.createObjectStore("log", { autoIncrement: true });
        open.onsuccess = () => resolve(open.result);
        open.onerror = () => reject(open.error);
      });
      const record = new Uint8Array(40);
      const rawStart = performance.now();
      for (let i = 0; i < total; i += batch) {
        const tx = db.transaction("log", "readwrite");
        const store = tx.objectStore("log");
        for (let j = 0; j < batch; j++) store.add(record);
        await new Promise((resolve) => (tx.oncomplete = resolve));
      }
      const rawMs = performance.now() - rawStart;
      return { peerMs, rawMs };
    },
    { total, batch },
  );
  await context.close();
  return {
    events: total,
    batch,
    events_per_s: total / (result.peerMs / 1000),
    raw_idb_records_per_s: total / (result.rawMs / 1000),
    goal: ">= 200k events/s",
  };
}

async function coldstart(browser, url) {
  const entities = size(100_000, 5_000);
  const context = await browser.newContext();
  const query = `room=${room("cold")}&signaling=none`;
  const p = await openPeerPage(context, url, query);
  await p.page.evaluate(async (entities) => {
    for (let i = 0; i < entities; i += 10_000) {
      const writes = [];
      for (let j = i; j < Math.min(entities, i + 10_000); j++) {
        writes.push(window.cpc.peer.set(`key${j}`, { n: j, name: `entity ${j}` }));
      }
      await Promise.all(writes);
    }
  }, entities);
  // Let the timer fold the log into a snapshot, then close cleanly.
  await p.page.waitForTimeout(2500);
  await p.page.evaluate(() => window.cpc.peer.close());
  const runs = [];
  for (let i = 0; i < size(5, 2); i++) {
    await p.page.reload();
    await p.page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
    runs.push(
      await p.page.evaluate(() => ({
        ready: performance.getEntriesByName("cpc:peer-ready")[0].startTime,
        open: performance.getEntriesByName("cpc:Peer.open")[0].duration,
        wasm: performance.getEntriesByName("cpc:wasm-ready")[0].startTime,
        entities: Object.keys(window.cpc.peer.state()).length,
      })),
    );
    await p.page.evaluate(() => window.cpc.peer.close());
  }
  // Unclean: a tab closed without close() leaves the log since the last
  // fold, which the next start replays.
  await p.page.reload();
  await p.page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
  const tail = size(20_000, 1_000);
  await p.page.evaluate(async (tail) => {
    const writes = [];
    for (let j = 0; j < tail; j++) writes.push(window.cpc.peer.set(`tail${j}`, j));
    await Promise.all(writes);
  }, tail);
  await p.page.reload();
  await p.page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
  const unclean = await p.page.evaluate(() => performance.getEntriesByName("cpc:peer-ready")[0].startTime);
  await context.close();
  return {
    entities: runs[0].entities,
    unclean_log_events: tail,
    unclean_navigation_to_ready_ms: unclean,
    navigation_to_ready_ms: median(runs.map((r) => r.ready)),
    peer_open_ms: median(runs.map((r) => r.open)),
    wasm_ready_ms: median(runs.map((r) => r.wasm)),
    runs: runs.length,
    goal: "<= 250 ms to ready",
  };
}

const SCENARIOS = { latency, transfer, appends, coldstart };

async function main() {
  const chosen = process.argv.slice(2);
  const names = chosen.length ? chosen : Object.keys(SCENARIOS);
  const server = await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      ...CHROMIUM_ARGS,
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
    ],
  });
  const results = {
    browser: `Chromium ${browser.version()}`,
    machine: `${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()}`,
    quick: QUICK,
  };
  try {
    for (const name of names) {
      const started = Date.now();
      results[name] = await SCENARIOS[name](browser, server.url);
      console.log(name, JSON.stringify(results[name], null, 1), `(${Date.now() - started} ms)`);
    }
  } finally {
    await browser.close();
    await server.stop();
  }
  await mkdir("target/bench", { recursive: true });
  await writeFile("target/bench/peer.json", JSON.stringify(results, null, 2));
}

await main();
