#!/usr/bin/env bash
# Installs what tests/firehose.rs needs, under the cargo target directory, and prints the
# environment the tests read:
#   moto[server] 5.2.5 + boto3 (PyPI) -> EDGE_ROUTER_FIREHOSE_PYTHON (a venv's python; the venv
#                                         also holds moto_server)
#
#   eval "$(tests/firehose/setup.sh)"    # then: cargo test -p edge-router --test firehose
#
# Needs python3 with venv. Honours CARGO_TARGET_DIR. Installs only what is missing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    CARGO_TARGET_DIR="$repo/$CARGO_TARGET_DIR"
fi
target_dir="${CARGO_TARGET_DIR:-}"
if [[ -z "$target_dir" ]]; then
    metadata="$(cargo metadata --format-version 1 --no-deps)"
    target_dir="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")"
    [[ -n "$target_dir" ]] || target_dir="$repo/target"
fi
mkdir -p "$target_dir"

venv="$target_dir/firehose-test-venv"
if ! "$venv/bin/python" -c 'import boto3, moto' >/dev/null 2>&1 || [[ ! -x "$venv/bin/moto_server" ]]; then
    echo "Installing moto[server] and boto3 (PyPI) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'boto3==1.44.8' >&2
fi

echo "export EDGE_ROUTER_FIREHOSE_PYTHON='$venv/bin/python'"
