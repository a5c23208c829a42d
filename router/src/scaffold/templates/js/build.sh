#!/bin/sh
# Builds dist/{{name}}.wasm from app.js (which imports edge-plugin.js) with componentize-js
# (npm @bytecodealliance/componentize-js 0.23.0: on PATH, or COMPONENTIZE_JS=path;
# `npm install @bytecodealliance/componentize-js@0.23.0`). Takes about 10 s or more.
set -eu
cd "$(dirname "$0")"
componentize_js="${COMPONENTIZE_JS:-componentize-js}"
command -v "$componentize_js" >/dev/null 2>&1 || { echo "build.sh: componentize-js not found (set COMPONENTIZE_JS)" >&2; exit 1; }
# componentize-js reports syntax errors without a position; node gives the line.
for f in app.js edge-plugin.js; do
    node --input-type=module --check <"$f" || { echo "build.sh: $f is not a valid ES module" >&2; exit 1; }
done
mkdir -p dist
# Without outgoing HTTP and the fetch event: the router grants no network anyway.
"$componentize_js" --wit wit --world-name {{kind}} --disable http fetch-event -o "dist/{{name}}.wasm" app.js >/dev/null
echo "built dist/{{name}}.wasm"
