#!/usr/bin/env bash
# The whole test suite: what `.ci/run` runs on a clean clone, and what README.md tells you to run.
#
# Installs what the tests need when it is missing, then checks formatting and lints and runs
# every unit and integration test. Needs the shared data folder beside the checkout
# (../shared, or EDGE_ROUTER_SHARED) for the record generator and the loghub files.
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
# node and npm build the JavaScript plugins (plugins/build.sh installs componentize-js from npm)
# and run kinesalite, the local Kinesis server of tests/kinesis.rs.
need node || apt_install nodejs
need npm || apt_install npm
# Private venvs (wasm-tools; boto3 and aws-kinesis-agg for the Kinesis tests) need venv/ensurepip,
# a separate package on Debian.
python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv

shared="${EDGE_ROUTER_SHARED:-$(cd .. && pwd)/shared}"
if [ ! -f "$shared/bench/gen_records.py" ]; then
  echo "tests/run.sh: the shared data folder is missing (looked in $shared; set EDGE_ROUTER_SHARED)" >&2
  exit 1
fi
export EDGE_ROUTER_SHARED="$shared"

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
echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary and doc-test run (the last one cargo prints is often a
# crate with no doc-tests).
passed=$(grep '^test result:' "$log" | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep '^test result:' "$log" | grep -Eo '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
echo "total: $passed passed, $failed failed"
exit "$status"
