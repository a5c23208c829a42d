#!/bin/sh
# Builds the plugin, then runs it through `edge-router plugin run` over sample.ndjson with
# config.json and compares the output with expected.out. EDGE_ROUTER names the router binary
# (default: edge-router on PATH).
set -eu
cd "$(dirname "$0")"
{{native_test}}./build.sh
router="${EDGE_ROUTER:-edge-router}"
"$router" plugin run "dist/{{name}}.wasm" --kind {{kind}} --config "$(cat config.json)" <sample.ndjson >dist/actual.out
if diff -u expected.out dist/actual.out; then
    echo "test.sh: {{name}}: the output is as expected.out"
else
    echo "test.sh: {{name}}: the output (dist/actual.out) differs from expected.out (above)" >&2
    exit 1
fi
