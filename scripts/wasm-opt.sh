#!/usr/bin/env bash
# Optimizes a wasm-bindgen output in place, as the shipped package is:
# `scripts/wasm-opt.sh pkg/cpc_sync_bg.wasm`. wasm-opt from npm's binaryen:
# Debian's (108) rewrites wasm-bindgen's externref table into one the
# browser refuses. CPC_WASM_NAMES=1 keeps the functions' names (-g), for a
# profile (bench/long-tasks.mjs); the shipped build has none.
set -euo pipefail
cd "$(dirname "$0")/.."
# The producers and target-features sections name the toolchain for
# other tools; a browser reads neither (~200 B gzipped).
node_modules/.bin/wasm-opt -Oz --converge ${CPC_WASM_NAMES:+-g} \
  --strip-producers --strip-target-features \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  --enable-simd \
  "$1" -o "$1"
