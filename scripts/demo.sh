#!/usr/bin/env bash
# Sets up and runs the demo: the sync server with a seeded demo clinic on
# SQLite, and the desktop app signed in as the demo receptionist.
#   scripts/demo.sh               server + app as reception
#   scripts/demo.sh --as doctor   a second app window as doctor (server already running)
# Data lives in $CLINIC_DEMO_DIR (default ~/.local/share/clinic-sync-demo);
# delete that folder to start over.
set -euo pipefail
cd "$(dirname "$0")/.."

user="reception"
second=""
if [ "${1:-}" = "--as" ]; then user="${2:?which demo user}"; second=1; fi

scripts/setup-deps.sh
data="${CLINIC_DEMO_DIR:-$HOME/.local/share/clinic-sync-demo}"
listen="${CLINIC_LISTEN:-127.0.0.1:8787}"
mkdir -p "$data"

echo "==> building (server, UI, desktop app)"
scripts/build-ui.sh
cargo build --locked -p clinic-server -p clinic-desktop

if [ -z "$second" ]; then
  target/debug/clinic-server --data-dir "$data/server" serve --demo --listen "$listen" &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf "http://$listen/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  cat <<MSG
==> demo server on http://$listen — accounts admin, doctor, doctor2, assistant, reception; password: demo
    Open a second window as a doctor to watch changes arrive live:
      scripts/demo.sh --as doctor
MSG
fi
echo "==> opening the desktop app as $user"
CLINIC_DATA_DIR="$data/desk-$user" CLINIC_SERVER="http://$listen" \
  CLINIC_LOGIN_USER="$user" CLINIC_LOGIN_PASSWORD=demo target/debug/clinic-desktop
