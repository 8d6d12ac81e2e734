// What every benchmark result records about where it ran: the day, the
// machine, the browser, the commit, and the version of every library it
// measured, so a figure can be traced to what produced it.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const PACKAGES = [
  "yjs",
  "y-indexeddb",
  "y-webrtc",
  "@automerge/automerge",
  "@automerge/automerge-repo",
  "@automerge/automerge-repo-storage-indexeddb",
  "@automerge/automerge-repo-network-broadcastchannel",
  "loro-crdt",
  "playwright-core",
  "vite",
];

function packageVersion(name) {
  try {
    return JSON.parse(readFileSync(path.join(root, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return null;
  }
}

function crateVersion() {
  const toml = readFileSync(path.join(root, "Cargo.toml"), "utf8");
  return /^version = "(.*)"$/m.exec(toml)?.[1] ?? null;
}

function commit() {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root }).toString().trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: root })
      .toString()
      .trim();
    return dirty ? `${head}+changes` : head;
  } catch {
    return null;
  }
}

/** The record's header; `browser` is e.g. `Chromium 156.0.7526.0`. */
export function meta({ browser = null, quick = false } = {}) {
  const versions = { "cpc-sync": crateVersion() };
  for (const name of PACKAGES) {
    const v = packageVersion(name);
    if (v) versions[name] = v;
  }
  return {
    date: new Date().toISOString().slice(0, 10),
    commit: commit(),
    machine: `${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}`,
    node: process.version,
    browser,
    versions,
    quick,
  };
}
