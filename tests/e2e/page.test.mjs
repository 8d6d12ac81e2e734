// The page as a person opens it: served by cpc-signal, rendered by wasm.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { serverAndBrowser, openPage, crateVersion, startServer, SCREENSHOTS } from "./harness.mjs";

const env = serverAndBrowser();


test("the page loads the wasm module and shows the engine version", async () => {
  const { page, errors } = await openPage(env.browser, env.server.url);
  await page.waitForSelector("body[data-ready]");
  assert.equal(await page.getAttribute("body", "data-ready"), "true");
  const protocol = await page.evaluate(() => window.cpc.module.protocolVersion());
  assert.ok(Number.isInteger(protocol) && protocol > 0, `${protocol}`);
  assert.equal(await page.textContent("#version"), `v${await crateVersion()} · protocol ${protocol}`);
  assert.equal(await page.evaluate(() => typeof window.cpc.module.version), "function");
  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, "page.png") });
  assert.deepEqual(errors, []);
});

test("the server serves the wasm with its content type; /signal wants a WebSocket", async () => {
  const wasm = await fetch(new URL("/pkg/cpc_sync_bg.wasm", env.server.url));
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get("content-type"), "application/wasm");
  const signal = await fetch(new URL("/signal", env.server.url));
  assert.ok(signal.status >= 400 && signal.status < 500, `plain GET /signal: ${signal.status}`);
  const discovery = await fetch(new URL("/.well-known/cpc-signal", env.server.url));
  assert.equal((await discovery.json()).signaling, "/signal", "pages find the signaling endpoint");
  const missing = await fetch(new URL("/no-such-file", env.server.url));
  assert.equal(missing.status, 404);
});

test("a tab switched offline stays offline across a reload, until switched back", async () => {
  const context = await env.browser.newContext();
  const url = new URL("/?room=offline-reload&storage=memory", env.server.url).href;
  const tabs = [];
  for (let i = 0; i < 2; i++) {
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector("body[data-ready=true]");
    tabs.push(page);
  }
  const [away, here] = tabs;
  await away.uncheck("#online");
  await away.reload();
  await away.waitForSelector("body[data-ready=true]");
  assert.equal(await away.isChecked("#online"), false, "the switch shows it offline");
  // Offline, it cannot know who else is here.
  assert.equal(await away.evaluate(() => window.cpc.peer.presence().length), 1, "itself only");
  await away.evaluate(() => window.cpc.peer.set("while-away", 1));
  await here.waitForTimeout(3000);
  assert.equal(await here.evaluate(() => window.cpc.peer.get("while-away")), undefined, "not sent while offline");
  await away.check("#online");
  await here.waitForFunction(() => window.cpc.peer.get("while-away") === 1, null, { timeout: 30_000 });
  await context.close();
});

// A pasted link that differs in its fragment only did not reload the page:
// the tab showed the secret link and wrote to the public room.
test("a room's secret pasted into the tab opens that room, with a switch of its own", async () => {
  const page = await env.browser.newPage();
  await page.goto(new URL("/?room=&storage=memory", env.server.url).href);
  await page.waitForSelector("body[data-ready=true]");
  assert.equal(await page.textContent("#room"), "demo", "an empty room is the default one");
  await page.goto(new URL("/?room=pasted&storage=memory", env.server.url).href);
  await page.waitForSelector("body[data-ready=true]");
  await page.uncheck("#online");
  await page.evaluate(() => (location.hash = "secret=a-pasted-secret"));
  await page.waitForFunction(() => document.querySelector("#room")?.textContent === "pasted (secret)");
  await page.waitForSelector("body[data-ready=true]");
  assert.equal(await page.isChecked("#online"), true, "the public room's switch is its own");
  await page.close();
});

// What no call could be told of reaches the app as "error" events; the
// page listened to none, so a person saw "ready" with the server gone.
test("the page tells of errors: the signaling server going away", async () => {
  const server = await startServer();
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(new URL("/?room=told&storage=memory", server.url).href);
    await page.waitForSelector("body[data-ready=true]");
    await server.stop();
    await page.waitForSelector("#notice:not([hidden])", { timeout: 20_000 });
    assert.match(await page.textContent("#notice"), /^TRANSPORT: /);
    assert.match(await page.textContent("#app"), /error/, "and the protocol log has it");
  } finally {
    await context.close();
    await server.stop();
  }
});

// A page whose clock is hours off had its writes refused by every peer,
// or refused theirs, told by nothing but a counter in the peers' table.
test("the page tells of a peer whose clock is hours off", async () => {
  const room = `skew-${Math.random().toString(36).slice(2)}`;
  const url = new URL(`/?room=${room}&storage=memory`, env.server.url).href;
  const contexts = [await env.browser.newContext(), await env.browser.newContext()];
  try {
    // The second page's clock runs two hours ahead.
    await contexts[1].addInitScript(() => {
      const now = Date.now;
      Date.now = () => now() + 7_200_000;
    });
    const pages = [];
    for (const context of contexts) {
      const page = await context.newPage();
      await page.goto(url);
      await page.waitForSelector("body[data-ready=true]");
      pages.push(page);
    }
    for (const page of pages) {
      await page.waitForSelector("#notice:not([hidden])", { timeout: 30_000 });
      assert.match(await page.textContent("#notice"), /^CLOCK_SKEW: the clock of peer \w+ is 7\d{3} s (ahead of|behind) this device's/);
    }
  } finally {
    await Promise.all(contexts.map((c) => c.close()));
  }
});
