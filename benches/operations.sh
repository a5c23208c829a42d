#!/usr/bin/env bash
# operations.sh — benchmark what operating a router costs: the metrics endpoint under scraping,
# the stage-thread hop that a reloadable (`-c FILE`) pipeline always has, and the pause of a hot
# reload under load.
#
# Usage (from anywhere; paths are resolved relative to this script):
#   benches/operations.sh [--records N] [--repeat R] [--reloads K] [--scrape-ms MS]
#                         [--tmpdir DIR] [--results FILE] [--keep]
#
#   --records N     sensor records to generate (default 2000000, ~110 bytes each)
#   --repeat R      runs per (mode, variant) in part 1, interleaved (default 5)
#   --reloads K     reloads in part 2 (default 40)
#   --scrape-ms MS  part 1's scrape interval for the `metrics` variant (default 100: far more
#                   often than Prometheus' usual 15 s, so an upper bound)
#
# Environment: EDGE_ROUTER_BIN (use this binary instead of `cargo build --release -p
# edge-router`), CARGO_TARGET_DIR, EDGE_ROUTER_GENERATE_BIN (see benches/lib/common.sh).
#
# Part 1, throughput (benches/lib/measure.py, the same harness as stdin_to_file.sh): the same data
# file is piped through, in "pinned" (both ends under `taskset -c 0`) and "unpinned" mode:
#   cat       `cat > out`, the baseline
#   quick     `edge-router run --sink file:out` (quick mode: a lone stdin source dispatches itself)
#   metrics   the same with `--metrics 127.0.0.1:PORT`, scraped every --scrape-ms by this script
#   config    `edge-router run -c FILE` with the same stdin -> file pipeline: reloadable, so it has
#             the stage thread and queue hop
# Every router output must be byte-identical to the input. The report gives medians, the
# overhead of `metrics` and `config` against `quick` (wall time and router CPU), and the number
# of scrapes.
#
# Part 2, reload pause: one router (`-c FILE --metrics ...`, stdin -> built-in filter -> file) is
# fed the data over and over while `edge-router reload` is run K times, alternating between two
# configs that differ in the filter's condition and the sink's path (stages rebuilt, sink
# replaced), with an unchanged reload every fourth time. The pause is what the router reports:
# the time the stage workers took no batch (from the hand-off until the next config runs). Also
# reported: the wall time of each `edge-router reload` (reading, validating, building, switching).
# After the run every record read is in exactly one output, by the id-free check that the outputs'
# line counts add up to what the router wrote.
set -euo pipefail

bench_name=operations.sh
bench_script="${BASH_SOURCE[0]}"
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

records=2000000
repeat=5
reloads=40
scrape_ms=100
tmp_parent="${TMPDIR:-/tmp}"
results=""
keep=0
while [ $# -gt 0 ]; do
    bench_common_option "$@"
    if [ "$bench_shift" -gt 0 ]; then shift "$bench_shift"; continue; fi
    case "$1" in
        --reloads) [ $# -ge 2 ] || die "--reloads needs a value"; reloads="$2"; shift 2 ;;
        --scrape-ms) [ $# -ge 2 ] || die "--scrape-ms needs a value"; scrape_ms="$2"; shift 2 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done
bench_positive --records "$records" --repeat "$repeat" --reloads "$reloads" --scrape-ms "$scrape_ms"
bench_check_requirements
bench_router_binary
bench_detect_gnu_time
bench_init_results operations
bench_make_workdir
bench_generate_data

python3 "$bench_lib/operations.py" "$bin" "$work" "$data" "$records" "$bytes" "$repeat" \
    "$reloads" "$scrape_ms" "$use_gnu_time" "$bench_measure" "$results"
echo "raw results: $results" >&2
