#!/usr/bin/env bash
# Installs what tests/kinesis.rs needs, under the cargo target directory, and prints the
# environment the tests read:
#   kinesalite 3.3.3 (npm)        -> EDGE_ROUTER_KINESALITE_MODULES (its node_modules folder)
#   boto3 + aws-kinesis-agg + cbor2 + awscli v1 (PyPI)
#                                  -> EDGE_ROUTER_KINESIS_PYTHON (a venv's python; `aws` beside it)
#   @aws-sdk/client-kinesis + @aws-sdk/client-firehose (npm, the AWS SDK for JavaScript v3)
#                                  -> EDGE_ROUTER_AWS_SDK_JS_MODULES (their node_modules folder)
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

# The AWS SDK for JavaScript v3, a producer of tests/aws_api.rs.
sdk_js_dir="$target_dir/aws-sdk-js-3.1143.0"
if [[ ! -f "$sdk_js_dir/node_modules/@aws-sdk/client-firehose/package.json" ]]; then
    echo "Installing @aws-sdk/client-kinesis and @aws-sdk/client-firehose (npm) into $sdk_js_dir" >&2
    mkdir -p "$sdk_js_dir"
    npm install --prefix "$sdk_js_dir" --no-audit --no-fund --loglevel=error \
        "@aws-sdk/client-kinesis@3.1143.0" "@aws-sdk/client-firehose@3.1178.0" >&2
fi

# boto3 and aws-kinesis-agg read Kinesis back (tests/kinesis.rs) and produce (tests/aws_api.rs),
# as do awscli v1 (which carries its own botocore) and cbor2 (an independent CBOR client).
venv="$target_dir/kinesis-test-venv"
if ! "$venv/bin/python" -c 'import boto3, aws_kinesis_agg.deaggregator, cbor2' >/dev/null 2>&1 \
    || [[ ! -x "$venv/bin/aws" ]]; then
    echo "Installing boto3, aws-kinesis-agg, cbor2 and awscli (PyPI) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'boto3==1.44.8' \
        'aws-kinesis-agg==1.2.3' 'cbor2==6.3.0' 'awscli==1.46.3' >&2
fi

echo "export EDGE_ROUTER_KINESALITE_MODULES='$kdir/node_modules'"
echo "export EDGE_ROUTER_KINESIS_PYTHON='$venv/bin/python'"
echo "export EDGE_ROUTER_AWS_SDK_JS_MODULES='$sdk_js_dir/node_modules'"
