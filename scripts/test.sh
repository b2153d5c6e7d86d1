#!/usr/bin/env bash
# Runs every Trellis check and test on a Debian machine, doing all set-up first (packages, rustup
# targets, wasm-bindgen, PostgreSQL). Safe to re-run. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
source scripts/services.sh

# Each step says how long the one before took, so a slow step is plain in CI's log.
started=$SECONDS
last=$SECONDS
step() {
  printf '\n== %s == (previous step: %d s)\n' "$*" $((SECONDS - last))
  last=$SECONDS
}

step "format"
cargo fmt --all -- --check

step "lint (host crates, then the web app for wasm32)"
cargo clippy --workspace --exclude trellis-frontend --all-targets -- -D warnings
cargo clippy -p trellis-frontend --target wasm32-unknown-unknown -- -D warnings

step "the Raspberry Pi agent builds for the Pi (aarch64, rppal; run under qemu by tests/pi_agent.rs)"
cargo build -p trellis-agent --target aarch64-unknown-linux-gnu --features rpi

step "build the web app, the binaries, and the static leader for the container image"
bash scripts/build-web.sh
cargo build -p trellis-server -p trellis-agent
cargo build --profile static-test --target x86_64-unknown-linux-musl -p trellis-server

step "tests"
status=0
cargo test --workspace --exclude trellis-frontend --no-fail-fast || status=$?

printf '\n== done == (tests: %d s; whole run: %d s)\n' $((SECONDS - last)) $((SECONDS - started))

# Docker objects are labelled by the tests and removed by them; sweep any left by a killed run.
docker ps -aq --filter label=trellis-test | xargs -r docker rm -f >/dev/null
docker images -q --filter label=trellis-test | xargs -r docker rmi -f >/dev/null
exit "$status"
