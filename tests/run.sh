#!/usr/bin/env bash
# The whole test suite: what `.ci/run` runs on a clean clone, and what README.md tells you to run.
#
# Installs what the tests need when it is missing, then checks formatting and lints and runs
# every unit and integration test. The log corpus in the shared data folder beside the checkout
# (../shared, or EDGE_ROUTER_SHARED) is used when present; the tests over it say they were skipped
# when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  if need apt-get; then
    [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq >/dev/null; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

# Tools the tests call: python3 runs the record generator (and hosts wasm-tools, installed by
# plugins/build.sh from PyPI); gzip/zstd read compressed output back (the tests fall back to the
# Rust decoders when these are missing).
need python3 || apt_install python3
need gzip || apt_install gzip
need zstd || apt_install zstd || true
# curl is the HTTP client of tests/http.rs (HTTP/1.1, HTTP/2, TLS); openssl makes its test
# certificate; mkfifo (coreutils) blocks a sink.
need curl || apt_install curl
need openssl || apt_install openssl
# The static binary check (tests/static_binary.sh): musl-gcc builds the C parts for musl, `file`
# and readelf (binutils) inspect the result.
need musl-gcc || apt_install musl-tools
need file || apt_install file
need readelf || apt_install binutils
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
  || rustup target add x86_64-unknown-linux-musl
# The ARM64 binary (tests/arm64_binary.sh) runs under qemu-user; its build installs its own zig
# (packaging/build-arm64.sh). tests/deb_package.sh packs both binaries with dpkg-deb.
need qemu-aarch64-static || apt_install qemu-user-static
need dpkg-deb || apt_install dpkg
# node and npm build the JavaScript plugins (plugins/build.sh installs componentize-js from npm)
# and run kinesalite, the local Kinesis server of tests/kinesis.rs.
need node || apt_install nodejs
need npm || apt_install npm
# clang (wasm32-wasi target, with lld), wasi-libc and compiler-rt for wasm32 build the C plugins
# (plugins/build.sh installs wit-bindgen-cli with cargo).
need clang || apt_install clang
need wasm-ld || apt_install lld
[ -e /usr/lib/wasm32-wasi/libc.a ] || [ -n "${WASI_SYSROOT:-}" ] || apt_install wasi-libc libclang-rt-dev-wasm32
# Private venvs (wasm-tools; boto3 and aws-kinesis-agg for the Kinesis tests) need venv/ensurepip,
# a separate package on Debian.
python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv

# The external log corpus (loghub files, research use, not in the repository): the tests over it
# run when it is there and are listed as skipped at the end when it is not. Everything else
# (records from `edge-router generate`, the samples in tests/data/) is in the repository.
shared="${EDGE_ROUTER_SHARED:-$(cd .. && pwd)/shared}"
export EDGE_ROUTER_SHARED="$shared"
if [ ! -d "$shared/data/loghub" ]; then
  echo "tests/run.sh: no log corpus at $shared/data/loghub (set EDGE_ROUTER_SHARED): the tests over it will be skipped"
fi

echo "== plugins/build.sh (example and test plugins, from source)"
plugins/build.sh

echo "== tests/kinesis/setup.sh (kinesalite, the AWS SDK for JavaScript from npm; boto3, aws-kinesis-agg, cbor2, awscli from PyPI)"
# Sets EDGE_ROUTER_KINESALITE_MODULES and EDGE_ROUTER_KINESIS_PYTHON for tests/kinesis.rs, and
# EDGE_ROUTER_AWS_SDK_JS_MODULES (with the python) for the producers of tests/aws_api.rs.
kinesis_env="$(tests/kinesis/setup.sh)"
eval "$kinesis_env"

echo "== tests/firehose/setup.sh (moto[server], boto3 from PyPI)"
# Sets EDGE_ROUTER_FIREHOSE_PYTHON for tests/firehose.rs, and for the role_arn test of
# tests/kinesis.rs (moto's server as STS).
firehose_env="$(tests/firehose/setup.sh)"
eval "$firehose_env"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo package (the plugin SDK and the JSON scanner it shares with the router)"
# The SDK must be publishable: it carries its WIT (plugin-sdk/wit links to ../wit) and depends on
# no unpublished code but edge-router-jsonpath, packaged with it (cargo builds both from the
# packaged sources, the scanner from a local registry overlay).
cargo package --locked --allow-dirty -p edge-router-jsonpath -p edge-router-plugin >/dev/null
echo "== tests/static_binary.sh (x86_64-unknown-linux-musl, --profile dist)"
tests/static_binary.sh
echo "== tests/arm64_binary.sh (aarch64-unknown-linux-musl, --profile dist-ci, run under qemu)"
tests/arm64_binary.sh
echo "== tests/deb_package.sh (the .deb of each binary built above)"
tests/deb_package.sh
echo "== cargo test"
log="$(mktemp)"
# Tests that cannot run here (the corpus is missing) leave a file named after them.
skipped_dir="$(mktemp -d)"
export EDGE_ROUTER_SKIPPED_DIR="$skipped_dir"
trap 'rm -rf "$log" "$skipped_dir"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary and doc-test run (the last one cargo prints is often a
# crate with no doc-tests).
passed=$(grep '^test result:' "$log" | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep '^test result:' "$log" | grep -Eo '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
skipped=$(find "$skipped_dir" -type f | wc -l)
if [ "$skipped" -gt 0 ]; then
  echo "skipped (they passed without checking anything): $skipped"
  for f in "$skipped_dir"/*; do echo "  $(basename "$f"): $(cat "$f")"; done
fi
echo "total: $passed passed, $failed failed, $skipped of them skipped"
exit "$status"
