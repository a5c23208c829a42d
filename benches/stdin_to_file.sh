#!/usr/bin/env bash
# stdin_to_file.sh — benchmark `edge-router run --sink file:...` against `cat | cat`.
#
# Usage (from anywhere; paths are resolved relative to this script):
#   benches/stdin_to_file.sh [--records N] [--repeat R] [--tmpdir DIR] [--results FILE] [--keep]
#
#   --records N    number of `sensor` records to generate (default 5000000, ~110 bytes each)
#   --repeat R     runs per (mode, tool) pair, interleaved (default 7)
#   --tmpdir DIR   where the data and output files go (default $TMPDIR or /tmp); both tools
#                  write to the same file system, so the ratio compares like with like
#   --results FILE where to write the raw per-run numbers as JSON lines
#                  (default <target dir>/bench/stdin_to_file-<timestamp>.jsonl)
#   --keep         keep the temp dir (data, outputs, router logs) instead of deleting it
#
# Environment:
#   EDGE_ROUTER_BIN     use this binary instead of building one
#   CARGO_TARGET_DIR    respected by the build step (`cargo build --release -p edge-router`)
#   EDGE_ROUTER_GENERATE_BIN  the `edge-router generate` that makes the data (default: the binary
#                       under test; set it when that binary is older than the command)
#
# What it measures: the same generated data file (read once first, so it sits in the page cache)
# is piped, R times, through
#   cat data | cat > out                                                          (tool "cat")
#   cat data | edge-router run --sink file:out2 --dead-letter dead-letter.ndjson  (tool "router")
# in two modes: "pinned" (both ends of the pipe under `taskset -c 0`, i.e. sharing one core) and
# "unpinned" (the scheduler places them). Runs are interleaved: each repetition runs every
# (mode, tool) pair once, alternating which tool goes first. For every run it records
#   - wall time of the whole pipeline (spawn of `cat data` to exit of both processes),
#   - CPU seconds: user+sys of both processes of the pipe,
#   - peak RSS of each process (the reported number is that of the consumer: `cat` or the router),
# and derives records/s and MB/s (1 MB = 10^6 bytes) from the wall time. After every router run the
# output file must be byte-identical to the input (cmp) and the dead-letter file empty, otherwise the
# script stops with an error. It prints a summary table (medians; max peak RSS), the router/cat
# throughput ratio per mode, and the path of the JSON lines file with all raw numbers.
#
# CPU seconds come from os.wait4() on each end of the pipe (microsecond resolution). Peak RSS comes
# from GNU time (/usr/bin/time, Debian/Ubuntu package `time`) wrapped around each end. Without it
# the helper falls back to wait4's ru_maxrss, which also counts the Python helper's own memory
# (~14 MiB) inherited through fork/exec, so the RSS column becomes an upper bound; a warning says so.
#
# This is a manual benchmark, not a test: it asserts correctness, never timing.
set -euo pipefail

records=5000000
repeat=7
tmp_parent="${TMPDIR:-/tmp}"
results=""
keep=0

bench_name=stdin_to_file.sh
bench_script="${BASH_SOURCE[0]}"
# Shared with the other benchmarks: usage, die, option parsing, build, data, measuring helper.
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

