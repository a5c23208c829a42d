#!/usr/bin/env bash
# buffer.sh — benchmark the disk buffer: stdin -> [disk buffer] -> file sink against the same
# pipeline without a buffer (memory only), in one run.
#
# Usage (from anywhere; paths are resolved relative to this script):
#   benches/buffer.sh [--records N] [--repeat R] [--tmpdir DIR] [--results FILE] [--keep]
#
#   --records N   sensor records to generate (default 2000000, ~110 bytes each)
#   --repeat R    runs per (mode, variant), interleaved (default 5)
#   --tmpdir DIR  where the data, configs, buffer and outputs go (default $TMPDIR or /tmp): put
#                 it on the disk you mean to measure (tmpfs makes fsync free)
#
# Environment: EDGE_ROUTER_BIN (use this binary instead of `cargo build --release -p
# edge-router`), CARGO_TARGET_DIR, EDGE_ROUTER_GENERATE_BIN (see benches/lib/common.sh).
#
# Variants, each `cat DATA | CONSUMER` through benches/lib/measure.py, in "unpinned" and
# "pinned" (`taskset -c 0`) mode: `cat` (`cat > out`), `memory` (`edge-router run -c` with a
# stdin source and a file sink), and the same with a disk buffer in front of the sink with
# `fsync = "never"`, `"interval"` (the default, 100 ms) and `"always"`. Every router output must
# be byte-identical to the input. Reported: medians of wall time, records/s and MB/s (of input),
# the ratio to memory-only, router CPU, and write amplification: (bytes appended to the buffer's
# files + bytes written to the output file) / input bytes, from the router's `--stats=json`
# (`buffers.out` `bytes_in`, `sinks.out` `bytes_out`).
set -euo pipefail

bench_name=buffer.sh
bench_script="${BASH_SOURCE[0]}"
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

records=2000000
repeat=5
tmp_parent="${TMPDIR:-/tmp}"
results=""
keep=0
while [ $# -gt 0 ]; do
    bench_common_option "$@"
    if [ "$bench_shift" -gt 0 ]; then shift "$bench_shift"; continue; fi
    die "unknown option: $1 (see --help)"
done
bench_positive --records "$records" --repeat "$repeat"
bench_check_requirements
bench_router_binary
bench_detect_gnu_time
bench_init_results buffer
bench_make_workdir
bench_generate_data

python3 "$bench_lib/buffer.py" "$bin" "$work" "$data" "$records" "$bytes" "$repeat" \
    "$use_gnu_time" "$bench_measure" "$results"
echo "raw results: $results" >&2
