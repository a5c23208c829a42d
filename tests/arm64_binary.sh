#!/usr/bin/env bash
# The ARM64 binary: builds edge-router for aarch64-unknown-linux-musl (every feature: wasmtime with
# its Cranelift aarch64 backend, the AWS SDK, rustls on aws-lc, mimalloc), checks that it is one
# static ARM64 file, and runs it under qemu-user (`qemu-aarch64-static BINARY`, no binfmt needed):
#   --version; stdin -> file byte-exact on 100k records; a Rust WebAssembly filter stage (Cranelift
#   compiling for aarch64 under emulation, cache empty) checked record by record; an HTTP source
#   answering curl. Prints the size, and stdin -> file throughput under qemu beside the native
#   x86-64 binary's when tests/static_binary.sh built it (information only, nothing asserted).
#
#   tests/arm64_binary.sh                        # what tests/run.sh runs (profile below)
#   EDGE_ROUTER_ARM64_PROFILE=dist tests/arm64_binary.sh     # the release binary (README)
#   EDGE_ROUTER_ARM64_BIN=path/edge-router tests/arm64_binary.sh   # check a binary, build nothing
#
# The release command is `packaging/build-arm64.sh` (profile `dist`: opt-level 3, thin LTO,
# stripped). CI builds profile `dist-ci` by default instead (Cargo.toml): the same source, target,
# C toolchain, features and static linking, but opt-level 1, no LTO and 16 codegen units.
# Measured here, cold, on a machine shared by several builds (wall times inflated 3-4x):
#   dist    16.7 CPU-min (15m23s user + 1m20s sys), 46 min wall, 29,337,560 bytes; the host's
#           build scripts and proc macros were already built by the x86-64 `dist` build, and the
#           final crate's thin-LTO compile alone took over 5 CPU-min, serial;
#   dist-ci 15.9 CPU-min (14m38s user + 1m15s sys), 39 min wall, 32,489,184 bytes, including
#           its own build scripts and proc macros (a profile of its own shares none).
# So cold the two cost about the same CPU; dist-ci has no serial LTO step (wall time on 2 cores)
# and rebuilds the router crate after a change at opt-level 1 without LTO, the common case with
# a cached target directory. What this test is for (the cross C toolchain, static linking,
# Cranelift's aarch64 backend, the binary under emulation) does not depend on LLVM's
# optimisation level.
#
# Needs: the Rust target (added here), zig and cargo-zigbuild (PyPI, installed here into a venv
# under the cargo target directory by packaging/build-arm64.sh), qemu-user-static and curl
# (tests/run.sh installs them with apt-get), python3, and plugins/dist/json-filter.wasm
# (plugins/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${EDGE_ROUTER_ARM64_PROFILE:-dist-ci}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

if [ -n "${EDGE_ROUTER_ARM64_BIN:-}" ]; then
  bin="$EDGE_ROUTER_ARM64_BIN"   # an ARM64 binary built elsewhere: only checked and run
  profile="(given)"
else
  packaging/build-arm64.sh --profile "$profile"
  bin="$target_dir/aarch64-unknown-linux-musl/$profile/edge-router"
fi
[ -x "$bin" ] || { echo "arm64_binary.sh: no binary at $bin" >&2; exit 1; }
qemu="$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)"
[ -n "$qemu" ] || { echo "arm64_binary.sh: no qemu-aarch64-static (Debian qemu-user-static)" >&2; exit 1; }
plugin="$PWD/plugins/dist/json-filter.wasm"
[ -f "$plugin" ] || { echo "arm64_binary.sh: no $plugin (run plugins/build.sh)" >&2; exit 1; }

desc="$(file -b "$bin")"
case "$desc" in
  *"ARM aarch64"*) ;;
  *) echo "arm64_binary.sh: not an ARM64 binary: $desc" >&2; exit 1 ;;
esac
case "$desc" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "arm64_binary.sh: not a static binary: $desc" >&2; exit 1 ;;
esac
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
  echo "arm64_binary.sh: the binary needs shared libraries:" >&2
  readelf -d "$bin" | grep NEEDED >&2
  exit 1
fi

