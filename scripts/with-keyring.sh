#!/usr/bin/env bash
# Runs a command with a real Secret Service: a private D-Bus session bus and
# an unlocked gnome-keyring in it (the OS key store the desks keep their
# mirror keys in). Tests and the demo use it on machines without a desktop
# session; where one already runs (DBUS_SESSION_BUS_ADDRESS answering a
# Secret Service), the command runs as is.
#   scripts/with-keyring.sh cargo test ...
set -euo pipefail
if [ -n "${CLINIC_KEYRING_READY:-}" ]; then exec "$@"; fi
if ! command -v dbus-run-session >/dev/null || ! command -v gnome-keyring-daemon >/dev/null; then
  echo "error: dbus-run-session and gnome-keyring-daemon are needed (scripts/setup-deps.sh installs them)" >&2
  exit 1
fi
keyrings=$(mktemp -d)
trap 'rm -rf "$keyrings"' EXIT
# A throwaway keyring: its files in a temporary folder (not the user's own
# keyrings), created and unlocked with a fixed password, gone afterwards.
dbus-run-session -- bash -c '
  echo -n "clinic-session-keyring" | XDG_DATA_HOME="$0" gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1
  export CLINIC_KEYRING_READY=1
  exec "$@"' "$keyrings" "$@"
