// Seals verified in Web Workers (`verifyWorkers`): a newcomer takes a
// room's signed history, or the snapshot of a room whose log was folded,
// with its workers verifying the seals, and holds the same state as a page
// verifying on its own thread, or one whose workers cannot start.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverAndBrowser } from "./harness.mjs";

const env = serverAndBrowser();

const BURSTS = 600;
const PER_BURST = 5;

/** Counts the page's workers, the seals posted to them (a batch is
 * `[batch, ArrayBuffer]`, 128 bytes a seal) and the jobs posted to its
 * compressor worker (`[job, "gzip" | "gunzip", ArrayBuffer, limit]`);
 * `broken`: none starts; `halting`: every second verifier worker fails
 * to (a pool of two starts one, and must stop it), counted from the last
 * reset of `window.workersAsked`; the compressor worker (by its name)
 * starts unless `broken`, whenever the page's peer starts it. */
function install(workers) {
  const Real = window.Worker;
  window.workersStarted = 0;
  window.sealsPosted = 0;
  window.batchesPosted = 0;
  window.compressorJobs = { gzip: 0, gunzip: 0 };
  const post = Real.prototype.postMessage;
  Real.prototype.postMessage = function (message, ...rest) {
    if (Array.isArray(message) && typeof message[0] === "number" && message[1] instanceof ArrayBuffer) {
      window.batchesPosted += 1;
      window.sealsPosted += message[1].byteLength / 128;
    }
    if (Array.isArray(message) && message[1] in window.compressorJobs && message[2] instanceof ArrayBuffer) {
      window.compressorJobs[message[1]] += 1;
    }
    return post.call(this, message, ...rest);
  };
  window.workersAsked = 0;
  window.compressorsStarted = 0;
  window.Worker = class extends Real {
    constructor(...args) {
      const compressor = args[1]?.name === "cpc-sync compressor";
      if (!compressor) window.workersAsked += 1;
      if (workers === "broken" || (workers === "halting" && !compressor && window.workersAsked % 2 === 0)) {
        throw new Error("no workers on this page");
      }
      super(...args);
      if (compressor) window.compressorsStarted += 1;
      else window.workersStarted += 1;
    }
  };
}

/** A page of the app in a context of its own kind of `Worker`. */
async function page(context, workers = "counted") {
  const tab = await context.newPage();
  const warnings = [];
  const errors = [];
  tab.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
  tab.on("pageerror", (e) => errors.push(String(e)));
  await tab.goto(env.server.url);
  await tab.waitForSelector("body[data-ready=true]");
  return { tab, warnings, errors };
}

/** A writer with `bursts` sealed runs (one per task) of `per` writes in
 * `room`; `options` for its `Peer.open`, and `settle` ms to wait after. */
async function writer(context, room, { bursts = BURSTS, per = PER_BURST, options = {}, settle = 0, folded = false } = {}) {
  const { tab } = await page(context);
  const clock = await tab.evaluate(
    async ({ room, bursts, per, options, settle, folded }) => {
      const open = () => window.cpc.module.Peer.open({ room, storage: "memory", ...options });
      window.peer = await open();
      // `folded`: a peer takes the writes as they come and goes, so that
      // the writer's folds take them all (alone, it would keep its latest
      // own writes, which no peer has, in its log, to send as events).
      const witness = folded ? await open() : null;
      for (let b = 0; b < bursts; b++) {
        const writes = [];
        for (let k = 0; k < per; k++) writes.push(window.peer.set(`k${b}-${k}`, b * per + k));
        await Promise.all(writes);
      }
      if (witness) {
        while (witness.digest() !== window.peer.digest()) await new Promise((r) => setTimeout(r, 20));
        await witness.close();
      }
      await new Promise((r) => setTimeout(r, settle));
      return window.peer.clock();
    },
    { room, bursts, per, options, settle, folded },
  );
  return { tab, clock };
}

