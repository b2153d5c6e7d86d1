#!/usr/bin/env bash
# Builds the web app (Leptos → WASM) and assembles it in the given folder (default
# $CARGO_TARGET_DIR/web): index.html, style.css, the wasm-bindgen JS glue and the .wasm.
# No wasm-opt: Debian's binaryen breaks Leptos output (see ../shared/TOOLCHAIN.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out="${1:-$CARGO_TARGET_DIR/web}"
cargo build -p trellis-frontend --target wasm32-unknown-unknown --profile wasm-release
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name trellis_frontend \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/trellis-frontend.wasm"
cp frontend/index.html frontend/style.css "$out/"
echo "web app built in $out"
