#!/usr/bin/env bash
# The bench build of the wasm: the library with feature `bench` (its
# benchmark entry points) into target/bench/pkg, optimized with the same
# `wasm-opt -Oz` as the shipped package, so the figures are of the build
# users get. Used by scripts/bench.sh and bench/browser/workloads.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-unknown-unknown --lib --features bench
wasm-bindgen --target web --out-dir target/bench/pkg --out-name cpc_sync \
  target/wasm32-unknown-unknown/release/cpc_sync.wasm
bash scripts/wasm-opt.sh target/bench/pkg/cpc_sync_bg.wasm
