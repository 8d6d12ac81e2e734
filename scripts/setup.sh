#!/usr/bin/env bash
# Installs what cpc-sync needs and skips what is present, so it is quick to
# run again. `setup.sh build` for `npm start`; `setup.sh test` also installs
# the browser for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
ok() { printf 'setup: ok  %s\n' "$*"; }
doing() { printf 'setup: ... %s\n' "$*"; }

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
  echo "setup: cargo and rustup are required (https://rustup.rs)" >&2
  exit 1
fi
if ! command -v npm >/dev/null; then
  echo "setup: node and npm are required" >&2
  exit 1
fi
ok "$(cargo --version | cut -d' ' -f1-2), node $(node --version), npm $(npm --version 2>/dev/null)"

# Rust: the wasm target and the lint tools.
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  ok "rust target wasm32-unknown-unknown"
else
  doing "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  if rustup component list --installed | grep -q "^$component"; then
    ok "rustup component $component"
  else
    doing "rustup component add $component"
    rustup component add "$component"
  fi
done

# wasm-bindgen-cli at exactly the crate's wasm-bindgen version: the one
# Cargo.lock resolved, else the `=0.2.x` pin of Cargo.toml.
want=""
if [ -f Cargo.lock ]; then
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
fi
if [ -z "$want" ]; then
  want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"$/\1/p' Cargo.toml)
fi
if [ -z "$want" ]; then
  echo "setup: no wasm-bindgen version in Cargo.lock or Cargo.toml" >&2
  exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" = "$want" ]; then
  ok "wasm-bindgen-cli $want"
else
  doing "cargo install wasm-bindgen-cli --version $want (takes minutes)"
  cargo install wasm-bindgen-cli --version "$want" --force
fi

# Debian packages: Chromium and its driver, and Firefox ESR, for the tests.
packages=()
if [ "$mode" = test ]; then
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
  [ -x /usr/bin/firefox-esr ] || packages+=(firefox-esr)
fi
if [ ${#packages[@]} -eq 0 ]; then
  if [ "$mode" = test ]; then ok "chromium, chromedriver, firefox-esr"; fi
else
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${packages[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  doing "apt-get install ${packages[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# geckodriver, for the wasm-bindgen tests in Firefox: Debian ships none,
# crates.io has its source. Pinned, so every machine runs the same one.
if [ "$mode" = test ]; then
  gecko=0.37.1
  have=$("${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver" --version 2>/dev/null | awk 'NR == 1 {print $2}' || true)
  if [ "$have" = "$gecko" ]; then
    ok "geckodriver $gecko"
  else
    doing "cargo install geckodriver --version $gecko (takes minutes)"
    cargo install geckodriver --version "$gecko" --locked --force
  fi
fi

# npm packages, when missing or older than the lock file: playwright-core
# (drives Chromium), puppeteer-core (drives Firefox over WebDriver BiDi),
# and binaryen for wasm-opt (Debian's binaryen 108 breaks wasm-bindgen's
# externref table, so the build uses npm's).
if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  ok "npm packages"
else
  doing "npm ci"
  # The lock cannot name cbor-extract's optional per-platform builds (from
  # automerge-repo, a benchmark dependency): the registry here has none, and
  # `npm ci` then refuses the lock. `npm install` resolves the same versions
  # and skips them (cbor-x falls back to plain JS).
  npm ci --no-audit --no-fund --loglevel=error 2>/dev/null ||
    npm install --no-audit --no-fund --loglevel=error
fi
ok "wasm-opt $(node_modules/.bin/wasm-opt --version | awk '{print $3}')"
