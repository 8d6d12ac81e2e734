// The page as people use it, in the run's engine: three peers (two tabs of
// one browser and a second browser through cpc-signal), conflicts shown and
// settled, a reconcile key, a peer that goes offline, a reload, a hostile
// value, and the page's own controls. Screenshots go to
// tests/e2e/screenshots/<engine>/ (ignored by git).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { mkdir } from "node:fs/promises";
import { serverAndBrowser, launch, openPeerPage, connected, converged, SCREENSHOTS as shots } from "./harness.mjs";

const env = serverAndBrowser();
const DESKTOP = { width: 1280, height: 800 };

let other;
let tabs;
/** Pages of the room: a and b are tabs of one browser, c another browser. */
let a, b, c;

before(async () => {
  await env.ready;
  await mkdir(shots, { recursive: true });
  other = await launch();
  tabs = await env.browser.newContext({ viewport: DESKTOP });
  const query = `room=scenarios-${Math.random().toString(36).slice(2)}&storage=memory`;
  a = await openPeerPage(tabs, env.server.url, query);
  b = await openPeerPage(tabs, env.server.url, query);
  const remote = await other.newContext({ viewport: DESKTOP });
  c = await openPeerPage(remote, env.server.url, query);
  for (const [x, y] of [[a, b], [a, c], [b, c]]) {
    await connected(x.page, y.id);
    await connected(y.page, x.id);
  }
});

after(async () => {
  await other?.close();
});

const all = () => [a, b, c];
const onAll = (fn, arg) => Promise.all(all().map((p) => p.page.evaluate(fn, arg)));

/** Drops and restores every connection of `pages` around `writes`. */
async function whileApart(pages, writes) {
  await Promise.all(pages.map((p) => p.page.evaluate(() => window.cpc.peer.goOffline())));
  await writes();
  await Promise.all(pages.map((p) => p.page.evaluate(() => window.cpc.peer.goOnline())));
}

test("1. three peers reach one state and digest after concurrent writes of every kind", async () => {
  await Promise.all([
    a.page.evaluate(async () => {
      const p = window.cpc.peer;
      await Promise.all([p.set("title", "from a"), p.increment("votes", 2), p.add("tags", "a"), p.set("gone", 1)]);
    }),
    b.page.evaluate(async () => {
      const p = window.cpc.peer;
      await Promise.all([p.set("title", "from b"), p.increment("votes", -1), p.add("tags", "b"), p.add("tags", "x")]);
    }),
    c.page.evaluate(async () => {
      const p = window.cpc.peer;
      await Promise.all([p.increment("votes", 10), p.add("tags", "c"), p.set("obj", { nested: [1, 2] })]);
    }),
  ]);
  await converged(all().map((p) => p.page));
  await Promise.all([
    b.page.evaluate(() => window.cpc.peer.remove("tags", "x")),
    c.page.evaluate(() => window.cpc.peer.delete("gone")),
  ]);
  const states = await converged(all().map((p) => p.page));
  const { title, ...rest } = states[0];
  assert.ok(["from a", "from b"].includes(title), title);
  assert.deepEqual(rest, { obj: { nested: [1, 2] }, tags: ["a", "b", "c"], votes: 11 });
  await a.page.screenshot({ path: path.join(shots, "page-1280x800.png") });
});

test("2. a multi-value conflict shows on every peer; resolving it on one clears it everywhere", async () => {
  await onAll(() => window.cpc.peer.setPolicy("doc/", "multi-value"));
  await whileApart([a, c], () =>
    Promise.all([
      a.page.evaluate(() => window.cpc.peer.set("doc/intro", "draft by a")),
      c.page.evaluate(() => window.cpc.peer.set("doc/intro", "draft by c")),
    ]),
  );
  for (const p of all()) {
    await p.page.waitForSelector('#conflicts-card article[data-key="doc/intro"] .sibling:nth-child(2)', {
      timeout: 30_000,
    });
  }
  const conflicts = await onAll(() => window.cpc.peer.conflicts());
  for (const list of conflicts) {
    assert.deepEqual(list.map((x) => x.candidates.map((k) => k.value).sort()), [["draft by a", "draft by c"]]);
  }
  await b.page.screenshot({ path: path.join(shots, "conflict-1280x800.png") });
  // Settle it with the page's own button, on b (which wrote neither).
  const keep = await b.page.evaluate(() =>
    [...document.querySelectorAll('#conflicts-card article[data-key="doc/intro"] .sibling')].findIndex((s) =>
      s.textContent.includes("draft by c"),
    ),
  );
  assert.ok(keep >= 0, "c's draft is shown");
  // Each peer tells its app the conflict ended ("conflict" with `resolved`).
  await onAll(() => {
    window.resolvedSeen = [];
    window.cpc.peer.addEventListener("conflict", (e) => window.resolvedSeen.push(...e.resolved));
  });
  await b.page.click(
    `#conflicts-card article[data-key="doc/intro"] .sibling:nth-child(${keep + 1}) button[data-action="keep"]`,
  );
  for (const p of all()) {
    await p.page.waitForFunction(() => window.cpc.peer.conflicts().length === 0, null, { timeout: 30_000 });
  }
  const states = await converged(all().map((p) => p.page));
  assert.equal(states[0]["doc/intro"], "draft by c");
  for (const seen of await onAll(() => window.resolvedSeen)) assert.deepEqual(seen, ["doc/intro"]);
});

