#!/usr/bin/env bash
# Trellis benchmarks (not part of the tests): `bash scripts/bench.sh [name ...]`, every benchmark
# when no name is given. Each prints its figures and appends them to BENCHMARKS.md with the
# machine, the command and the date. Timing and size goals live here, never in tests.
#
# Benchmarks:
#   web        what a browser downloads to open the web app: every asset index.html names, fetched
#              from a real leader the way a browser asks (Accept-Encoding: br, then gzip, then
#              none), bytes on the wire. Goal (issue "Make room for the hearts"): <= 400 kB gzipped.
#   footprint  the agent (release build) running stirring, od_reading and
#              temperature_automation on the simulator for WINDOW seconds (default 60): RSS, peak RSS and
#              CPU of the agent process, job start -> ready and a setting round trip through the
#              leader's API; beside the real Pioreactor 26.11.1 running stirring, od_reading and
#              temperature_automation in its test mode, measured in the same run by
#              ../shared/peers/pioreactor/footprint.sh. Goal: at least 14x less memory.
#   liveness   how long until the API shows a node `LOST` (default 5 s heartbeats, 10 s keepalive):
#              after kill -9 of its agent (the broker's last-will), after SIGSTOP of its agent (a
#              hung node: only the heartbeat sweep sees it), and after its network is cut (the
#              agent reaches the broker through a socat relay, which is SIGSTOPped: nothing passes,
#              no connection closes). REPEATS runs each (default 3). Goal: within two heartbeat
#              intervals (10 s). The Pioreactor harness measures no liveness, so no peer figure.
#   ingest     readings stored per second, sustained, with zero loss and zero duplicates: a release
#              leader (embedded broker behind its gate) on SQLite, then on Postgres, and on the
#              same machine publishers speaking as enrolled nodes that flood ReadingBatches of 500
#              readings at QoS 1 within a bounded in-flight window (tests/tests/ingest_bench.rs;
#              READINGS, default 2 000 000 per database). Every reading's value is unique, so
#              loss and duplicates are counted in the database; a second phase sends one batch in
#              7 twice and must still store each reading once. Beside Pioreactor's
#              mqtt_to_db_streaming in the same run (../shared/peers/pioreactor/ingest.sh:
#              PIO_COUNT unthrottled messages, default 100 000, one reading each, its installer's
#              broker settings). Goal (issue 10): >= 250 000 readings/s on SQLite and 20x Pioreactor.
#   query      readings at scale on SQLite: ROWS readings (default 100 000 000) written into a
#              fresh leader's database (scripts/bench/fill_readings.py), then, through the
#              release leader's API: a 30-day, 1 Hz series (2.6 M rows) downsampled to 1000
#              points, the last day to 500, the last hour's raw readings, and a CSV export of one
#              filler series (ROWS/8 rows) with the leader's RSS sampled while it streams.
#              Goals (issue 10): the 30-day series under 100 ms; the export in constant memory.
#   live       live delivery: one node publishing LIVE_RATE readings/s (default 1000) as its agent
#              does (a batch every 100 ms), LIVE_CLIENTS websocket clients (default 100) on its
#              liveReadings at 30 frames/s; MQTT publish -> GraphQL frame parsed by the client,
#              p50/p90/p99 (tests/tests/live_bench.rs, release leader, SQLite; clients on the same
#              2 cores). Goal (issue 10): p99 under 5 ms.
#   deploy     container deployments on this machine's Docker engine with an offline busybox image
#              (tests/tests/deploy_bench.rs, release leader, SQLite): createDeployment -> the
#              instance RUNNING in the API, beside `docker run -d` of the same container
#              (DEPLOY_ROUNDS alternating rounds, default 7, medians; goal <= 1.1x); a rollout to
#              DEPLOY_ENTRIES node entries (default 20; agents that joined with a TCP endpoint to
#              this one engine, then stopped) beside one (goal <= 2x); DEPLOY_MANY deployments
#              (default 50): time to converge, the leader's CPU and memory while converging and
#              over a quiet minute.
#   images     sideload of an IMAGE_MIB (default 256) image of random bytes from this machine's
#              engine into a second dockerd (a node's engine over TCP), sideloadImage -> DONE in
#              the API beside `docker save | docker -H <node> load` through the same proxy (ROUNDS,
#              default 3, medians), and the leader's peak RSS before and after: the image streams
#              through, never held (tests/tests/images_bench.rs). Goal (issue 12): no copy of the
#              image in the leader's memory (peak RSS grows by far less than the image).

