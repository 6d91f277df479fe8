#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, Rust unit / golden /
# conformance / end-to-end tests (real server binary, real SQLite, real
# WebSockets, real TLS), UI unit tests (Vitest), and the desktop app end to
# end through WebDriver (tauri-driver + WebKitWebDriver under Xvfb). The
# tests run with a real Secret Service (a throwaway gnome-keyring in a
# private D-Bus session: scripts/with-keyring.sh), where the desks keep
# their encryption keys.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CLINIC_KEYRING_READY:-}" ]; then
  scripts/setup-deps.sh --test
  exec scripts/with-keyring.sh "$0" "$@"
fi

# Each stage says how long it took, so a slow CI run shows where time went.
stage_name="" stage_start=$SECONDS
stage() {
  if [ -n "$stage_name" ]; then
    echo "==> ($stage_name: $((SECONDS - stage_start)) s)"
  fi
  stage_name=$1 stage_start=$SECONDS
  [ -n "$1" ] && echo "==> $1"
  return 0
}

stage "UI: type-check and build"
scripts/build-ui.sh
stage "cargo fmt --check"
cargo fmt --all -- --check
scripts/check-commands.sh
stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
stage "cargo test"
# The end-to-end tests run the real binaries: `cargo test` rebuilds only the
# binaries of packages with tests of their own, so build every one first (a
# stale `clinic` would meet a mirror from a newer schema).
cargo build --workspace --bins --locked
cargo test --workspace --locked
stage "fuzz (bounded CI run; scripts/fuzz.sh without --ci is the long run)"
scripts/fuzz.sh --ci
stage "benchmark smoke run (keeps clinic-bench working; judges no speed)"
# The binaries built above, with the workspace's features: building the
# package alone resolves its features anew and recompiles ~110 crates.
"${CARGO_TARGET_DIR:-target}/debug/clinic-bench" --smoke
stage "server .deb (packaged from the debug build) and its contents"
# The release .debs and the desk's bundle come from scripts/package.sh; here
# the same packaging runs on the binary built above, and check-packages
# verifies the unit, the maintainer scripts and the extracted binary.
PACKAGE_PROFILE=debug scripts/package.sh --server
scripts/check-packages.sh
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- ui/src/bindings; then
  echo "error: ui/src/bindings is out of date with the Rust types; commit the regenerated files" >&2
  git diff --stat -- ui/src/bindings >&2
  exit 1
fi
stage "UI unit tests (Vitest)"
(cd ui && npx --no-install vitest run)
stage "desktop app end to end (WebDriver, Xvfb)"
cargo build --locked -p clinic-desktop -p clinic-server -p clinic-cli
(cd ui && xvfb-run -a timeout 900 node --test --test-concurrency=1 e2e/)
stage ""
echo "==> all tests passed in $SECONDS s"