test("3. a reconcile key: the resolver's handler answers and the log shows the exchange", async () => {
  // b and c write concurrently; the resolver is the lower id of the two,
  // the asker the higher. The asker puts "rec/" under "reconcile" for the
  // whole room, the resolver included. Each peer acts on a conflict at its
  // next gossip tick (once a second): the resolver settles it alone, the
  // asker asks the resolver (RECONCILIATION_REQUEST) unless that
  // resolution came first; asked, the resolver's handler answers
  // (RECONCILIATION_RESPONSE). Either way the handler's value wins. So:
  // - a stays offline: a peer that meets the conflict while the other
  //   origin is unreachable settles it alone, and in Firefox the writes
  //   came back through a before b and c had reconnected to each other;
  // - the resolver's page is kept busy as it comes back online, for a
  //   random 1.5-2.5 s: its overdue tick runs at once, before the link is
  //   up, and its next one a second later, while the asker's tick falls
  //   anywhere in that second. Ticks keep their phase, so without it every
  //   try of a run repeated one outcome (a run with no request in twelve
  //   tries, in either engine).
  // Conflicts are made on fresh keys until the asker got a response.
  const [resolver, asker] = b.id < c.id ? [b, c] : [c, b];
  await onAll(() =>
    window.cpc.peer.onReconcile((key, candidates) =>
      candidates.map((c) => c.value).sort().join(" + "),
    ),
  );
  await asker.page.evaluate(() => window.cpc.peer.setPolicy("rec/", "reconcile"));
  const logged = (p, text) =>
    p.page.evaluate((t) => document.getElementById("log-card").textContent.includes(t), text);
  await a.page.evaluate(() => window.cpc.peer.goOffline());
  for (let i = 0; i < 12 && !(await logged(asker, "RECONCILIATION_RESPONSE")); i++) {
    const key = `rec/total${i}`;
    await Promise.all([b, c].map((p) => p.page.evaluate(() => window.cpc.peer.goOffline())));
    await Promise.all([
      b.page.evaluate((k) => window.cpc.peer.set(k, "b's"), key),
      c.page.evaluate((k) => window.cpc.peer.set(k, "c's"), key),
    ]);
    await asker.page.evaluate(() => window.cpc.peer.goOnline());
    await resolver.page.evaluate((busy) => {
      window.cpc.peer.goOnline();
      for (const end = performance.now() + busy; performance.now() < end; );
    }, 1500 + Math.random() * 1000);
    for (const p of [b, c]) {
      await p.page.waitForFunction((k) => window.cpc.peer.get(k) === "b's + c's", key, { timeout: 30_000 });
    }
  }
  await a.page.evaluate(() => window.cpc.peer.goOnline());
  await converged(all().map((p) => p.page));
  for (const p of [asker, resolver]) {
    for (const text of ["RECONCILIATION_REQUEST", "RECONCILIATION_RESPONSE"]) {
      await p.page.waitForFunction(
        (t) => document.getElementById("log-card").textContent.includes(t),
        text,
        { timeout: 30_000 },
      );
    }
  }
  // The spec's shape, as the log shows it.
  const shown = await asker.page.evaluate(() => {
    const li = [...document.querySelectorAll("#log-card li")].find((li) =>
      li.textContent.includes("RECONCILIATION_REQUEST"),
    );
    return JSON.parse(li.querySelector("pre").textContent);
  });
  assert.equal(shown.type, "RECONCILIATION_REQUEST");
  assert.equal(shown.source_peer_id, asker.id);
  assert.equal(shown.target_peer_id, resolver.id);
  assert.ok(Array.isArray(shown.conflicting_events));
  // It names its key: its events are whole runs, which may hold others.
  assert.match(shown.key, /^rec\/total\d+$/);
  assert.ok(shown.conflicting_events.some((e) => e.key === shown.key));
});

