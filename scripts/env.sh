# Shared settings for the Trellis scripts (sourced, not run).
# A cargo target directory outside the clone, so every clone on this machine (and CI) reuses builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/trellis/target}"
export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$CARGO_TARGET_DIR"
