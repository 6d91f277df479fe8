#!/usr/bin/env bash
# Type-checks and builds the web UI into ui/dist (the desktop app embeds it).
set -euo pipefail
cd "$(dirname "$0")/../ui"
npm run --silent build
