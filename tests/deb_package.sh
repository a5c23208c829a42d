#!/usr/bin/env bash
# The .deb packages: packs the static binaries tests/static_binary.sh and tests/arm64_binary.sh
# built (nothing is compiled here) with packaging/deb/build-deb.sh, checks each package's
# `dpkg-deb --info` (name, version, architecture, conffile, maintainer scripts) and
# `dpkg-deb --contents` (exactly the expected files, modes and owners), that the packed binary is
# the one built, that the unit runs it from /usr/bin, and that the default config validates.
# Then installs the amd64 package with dpkg into a scratch root (`--root`, maintainer scripts
# run outside it with DPKG_ROOT set, so no systemd is touched), edits the config, upgrades to a
# newer version (the edit is kept), removes (the config stays) and purges (config, state, cache
# and logs go). Run by tests/run.sh after both binaries are built; needs dpkg-deb, dpkg, file.
#
#   EDGE_ROUTER_ARM64_PROFILE   the profile of the ARM64 binary to pack (default dist-ci, as
#                               tests/arm64_binary.sh)
#   EDGE_ROUTER_X86_BIN, EDGE_ROUTER_ARM64_BIN   other binaries to pack (built elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
x86_bin="${EDGE_ROUTER_X86_BIN:-$target_dir/x86_64-unknown-linux-musl/dist/edge-router}"
arm_bin="${EDGE_ROUTER_ARM64_BIN:-$target_dir/aarch64-unknown-linux-musl/${EDGE_ROUTER_ARM64_PROFILE:-dist-ci}/edge-router}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
fail() { echo "deb_package.sh: $*" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# What every package holds, as `dpkg-deb --contents` lists it: mode, owner, path (sizes and dates
# left out). Directories are listed too.
expected_contents() {
  cat <<EOF
drwxr-xr-x root/root ./
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/edge-router/
-rw-r--r-- root/root ./etc/edge-router/edge-router.toml
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/bin/
-rwxr-xr-x root/root ./usr/bin/edge-router
drwxr-xr-x root/root ./usr/lib/
drwxr-xr-x root/root ./usr/lib/systemd/
drwxr-xr-x root/root ./usr/lib/systemd/system/
-rw-r--r-- root/root ./usr/lib/systemd/system/edge-router.service
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/edge-router/
-rw-r--r-- root/root ./usr/share/doc/edge-router/README.md
-rw-r--r-- root/root ./usr/share/doc/edge-router/copyright
drwxr-xr-x root/root ./usr/share/doc/edge-router/examples/
EOF
  for c in configs/*.toml; do
    echo "-rw-r--r-- root/root ./usr/share/doc/edge-router/examples/$(basename "$c")"
  done
  cat <<EOF
-rw-r--r-- root/root ./usr/share/doc/edge-router/plugins.md
drwxr-xr-x root/root ./usr/share/edge-router/
drwxr-xr-x root/root ./usr/share/edge-router/plugins/
EOF
  for p in enrich-lookup json-filter log-to-json noop-filter route-by-field; do
    echo "-rw-r--r-- root/root ./usr/share/edge-router/plugins/$p.wasm"
  done
}

check_package() {
  local bin="$1" arch="$2"
  [ -x "$bin" ] || fail "no binary at $bin (tests/static_binary.sh and tests/arm64_binary.sh build them)"
  local deb
  deb="$(packaging/deb/build-deb.sh "$bin" "$work/out")"
  [ "$deb" = "$work/out/edge-router_${version}_$arch.deb" ] || fail "unexpected package name $deb"

  local info
  info="$(dpkg-deb --info "$deb")"
  for want in "Package: edge-router" "Version: $version" "Architecture: $arch" "Section: net"; do
    grep -qxF " $want" <<<"$info" || fail "$deb: --info lacks '$want':"$'\n'"$info"
  done
  grep -q '^ Depends:' <<<"$info" && fail "$deb: a static binary depends on nothing:"$'\n'"$info"
  for script in conffiles postinst prerm postrm; do
    grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +\*? *$script( |$)" <<<"$info" \
      || fail "$deb: --info lists no $script:"$'\n'"$info"
  done
  [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/edge-router/edge-router.toml ] \
    || fail "$deb: conffiles is not exactly /etc/edge-router/edge-router.toml"

  dpkg-deb --contents "$deb" | awk '{print $1, $2, $6}' | sort > "$work/contents"
  expected_contents | sort > "$work/expected"
  diff -u "$work/expected" "$work/contents" || fail "$deb: --contents differs from the expected list (above)"

  rm -rf "$work/x" && dpkg-deb -x "$deb" "$work/x"
  cmp "$bin" "$work/x/usr/bin/edge-router" || fail "$deb: the packed binary is not the one built"
  grep -qx 'ExecStart=/usr/bin/edge-router run -c /etc/edge-router/edge-router.toml' \
    "$work/x/usr/lib/systemd/system/edge-router.service" || fail "$deb: the unit does not run /usr/bin/edge-router"
  grep -q /usr/local "$work/x/usr/lib/systemd/system/edge-router.service" \
    && fail "$deb: the unit still names /usr/local"
  local size
  size=$(stat -c %s "$deb")
  echo "deb_package.sh: ok: $(basename "$deb"), $size bytes ($((size / 1048576)) MiB)"
}

check_package "$x86_bin" amd64
check_package "$arm_bin" arm64

# The default config is valid, checked by the binary it ships with (the service's paths need not
# exist to validate).
"$x86_bin" validate -c packaging/deb/edge-router.toml > "$work/validate.log" 2>&1 \
  || { cat "$work/validate.log" >&2; fail "the default config does not validate"; }

# Install, upgrade, remove and purge the amd64 package in a scratch root.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg_() {
  dpkg --root="$root" --admindir="$root/var/lib/dpkg" --log=/dev/null --force-script-chrootless \
    --force-not-root --no-triggers "$@" > "$work/dpkg.log" 2>&1 \
    || { cat "$work/dpkg.log" >&2; fail "dpkg $* failed"; }
}
dpkg_ -i "$work/out/edge-router_${version}_amd64.deb"
[ -x "$root/usr/bin/edge-router" ] || fail "install: no /usr/bin/edge-router"
"$root/usr/bin/edge-router" --version > /dev/null
conf="$root/etc/edge-router/edge-router.toml"
cmp packaging/deb/edge-router.toml "$conf" || fail "install: the config is not the default"
echo '# changed by the operator' >> "$conf"
EDGE_ROUTER_DEB_VERSION="$version+upgrade" packaging/deb/build-deb.sh "$x86_bin" "$work/up" > /dev/null
dpkg_ -i "$work/up/edge-router_${version}+upgrade_amd64.deb"
dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Version}' edge-router | grep -qxF "$version+upgrade" \
  || fail "upgrade: the installed version is not $version+upgrade"
tail -n1 "$conf" | grep -qx '# changed by the operator' || fail "upgrade: the changed config was replaced"
mkdir -p "$root/var/lib/private/edge-router/buffer" "$root/var/log/edge-router"
ln -s private/edge-router "$root/var/lib/edge-router"
dpkg_ --remove edge-router
[ ! -e "$root/usr/bin/edge-router" ] || fail "remove: the binary is still there"
[ ! -e "$root/usr/lib/systemd/system/edge-router.service" ] || fail "remove: the unit is still there"
tail -n1 "$conf" | grep -qx '# changed by the operator' || fail "remove: the config was not kept"
[ -d "$root/var/lib/private/edge-router/buffer" ] || fail "remove: the state was deleted"
dpkg_ --purge edge-router
for gone in etc/edge-router var/lib/edge-router var/lib/private/edge-router var/log/edge-router; do
  [ ! -e "$root/$gone" ] && [ ! -L "$root/$gone" ] || fail "purge: /$gone is still there"
done
echo "deb_package.sh: ok: install, upgrade (config kept), remove (config kept), purge (all gone)"