set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

all=(web footprint liveness ingest query live deploy images)
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

# Median of the wall time of `curl` posting GraphQL $1, ms (REPEATS times, default 7).
time_gql() {
  local q=$1 n=${REPEATS:-7} times=()
  for _ in $(seq 1 "$n"); do
    local t
    t=$(curl -fsS -o /dev/null -w '%{time_total}' -b "$JAR" -H 'Content-Type: application/json' \
      --data "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$q")" "$LEADER/graphql")
    times+=("$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

bench_query() {
  bash scripts/setup.sh
  local rows=${ROWS:-100000000}
  cargo build -q --release -p trellis-server
  local dir
  dir=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
  local pid=""
  trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' RETURN
  local free='import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  local hport mport
  hport=$(python3 -c "$free")
  mport=$(python3 -c "$free")
  start_leader() {
    TRELLIS_INITIAL_ADMIN_PASSWORD=bench-password "$CARGO_TARGET_DIR/release/trellis" \
      --data-dir "$dir/leader" --http-listen "127.0.0.1:$hport" --mqtt-listen "127.0.0.1:$mport" \
      --local-agent false >>"$dir/leader.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the leader did not start:"; tail -20 "$dir/leader.log"; return 1
  }
  # Migrate, then fill with the leader stopped.
  start_leader
  kill $pid; wait $pid 2>/dev/null || true
  local t0 fill_s total
  t0=$(date +%s)
  total=$(python3 scripts/bench/fill_readings.py "$dir/leader/trellis.db" "$rows")
  fill_s=$(( $(date +%s) - t0 ))
  local db_bytes
  db_bytes=$(du -cb "$dir/leader/trellis.db"* | tail -1 | cut -f1)
  start_leader
  LEADER="http://127.0.0.1:$hport" JAR="$dir/cookies"
  gql 'mutation { login(username: "admin", password: "bench-password") { username } }' >/dev/null
  local now from30 from1d from1h
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  from30=$(date -u -d '30 days ago' +%Y-%m-%dT%H:%M:%SZ)
  from1d=$(date -u -d '1 day ago' +%Y-%m-%dT%H:%M:%SZ)
  from1h=$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%SZ)
  local month day hour buckets
  buckets=$(gql "{ readingSeries(nodeId: \"bench\", job: \"od_reading\", metric: \"od\", from: \"$from30\", to: \"$now\", points: 1000) { count } }" \
    | python3 -c 'import json,sys; print(sum(b["count"] for b in json.load(sys.stdin)["data"]["readingSeries"]))')
  month=$(time_gql "{ readingSeries(nodeId: \"bench\", job: \"od_reading\", metric: \"od\", from: \"$from30\", to: \"$now\", points: 1000) { start avg min max count } }")
  day=$(time_gql "{ readingSeries(nodeId: \"bench\", job: \"od_reading\", metric: \"od\", from: \"$from1d\", to: \"$now\", points: 500) { start avg min max count } }")
  hour=$(time_gql "{ readings(nodeId: \"bench\", job: \"od_reading\", metric: \"od\", since: \"$from1h\", limit: 3600) { time value } }")
  # The export: one filler series, the leader's RSS sampled every 0.2 s while it streams.
  local rss_before rss_max=0 export_file="$dir/export.csv"
  rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  t0=$(date +%s%3N)
  curl -fsS -b "$JAR" -o "$export_file" "$LEADER/export/readings.csv?node=bench-fill&metric=m0" &
  local curl_pid=$!
  while kill -0 $curl_pid 2>/dev/null; do
    local r
    r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    sleep 0.2
  done
  wait $curl_pid
  local export_ms=$(( $(date +%s%3N) - t0 ))
  local export_rows export_bytes rate
  export_rows=$(( $(wc -l <"$export_file") - 1 ))
  export_bytes=$(stat -c %s "$export_file")
  rate=$(awk -v r="$export_rows" -v ms="$export_ms" 'BEGIN { printf "%d", r / (ms / 1000) }')
  local gb mb body
  gb=$(awk -v b="$db_bytes" 'BEGIN { printf "%.1f", b / 1e9 }')
  mb=$(awk -v b="$export_bytes" 'BEGIN { printf "%.0f", b / 1e6 }')
  body="The release leader on SQLite with $total readings ($gb GB with its indexes, filled in $fill_s s). Indexes: \`reading_series_time (node_id, job, metric, time_ms)\` for series and node exports, \`reading_experiment_time (experiment_id, time_ms) WHERE experiment_id IS NOT NULL\` for experiment exports; \`reading_series\` (the catalog) answers counts without a scan; \`reading_minute\` (per-minute rollups kept at ingest, key node, job, metric, minute, experiment) answers series whose buckets are a minute or wider, with the partial minutes at the ends read from the readings. Median of ${REPEATS:-7} requests through the API (curl, HTTP, JSON):

| query | rows read | median |
|---|---:|---:|
| \`readingSeries\` 30 days at 1 Hz → 1000 points | $buckets | $month ms |
| \`readingSeries\` last day → 500 points | 86400 | $day ms |
| \`readings\` last hour, raw | 3600 | $hour ms |

CSV export of one series (\`/export/readings.csv?node=bench-fill&metric=m0\`): $export_rows rows, $mb MB in $export_ms ms ($rate rows/s); the leader's RSS $((rss_before / 1024)) MiB before, at most $((rss_max / 1024)) MiB while it streamed."
  printf '%s\n' "$body"
  record "Queries at $total readings (SQLite)" "$body" "query"
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

# A GraphQL call to the leader at $LEADER with the cookie jar $JAR; prints the JSON answer.
gql() {
  curl -fsS -b "$JAR" -c "$JAR" -H 'Content-Type: application/json' \
    -d "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$1")" "$LEADER/graphql"
}

# Milliseconds since the epoch.
now_ms() { date +%s%3N; }

bench_footprint() {
  bash scripts/setup.sh
  local window=${WINDOW:-60}
  cargo build -q --release -p trellis-agent
  cargo build -q -p trellis-server
  local dir
  dir=$(mktemp -d)
  local pids=()
  trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$dir"' RETURN
  local free='import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  local mport hport
  mport=$(python3 -c "$free")
  hport=$(python3 -c "$free")
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mport" >"$dir/mosquitto.conf"
  mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
  pids+=($!)
  TRELLIS_INITIAL_ADMIN_PASSWORD=bench-password "$CARGO_TARGET_DIR/debug/trellis" \
    --data-dir "$dir/leader" --http-listen "127.0.0.1:$hport" \
    --broker-url "mqtt://127.0.0.1:$mport" --local-agent false >"$dir/leader.log" 2>&1 &
  pids+=($!)
  LEADER="http://127.0.0.1:$hport" JAR="$dir/cookies"
  for _ in $(seq 1 100); do curl -fsS "$LEADER/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  gql 'mutation { login(username: "admin", password: "bench-password") { username } }' >/dev/null
  "$CARGO_TARGET_DIR/release/trellis-agent" --broker-url "mqtt://127.0.0.1:$mport" \
    --node-id bench --state-dir "$dir/agent" >"$dir/agent.log" 2>&1 &
  local agent=$!
  pids+=("$agent")
  for _ in $(seq 1 100); do
    gql '{ jobKinds(nodeId: "bench") { kind } }' 2>/dev/null | grep -q stirring\|pid && break
    sleep 0.1
  done
  # Job start -> ready through the API (the mutation returns once the agent reports ready),
  # and a setting round trip (returns once the agent echoes the new value).
  local t0 t1 start_ms set_ms
  t0=$(now_ms)
  gql 'mutation { startJob(nodeId: "bench", preset: "stirring") { state } }' | grep -q READY
  t1=$(now_ms); start_ms=$((t1 - t0))
  t0=$(now_ms)
  gql 'mutation { setJobSettings(nodeId: "bench", name: "stirring", settings: {target: 700}) { settings } }' | grep -q '"target":700'
  t1=$(now_ms); set_ms=$((t1 - t0))
  gql 'mutation { startJob(nodeId: "bench", preset: "temperature_automation") { state } }' | grep -q READY
  gql 'mutation { startJob(nodeId: "bench", preset: "od_reading") { state } }' | grep -q READY
  # RSS and CPU of the agent process over the window.
  local hz ticks0 ticks1 rss hwm
  hz=$(getconf CLK_TCK)
  ticks0=$(awk '{print $14 + $15}' "/proc/$agent/stat")
  sleep "$window"
  ticks1=$(awk '{print $14 + $15}' "/proc/$agent/stat")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
  local cpu
  cpu=$(python3 -c "print(round(($ticks1 - $ticks0) / $hz / $window * 100, 2))")
  t0=$(now_ms)
  for j in stirring temperature_automation od_reading; do
    gql "mutation { stopJob(nodeId: \"bench\", name: \"$j\") { state } }" | grep -q STOPPED
  done
  t1=$(now_ms)
  local stop_ms=$((t1 - t0))

  # The peer, in the same run.
  local pio
  pio=$(WINDOW=$window bash ../shared/peers/pioreactor/footprint.sh 2>"$dir/pio.err" || true)
  local pio_rss pio_cpu pio_start pio_rt
  pio_rss=$(echo "$pio" | awk '$1 == "total3_rss" {print $2}')
  pio_cpu=$(echo "$pio" | awk '$1 == "total3_cpu" {print $2}')
  pio_start=$(echo "$pio" | awk '$1 == "stirring_start_to_ready_median" {print $2 * 1000}')
  pio_rt=$(echo "$pio" | awk '$1 == "stirring_set_target_rpm_roundtrip" {print $2}')
  local ratio="?"
  [ -n "$pio_rss" ] && ratio=$(python3 -c "print(round($pio_rss * 1024 / $rss, 1))")
  local table="| measure | Trellis agent (3 jobs, one process) | Pioreactor 26.11.1 (3 jobs, 3 processes) | ratio |
|---|---:|---:|---:|
| RSS | $(python3 -c "print(round($rss / 1024, 1))") MiB | ${pio_rss:-?} MiB | ${ratio}x less |
| peak RSS | $(python3 -c "print(round($hwm / 1024, 1))") MiB | | |
| CPU over ${window} s (% of one core) | $cpu | ${pio_cpu:-?} | |
| start -> ready (stirring) | $start_ms ms | ${pio_start:-?} ms | |
| setting round trip (stirring target) | $set_ms ms | ${pio_rt:-?} ms | |
| stop 3 jobs | $stop_ms ms | | |

Trellis figures are through the leader's GraphQL API (each mutation returns once the agent's status
shows the change), so they include the leader and the broker; Pioreactor's are on MQTT directly.
Both run stirring, od_reading (one OD reading every 5 s) and temperature_automation."
  printf '%s\n\nPioreactor footprint.sh said:\n%s\n' "$table" "$pio"
  record "Agent footprint beside Pioreactor" "$table

Pioreactor's own output (\`footprint.sh\`, WINDOW=$window):

\`\`\`
$pio
\`\`\`" footprint
}

# Milliseconds until node $1 shows state $2 in the API (polled every 100 ms, 60 s at most).
ms_until_state() {
  local t0 t
  t0=$(now_ms)
  for _ in $(seq 1 600); do
    gql "{ node(id: \"$1\") { state } }" 2>/dev/null | grep -q "\"$2\"" && {
      t=$(now_ms)
      echo $((t - t0))
      return
    }
    sleep 0.1
  done
  echo "never"
}

bench_liveness() {
  bash scripts/setup.sh
  local repeats=${REPEATS:-3}
  cargo build -q --release -p trellis-agent
  cargo build -q -p trellis-server
  local dir
  dir=$(mktemp -d)
  local pids=()
  trap 'kill -CONT "${pids[@]}" 2>/dev/null; kill "${pids[@]}" 2>/dev/null; rm -rf "$dir"' RETURN
  local free='import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  local mport hport rport
  mport=$(python3 -c "$free")
  hport=$(python3 -c "$free")
  rport=$(python3 -c "$free")
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mport" >"$dir/mosquitto.conf"
  mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
  pids+=($!)
  TRELLIS_INITIAL_ADMIN_PASSWORD=bench-password "$CARGO_TARGET_DIR/debug/trellis" \
    --data-dir "$dir/leader" --http-listen "127.0.0.1:$hport" \
    --broker-url "mqtt://127.0.0.1:$mport" --local-agent false >"$dir/leader.log" 2>&1 &
  pids+=($!)
  LEADER="http://127.0.0.1:$hport" JAR="$dir/cookies"
  for _ in $(seq 1 100); do curl -fsS "$LEADER/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  gql 'mutation { login(username: "admin", password: "bench-password") { username } }' >/dev/null
  local killed=() hung=() cut=()
  for i in $(seq 1 "$repeats"); do
    local agent relay
    # kill -9: the connection closes, the broker publishes the will.
    "$CARGO_TARGET_DIR/release/trellis-agent" --broker-url "mqtt://127.0.0.1:$mport" \
      --node-id live --state-dir "$dir/agent" >>"$dir/agent.log" 2>&1 &
    agent=$!
    pids+=("$agent")
    ms_until_state live ONLINE >/dev/null
    sleep 2
    kill -9 "$agent"
    wait "$agent" 2>/dev/null || true
    killed+=("$(ms_until_state live LOST)")
    # SIGSTOP: a hung agent keeps its connection open; only the missing heartbeats tell.
    "$CARGO_TARGET_DIR/release/trellis-agent" --broker-url "mqtt://127.0.0.1:$mport" \
      --node-id live --state-dir "$dir/agent" >>"$dir/agent.log" 2>&1 &
    agent=$!
    pids+=("$agent")
    ms_until_state live ONLINE >/dev/null
    # Right after a heartbeat would be the worst case; a random phase is the typical one.
    sleep "$(python3 -c 'import random; print(round(2 + random.random() * 5, 2))')"
    kill -STOP "$agent"
    hung+=("$(ms_until_state live LOST)")
    kill -9 "$agent"
    wait "$agent" 2>/dev/null || true
    # A cut network: the agent's only way to the broker is a relay that stops passing bytes.
    socat "TCP-LISTEN:$rport,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$mport" 2>/dev/null &
    relay=$!
    pids+=("$relay")
    sleep 0.2
    "$CARGO_TARGET_DIR/release/trellis-agent" --broker-url "mqtt://127.0.0.1:$rport" \
      --node-id live --state-dir "$dir/agent" >>"$dir/agent.log" 2>&1 &
    agent=$!
    pids+=("$agent")
    ms_until_state live ONLINE >/dev/null
    sleep "$(python3 -c 'import random; print(round(2 + random.random() * 5, 2))')"
    pkill -STOP -P "$relay" || true
    kill -STOP "$relay"
    cut+=("$(ms_until_state live LOST)")
    kill -9 "$agent"
    pkill -9 -P "$relay" || true
    kill -9 "$relay"
    wait "$agent" "$relay" 2>/dev/null || true
    sleep 0.5
  done
  local table="| fault | time to LOST in the API, ms (each run) | goal |
|---|---|---|
| agent kill -9 (last-will) | ${killed[*]} | within 10 s |
| agent SIGSTOP (hung node) | ${hung[*]} | within 10 s |
| network cut (relay SIGSTOPped) | ${cut[*]} | within 10 s |

Defaults: heartbeats every 5 s, MQTT keepalive 10 s (the broker alone would take 1.5 x 10 = 15 s).
A fault is injected 2-7 s after the node is online (a random phase against its heartbeats); the
API is polled every 100 ms. The Pioreactor harness measures no liveness, so no peer figure."
  printf '%s\n' "$table"
  record "Node liveness after faults" "$table" liveness
}

bench_ingest() {
  # Only Postgres is needed besides the build (and the peer's own setup, which ingest.sh runs).
  source scripts/services.sh
  local readings=${READINGS:-2000000} pio_count=${PIO_COUNT:-100000}
  # One build of the leader, the agent and the benchmark together: built apart, their
  # dependencies' features differ and the second build recompiles most of them.
  cargo build -q --release -p trellis-server -p trellis-agent -p trellis-tests --bins \
    --test ingest_bench
  local dir
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' RETURN
  local ours=""
  for db in sqlite postgres; do
    INGEST_DB=$db INGEST_READINGS=$readings cargo test -q --release -p trellis-tests \
      --test ingest_bench -- --ignored --nocapture >"$dir/$db.out" 2>&1 || {
      echo "ingest benchmark on $db failed:" >&2
      tail -40 "$dir/$db.out" >&2
      return 1
    }
    ours+=$(grep '^ingest_' "$dir/$db.out")$'\n'
  done
  local pio
  pio=$(RATES=0 COUNT=$pio_count BIG_COUNT=0 BURST_COUNT=0 BROKERS=prod \
    bash ../shared/peers/pioreactor/ingest.sh 2>"$dir/pio.err") || {
    echo "Pioreactor's ingest.sh failed:" >&2
    tail -20 "$dir/pio.err" >&2
    return 1
  }
  # A figure from `name value unit` lines.
  fig() { awk -v n="$2" '$1 == n {print $2}' <<<"$1"; }
  local step="ingest_prod_max_n${pio_count}"
  local pio_rate pio_lost pio_dup
  pio_rate=$(fig "$pio" "${step}_rows_per_s")
  pio_lost=$(fig "$pio" "${step}_lost")
  pio_dup=$(fig "$pio" "${step}_duplicates")
  local row=""
  for db in sqlite postgres; do
    local rate ratio
    rate=$(fig "$ours" "ingest_${db}_stored_rate")
    ratio=$(python3 -c "print(round($rate / $pio_rate, 1))")
    row+="| Trellis, $db | $(fig "$ours" "ingest_${db}_readings") | $(fig "$ours" "ingest_${db}_offered_rate") | **$rate** | $(fig "$ours" "ingest_${db}_peak_rate_1s") | $(fig "$ours" "ingest_${db}_lost") | $(fig "$ours" "ingest_${db}_duplicates") | $(fig "$ours" "ingest_${db}_redelivery_lost") / $(fig "$ours" "ingest_${db}_redelivery_duplicates") | $(fig "$ours" "ingest_${db}_leader_cpu") % ($(fig "$ours" "ingest_${db}_leader_cpu_per_reading") µs/reading) | $(fig "$ours" "ingest_${db}_leader_rss_peak") MiB | $(fig "$ours" "ingest_${db}_queue_high_water") / $(fig "$ours" "ingest_${db}_queue_capacity") | ${ratio}x |"$'\n'
  done
  local sqlite_rate goal
  sqlite_rate=$(fig "$ours" ingest_sqlite_stored_rate)
  goal=$(python3 -c "r = $sqlite_rate; p = $pio_rate; print('met' if r >= 250000 and r >= 20 * p else 'MISSED')")
  local table="| ingester | readings | offered/s | stored/s (first publish -> last commit) | best 1 s | lost | duplicates | redelivery phase lost / dup | leader CPU (% of one core) | leader peak RSS | queue high water / capacity | vs Pioreactor |
|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|
${row}| Pioreactor 26.11.1 \`mqtt_to_db_streaming\`, SQLite | $pio_count | $(fig "$pio" "${step}_offered_rate") | **$pio_rate** | $(fig "$pio" "${step}_peak_rows_per_s_1s") | $pio_lost | $pio_dup | | $(fig "$pio" "${step}_streamer_cpu_per_msg") µs/reading | $(fig "$pio" ingest_prod_streamer_hwm) MiB | | 1x |

Goal (issue 10): >= 250 000 readings/s on SQLite and 20x Pioreactor: $goal.
Trellis: the leader (embedded rumqttd behind its MQTT gate, bridge, ingester) and the publishers
(one MQTT client per node, payloads encoded before the clock starts) share the 2 cores; batches of
500 readings over 4 series at QoS 1; leader CPU includes the broker. Pioreactor: one reading per
MQTT message (its od_reading format), QoS 2, publisher in-flight 20, unthrottled, broker with its
installer's settings; its rows/s is a lower bound when its single Python publisher is the limit
(its CPU per message gives the ceiling)."
  printf '%s\n\nOurs:\n%s\nPioreactor ingest.sh said:\n%s\n' "$table" "$ours" "$pio"
  record "Ingestion beside Pioreactor" "$table

Our figures (\`tests/tests/ingest_bench.rs\`, READINGS=$readings):

\`\`\`
$ours\`\`\`

Pioreactor's own output (\`ingest.sh\`, RATES=0 COUNT=$pio_count BIG_COUNT=0 BURST_COUNT=0 BROKERS=prod):

\`\`\`
$pio
\`\`\`" ingest
}

bench_live() {
  bash scripts/setup.sh
  cargo build -q --release -p trellis-server -p trellis-agent -p trellis-tests --bins \
    --test live_bench
  local out
  out=$(cargo test -q --release -p trellis-tests --test live_bench -- --ignored --nocapture 2>&1) || {
    echo "live benchmark failed:" >&2
    tail -40 <<<"$out" >&2
    return 1
  }
  fig() { awk -v n="$1" '$1 == n {print $2}' <<<"$out"; }
  local goal
  goal=$(python3 -c "print('met' if $(fig live_p99) < 5 else 'MISSED')")
  local body="| clients | readings/s | batch every | frames counted | p50 | p90 | p99 | max | readings per client (published) | skipped | leader CPU | leader RSS |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| $(fig live_clients) | $(fig live_rate) | $(fig live_batch_every) ms | $(fig live_frames) | $(fig live_p50) ms | $(fig live_p90) ms | **$(fig live_p99) ms** | $(fig live_max) ms | $(fig live_received_per_client) ($(fig live_published)) | $(fig live_skipped) | $(fig live_leader_cpu) % | $(fig live_leader_rss) MiB |

MQTT publish (a node's ReadingBatch, QoS 1) -> the MQTT gate, which hands it to the ingester's queue (the embedded broker is not on the way) -> the ingester (rows made and deduplicated from what its earlier commits left; stored, SQLite, right after) -> live feed -> per-client throttle (30 frames/s, leading edge) -> GraphQL (a frame that is a whole chunk of the feed resolved and serialized once per selection, shared by every client) over a websocket -> the client parsed the frame; the newest reading of each frame, for every client. Goal (issue 10): p99 under 5 ms: $goal. The 100 clients run in the benchmark's process on the same 2 cores as the leader, and their JSON parsing is in the figure."
  printf '%s\n' "$body"
  record "Live delivery" "$body" "live"
}

bench_deploy() {
  bash scripts/setup.sh
  cargo build -q --release -p trellis-server -p trellis-agent -p trellis-tests --bins \
    --test deploy_bench
  local out
  out=$(cargo test -q --release -p trellis-tests --test deploy_bench -- --ignored --nocapture 2>&1) || {
    echo "deploy benchmark failed:" >&2
    tail -40 <<<"$out" >&2
    return 1
  }
  fig() { awk -v n="$1" '$1 == n {print $2}' <<<"$out"; }
  local entries one_goal roll_goal
  entries=$(fig deploy_rollout_entries)
  one_goal=$(python3 -c "print('met' if $(fig deploy_one_ratio) <= 1.1 else 'MISSED')")
  roll_goal=$(python3 -c "print('met' if $(fig deploy_rollout_ratio) <= 2 else 'MISSED')")
  local body="| what | Trellis | beside | ratio | goal |
|---|---:|---:|---:|---|
| deploy to one node: createDeployment -> RUNNING in the API vs \`docker run -d\` ($(fig deploy_one_rounds) rounds, medians) | $(fig deploy_one_trellis_ms) ms | $(fig deploy_one_docker_run_ms) ms | **$(fig deploy_one_ratio)x** | <= 1.1x: $one_goal |
| rollout of a new env value to $entries node entries vs 1 (5 rounds each, medians; all at once, minReadySecs 0) | $(fig deploy_rollout_${entries}_ms) ms | $(fig deploy_rollout_1_ms) ms | **$(fig deploy_rollout_ratio)x** | <= 2x: $roll_goal |
| for scale: \`docker run -d\` of $entries containers at once vs 1 on the same engine (5 rounds, medians) | $(fig deploy_by_hand_${entries}_ms) ms | $(fig deploy_by_hand_1_ms) ms | $(fig deploy_by_hand_ratio)x | |

$(fig deploy_many) deployments on the leader's node: all RUNNING after $(fig deploy_many_converge_s) s; the leader's CPU $(fig deploy_many_cpu_converging) % while converging and $(fig deploy_many_cpu_quiet) % over a quiet minute; RSS $(fig deploy_many_rss_before) MiB before, $(fig deploy_many_rss_after) MiB after (high-water mark $(fig deploy_many_hwm) MiB); $(fig deploy_many_containers) containers running, $(fig deploy_many_left) left after removing them all. One Docker engine on 2 cores serves every node entry: the $entries entries' containers are made and started by one dockerd."
  printf '%s\n' "$body"
  record "Container deployments" "$body" "deploy"
}

bench_images() {
  bash scripts/setup.sh
  cargo build -q --release -p trellis-server -p trellis-agent -p trellis-tests --bins \
    --test images_bench
  local out
  out=$(cargo test -q --release -p trellis-tests --test images_bench -- --ignored --nocapture 2>&1) || {
    echo "images benchmark failed:" >&2
    tail -40 <<<"$out" >&2
    return 1
  }
  fig() { awk -v n="$1" '$1 == n {print $2}' <<<"$out"; }
  local size growth goal
  size=$(fig images_size_mib)
  growth=$(fig images_leader_hwm_growth_mib)
  goal=$(python3 -c "print('met' if $growth < $size / 4 else 'MISSED')")
  local body="| what | Trellis | beside | ratio |
|---|---:|---:|---:|
| sideload of a $size MiB image into a second dockerd over TCP: sideloadImage -> DONE vs \`docker save | docker -H load\` through the same proxy ($(fig images_rounds) rounds, medians) | $(fig images_sideload_trellis_ms) ms ($(fig images_sideload_mib_per_s) MiB/s) | $(fig images_sideload_cli_ms) ms | **$(fig images_sideload_ratio)x** |

The leader's peak RSS: $(fig images_leader_hwm_before_mib) MiB before the first transfer, $(fig images_leader_hwm_after_mib) MiB after the last (growth $growth MiB for a $size MiB image; goal, no copy of the image held, i.e. growth well under a quarter of it: $goal); RSS after: $(fig images_leader_rss_after_mib) MiB."
  printf '%s\n' "$body"
  record "Images: sideload" "$body" "images"
}

for name in "${wanted[@]}"; do
  case "$name" in
    web) bench_web ;;
    footprint) bench_footprint ;;
    liveness) bench_liveness ;;
    ingest) bench_ingest ;;
    query) bench_query ;;
    live) bench_live ;;
    deploy) bench_deploy ;;
    images) bench_images ;;
    *) echo "bench.sh: no benchmark named $name (have: ${all[*]})" >&2; exit 2 ;;
  esac
done