/** A newcomer opening `room` with `options`, until its clock covers `clock`. */
async function newcomer(tab, room, options, clock) {
  return tab.evaluate(
    async ({ room, options, clock }) => {
      // The page's own peer started its workers already: ours are those
      // after.
      const before = window.workersStarted;
      window.workersAsked = 0;
      window.peer = await window.cpc.module.Peer.open({ room, storage: "memory", ...options });
      let snapshots = 0;
      window.peer.addEventListener("snapshot", () => (snapshots += 1));
      const covers = () => Object.entries(clock).every(([p, n]) => (window.peer.clock()[p] ?? 0) >= n);
      const deadline = performance.now() + 60_000;
      while (!covers() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const state = window.peer.state();
      return {
        covers: covers(),
        keys: Object.keys(state).length,
        workers: window.workersStarted - before,
        snapshots,
        seals: window.sealsPosted,
        batches: window.batchesPosted,
        inflated: window.compressorJobs.gunzip,
        compressors: window.compressorsStarted,
        state,
      };
    },
    { room, options, clock },
  );
}

for (const [name, options, workers, expected] of [
  ["in two Web Workers", { verifyWorkers: 2 }, "counted", 2],
  ["on the page's thread (verifyWorkers: 0)", { verifyWorkers: 0 }, "counted", 0],
  ["on the page's thread when no worker can start", { verifyWorkers: 2 }, "broken", 0],
  ["on the page's thread when its second worker cannot start", { verifyWorkers: 2 }, "halting", 1],
]) {
  test(`a newcomer takes a room's sealed history with its seals verified ${name}`, async () => {
    const context = await env.browser.newContext();
    // Before any page of the context runs (the writer's too: it verifies
    // nothing, having nothing to take in).
    await context.addInitScript(`(${install})(${JSON.stringify(workers)})`);
    const room = `verify-${expected}-${workers}-${Date.now()}`;
    const { tab: writerTab, clock } = await writer(context, room);
    const { tab, warnings, errors } = await page(context, workers);
    const got = await newcomer(tab, room, options, clock);
    assert.ok(got.covers, "the newcomer holds every event");
    assert.equal(got.keys, BURSTS * PER_BURST);
    assert.equal(got.workers, expected, "verifier workers started");
    const theirs = await writerTab.evaluate(() => window.peer.state());
    assert.deepEqual(got.state, theirs, "the same state as the writer's");
    const fellBack = warnings.some((w) => w.includes("verified on the page's thread"));
    if (workers === "broken" || workers === "halting") {
      assert.ok(fellBack, `a warning says why: ${warnings.join(" | ")}`);
    } else {
      assert.ok(!fellBack, `no fallback: ${warnings.join(" | ")}`);
    }
    assert.deepEqual(errors, [], "no error in the page (a started worker of a failed pool is stopped)");
    await context.close();
  });
}

// A room written in 1,100 one-write runs whose log is folded: a newcomer
// gets its snapshot, 1,100 seals, handed to its workers in batches of at
// most 1,024, and loads it once every verdict is back. The snapshot goes
// gzipped: the writer gzips it and the newcomer inflates it in their
// compressor workers, or on their threads where no worker starts.
for (const [name, workers, posted] of [
  ["in two Web Workers", "counted", true],
  ["on the page's thread when no worker can start", "broken", false],
]) {
  test(`a newcomer takes a room's snapshot with its seals verified ${name}`, async () => {
    const context = await env.browser.newContext();
    await context.addInitScript(`(${install})(${JSON.stringify(workers)})`);
    const room = `verify-snapshot-${workers}-${Date.now()}`;
    const runs = 1_100;
    // Folded at the second gossip tick after the writes (the first sees
    // them come), within a second each.
    const { tab: writerTab, clock } = await writer(context, room, {
      bursts: runs,
      per: 1,
      options: { compactAfter: 100 },
      settle: 2_500,
      folded: true,
    });
    const { tab, warnings, errors } = await page(context, workers);
    const got = await newcomer(tab, room, { verifyWorkers: 2 }, clock);
    assert.ok(got.covers, "the newcomer holds every event");
    assert.equal(got.keys, runs);
    assert.ok(got.snapshots > 0, "the state came as a snapshot");
    const gzipped = await writerTab.evaluate(() => window.compressorJobs.gzip);
    if (posted) {
      assert.equal(got.seals, runs, "every seal went to the workers");
      assert.equal(got.batches, 2, "in two batches");
      assert.equal(gzipped, 1, "the writer gzipped its snapshot in its compressor worker");
      assert.equal(got.inflated, 1, "the newcomer inflated it in its compressor worker");
      assert.equal(got.compressors, 1, "one compressor worker a page");
      assert.ok(!warnings.some((w) => w.includes("gzipped on the page's thread")), warnings.join(" | "));
    } else {
      assert.equal(got.seals, 0, "none posted");
      assert.deepEqual([gzipped, got.inflated, got.compressors], [0, 0, 0], "no compressor worker");
      const inPlace = warnings.some((w) => w.includes("snapshots are gzipped on the page's thread"));
      assert.ok(inPlace, `a warning says why: ${warnings.join(" | ")}`);
    }
    const theirs = await writerTab.evaluate(() => window.peer.state());
    assert.deepEqual(got.state, theirs, "the same state as the writer's");
    assert.deepEqual(errors, [], "no error in the page");
    await context.close();
  });
}
