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
#   EDGE_ROUTER_SHARED  the shared directory holding bench/gen_records.py (default <repo>/../shared)
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

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "stdin_to_file.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --records) [ $# -ge 2 ] || die "--records needs a value"; records="$2"; shift 2 ;;
        --records=*) records="${1#*=}"; shift ;;
        --repeat) [ $# -ge 2 ] || die "--repeat needs a value"; repeat="$2"; shift 2 ;;
        --repeat=*) repeat="${1#*=}"; shift ;;
        --tmpdir) [ $# -ge 2 ] || die "--tmpdir needs a value"; tmp_parent="$2"; shift 2 ;;
        --tmpdir=*) tmp_parent="${1#*=}"; shift ;;
        --results) [ $# -ge 2 ] || die "--results needs a value"; results="$2"; shift 2 ;;
        --results=*) results="${1#*=}"; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
case "$records" in ''|*[!0-9]*) die "--records must be a positive integer, got '$records'" ;; esac
case "$repeat" in ''|*[!0-9]*) die "--repeat must be a positive integer, got '$repeat'" ;; esac
[ "$records" -gt 0 ] || die "--records must be > 0"
[ "$repeat" -gt 0 ] || die "--repeat must be > 0"
[ "$repeat" -ge 7 ] || echo "note: --repeat $repeat is below the 7 runs the benchmark asks for; fine for a smoke run" >&2

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${EDGE_ROUTER_SHARED:-$repo/../shared}"
gen="$shared/bench/gen_records.py"
[ -f "$gen" ] || die "generator not found at $gen (set EDGE_ROUTER_SHARED)"
command -v python3 >/dev/null || die "python3 is required"
command -v taskset >/dev/null || die "taskset is required (package util-linux)"
command -v cmp >/dev/null || die "cmp is required (package diffutils)"

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac

# --- the binary -------------------------------------------------------------------------------
if [ -n "${EDGE_ROUTER_BIN:-}" ]; then
    bin="$EDGE_ROUTER_BIN"
    [ -x "$bin" ] || die "EDGE_ROUTER_BIN=$bin is not an executable file"
    echo "using EDGE_ROUTER_BIN=$bin" >&2
else
    echo "building: cargo build --release -p edge-router" >&2
    (cd "$repo" && cargo build --release -p edge-router) || die "release build failed"
    bin="$target_dir/release/edge-router"
    [ -x "$bin" ] || die "build succeeded but $bin does not exist"
fi
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac

if [ -x /usr/bin/time ] && /usr/bin/time -f '%M' true 2>/dev/null >/dev/null; then
    use_gnu_time=1
else
    use_gnu_time=0
    echo "warning: GNU time (/usr/bin/time) not found; peak RSS is measured with os.wait4 and" \
         "includes the Python helper's own ~14 MiB (install the 'time' package for exact numbers)" >&2
fi

if [ -z "$results" ]; then
    results="$target_dir/bench/stdin_to_file-$(date +%Y%m%d-%H%M%S).jsonl"
fi
mkdir -p "$(dirname "$results")"
: > "$results"

