#!/usr/bin/env bash
# The bench build of the wasm: the library with feature `bench` (its
# benchmark entry points) into target/bench/pkg, optimized with the same
# `wasm-opt -Oz` as the shipped package, so the figures are of the build
# users get. Used by scripts/bench.sh and bench/browser/workloads.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-unknown-unknown --lib --features bench
wasm=target/wasm32-unknown-unknown/release/cpc_sync.wasm
# wasm-bindgen and wasm-opt take ~30 s: skipped when target/bench/pkg was
# made from these very bytes, with the same names setting (npm test's
# benchmark smokes build it one after the other).
stamp="$(md5sum < "$wasm") names=${CPC_WASM_NAMES:-}"
if [ -f target/bench/pkg/cpc_sync_bg.wasm ] && [ "$(cat target/bench/pkg/.made-from 2>/dev/null)" = "$stamp" ]; then
  echo "bench-wasm: target/bench/pkg is up to date"
  exit 0
fi
rm -f target/bench/pkg/.made-from
wasm-bindgen --target web --out-dir target/bench/pkg --out-name cpc_sync "$wasm"
bash scripts/wasm-opt.sh target/bench/pkg/cpc_sync_bg.wasm
echo "$stamp" > target/bench/pkg/.made-from
