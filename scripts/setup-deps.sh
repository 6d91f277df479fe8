#!/usr/bin/env bash
# Installs what Clinic Sync needs to build, run and test, on Debian/Ubuntu.
# Idempotent: packages and tools already present are skipped.
#   scripts/setup-deps.sh          build + run (server, desktop app, UI)
#   scripts/setup-deps.sh --test   also the headless test tools (Xvfb, WebDriver, a
#                                  Secret Service for the desks' keys, openssl)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential pkg-config file libssl-dev
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev)
if [ "${1:-}" = "--test" ]; then
  # poppler-utils: pdftotext reads the printed PDFs back in the tests.
  packages+=(xvfb xauth webkit2gtk-driver dbus gnome-keyring openssl sqlite3 poppler-utils)
  # PostgreSQL server binaries: the scale-out tests and benchmarks start a
  # throwaway cluster of their own (tests/src/pg.rs), never a system one.
  if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    packages+=(postgresql)
  fi
fi

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
if ! command -v npm >/dev/null 2>&1; then
  echo "==> installing Node.js and npm"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi

if [ "${1:-}" = "--test" ] && ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
  echo "==> installing tauri-driver"
  cargo install tauri-driver --locked --version '^2'
fi

if [ "${1:-}" = "--test" ] && ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The UI's npm packages at the versions in ui/package-lock.json, reinstalled
# only when the lock file changed. `npm install --no-save` rather than
# `npm ci`: the npm shipped here writes lock files without the other
# platforms' optional packages (rollup, esbuild), which `npm ci` then rejects
# as out of sync; `install --no-save` follows the lock and never rewrites it.
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  echo "==> installing UI packages"
  (cd ui && npm install --no-save --no-audit --no-fund)
fi
