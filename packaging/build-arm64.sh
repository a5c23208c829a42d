#!/usr/bin/env bash
# The ARM64 static binary, in one command (README "Static binaries"):
#
#   packaging/build-arm64.sh        # -> $CARGO_TARGET_DIR/aarch64-unknown-linux-musl/dist/edge-router
#
# which is `cargo zigbuild --locked --profile dist --target aarch64-unknown-linux-musl -p
# edge-router` after installing what it needs when missing: the Rust target (rustup), and zig as
# the cross C compiler and linker for the C parts (aws-lc, zstd, mimalloc), from PyPI (`ziglang`,
# and `cargo-zigbuild`, which drives it) into a venv under the cargo target directory. Nothing
# else: no Debian cross toolchain, no musl sysroot (zig carries musl's headers and libc).
# `--profile NAME` builds another profile (tests/arm64_binary.sh uses `dist-ci`); further
# arguments go to cargo. Needs python3 with venv (Debian python3-venv) and rustup.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=dist
if [ "${1:-}" = "--profile" ]; then profile="$2"; shift 2; fi
target=aarch64-unknown-linux-musl
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

# Pinned: the versions CI and the README's numbers were made with.
ziglang_version=0.15.1
zigbuild_version=0.24.0
# One fixed place: cargo-zigbuild's linker wrapper is named after this path, and a new path
# means a new linker, so cargo would rebuild everything (the pinned versions are checked below).
venv="$target_dir/zig-venv"
if ! "$venv/bin/cargo-zigbuild" --version 2>/dev/null | grep -qx "cargo-zigbuild $zigbuild_version" \
  || ! "$venv/bin/python" -m ziglang version >/dev/null 2>&1; then
  echo "build-arm64.sh: installing ziglang $ziglang_version and cargo-zigbuild $zigbuild_version (PyPI) into $venv" >&2
  mkdir -p "$target_dir"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "ziglang==$ziglang_version" "cargo-zigbuild==$zigbuild_version" >&2
fi
rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"

# cargo-zigbuild finds zig as `python3 -m ziglang`: the venv's python comes first on PATH.
PATH="$venv/bin:$PATH" cargo zigbuild --locked --profile "$profile" --target "$target" -p edge-router "$@"
echo "build-arm64.sh: $target_dir/$target/$profile/edge-router" >&2
