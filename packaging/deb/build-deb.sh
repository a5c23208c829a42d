#!/usr/bin/env bash
# Packs an already-built static edge-router binary into a .deb (nothing is compiled here):
#
#   packaging/deb/build-deb.sh BINARY OUT_DIR      # -> OUT_DIR/edge-router_VERSION_ARCH.deb
#
# The architecture (amd64 or arm64) is read off the binary with `file`; the version is the
# workspace's (Cargo.toml), or EDGE_ROUTER_DEB_VERSION (tests/deb_package.sh makes an upgrade).
# The package holds:
#   /usr/bin/edge-router                           the static binary
#   /usr/lib/systemd/system/edge-router.service    packaging/systemd/edge-router.service, run
#                                                  from /usr/bin (not enabled at install)
#   /etc/edge-router/edge-router.toml              packaging/deb/edge-router.toml, a conffile:
#                                                  upgrades keep local changes, purge removes it
#   /usr/share/edge-router/plugins/*.wasm          the Rust example plugins (plugins/dist; build
#                                                  them first with plugins/build.sh)
#   /usr/share/doc/edge-router/                    README.md, plugins.md, copyright, examples/
# and maintainer scripts (packaging/deb/{postinst,prerm,postrm}) that reload systemd, restart a
# running service after an upgrade, stop and disable it on removal, and on purge delete its
# state, cache and logs. dpkg-deb builds from a staged tree: no cargo-deb to compile, and the
# same script packs both architectures from binaries built elsewhere (CI reuses the binaries
# tests/static_binary.sh and tests/arm64_binary.sh built). Needs dpkg-deb, file, gzip.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY OUT_DIR" >&2; exit 2; }
bin="$1"
out="$2"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

[ -x "$bin" ] || { echo "build-deb.sh: no executable at $bin" >&2; exit 1; }
case "$(file -b "$bin")" in
  *"x86-64"*) arch=amd64 ;;
  *"ARM aarch64"*) arch=arm64 ;;
  *) echo "build-deb.sh: $bin is neither x86-64 nor ARM aarch64: $(file -b "$bin")" >&2; exit 1 ;;
esac
version="${EDGE_ROUTER_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)}"
[ -n "$version" ] || { echo "build-deb.sh: no version in $repo/Cargo.toml" >&2; exit 1; }
plugins=(json-filter route-by-field enrich-lookup log-to-json noop-filter)
for p in "${plugins[@]}"; do
  [ -f "$repo/plugins/dist/$p.wasm" ] \
    || { echo "build-deb.sh: no plugins/dist/$p.wasm (run plugins/build.sh)" >&2; exit 1; }
done

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/edge-router_${version}_$arch"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/edge-router" \
  "$root/usr/share/edge-router/plugins" "$root/usr/share/doc/edge-router/examples"
install -m 0755 "$bin" "$root/usr/bin/edge-router"
# The unit as written for a hand install runs /usr/local/bin/edge-router; the package's is in /usr/bin.
sed 's#/usr/local/bin/edge-router#/usr/bin/edge-router#g' "$repo/packaging/systemd/edge-router.service" \
  > "$root/usr/lib/systemd/system/edge-router.service"
chmod 0644 "$root/usr/lib/systemd/system/edge-router.service"
install -m 0644 "$here/edge-router.toml" "$root/etc/edge-router/edge-router.toml"
for p in "${plugins[@]}"; do
  install -m 0644 "$repo/plugins/dist/$p.wasm" "$root/usr/share/edge-router/plugins/$p.wasm"
done
install -m 0644 "$repo/README.md" "$root/usr/share/doc/edge-router/README.md"
install -m 0644 "$repo/plugins/README.md" "$root/usr/share/doc/edge-router/plugins.md"
install -m 0644 "$here/copyright" "$root/usr/share/doc/edge-router/copyright"
install -m 0644 "$repo"/configs/*.toml "$root/usr/share/doc/edge-router/examples/"

echo /etc/edge-router/edge-router.toml > "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: edge-router
Version: $version
Architecture: $arch
Maintainer: edge-router developers <edge-router@localhost>
Installed-Size: $installed_kib
Section: net
Priority: optional
Description: streaming records from edge hosts into Amazon Kinesis
 One static binary that ingests records (stdin, HTTP, QUIC, files), runs
 filter/enrich/route stages (builtin or WebAssembly plugins) and sends them to
 files, stdout, Kinesis Data Streams and Kinesis Data Firehose, with bounded
 memory, disk buffers and backpressure. Runs as the systemd service
 edge-router (Type=notify, watchdog, sandboxed); not enabled at install:
 edit /etc/edge-router/edge-router.toml, then systemctl enable --now edge-router.
CONTROL

mkdir -p "$out"
deb="$out/edge-router_${version}_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
