#!/bin/sh
# Builds dist/{{name}}.wasm from app.py and edge_plugin.py with componentize-py (PyPI, 0.25.1:
# on PATH, or COMPONENTIZE_PY=path; `pip install componentize-py==0.25.1`).
set -eu
cd "$(dirname "$0")"
componentize_py="${COMPONENTIZE_PY:-componentize-py}"
command -v "$componentize_py" >/dev/null 2>&1 || { echo "build.sh: componentize-py not found (set COMPONENTIZE_PY)" >&2; exit 1; }
mkdir -p dist
"$componentize_py" -d wit -w {{kind}} componentize -p . app -o "dist/{{name}}.wasm" >/dev/null
echo "built dist/{{name}}.wasm"
