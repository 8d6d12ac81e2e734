#!/usr/bin/env bash
# `npm run bench:signal`: cpc-signal under load on loopback (the release
# build, as deployed): 2,000 sockets in 200 rooms sending 10 signals/s for
# 30 s, plus a stalled reader per room (examples/signal_load.rs).
# CPC_BENCH_QUICK=1: 100 sockets for 5 s. CPC_SIGNAL_BIN: another build
# of the server to load (`npm test`'s smoke runs its native suite's).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
# The server as deployed; the load generator in the profile `npm test`'s
# native suite has built its dependencies in (an example pulls in the dev
# dependencies, whose features would rebuild the server's crates in
# release, LTO and all: a minute of CI for a load generator).
if [ -z "${CPC_SIGNAL_BIN:-}" ]; then
  cargo build --release --features server --bin cpc-signal
  CPC_SIGNAL_BIN="$target/release/cpc-signal"
fi
cargo build --profile ci --features server --example signal_load
# 2,200 sockets on each side of loopback: over the usual 1,024 open files.
# The bench raises its soft limit to the hard one too; this covers shells
# whose hard limit allows more than the default soft one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CPC_SIGNAL_BIN="$CPC_SIGNAL_BIN" "$target/ci/examples/signal_load"
