#!/usr/bin/env bash
# Builds the web app (Leptos → WASM) and assembles it in the given folder (default
# $CARGO_TARGET_DIR/web), ready to be served as it is:
#   index.html                              not hashed; names the files below
#   trellis_frontend-<hash>.js              the wasm-bindgen JS glue
#   trellis_frontend_bg-<hash>.wasm         the app
#   style-<hash>.css
# and, next to every one of them, <name>.gz (gzip -9 -n) and <name>.br (brotli).
#
# Contract with the server (server/src/http): every hashed name has `-` and 16 lowercase hex
# characters (the start of the file's SHA-256) just before its extension, and may be cached for
# ever (immutable); index.html is not hashed and must be revalidated; a `.gz`/`.br` beside a file
# is that file precompressed.
#
# No wasm-opt by default. Debian's binaryen 108 silently breaks Leptos output
# (../shared/TOOLCHAIN.md). binaryen 116 (`cargo install wasm-opt --version 0.116.1 --locked
# --no-default-features`) works in Chromium but took 21 min to build here (11 CPU-min) and saves
# only 7 % raw, 0.4 % gzipped; TRELLIS_WASM_OPT=1 uses it when it is on PATH. Opt-in, so every
# machine builds the same files.
# Safe to re-run: the previous build's files are removed from the folder first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out="${1:-$CARGO_TARGET_DIR/web}"

cargo build -p trellis-frontend --target wasm32-unknown-unknown --profile wasm-release

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# --omit-default-module-path: index.html hands init() the hashed wasm URL, so the glue needs no
# fallback `new URL('…_bg.wasm', import.meta.url)` naming an unhashed file.
# --remove-name-section / --remove-producers-section: function names only help debuggers.
wasm-bindgen --target web --no-typescript --omit-default-module-path \
  --remove-name-section --remove-producers-section \
  --out-dir "$stage" --out-name trellis_frontend \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/trellis-frontend.wasm"

# The binaryen version a wasm-opt reports ("wasm-opt version 116 (...)"), 0 if none.
binaryen_version() {
  local v=""
  command -v wasm-opt >/dev/null && v=$(wasm-opt --version 2>/dev/null | sed -n 's/^wasm-opt version \([0-9]*\).*/\1/p' | head -n1)
  echo "${v:-0}"
}
if [ "${TRELLIS_WASM_OPT:-0}" = 1 ]; then
  if [ "$(binaryen_version)" -lt 116 ]; then
    echo "build-web: TRELLIS_WASM_OPT=1 needs wasm-opt from binaryen >= 116 on PATH" >&2
    exit 1
  fi
  # The features rustc's wasm32 target emits today (bulk memory, sign extension, non-trapping
  # float-to-int, multivalue, reference types) must be allowed, or binaryen rejects the module.
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    -o "$stage/opt.wasm" "$stage/trellis_frontend_bg.wasm"
  mv "$stage/opt.wasm" "$stage/trellis_frontend_bg.wasm"
fi

# name-<first 16 hex of SHA-256>.ext
hashed() {
  local file=$1 base=$2 ext=$3
  echo "$base-$(sha256sum "$file" | cut -c1-16).$ext"
}
wasm=$(hashed "$stage/trellis_frontend_bg.wasm" trellis_frontend_bg wasm)
js=$(hashed "$stage/trellis_frontend.js" trellis_frontend js)
css=$(hashed frontend/style.css style css)

mkdir -p "$out"
# The previous build's files (hashed or not, with their compressed copies).
find "$out" -maxdepth 1 -type f \( -name 'index.html*' -o -name 'trellis_frontend*' \
  -o -name 'style.css*' -o -name 'style-*' \) -delete
cp "$stage/trellis_frontend_bg.wasm" "$out/$wasm"
cp "$stage/trellis_frontend.js" "$out/$js"
cp frontend/style.css "$out/$css"
sed -e "s|/trellis_frontend_bg.wasm|/$wasm|g" -e "s|/trellis_frontend.js|/$js|g" \
  -e "s|/style.css|/$css|g" frontend/index.html >"$out/index.html"
for f in "$wasm" "$js" "$css"; do
  grep -q "/$f" "$out/index.html" || { echo "build-web: index.html does not name $f" >&2; exit 1; }
done

for f in index.html "$wasm" "$js" "$css"; do
  gzip -9 -n -c "$out/$f" >"$out/$f.gz"
  brotli -q 11 -f -o "$out/$f.br" "$out/$f"
done

size() { stat -c %s "$1"; }
printf '%-44s %10s %10s %10s\n' file raw gzip brotli
total=(0 0 0)
for f in index.html "$js" "$wasm" "$css"; do
  r=$(size "$out/$f") g=$(size "$out/$f.gz") b=$(size "$out/$f.br")
  printf '%-44s %10d %10d %10d\n' "$f" "$r" "$g" "$b"
  total=($((total[0] + r)) $((total[1] + g)) $((total[2] + b)))
done
printf '%-44s %10d %10d %10d\n' total "${total[@]}"
echo "web app built in $out"
