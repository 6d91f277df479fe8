#!/usr/bin/env bash
# Installs the system packages Clinic Sync needs to build and test, on
# Debian/Ubuntu. Idempotent: packages already present are skipped, and apt is
# only touched when something is missing.
set -euo pipefail

packages=(build-essential pkg-config)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing system packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo (Rust 1.90 or newer) is required; install it with rustup: https://rustup.rs" >&2
  exit 1
fi