while [ $# -gt 0 ]; do
    bench_common_option "$@"
    [ "$bench_shift" -gt 0 ] || die "unknown argument '$1' (see --help)"
    shift "$bench_shift"
done
bench_positive --records "$records" --repeat "$repeat"
[ "$repeat" -ge 7 ] || echo "note: --repeat $repeat is below the 7 runs the benchmark asks for; fine for a smoke run" >&2

bench_check_requirements   # repo, target_dir

# --- the binary -------------------------------------------------------------------------------
bench_router_binary        # bin: $EDGE_ROUTER_BIN or a fresh release build
bench_detect_gnu_time      # use_gnu_time
bench_init_results stdin_to_file

# --- temp dir and data ------------------------------------------------------------------------
bench_make_workdir         # work, removed at exit unless --keep
bench_generate_data        # data (page-cached), bytes

# --- the measuring helper ---------------------------------------------------------------------
# Runs `[taskset -c 0] cat DATA | [taskset -c 0] CONSUMER...` with the consumer's stdout going to
# OUT, waits for both ends and prints one JSON line with wall time, CPU times and peak RSS.
helper="$bench_measure"    # benches/lib/measure.py

out_cat="$work/out"
out_router="$work/out2"
dead="$work/dead-letter.ndjson"
log="$work/run.log"

run_one() { # mode tool rep
    local mode="$1" tool="$2" rep="$3" line
    rm -f "$out_cat" "$out_router" "$dead"
    if [ "$tool" = cat ]; then
        line="$(python3 "$helper" "$mode" cat "$rep" "$data" "$out_cat" "$log" "$records" "$bytes" \
            "$use_gnu_time" cat)" || die "cat run failed ($mode, rep $rep)"
        [ "$(wc -c < "$out_cat" | tr -d ' ')" = "$bytes" ] || die "cat | cat wrote a wrong-sized file"
    else
        # The router's stdout is unused (records go to the file sink); the helper sends it to
        # /dev/null via OUT and keeps stderr in the log.
        line="$(python3 "$helper" "$mode" router "$rep" "$data" /dev/null "$log" "$records" "$bytes" \
            "$use_gnu_time" "$bin" run --sink "file:$out_router" --dead-letter "$dead")" || {
            cat "$log" >&2; die "router run failed ($mode, rep $rep)"; }
        [ -f "$out_router" ] || { cat "$log" >&2; die "router wrote no output file at $out_router"; }
        if ! cmp "$data" "$out_router"; then
            cat "$log" >&2
            keep=1
            die "router output differs from its input ($mode, rep $rep); see $out_router"
        fi
        if [ -s "$dead" ]; then
            head -c 2000 "$dead" >&2
            keep=1
            die "router dead-lettered records from valid input ($mode, rep $rep); see $dead"
        fi
    fi
    echo "$line" >> "$results"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("  rep %(rep)d %(mode)-8s %(tool)-6s wall %(wall_s)7.3fs  %(records_per_s)12.0f rec/s  %(mb_per_s)8.1f MB/s  cpu %(cpu_s)6.2fs  rss %(consumer_maxrss_kib)7d KiB" % r)' "$line" >&2
}

echo "running $repeat interleaved repetitions of {pinned,unpinned} x {cat,router} on $records records ($bytes bytes)" >&2
for rep in $(seq 1 "$repeat"); do
    for mode in pinned unpinned; do
        if [ $((rep % 2)) = 1 ]; then order="cat router"; else order="router cat"; fi
        for tool in $order; do
            run_one "$mode" "$tool" "$rep"
        done
    done
done
rm -f "$out_cat" "$out_router"

# --- summary ----------------------------------------------------------------------------------
python3 - "$results" "$bin" "$records" "$bytes" "$work" "$bench_lib" <<'PY'
import json, statistics, sys

path, binary, nrec, nbytes, work, lib = sys.argv[1:7]
sys.path.insert(0, lib)
from benchinfo import binary_version, fs_type, machine_line
runs = [json.loads(l) for l in open(path) if l.strip()]
version = binary_version(binary)

print()
print("edge-router stdin -> file benchmark")
print("  binary:   %s (%s)" % (binary, version))
print("  data:     %s sensor records, %s bytes (%.1f bytes/record), temp dir on %s"
      % (nrec, nbytes, int(nbytes) / int(nrec), fs_type(work)))
print("  machine:  %s" % machine_line())
print("  runs:     %d per (mode, tool), interleaved; RSS from %s" % (
    max(r["rep"] for r in runs), runs[0]["rss_source"]))
print()
hdr = "%-9s %-7s %5s %10s %14s %10s %9s %14s" % (
    "mode", "tool", "runs", "wall s", "records/s", "MB/s", "CPU s", "peak RSS MiB")
print(hdr)
print("-" * len(hdr))
med = {}
for mode in ("pinned", "unpinned"):
    for tool in ("cat", "router"):
        rs = [r for r in runs if r["mode"] == mode and r["tool"] == tool]
        if not rs:
            continue
        m = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "records_per_s", "mb_per_s", "cpu_s")}
        m["rss"] = max(r["consumer_maxrss_kib"] for r in rs) / 1024
        med[(mode, tool)] = m
        print("%-9s %-7s %5d %10.3f %14.0f %10.1f %9.2f %14.1f" % (
            mode, tool, len(rs), m["wall_s"], m["records_per_s"], m["mb_per_s"], m["cpu_s"], m["rss"]))
print("(medians over runs, except peak RSS: the maximum; RSS is the consumer's, i.e. cat or the router)")
print()
for mode in ("pinned", "unpinned"):
    if (mode, "cat") in med and (mode, "router") in med:
        ratio = med[(mode, "router")]["records_per_s"] / med[(mode, "cat")]["records_per_s"]
        pairs = {}
        for r in runs:
            if r["mode"] == mode:
                pairs.setdefault(r["rep"], {})[r["tool"]] = r["records_per_s"]
        per = sorted(p["router"] / p["cat"] for p in pairs.values() if len(p) == 2)
        print("router / cat throughput, %-8s: %.3f  (median of each; per-repetition ratios %.3f .. %.3f)"
              % (mode, ratio, per[0], per[-1]))
print("targets: pinned ratio >= 0.75, router peak RSS < 64 MiB")
print()
print("raw per-run numbers (JSON lines): %s" % path)
PY
