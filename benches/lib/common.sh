# benches/lib/common.sh — the parts the benchmark scripts in benches/ share. Sourced, not run:
#
#   bench_name=NAME.sh                      # used in error messages: "NAME.sh: error: ..."
#   bench_script="${BASH_SOURCE[0]}"        # its header comment is the --help text
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Sets bench_lib (this directory), bench_repo (the repository) and bench_measure (measure.py,
# the measuring helper: see its header). The functions below read and set the calling script's
# variables (records, repeat, tmp_parent, results, keep, repo, shared, gen, target_dir, bin,
# use_gnu_time, work, data, bytes), in the order the scripts call them.

bench_lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench_repo="$(cd "$bench_lib/../.." && pwd)"
bench_measure="$bench_lib/measure.py"
bench_info="$bench_lib/benchinfo.py"

usage() { sed -n '2,/^set -euo/p' "$bench_script" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "$bench_name: error: $*" >&2; exit 1; }

# bench_common_option ARGS...: handles the shared option at the front of ARGS (--records,
# --repeat, --tmpdir, --results, --keep, --help), setting records, repeat, tmp_parent, results or
# keep. Sets bench_shift to the number of words it used: 0 when $1 is not a shared option.
bench_common_option() {
    bench_shift=0
    case "$1" in
        --records) [ $# -ge 2 ] || die "--records needs a value"; records="$2"; bench_shift=2 ;;
        --records=*) records="${1#*=}"; bench_shift=1 ;;
        --repeat) [ $# -ge 2 ] || die "--repeat needs a value"; repeat="$2"; bench_shift=2 ;;
        --repeat=*) repeat="${1#*=}"; bench_shift=1 ;;
        --tmpdir) [ $# -ge 2 ] || die "--tmpdir needs a value"; tmp_parent="$2"; bench_shift=2 ;;
        --tmpdir=*) tmp_parent="${1#*=}"; bench_shift=1 ;;
        --results) [ $# -ge 2 ] || die "--results needs a value"; results="$2"; bench_shift=2 ;;
        --results=*) results="${1#*=}"; bench_shift=1 ;;
        --keep) keep=1; bench_shift=1 ;;
        -h|--help) usage; exit 0 ;;
    esac
}

# bench_positive NAME VALUE [NAME VALUE ...]: dies unless every VALUE is an integer > 0 (NAME is
# its option, e.g. "--records"). All are checked for being integers first, then for being > 0.
bench_positive() {
    local i args=("$@")
    for ((i = 0; i < ${#args[@]}; i += 2)); do
        case "${args[i+1]}" in
            ''|*[!0-9]*) die "${args[i]} must be a positive integer, got '${args[i+1]}'" ;;
        esac
    done
    for ((i = 0; i < ${#args[@]}; i += 2)); do
        [ "${args[i+1]}" -gt 0 ] || die "${args[i]} must be > 0"
    done
}

# bench_check_requirements: sets repo and target_dir; checks the tools.
bench_check_requirements() {
    repo="$bench_repo"
    command -v python3 >/dev/null || die "python3 is required"
    command -v taskset >/dev/null || die "taskset is required (package util-linux)"
    command -v cmp >/dev/null || die "cmp is required (package diffutils)"

    target_dir="${CARGO_TARGET_DIR:-$repo/target}"
    case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
}

# bench_router_binary: sets bin to $EDGE_ROUTER_BIN or, when that is unset, builds the release
# binary (`cargo build --release -p edge-router`) unless $1 is "nobuild", which takes the one
# already in the target directory.
bench_router_binary() {
    if [ -n "${EDGE_ROUTER_BIN:-}" ]; then
        bin="$EDGE_ROUTER_BIN"
        [ -x "$bin" ] || die "EDGE_ROUTER_BIN=$bin is not an executable file"
        echo "using EDGE_ROUTER_BIN=$bin" >&2
    elif [ "${1:-}" = nobuild ]; then
        bin="$target_dir/release/edge-router"
        [ -x "$bin" ] || die "no binary at $bin (build it, or set EDGE_ROUTER_BIN)"
        echo "using the existing $bin (not rebuilt)" >&2
    else
        echo "building: cargo build --release -p edge-router" >&2
        (cd "$repo" && cargo build --release -p edge-router) || die "release build failed"
        bin="$target_dir/release/edge-router"
        [ -x "$bin" ] || die "build succeeded but $bin does not exist"
    fi
    case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
}

# bench_detect_gnu_time: sets use_gnu_time (1 when /usr/bin/time is GNU time), warns otherwise.
bench_detect_gnu_time() {
    if [ -x /usr/bin/time ] && /usr/bin/time -f '%M' true 2>/dev/null >/dev/null; then
        use_gnu_time=1
    else
        use_gnu_time=0
        echo "warning: GNU time (/usr/bin/time) not found; peak RSS is measured with os.wait4 and" \
             "includes the Python helper's own ~14 MiB (install the 'time' package for exact numbers)" >&2
    fi
}

# bench_init_results STEM: defaults results to <target dir>/bench/STEM-<timestamp>.jsonl and
# empties the file.
bench_init_results() {
    if [ -z "$results" ]; then
        results="$target_dir/bench/$1-$(date +%Y%m%d-%H%M%S).jsonl"
    fi
    mkdir -p "$(dirname "$results")"
    : > "$results"
}

# bench_make_workdir: creates the temp dir (work) under tmp_parent, removed at exit unless keep=1.
bench_make_workdir() {
    mkdir -p "$tmp_parent"
    work="$(mktemp -d "$tmp_parent/edge-router-bench.XXXXXX")"
    trap bench_cleanup EXIT
}
bench_cleanup() {
    if [ "$keep" = 1 ]; then echo "kept temp dir: $work" >&2; else rm -rf "$work"; fi
}

# bench_generate_data: writes $records sensor records to data=$work/data.ndjson with
# `edge-router generate` ($EDGE_ROUTER_GENERATE_BIN, else the router under test: set it when
# that is an older binary without the command), sets bytes, and reads the file once so that
# every run reads it from the page cache.
bench_generate_data() {
    local lines gen_bin="${EDGE_ROUTER_GENERATE_BIN:-$bin}"
    data="$work/data.ndjson"
    echo "generating $records sensor records into $data ($gen_bin generate)" >&2
    "$gen_bin" generate sensor "$records" > "$data" || die "$gen_bin generate failed"
    lines="$(wc -l < "$data" | tr -d ' ')"
    [ "$lines" = "$records" ] || die "generator wrote $lines lines, expected $records"
    bytes="$(wc -c < "$data" | tr -d ' ')"
    cat "$data" > /dev/null   # warm the page cache: every run reads the data from memory
}
