#!/usr/bin/env bash
# Checks the installers scripts/package.sh made in target/package/:
# - the server .deb: its metadata, that it holds the binary, the systemd
#   unit, the defaults file and the maintainer scripts; the unit passes
#   `systemd-analyze verify` (and its exposure score is printed); the
#   maintainer scripts parse; extracted into a scratch root (`dpkg -x`,
#   no scripts run) its binary runs (`--version`) and serves `tls init`.
# - the desk .deb, when there is one: the app binary, the desktop entry
#   and the icon.
# Exits non-zero on the first failed check.
set -euo pipefail
cd "$(dirname "$0")/.."
out="target/package"
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
checks=0
ok() {
  checks=$((checks + 1))
  echo "ok: $*"
}

server_deb="$(ls "$out"/clinic-server_*.deb 2>/dev/null | head -1 || true)"
[ -n "$server_deb" ] || fail "no server .deb in $out (run scripts/package.sh --server)"
echo "==> $server_deb"
info="$(dpkg-deb -I "$server_deb")"
for field in "Package: clinic-server" "Depends: adduser" "Architecture: $(dpkg --print-architecture)"; do
  grep -q "$field" <<<"$info" || fail "control lacks '$field'"
done
ok "control fields"
for script in postinst prerm postrm conffiles; do
  grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\*? *$script" <<<"$info" || fail "no $script in the control archive"
done
ok "maintainer scripts and conffiles present"
contents="$(dpkg-deb -c "$server_deb")"
for path in ./usr/bin/clinic-server ./lib/systemd/system/clinic-server.service ./etc/default/clinic-server ./usr/share/doc/clinic-server/DEPLOYMENT.md; do
  grep -q " $path\$" <<<"$contents" || fail "$path not in the package"
done
grep -qE '^-rwxr-xr-x root/root .* \./usr/bin/clinic-server$' <<<"$contents" || fail "binary not 0755 root:root"
ok "binary, unit, defaults and docs in the data archive, owned by root"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -x "$server_deb" "$scratch/root"
dpkg-deb -e "$server_deb" "$scratch/control"
for script in postinst prerm postrm; do
  sh -n "$scratch/control/$script" || fail "$script does not parse"
done
grep -q 'adduser --system' "$scratch/control/postinst" || fail "postinst makes no system user"
grep -q 'install -d -m 0700 -o clinic -g clinic' "$scratch/control/postinst" || fail "postinst does not make the data dir 0700"
ok "maintainer scripts parse; postinst makes user clinic and a 0700 data dir"

unit="$scratch/root/lib/systemd/system/clinic-server.service"
for setting in User=clinic StateDirectoryMode=0700 ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes PrivateTmp=yes Restart=on-failure ReadWritePaths=/var/lib/clinic-server UMask=0077 EnvironmentFile=-/etc/default/clinic-server; do
  grep -qx "$setting" "$unit" || fail "unit lacks $setting"
done
ok "unit hardening settings"
if command -v systemd-analyze >/dev/null 2>&1; then
  # Verified as installed, except that ExecStart points at the extracted
  # binary (the scratch root is no system systemd could boot).
  mkdir -p "$scratch/units"
  sed "s|^ExecStart=/usr/bin/clinic-server|ExecStart=$scratch/root/usr/bin/clinic-server|" "$unit" >"$scratch/units/clinic-server.service"
  if systemd-analyze verify "$scratch/units/clinic-server.service" 2>"$scratch/verify.log"; then
    ok "systemd-analyze verify"
  else
    cat "$scratch/verify.log" >&2
    fail "systemd-analyze verify"
  fi
  exposure="$(systemd-analyze security --offline=yes "$scratch/units/clinic-server.service" 2>/dev/null | tail -1 || true)"
  [ -n "$exposure" ] && echo "   systemd-analyze security: $exposure"
else
  echo "skip: systemd-analyze not installed; unit not verified"
fi

version="$("$scratch/root/usr/bin/clinic-server" --version)"
grep -q '^clinic-server ' <<<"$version" || fail "clinic-server --version printed '$version'"
"$scratch/root/usr/bin/clinic-server" --data-dir "$scratch/data" tls init --hostname clinic-server.lan >"$scratch/tls.out"
grep -q 'CA fingerprint (SHA-256): ' "$scratch/tls.out" || fail "tls init printed no fingerprint"
[ "$(stat -c %a "$scratch/data")" = 700 ] || fail "data dir not 0700"
[ "$(stat -c %a "$scratch/data/tls/server-key.pem")" = 600 ] || fail "server key not 0600"
ok "extracted binary runs: $version; tls init works, data dir 0700, key 0600"

desk_deb="$(ls "$out"/*.deb 2>/dev/null | grep -v '/clinic-server_' | head -1 || true)"
if [ -n "$desk_deb" ]; then
  echo "==> $desk_deb"
  desk_info="$(dpkg-deb -I "$desk_deb")"
  grep -qE '^ Package: ' <<<"$desk_info" || fail "desk .deb has no control"
  grep -qE '^ Depends: .*libwebkit2gtk-4\.1' <<<"$desk_info" || fail "desk .deb does not depend on WebKitGTK"
  dc="$(dpkg-deb -c "$desk_deb")"
  # The Tauri bundler writes member names without the leading `./`.
  grep -qE ' (\./)?usr/bin/clinic-desktop$' <<<"$dc" || fail "no /usr/bin/clinic-desktop in the desk .deb"
  grep -qE ' (\./)?usr/share/applications/.*\.desktop$' <<<"$dc" || fail "no desktop entry"
  grep -qE ' (\./)?usr/share/icons/hicolor/.*\.png$' <<<"$dc" || fail "no icon"
  dpkg-deb -x "$desk_deb" "$scratch/desk"
  entry="$(ls "$scratch"/desk/usr/share/applications/*.desktop | head -1)"
  grep -q '^Categories=.*MedicalSoftware' "$entry" || fail "desktop entry lacks the category: $(grep Categories "$entry")"
  ok "desk .deb: binary, desktop entry ($(grep '^Categories=' "$entry")), icon"
else
  echo "skip: no desk .deb in $out (scripts/package.sh --desk makes it)"
fi
echo "$checks checks passed"
