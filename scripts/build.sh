#!/usr/bin/env bash
# Release build: the wasm npm package in pkg/, then the cpc-signal server
# (`--no-server`: the package alone).
set -euo pipefail
cd "$(dirname "$0")/.."
server=1
target="${CARGO_TARGET_DIR:-target}"
[ "${1:-}" = --no-server ] && server=0

cargo build --release --target wasm32-unknown-unknown --lib
rm -rf pkg
wasm-bindgen --target web --out-dir pkg --out-name cpc_sync \
  "$target/wasm32-unknown-unknown/release/cpc_sync.wasm"
bash scripts/wasm-opt.sh pkg/cpc_sync_bg.wasm

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
cat > pkg/package.json <<JSON
{
  "name": "cpc-sync",
  "version": "$version",
  "description": "Peer-to-peer sync engine for the browser: vector clocks, causal delivery, conflict resolution, anti-entropy over WebRTC.",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "cpc_sync.js",
  "module": "cpc_sync.js",
  "types": "cpc_sync.d.ts",
  "exports": {
    ".": { "types": "./cpc_sync.d.ts", "import": "./cpc_sync.js" },
    "./cpc_sync_bg.wasm": "./cpc_sync_bg.wasm"
  },
  "files": ["cpc_sync.js", "cpc_sync.d.ts", "cpc_sync_bg.wasm", "cpc_sync_bg.wasm.d.ts", "README.md"],
  "sideEffects": false
}
JSON
# The package's README is the repository's, less what lives only in the
# repository: the screenshot, and links to files the package lacks.
if [ -f README.md ]; then
  sed -e '/^!\[.*\](docs\/[^)]*)$/d' \
    -e 's/\[\([^]]*\)\](\(docs\/[^)]*\|BENCHMARKS\.md\))/\1 (in the repository)/g' \
    README.md > pkg/README.md
fi

raw=$(wc -c < pkg/cpc_sync_bg.wasm)
gz=$(gzip -9 -c pkg/cpc_sync_bg.wasm | wc -c)
echo "build: pkg/cpc_sync_bg.wasm is $raw bytes, $gz bytes gzipped"

if [ "$server" = 1 ]; then
  cargo build --release --features server --bin cpc-signal
fi
