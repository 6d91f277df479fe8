#!/usr/bin/env bash
# Sets up and runs the demo: the sync server with a seeded demo clinic on
# SQLite. Data lives in $CLINIC_DEMO_DIR (default: ~/.local/share/clinic-sync-demo);
# delete that folder to start over.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-deps.sh

data_dir="${CLINIC_DEMO_DIR:-$HOME/.local/share/clinic-sync-demo}"
listen="${CLINIC_LISTEN:-127.0.0.1:8787}"
echo "==> building clinic-server (release)"
cargo build --release --locked -p clinic-server
cat <<MSG
==> starting the demo server on http://$listen (data in $data_dir)
    Sign in with any of: admin, doctor, doctor2, assistant, reception — password: demo
    Try it:
      curl -s http://$listen/healthz
      curl -s -X POST http://$listen/v1/login -H 'content-type: application/json' \\
           -d '{"username":"reception","password":"demo"}'
    API reference: docs/PROTOCOL.md (and http://$listen/v1/openapi.json). Ctrl-C stops it.
MSG
exec target/release/clinic-server --data-dir "$data_dir" serve --demo --listen "$listen"
