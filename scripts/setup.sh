#!/usr/bin/env bash
# One-time (and safe to re-run) set-up of a Debian machine for building and testing Trellis:
# Debian packages, rustup targets and the wasm-bindgen CLI that matches Cargo.lock.
# Every step checks first, so a second run is fast and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
want_pkgs=(mosquitto postgresql socat chromium chromium-driver brotli busybox-static fuse-overlayfs docker-registry apache2-utils musl-tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static file curl unzip python3-pip ca-certificates)
for p in "${want_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The toolchain and its targets come from rust-toolchain.toml.
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain list | grep -q "^$toolchain" || rustup toolchain install "$toolchain" --profile minimal -c rustfmt,clippy
for t in wasm32-unknown-unknown x86_64-unknown-linux-musl aarch64-unknown-linux-gnu; do
  rustup target list --installed --toolchain "$toolchain" | grep -qx "$t" || rustup target add --toolchain "$toolchain" "$t"
done
rustup component list --installed --toolchain "$toolchain" | grep -q '^clippy' || rustup component add --toolchain "$toolchain" clippy rustfmt

# wasm-bindgen-cli must equal the wasm-bindgen version in Cargo.lock (TOOLCHAIN.md: no --locked here).
wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$wb_version" ]; then
  echo "setup: installing wasm-bindgen-cli $wb_version"
  cargo install wasm-bindgen-cli --version "$wb_version" --force
fi
