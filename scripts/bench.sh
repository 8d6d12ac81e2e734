#!/usr/bin/env bash
# `npm run bench`: the release package, a bench build of the wasm (feature
# `bench`, in target/bench/pkg), then cpc-sync beside Yjs, Automerge and
# Loro in headless Chromium (bench/browser/compare.mjs), then BENCHMARKS.md's
# side-by-side tables regenerated from the results (bench/report.mjs).
# CPC_BENCH_QUICK=1 runs small sizes (npm test does, as a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
# compare.mjs builds both packages first.
node bench/browser/compare.mjs
if [ "${CPC_BENCH_QUICK:-}" = 1 ]; then
  node bench/report.mjs --dry-run
  # A room as it ages, Yjs's and Loro's side (cpc-sync's is an example
  # the native clippy builds).
  node bench/room-age.mjs list_keys 300
elif [ -z "${CPC_BENCH_ONLY:-}" ]; then
  node bench/report.mjs
fi
