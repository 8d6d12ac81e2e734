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
# --low-memory-unused: a constant added to an address becomes the access's
# offset, which differs only where the sum wraps past 4 GiB into the low
# 1 KiB, which Rust's wasm never touches (its stack lies below 1 MiB and
# grows down to it, its data above): 2.1 KB gzipped less (2026-12-07).
node_modules/.bin/wasm-opt -Oz --converge ${CPC_WASM_NAMES:+-g} \
  --low-memory-unused \
  --strip-producers --strip-target-features \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  --enable-simd \
  "$1" -o "$1"
