#!/usr/bin/env bash
# Builds and runs a Trellis leader with its web app on this machine, doing all set-up first
# (Debian packages, rustup targets, wasm-bindgen). Safe to re-run. Extra arguments go to `trellis`
# (see `trellis --help`); data lives in ./trellis-data unless --data-dir says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
bash scripts/build-web.sh "$CARGO_TARGET_DIR/release/web"
cargo build --release -p trellis-server
exec "$CARGO_TARGET_DIR/release/trellis" "$@"
