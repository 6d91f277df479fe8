#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, unit, golden, storage
# conformance and end-to-end tests (real server binary, real SQLite, real
# WebSockets).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
