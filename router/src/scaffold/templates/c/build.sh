#!/bin/sh
# Builds dist/{{name}}.wasm: bindings from wit/ by `wit-bindgen c` (wit-bindgen-cli 0.46.0: on
# PATH or WIT_BINDGEN=path; `cargo install --version 0.46.0 wit-bindgen-cli`), compiled with
# plugin.c by clang for wasm32-wasi against wasi-libc (Debian: apt-get install clang lld
# wasi-libc libclang-rt-dev-wasm32; WASI_SYSROOT names another sysroot), wrapped into a
# component by wasm-tools (on PATH or WASM_TOOLS=path).
set -eu
cd "$(dirname "$0")"
wit_bindgen="${WIT_BINDGEN:-wit-bindgen}"
wasm_tools="${WASM_TOOLS:-wasm-tools}"
for tool in "$wit_bindgen" "$wasm_tools" clang; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build.sh: $tool not found" >&2; exit 1; }
done
mkdir -p dist/bindings
"$wit_bindgen" c --world {{kind}} --out-dir dist/bindings wit >/dev/null 2>&1
# A reactor without start files: the bindings' exports are the module's exports.
clang --target=wasm32-wasi ${WASI_SYSROOT:+--sysroot="$WASI_SYSROOT"} -O2 -Wall -Wextra -Werror \
    -nostartfiles -Wl,--no-entry -Wl,--strip-debug -I dist/bindings -I . \
    -o dist/{{name}}.core.wasm plugin.c dist/bindings/{{kind}}.c dist/bindings/{{kind}}_component_type.o
"$wasm_tools" component new dist/{{name}}.core.wasm -o "dist/{{name}}.wasm"
echo "built dist/{{name}}.wasm"
