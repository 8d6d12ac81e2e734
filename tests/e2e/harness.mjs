// Shared pieces of the end-to-end suite: a real cpc-signal process and a
// real headless Chromium (Debian's, driven by playwright-core).
import { spawn } from "node:child_process";
import { before, after } from "node:test";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Starts target/release/cpc-signal on a free port; resolves to { url, stop }. */
export async function startServer() {
  const child = spawn(path.join(root, "target/release/cpc-signal"), [], {
    env: { ...process.env, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cpc-signal did not start: ${output}`)), 10_000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const match = output.match(/listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`cpc-signal exited with ${code}: ${output}`)));
  });
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/** Opens `url` in a new page and collects console errors and page errors. */
export async function openPage(browser, url) {
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  return { page, errors };
}

export const crateVersion = async () => {
  const { readFile } = await import("node:fs/promises");
  const toml = await readFile(path.join(root, "Cargo.toml"), "utf8");
  return toml.match(/^version = "(.*)"$/m)[1];
};

/**
 * Registers before/after hooks that start a cpc-signal and a Chromium for
 * the file's tests; returns an object whose `server` and `browser` are set
 * once `ready` resolves (other hooks of the file await it).
 */
export function serverAndBrowser() {
  const env = {};
  let started;
  env.ready = new Promise((resolve, reject) => (started = { resolve, reject }));
  before(async () => {
    try {
      env.server = await startServer();
      env.browser = await launchBrowser();
      started.resolve();
    } catch (error) {
      started.reject(error);
      throw error;
    }
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}
