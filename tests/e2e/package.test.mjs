// The npm package as users consume it: `npm pack`, installed from the
// tarball into a scratch Vite app in a temporary folder, built by Vite, and
// loaded in a headless browser, where its peer syncs with the project's page.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, writeFile, rm, readdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  serverAndBrowser,
  startServer,
  startStaticServer,
  openPage,
  openPeerPage,
  connected,
  root,
} from "./harness.mjs";

const run = promisify(execFile);
const env = serverAndBrowser();
let scratch;
let app;
let server;

after(async () => {
  await app?.stop();
  await server?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const APP_JS = `
import init, { Peer } from "cpc-sync";

await init();
const params = new URLSearchParams(location.search);
const peer = await Peer.open({
  room: params.get("room"),
  signaling: params.get("signaling"),
  storage: "memory",
});
window.peer = peer;
document.body.dataset.ready = "true";
`;

test("npm pack → a Vite app → a peer that syncs with the project's page", async () => {
  await env.ready;
  scratch = await mkdtemp(path.join(os.tmpdir(), "cpc-sync-vite-"));
  const { stdout } = await run("npm", ["pack", path.join(root, "pkg"), "--pack-destination", scratch, "--silent"]);
  const tarball = path.join(scratch, stdout.trim().split("\n").pop());
  assert.match(tarball, /cpc-sync-.*\.tgz$/);

  const dir = path.join(scratch, "app");
  await run("mkdir", ["-p", dir]);
  await writeFile(path.join(dir, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }));
  await writeFile(
    path.join(dir, "index.html"),
    `<!doctype html><html><head><link rel="icon" href="data:,"><script type="module" src="./main.js"></script></head><body></body></html>`,
  );
  await writeFile(path.join(dir, "main.js"), APP_JS);
  await run("npm", ["install", tarball, "--no-audit", "--no-fund", "--prefer-offline", "--silent"], { cwd: dir });
  await run(path.join(root, "node_modules/.bin/vite"), ["build", "--logLevel", "warn"], { cwd: dir });
  const assets = await readdir(path.join(dir, "dist", "assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `Vite emitted the wasm: ${assets}`);

  app = await startStaticServer(path.join(dir, "dist"));
  // The app is of another origin than the signaling server: the app's
  // own server lets it in with ORIGINS, as the README tells.
  server = await startServer(0, { ORIGINS: new URL(app.url).origin });
  const room = `package-${Math.random().toString(36).slice(2)}`;
  const signaling = new URL("/signal", server.url).href.replace(/^http/, "ws");
  // The app in one browser context, the project's page in another.
  const appContext = await env.browser.newContext();
  const { page, errors } = await openPage(appContext, `${app.url}?room=${room}&signaling=${signaling}`);
  await page.waitForSelector("body[data-ready=true]", { state: "attached", timeout: 20_000 });
  const project = await openPeerPage(await env.browser.newContext(), server.url, `room=${room}&storage=memory`);
  await connected(project.page, await page.evaluate(() => window.peer.id));

  await page.evaluate(() => window.peer.set("from-app", "hello from the package"));
  await project.page.waitForFunction(() => window.cpc.peer.get("from-app") === "hello from the package", null, {
    timeout: 30_000,
  });
  await project.page.evaluate(() => window.cpc.peer.increment("from-page", 7));
  await page.waitForFunction(() => window.peer.get("from-page") === 7, null, { timeout: 30_000 });
  assert.deepEqual(errors, []);
});