work="$(mktemp -d)"
router_pid=""
cleanup() {
  if [ -n "$router_pid" ]; then kill "$router_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp "$bin" "$work/edge-router"
# Every run of the ARM64 binary goes through qemu with an empty environment, but for what is set
# on the command line (a fresh plugin cache: Cranelift compiles the plugin under emulation).
arm() { (cd "$work" && env -i EDGE_ROUTER_CACHE_DIR="$work/wasm-cache" "$qemu" ./edge-router "$@"); }

# --version
version="$(arm --version)"
want="edge-router $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
[ "$version" = "$want" ] || { echo "arm64_binary.sh: --version said '$version', want '$want'" >&2; exit 1; }

# stdin -> file, byte-exact, 100k records.
arm generate sensor 100000 > "$work/in.ndjson"
[ "$(wc -l < "$work/in.ndjson")" -eq 100000 ] || { echo "arm64_binary.sh: generate did not give 100000 records" >&2; exit 1; }
now_ms() { date +%s%3N; }
t0=$(now_ms)
arm run --sink file:out/records.ndjson < "$work/in.ndjson"
t1=$(now_ms)
cmp "$work/in.ndjson" "$work/out/records.ndjson"
bytes=$(stat -c %s "$work/in.ndjson")
qemu_ms=$((t1 - t0 > 0 ? t1 - t0 : 1))

# A Rust WebAssembly filter stage, compiled by Cranelift for aarch64 under emulation; the records
# kept must be exactly those the condition keeps (checked by Python, independently).
cp "$plugin" "$work/json-filter.wasm"
arm run --stage filter=json-filter.wasm --stage-config '{"condition":"temperature <= 50"}' \
  --sink file:filtered.ndjson < "$work/in.ndjson"
ls "$work/wasm-cache"/* > /dev/null 2>&1 \
  || { echo "arm64_binary.sh: the plugin was not compiled into $work/wasm-cache" >&2; exit 1; }
python3 - "$work/in.ndjson" "$work/filtered.ndjson" <<'EOF'
import json, sys
lines = open(sys.argv[1], "rb").read().splitlines(keepends=True)
want = [l for l in lines if json.loads(l)["temperature"] <= 50]
try:
    got = open(sys.argv[2], "rb").read().splitlines(keepends=True)
except FileNotFoundError:  # nothing kept, no file
    got = []
if got != want:
    sys.exit(f"arm64_binary.sh: the filter kept {len(got)} records, want {len(want)} (or others)")
if not 0 < len(want) < len(lines):
    sys.exit(f"arm64_binary.sh: a filter that keeps {len(want)} of {len(lines)} checks nothing")
print(f"arm64_binary.sh: WASM filter stage kept {len(got)} of {len(lines)} records, as Python does")
EOF

# An HTTP source answering curl.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec env -i "$qemu" ./edge-router run --source "http://127.0.0.1:$port" \
  --sink file:http.ndjson 2> "$work/http.log") &
router_pid=$!
ready=""
for _ in $(seq 1 300); do   # up to 30 s for the emulated router to listen
  if curl -sf "http://127.0.0.1:$port/ready" > /dev/null 2>&1; then ready=1; break; fi
  kill -0 "$router_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { echo "arm64_binary.sh: the HTTP source never answered /ready" >&2; cat "$work/http.log" >&2; exit 1; }
head -n 1000 "$work/in.ndjson" > "$work/post.ndjson"
answer="$(curl -sS --max-time 30 --data-binary @"$work/post.ndjson" "http://127.0.0.1:$port/v1/records")"
[ "$answer" = '{"accepted":1000}' ] || { echo "arm64_binary.sh: POST answered '$answer'" >&2; exit 1; }
kill -TERM "$router_pid"
wait "$router_pid" || { echo "arm64_binary.sh: the HTTP router exited $?" >&2; cat "$work/http.log" >&2; exit 1; }
router_pid=""
cmp "$work/post.ndjson" "$work/http.ndjson"

size=$(stat -c %s "$bin")
mbps() { python3 -c "print(f'{$1 / $2 / 1000:.1f}')"; }
echo "arm64_binary.sh: ok: $desc"
echo "arm64_binary.sh: size $size bytes ($((size / 1048576)) MiB), profile $profile"
echo "arm64_binary.sh: stdin -> file, 100000 records ($bytes bytes) under qemu: ${qemu_ms} ms, $(mbps "$bytes" "$qemu_ms") MB/s"
native="$target_dir/x86_64-unknown-linux-musl/dist/edge-router"
if [ -x "$native" ]; then
  mkdir -p "$work/native"
  t0=$(now_ms)
  (cd "$work/native" && env -i "$native" run --sink file:records.ndjson < "$work/in.ndjson")
  t1=$(now_ms)
  native_ms=$((t1 - t0 > 0 ? t1 - t0 : 1))
  echo "arm64_binary.sh: the same natively (x86-64, dist): ${native_ms} ms, $(mbps "$bytes" "$native_ms") MB/s"
fi
