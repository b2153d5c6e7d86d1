#!/usr/bin/env bash
# Trellis benchmarks (not part of the tests): `bash scripts/bench.sh [name ...]`, every benchmark
# when no name is given. Each prints its figures and appends them to BENCHMARKS.md with the
# machine, the command and the date. Timing and size goals live here, never in tests.
#
# Benchmarks:
#   web   what a browser downloads to open the web app: every asset index.html names, fetched
#         from a real leader the way a browser asks (Accept-Encoding: br, then gzip, then none),
#         bytes on the wire. Goal (issue "Make room for the hearts"): <= 400 kB gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

all=(web)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=("${all[@]}")

machine() {
  printf '%s, %s cores, %s GiB RAM, %s' "$(uname -m)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo)" \
    "$(. /etc/os-release && echo "$PRETTY_NAME")"
}

record() {
  local title=$1 body=$2
  {
    printf '\n## %s — %s\n\n' "$title" "$(date -u +%Y-%m-%d)"
    printf 'Machine: %s. Command: `bash scripts/bench.sh %s` at commit %s.\n\n' \
      "$(machine)" "$3" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf '%s\n' "$body"
  } >>BENCHMARKS.md
}

bench_web() {
  bash scripts/setup.sh
  local web="$CARGO_TARGET_DIR/bench-web"
  bash scripts/build-web.sh "$web" >/dev/null
  cargo build -q -p trellis-server
  local dir port pid
  dir=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local mqtt
  mqtt=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$CARGO_TARGET_DIR/debug/trellis" --data-dir "$dir/data" --http-listen "127.0.0.1:$port" \
    --mqtt-listen "127.0.0.1:$mqtt" --local-agent false --web-dir "$web" >"$dir/log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null; rm -rf "$dir"' RETURN
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local assets
  assets=$(grep -o '/[A-Za-z0-9_.-]*\.\(js\|wasm\|css\)' "$web/index.html" | sort -u)
  local table="| asset | identity | gzip | br | Cache-Control |
|---|---:|---:|---:|---|"
  local tot_id=0 tot_gz=0 tot_br=0
  for path in /index.html $assets; do
    local url="http://127.0.0.1:$port$path"
    [ "$path" = /index.html ] && url="http://127.0.0.1:$port/"
    local id gz br cc
    id=$(curl -fsS -o /dev/null -w '%{size_download}' "$url")
    gz=$(curl -fsS -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$url")
    br=$(curl -fsS -H 'Accept-Encoding: br, gzip' -o /dev/null -w '%{size_download}' "$url")
    cc=$(curl -fsS -D - -o /dev/null "$url" | tr -d '\r' | sed -n 's/^[Cc]ache-[Cc]ontrol: //p')
    table+=$'\n'"| \`$path\` | $id | $gz | $br | $cc |"
    tot_id=$((tot_id + id)) tot_gz=$((tot_gz + gz)) tot_br=$((tot_br + br))
  done
  table+=$'\n'"| **all** | **$tot_id** | **$tot_gz** | **$tot_br** | |"
  local verdict="goal <= 400 kB (409600 bytes) gzipped: $([ "$tot_gz" -le 409600 ] && echo met || echo MISSED)"
  printf '%s\n\n%s\n' "$table" "$verdict"
  record "Web app download size (bytes on the wire)" "$table

$verdict" web
}

for name in "${wanted[@]}"; do
  case "$name" in
    web) bench_web ;;
    *) echo "bench.sh: no benchmark named $name (have: ${all[*]})" >&2; exit 2 ;;
  esac
done
