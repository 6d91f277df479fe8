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
#
# If the daemon ever exits while the command runs (a gnome-keyring crash
# when a client is killed mid-call was seen once in the fault tests), the
# bus starts it again on the next request. The bus's own service file would
# start a daemon on the user's default keyrings, locked, and every stored
# key would look lost; ours restarts the same throwaway keyring, unlocked,
# and says so on stderr so a crash is never silent.
mkdir -p "$keyrings/data" "$keyrings/services"
cat >"$keyrings/restart-daemon" <<SCRIPT
#!/bin/sh
echo "with-keyring: the keyring daemon had exited; starting it again on the same keyring" >&2
echo -n "clinic-session-keyring" | XDG_DATA_HOME="$keyrings/data" exec gnome-keyring-daemon --foreground --unlock --components=secrets
SCRIPT
chmod +x "$keyrings/restart-daemon"
cat >"$keyrings/services/org.freedesktop.secrets.service" <<SERVICE
[D-BUS Service]
Name=org.freedesktop.secrets
Exec=$keyrings/restart-daemon
SERVICE
# Our service directory comes first, so it wins over the system's file for
# the same name; the rest is the system's session bus configuration.
cat >"$keyrings/session.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <servicedir>$keyrings/services</servicedir>
  <include>/usr/share/dbus-1/session.conf</include>
</busconfig>
CONF
dbus-run-session --config-file="$keyrings/session.conf" -- bash -c '
  echo -n "clinic-session-keyring" | XDG_DATA_HOME="$0" gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1
  export CLINIC_KEYRING_READY=1
  exec "$@"' "$keyrings/data" "$@"
