#!/usr/bin/env bash
# Builds the installers into target/package/:
#   clinic-server_<version>_<arch>.deb   the server, its hardened systemd unit,
#                                        /etc/default/clinic-server, a `clinic`
#                                        user made by postinst
#   clinic-desktop_<version>_<arch>.deb  the desktop app (Tauri bundler)
#   clinic-desktop_<version>_<arch>.AppImage  (when the bundler can fetch its
#                                        tools: linuxdeploy, AppRun, from GitHub)
#
#   scripts/package.sh            both
#   scripts/package.sh --server   the server .deb only (about a minute from a warm target/)
#   scripts/package.sh --desk     the desktop packages only
#
# PACKAGE_PROFILE=debug packages the debug server binary already built (no
# release build): what CI does to check the package's contents in seconds.
# Ship only packages built without it.
#
# scripts/check-packages.sh inspects what this made.
# Needs: dpkg-deb (dpkg), and for the desk what scripts/setup-deps.sh
# installs plus `@tauri-apps/cli` v2 from npm (fetched by npx on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
case "$what" in all | --server | --desk) ;; *)
  echo "usage: scripts/package.sh [--server|--desk]" >&2
  exit 2
  ;;
esac
out="target/package"
mkdir -p "$out"
arch="$(dpkg --print-architecture)"

server_deb() {
  local version stage deb
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' server/Cargo.toml | head -1)"
  local profile="${PACKAGE_PROFILE:-release}" binary
  binary="${CARGO_TARGET_DIR:-target}/$profile/clinic-server"
  if [ "$profile" = release ]; then
    echo "==> server: release build (clinic-server $version)"
    cargo build --locked --release -p clinic-server
  else
    echo "==> server: packaging the $profile build (for checks only, not for shipping)"
    [ -x "$binary" ] || { echo "error: $binary is not built" >&2; exit 1; }
  fi
  stage="$(mktemp -d)"
  install -D -m 0755 "$binary" "$stage/usr/bin/clinic-server"
  strip --strip-unneeded "$stage/usr/bin/clinic-server" 2>/dev/null || true
  install -D -m 0644 packaging/server/clinic-server.service "$stage/lib/systemd/system/clinic-server.service"
  install -D -m 0644 packaging/server/clinic-server.default "$stage/etc/default/clinic-server"
  install -D -m 0644 docs/DEPLOYMENT.md "$stage/usr/share/doc/clinic-server/DEPLOYMENT.md"
  install -D -m 0644 docs/PROTOCOL.md "$stage/usr/share/doc/clinic-server/PROTOCOL.md"
  cat >"$stage/usr/share/doc/clinic-server/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: clinic-server
License: MIT
Files: *
License: MIT
EOF
  install -d -m 0755 "$stage/DEBIAN"
  install -m 0755 packaging/server/debian/postinst packaging/server/debian/prerm packaging/server/debian/postrm "$stage/DEBIAN/"
  install -m 0644 packaging/server/debian/conffiles "$stage/DEBIAN/conffiles"
  local size
  size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
  cat >"$stage/DEBIAN/control" <<EOF
Package: clinic-server
Version: $version
Architecture: $arch
Maintainer: Clinic Sync <clinic-sync@localhost>
Installed-Size: $size
Depends: adduser, libc6
Section: net
Priority: optional
Description: Clinic Sync server
 The sync server of Clinic Sync: the authority on a clinic's data. Applies
 every desk's changes exactly once, streams them live to every other desk
 over WebSocket (HTTP long-poll as the fallback), keeps an audit trail.
 TLS with a clinic CA made by "clinic-server tls init". Runs as the
 system user clinic under a hardened systemd unit; data in
 /var/lib/clinic-server (mode 0700).
EOF
  deb="$out/clinic-server_${version}_${arch}.deb"
  dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
  rm -rf "$stage"
  echo "==> $deb ($(du -h "$deb" | cut -f1))"
}

desk_packages() {
  echo "==> desk: UI packages and build"
  scripts/setup-deps.sh
  scripts/build-ui.sh
  # The bundler CLI from npm, major version 2 (the registry also has 3.0
  # alphas), run through npx so it stays out of the UI's own packages.
  tauri=(npx --yes '@tauri-apps/cli@^2')
  echo "==> desk: tauri build (release, custom-protocol) → .deb"
  # `tauri build` runs cargo itself: a release build of clinic-desktop with
  # the `custom-protocol` feature, then the bundler.
  (cd src-tauri && "${tauri[@]}" build --bundles deb -- --locked)
  local bundle="target/release/bundle" version
  version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' src-tauri/tauri.conf.json | head -1)"
  # The bundler names files after the product name, with a space; give
  # them plain names.
  cp "$bundle/deb/Clinic Sync_${version}_${arch}.deb" "$out/clinic-desktop_${version}_${arch}.deb"
  echo "==> desk: AppImage (the bundler downloads linuxdeploy and its plugins from GitHub)"
  local log="$out/appimage.log"
  if (cd src-tauri && "${tauri[@]}" build --bundles appimage -- --locked) >"$log" 2>&1; then
    cp "$bundle"/appimage/*.AppImage "$out/clinic-desktop_${version}_${arch}.AppImage"
  else
    echo "warning: no AppImage: the bundler could not fetch its tools; what it tried:" >&2
    grep -iE 'download|http|github|error|failed' "$log" | sort -u | head -20 >&2 || true
    echo "(full log: $log)" >&2
  fi
}

case "$what" in
all)
  server_deb
  desk_packages
  ;;
--server) server_deb ;;
--desk) desk_packages ;;
esac
ls -l "$out"
