#!/usr/bin/env bash
# The shipped binary is one static file: builds `--profile dist` for x86_64-unknown-linux-musl
# (mimalloc, thin LTO, symbols stripped), checks that `file` calls it statically linked and that
# it has no dynamic section, runs it with an empty environment (no PATH, no Rust, no loader
# libraries), pushes records through it, and prints its size. Run by tests/run.sh; needs the
# musl target (`rustup target add x86_64-unknown-linux-musl`), musl-gcc (Debian musl-tools) for
# the C parts (aws-lc, zstd, mimalloc) and `file`.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --locked --profile dist --target x86_64-unknown-linux-musl -p edge-router
bin="$target_dir/x86_64-unknown-linux-musl/dist/edge-router"
[ -x "$bin" ] || { echo "static_binary.sh: no binary at $bin" >&2; exit 1; }

desc="$(file -b "$bin")"
case "$desc" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "static_binary.sh: not a static binary: $desc" >&2; exit 1 ;;
esac
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
  echo "static_binary.sh: the binary needs shared libraries:" >&2
  readelf -d "$bin" | grep NEEDED >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/edge-router"
# An empty environment: nothing from the build machine helps it run.
printf 'a\n{"b":2}\nc\n' | (cd "$work" && env -i ./edge-router run --sink stdout) > "$work/out"
printf 'a\n{"b":2}\nc\n' | cmp - "$work/out"
env -i "$work/edge-router" --version > /dev/null

size=$(stat -c %s "$bin")
echo "static_binary.sh: ok: $desc"
echo "static_binary.sh: size $size bytes ($((size / 1048576)) MiB)"
if [ "$size" -ge $((40 << 20)) ]; then
  echo "static_binary.sh: larger than the 40 MiB target" >&2
  exit 1
fi
