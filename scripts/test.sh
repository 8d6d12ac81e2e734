#!/usr/bin/env bash
# `npm test`: every check, in order, stopping at the first failure. CI runs
# exactly this (`.ci/run`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export GECKODRIVER=${GECKODRIVER:-${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver}
# wasm-bindgen-test-runner gives a whole test file 20 s by default, then
# kills the driver with no word of which test was slow. The browser tests
# carry their own deadlines (up to 30 s for a WebRTC link), and a file runs
# several: let those deadlines speak, with the runner's as a last resort.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-180}

step() {
  local name=$1
  shift
  printf '\n=== %s\n' "$name"
  local start=$SECONDS
  "$@"
  printf '=== %s: ok (%ss)\n' "$name" "$((SECONDS - start))"
}

# The protocol core must build natively with no web crate at all.
core_has_no_web_crates() {
  local host
  host=$(rustc -vV | sed -n 's/^host: //p')
  local tree
  tree=$(cargo tree -e normal --prefix none --target "$host" -p cpc-sync)
  if grep -E '^(web-sys|js-sys|wasm-bindgen) ' <<<"$tree"; then
    echo "the native library depends on a web crate (above)" >&2
    return 1
  fi
  echo "native dependency tree: $(wc -l <<<"$tree") crates, none of web-sys, js-sys, wasm-bindgen"
}

step "setup" bash scripts/setup.sh test
step "rustfmt" cargo fmt --all --check
step "clippy (native)" cargo clippy --all-targets --features server -- -D warnings
# `--profile test` lints the library's unit tests too; of the integration
# tests only tests/browser/ is for wasm32 (tests/native/ uses native-only
# dev deps).
step "clippy (wasm32)" cargo clippy --target wasm32-unknown-unknown --profile test \
  --lib --test browser --features bench -- -D warnings
step "core has no web crates" core_has_no_web_crates
# The simulator runs 500 seeds here (a soak runs 10,000: see README).
step "native tests" env CPC_SIM_SEEDS="${CPC_SIM_SEEDS:-500}" \
  CPC_ADVERSARY_SEEDS="${CPC_ADVERSARY_SEEDS:-150}" cargo test --profile ci --features server
# wasm-bindgen-test-runner drives the first browser whose driver is set,
# Firefox's before Chromium's: each run unsets the other's.
step "browser tests (wasm-bindgen-test, headless Chromium)" env -u GECKODRIVER \
  cargo test --target wasm32-unknown-unknown --test browser
step "browser tests (wasm-bindgen-test, headless Firefox)" env -u CHROMEDRIVER \
  cargo test --target wasm32-unknown-unknown --test browser
# The page's wasm as users get it. The suites below run the cpc-signal
# the native suite built (the `ci` profile: opt-level 2, with debug
# assertions and overflow checks), not a release build of it: that would
# compile the server's dependencies once more, with LTO (two minutes of
# CI); `npm start` and the full benchmarks build and run the release one.
step "release build" bash scripts/build.sh --no-server
step "types (the README's examples against the package's .d.ts, tsc --strict)" \
  node_modules/.bin/tsc -p tests/types
export CPC_SIGNAL_BIN="${CARGO_TARGET_DIR:-target}/ci/cpc-signal"
# Every suite in Chromium, and cross-engine.test.mjs: a Chromium page and a
# Firefox page in one room.
step "end-to-end (headless Chromium, and Chromium with Firefox)" \
  node --test --test-concurrency=1 tests/e2e/
# Firefox runs the suites where engines differ: the Peer API and IndexedDB,
# tabs over WebRTC with no server, two processes through cpc-signal, a
# reload keeping its id and state (Web Locks), the page's scenarios, and
# the room's server peer (binary WebSocket frames, no RTCPeerConnection),
# the sealed relay of secret rooms (the same, page to page), and presence
# (a page's leaving seen through its closing link). The
# others test the server, the npm package's build and secret rooms, whose
# Firefox side cross-engine.test.mjs covers; each passes in Firefox too
# (`CPC_BROWSER=firefox node --test tests/e2e/`).
step "end-to-end (headless Firefox)" env CPC_BROWSER=firefox node --test --test-concurrency=1 \
  tests/e2e/peer-api.test.mjs tests/e2e/webrtc.test.mjs tests/e2e/persistence.test.mjs \
  tests/e2e/scenarios.test.mjs tests/e2e/keep.test.mjs tests/e2e/relay.test.mjs \
  tests/e2e/presence.test.mjs tests/e2e/verify.test.mjs
# The side-by-side benchmark at small sizes, so its harness cannot rot (the
# full run is `npm run bench`; figures are in BENCHMARKS.md, not asserted).
step "benchmark smoke (cpc-sync, Yjs, Automerge, Loro)" env CPC_BENCH_QUICK=1 bash scripts/bench.sh
# The browser peer's benchmark at small sizes, one run each: it fails when a
# page reports an error or a scenario yields no figure.
step "benchmark smoke (the browser peer)" env CPC_BENCH_QUICK=1 node bench/browser/peer.mjs
# Memory, encode/load, IndexedDB, a newcomer's sync and long tasks, all
# four libraries at small sizes, every final state checked (builds the
# bench wasm first; the full run is `npm run bench:workloads`).
step "benchmark smoke (workloads users ask about)" env CPC_BENCH_QUICK=1 node bench/browser/workloads.mjs
step "benchmark smoke (cpc-signal under load)" env CPC_BENCH_QUICK=1 bash scripts/bench-signal.sh