test("4. a peer goes offline, both sides write, it comes back: nothing acknowledged is lost", async () => {
  // The page's own switch.
  await c.page.uncheck("#online");
  await a.page.waitForFunction((id) => !window.cpc.peer.peers().some((p) => p.id === id && p.state === "open"), c.id);
  await c.page.evaluate(async () => {
    for (let i = 0; i < 20; i++) await window.cpc.peer.set(`offline/c${i}`, i);
  });
  await a.page.evaluate(async () => {
    for (let i = 0; i < 20; i++) await window.cpc.peer.set(`offline/a${i}`, i);
    await window.cpc.peer.increment("votes", 100);
  });
  await c.page.check("#online");
  const states = await converged(all().map((p) => p.page), 45_000);
  for (let i = 0; i < 20; i++) {
    assert.equal(states[0][`offline/a${i}`], i);
    assert.equal(states[0][`offline/c${i}`], i);
  }
  assert.equal(states[0].votes, 111);
});

test("5. a reloaded tab restores its state and catches up", async () => {
  const context = await env.browser.newContext({ viewport: DESKTOP });
  const query = `room=reload-${Math.random().toString(36).slice(2)}`;
  const x = await openPeerPage(context, env.server.url, query);
  const y = await openPeerPage(context, env.server.url, query);
  await connected(x.page, y.id);
  await x.page.evaluate(() => window.cpc.peer.set("kept", "before reload"));
  await converged([x.page, y.page]);
  await x.page.evaluate(() => window.cpc.peer.close());
  await x.page.reload();
  await y.page.evaluate(() => window.cpc.peer.set("missed", "during reload"));
  await x.page.waitForSelector("body[data-ready=true]");
  assert.equal(await x.page.evaluate(() => window.cpc.peer.id), x.id);
  await x.page.waitForSelector('#state-table tr[data-key="missed"]', { timeout: 30_000 });
  const rows = await x.page.evaluate(() =>
    [...document.querySelectorAll("#state-table tbody tr")].map((t) => t.dataset.key),
  );
  assert.deepEqual(rows, ["kept", "missed"]);
  await context.close();
});

test("6. a hostile value shows as text on the other peers and runs nothing", async () => {
  const hostile = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
  await a.page.evaluate((v) => window.cpc.peer.set("hostile", v), hostile);
  for (const p of [b, c]) {
    const cell = '#state-table tr[data-key="hostile"] td.value';
    await p.page.waitForSelector(cell, { timeout: 30_000 });
    assert.equal(await p.page.textContent(cell), JSON.stringify(hostile));
    await p.page.waitForTimeout(300);
    assert.equal(await p.page.evaluate(() => window.__pwned), undefined);
    assert.equal(await p.page.evaluate(() => document.querySelectorAll("#app img, #app script").length), 0);
  }
});

test("7. the page's controls change the state on another peer", async () => {
  await a.page.evaluate(async () => {
    await window.cpc.peer.increment("clicks", 1);
    await window.cpc.peer.add("labels", "first");
  });
  await a.page.fill('form.write input[name="key"]', "typed");
  await a.page.selectOption('form.write select[name="op"]', "set");
  await a.page.fill('form.write input[name="value"]', '{"by":"hand"}');
  await a.page.click('form.write button[type="submit"]');
  await c.page.waitForFunction(() => window.cpc.peer.get("typed")?.by === "hand", null, { timeout: 30_000 });
  await a.page.click('#state-table tr[data-key="clicks"] button[data-action="+1"]');
  await c.page.waitForFunction(() => window.cpc.peer.get("clicks") === 2, null, { timeout: 30_000 });
  await a.page.fill('#state-table tr[data-key="labels"] input', '"typed-label"');
  // Enter in a row's value box does what its first button does.
  await a.page.press('#state-table tr[data-key="labels"] input', "Enter");
  await c.page.waitForFunction(() => window.cpc.peer.get("labels")?.includes("typed-label"), null, {
    timeout: 30_000,
  });
  await a.page.click('#state-table tr[data-key="typed"] button[data-action="delete"]');
  await c.page.waitForFunction(() => window.cpc.peer.get("typed") === undefined, null, { timeout: 30_000 });
  await converged(all().map((p) => p.page));
  const phone = await tabs.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(a.page.url());
  await phone.waitForSelector("body[data-ready=true]");
  await phone.waitForTimeout(1500);
  await phone.screenshot({ path: path.join(shots, "page-390-phone.png"), fullPage: true });
  assert.deepEqual([...a.errors, ...b.errors, ...c.errors], []);
});
