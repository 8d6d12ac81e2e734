#!/usr/bin/env bash
# `npm start`: set up, build, and serve the page on 127.0.0.1:${PORT:-8080}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
bash scripts/build.sh
echo "start: open http://127.0.0.1:${PORT:-8080}/ (Ctrl-C stops the server)"
exec "${CARGO_TARGET_DIR:-target}/release/cpc-signal"
