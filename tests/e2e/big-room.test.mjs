// A room bigger than a full mesh, in real browsers: 12 pages (tabs of two
// Chromium processes and one Firefox) join one room through cpc-signal.
// Each keeps at most 8 open links (a partial view); a write from every page
// reaches every page by relay; then 3 pages leave and 3 join, and all
// converge with every acknowledged write kept, each showing the 12 who are
// here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverAndBrowser, launch, openPeerPage, converged } from "./harness.mjs";

const env = serverAndBrowser();

const PER_BROWSER = 4;
const MAX_LINKS = 8;

/** Open links of a page's peer (the room's server peer aside). */
const openLinks = (page) =>
  page.evaluate(() => window.cpc.peer.peers().filter((p) => p.state === "open" && !p.server).length);

test("12 pages in 3 browsers: at most 8 links each, every write everywhere, through leaves and joins", async () => {
  await env.ready;
  const room = `big-${Math.random().toString(36).slice(2)}`;
  const query = `room=${room}&storage=memory`;
  const browsers = [env.browser, await launch("chromium"), await launch("firefox")];
  try {
    const contexts = await Promise.all(browsers.map((b) => b.newContext()));
    const open = (i) => openPeerPage(contexts[i % contexts.length], env.server.url, query);
    const pages = [];
    for (let i = 0; i < browsers.length * PER_BROWSER; i++) pages.push(await open(i));

    // The most links any page held, sampled all along.
    let most = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const p of pages) {
          if (p.page.isClosed?.()) continue;
          const n = await openLinks(p.page).catch(() => 0);
          most = Math.max(most, n);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();

    const written = [];
    const write = async (p) => {
      // Resolved: acknowledged (the write is this page's, kept in memory).
      await p.page.evaluate((id) => window.cpc.peer.set(`w-${id}`, id), p.id);
      written.push(p.id);
    };
    await Promise.all(pages.map(write));
    let states = await converged(
      pages.map((p) => p.page),
      120_000,
    );
    assert.equal(Object.keys(states[0]).length, 12);

    // Three leave (one of each browser) and three join.
    const leaving = [pages[0], pages[5], pages[10]];
    for (const p of leaving) await p.page.close();
    const staying = pages.filter((p) => !leaving.includes(p));
    pages.length = 0;
    pages.push(...staying);
    for (let i = 0; i < 3; i++) pages.push(await open(i));
    await Promise.all(pages.slice(-3).map(write));
    await Promise.all(staying.slice(0, 3).map((p) => p.page.evaluate(() => window.cpc.peer.increment("n", 1))));
    states = await converged(
      pages.map((p) => p.page),
      120_000,
    );
    // Who is here, on every page: the 12 present, none of those who left
    // (presence crosses the partial view by relay, and goes with a leave).
    const here = pages.map((p) => p.id).sort();
    await Promise.all(
      pages.map((p) =>
        p.page.waitForFunction(
          (here) => JSON.stringify(window.cpc.peer.presence().map((e) => e.id).sort()) === JSON.stringify(here),
          here,
          { timeout: 40_000 },
        ),
      ),
    );
    sampling = false;
    await sampler;

    const expected = Object.fromEntries(written.map((id) => [`w-${id}`, id]));
    assert.deepEqual(states[0], { ...expected, n: 3 });
    assert.equal(written.length, 15);
    assert.ok(most <= MAX_LINKS, `a page held ${most} open links`);
    const links = await Promise.all(pages.map((p) => openLinks(p.page)));
    const known = await Promise.all(pages.map((p) => p.page.evaluate(() => window.cpc.peer.peers().length)));
    console.log(`open links per page ${links}; peers known ${known}; most links seen ${most}`);
    assert.ok(
      links.every((n) => n >= 1 && n <= MAX_LINKS),
      `open links per page: ${links}`,
    );
  } finally {
    await Promise.all(browsers.slice(1).map((b) => b.close()));
  }
});
