#!/usr/bin/env bash
# Installs what tests/kinesis.rs needs, under the cargo target directory, and prints the
# environment the tests read:
#   kinesalite 3.3.3 (npm)        -> EDGE_ROUTER_KINESALITE_MODULES (its node_modules folder)
#   boto3 + aws-kinesis-agg (PyPI) -> EDGE_ROUTER_KINESIS_PYTHON (a venv's python)
#
#   eval "$(tests/kinesis/setup.sh)"    # then: cargo test -p edge-router --test kinesis
#
# Needs node, npm and python3 (tests/run.sh installs them with apt-get when missing). Honours
# CARGO_TARGET_DIR. Installs only what is missing, so a second run is quick.
set -euo pipefail

# shellcheck source=../common/target_dir.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/target_dir.sh"

kinesalite_version=3.3.3
kdir="$target_dir/kinesalite-$kinesalite_version"
if [[ ! -f "$kdir/node_modules/kinesalite/package.json" ]]; then
    echo "Installing kinesalite $kinesalite_version (npm) into $kdir" >&2
    mkdir -p "$kdir"
    npm install --prefix "$kdir" --no-audit --no-fund --loglevel=error \
        "kinesalite@$kinesalite_version" >&2
fi

venv="$target_dir/kinesis-test-venv"
if ! "$venv/bin/python" -c 'import boto3, aws_kinesis_agg.deaggregator' >/dev/null 2>&1; then
    echo "Installing boto3 and aws-kinesis-agg (PyPI) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'boto3==1.44.8' 'aws-kinesis-agg==1.2.3' >&2
fi

echo "export EDGE_ROUTER_KINESALITE_MODULES='$kdir/node_modules'"
echo "export EDGE_ROUTER_KINESIS_PYTHON='$venv/bin/python'"
