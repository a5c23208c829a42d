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

# shellcheck source=../common/target_dir.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/target_dir.sh"

venv="$target_dir/firehose-test-venv"
if ! "$venv/bin/python" -c 'import boto3, moto' >/dev/null 2>&1 || [[ ! -x "$venv/bin/moto_server" ]]; then
    echo "Installing moto[server] and boto3 (PyPI) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'boto3==1.44.8' >&2
fi

echo "export EDGE_ROUTER_FIREHOSE_PYTHON='$venv/bin/python'"