# --- temp dir and data ------------------------------------------------------------------------
mkdir -p "$tmp_parent"
work="$(mktemp -d "$tmp_parent/edge-router-bench.XXXXXX")"
cleanup() {
    if [ "$keep" = 1 ]; then echo "kept temp dir: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

data="$work/data.ndjson"
echo "generating $records sensor records into $data" >&2
python3 "$gen" sensor "$records" > "$data"
lines="$(wc -l < "$data" | tr -d ' ')"
[ "$lines" = "$records" ] || die "generator wrote $lines lines, expected $records"
bytes="$(wc -c < "$data" | tr -d ' ')"
cat "$data" > /dev/null   # warm the page cache: every run reads the data from memory

# --- the measuring helper ---------------------------------------------------------------------
# Runs `[taskset -c 0] cat DATA | [taskset -c 0] CONSUMER...` with the consumer's stdout going to
# OUT, waits for both ends and prints one JSON line with wall time, CPU times and peak RSS.
helper="$work/measure.py"
cat > "$helper" <<'PY'
import json, os, subprocess, sys, time

def main():
    mode, tool, rep, data, out, log, nrec, nbytes, gnu_time = sys.argv[1:10]
    consumer = sys.argv[10:]
    pin = ["taskset", "-c", "0"] if mode == "pinned" else []
    wd = os.path.dirname(log)
    tfiles = {"cat": os.path.join(wd, "time.cat"), "consumer": os.path.join(wd, "time.consumer")}

    def wrap(end, argv):
        if gnu_time == "1":
            return ["/usr/bin/time", "-o", tfiles[end], "-f", "%e %U %S %M"] + pin + argv
        return pin + argv

    with open(out, "wb") as outf, open(log, "wb") as logf:
        t0 = time.perf_counter()
        prod = subprocess.Popen(wrap("cat", ["cat", data]), stdout=subprocess.PIPE)
        cons = subprocess.Popen(wrap("consumer", consumer), stdin=prod.stdout, stdout=outf, stderr=logf)
        prod.stdout.close()
        waits = {}
        pending = {prod.pid: "cat", cons.pid: "consumer"}
        while pending:
            pid, status, ru = os.wait4(-1, 0)
            if pid in pending:
                waits[pending.pop(pid)] = (os.waitstatus_to_exitcode(status), ru)
        wall = time.perf_counter() - t0
        prod.returncode, cons.returncode = waits["cat"][0], waits["consumer"][0]

    res = {}
    for end in ("cat", "consumer"):
        code, ru = waits[end]
        if code != 0:
            sys.stderr.write("%s end of the pipe exited with status %d (see %s)\n" % (end, code, log))
            sys.exit(1)
        # CPU: wait4 reports the waited process plus the children it reaped (the command under
        # /usr/bin/time and taskset), in microseconds; GNU time's own %U/%S are 10 ms coarse.
        maxrss = ru.ru_maxrss
        if gnu_time == "1":
            # GNU time writes "Command exited with non-zero status N" first on failure; the
            # numbers are always the last line.
            with open(tfiles[end]) as f:
                maxrss = int(f.read().strip().splitlines()[-1].split()[-1])
        res[end] = (ru.ru_utime, ru.ru_stime, maxrss)

    nrec, nbytes = int(nrec), int(nbytes)
    cpu = sum(res[e][0] + res[e][1] for e in res)
    print(json.dumps({
        "mode": mode, "tool": tool, "rep": int(rep),
        "records": nrec, "bytes": nbytes,
        "wall_s": round(wall, 6),
        "records_per_s": round(nrec / wall, 1),
        "mb_per_s": round(nbytes / 1e6 / wall, 3),
        "cpu_s": round(cpu, 3),
        "cat_user_s": round(res["cat"][0], 6), "cat_sys_s": round(res["cat"][1], 6),
        "cat_maxrss_kib": res["cat"][2],
        "consumer_user_s": round(res["consumer"][0], 6), "consumer_sys_s": round(res["consumer"][1], 6),
        "consumer_maxrss_kib": res["consumer"][2],
        "rss_source": "gnu-time" if gnu_time == "1" else "wait4",
    }))

main()
PY

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
python3 - "$results" "$bin" "$records" "$bytes" "$work" <<'PY'
import json, os, platform, statistics, subprocess, sys

path, binary, nrec, nbytes, work = sys.argv[1:6]
runs = [json.loads(l) for l in open(path) if l.strip()]

def fs_type(p):
    try:
        return subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", p], capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"

cpu_model = "?"
try:
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            cpu_model = l.split(":", 1)[1].strip()
            break
except OSError:
    pass
try:
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
except OSError:
    version = "?"

print()
print("edge-router stdin -> file benchmark")
print("  binary:   %s (%s)" % (binary, version))
print("  data:     %s sensor records, %s bytes (%.1f bytes/record), temp dir on %s"
      % (nrec, nbytes, int(nbytes) / int(nrec), fs_type(work)))
print("  machine:  %s, %d CPUs, Linux %s" % (cpu_model, os.cpu_count() or 0, platform.release()))
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
