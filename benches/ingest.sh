#!/usr/bin/env bash
# ingest.sh — benchmark network ingest into a file sink: `edge-router send` pushing records over
# HTTP and over QUIC to an `edge-router run --source http://... | quic://... --sink file:OUT`
# router on the same machine, at full speed and at a fixed rate, against `cat data > out`.
#
# Usage (from anywhere; paths are resolved relative to this script):
#   benches/ingest.sh [--records N] [--repeat R] [--http-in-flight N] [--quic-in-flight N]
#                     [--half-rate RATE] [--sweep] [--no-build]
#                     [--tmpdir DIR] [--results FILE] [--keep]
#
#   --records N         number of `sensor` records to generate (default 1000000, ~110 bytes each)
#   --repeat R          runs per variant, interleaved (default 5)
#   --http-in-flight N  `send --in-flight` for the http variants (default 2; see the README for
#                       the sweep that chose it)
#   --quic-in-flight N  `send --in-flight` for the quic variants (default 8, send's default)
#   --half-rate RATE    `send --max-rate` of the *-half variants, records/s (default 500000:
#                       half of the issue's 1,000,000 records/s target)
#   --sweep             first run http once at --in-flight 1, 2, 4 and 8 (full speed) and print
#                       those runs in a table of their own
#   --no-build          use the binary already in the target directory (or EDGE_ROUTER_BIN)
#   --tmpdir DIR        where the data, the output files and the logs go (default $TMPDIR or /tmp)
#   --results FILE      where to write the raw per-run numbers as JSON lines
#                       (default <target dir>/bench/ingest-<timestamp>.jsonl)
#   --keep              keep the temp dir (data, outputs, router and client logs)
#
# Environment:
#   EDGE_ROUTER_BIN     use this binary instead of building one
#   CARGO_TARGET_DIR    respected by the build step (`cargo build --release -p edge-router`)
#   EDGE_ROUTER_GENERATE_BIN  the `edge-router generate` that makes the data (default: the binary
#                       under test; set it when that binary is older than the command)
#
# What it measures: one generated data file (read once first, so it sits in the page cache) is
# sent, R times per variant, with
#   cat data | edge-router send URI [--fingerprint HEX] --batch-records 1000 --in-flight N
#              [--max-rate RATE] --stats
# to a fresh router started for that run on a free loopback port,
#   edge-router run --source URI --sink file:OUT --dead-letter DL --stats=json
# waited for (HTTP: GET /ready answers 200; QUIC: the "listening on quic://..." log line with the
# self-signed certificate's fingerprint) and stopped with SIGTERM once `send` has exited. Variants:
#   cat         `cat data > out`, the baseline: the cost of writing the bytes into a file
#   http        http://127.0.0.1:PORT, batches of 1000 records per POST, --http-in-flight
#   quic        quic://127.0.0.1:PORT?self_signed=true, one stream per batch, --quic-in-flight
#   http-half   http, with --max-rate RATE
#   quic-half   quic, with --max-rate RATE
# Each repetition runs every variant once, alternating the order (forward, then backward). All
# processes are unpinned: client and router share the machine's cores.
#
# Per run: wall time of the client (`cat data | send`, benches/lib/measure.py) and records/s from
# records_acknowledged over it; the client's own records_per_sec, batches, resends, connections
# and batch latency p50/p99/p999/max (send to acknowledgement, hdrhistogram) from its --stats
# line; user+sys CPU of the client (and of `cat`); user+sys CPU of the router over its whole life
# (start-up and the flush after SIGTERM included; os.wait4 in a small Python wrapper) and its peak
# RSS (VmHWM read from /proc just before the SIGTERM).
#
# Correctness, checked after every run (the script stops and keeps the temp dir otherwise): the
# client exits 0 with records_read = records_acknowledged = N and no error; the router exits 0 on
# SIGTERM, its --stats=json says read = written = N, nothing dead-lettered; the output file is
# byte-identical to the input (cmp) for quic (the router takes a session's batches in order) and
# for http with --in-flight 1, and holds exactly the input lines in some order (count and digest
# of the sorted lines) for http with more in flight (parallel POSTs may land in any order).
#
# It prints a summary table (medians; max peak RSS), the issue's targets next to the measured
# numbers ("met" / "NOT met", for information: nothing fails on timing), the load average at the
# start and the end, and the path of the JSON lines file. This is a manual benchmark, not a
# test: it asserts correctness, never timing.
set -euo pipefail

records=1000000
repeat=5
http_in_flight=2
quic_in_flight=8
half_rate=500000
sweep=0
build=1
tmp_parent="${TMPDIR:-/tmp}"
results=""
keep=0

bench_name=ingest.sh
bench_script="${BASH_SOURCE[0]}"
# Shared with the other benchmarks: usage, die, option parsing, build, data, measuring helper.
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

while [ $# -gt 0 ]; do
    bench_common_option "$@"
    if [ "$bench_shift" -gt 0 ]; then shift "$bench_shift"; continue; fi
    case "$1" in
        --http-in-flight) [ $# -ge 2 ] || die "--http-in-flight needs a value"; http_in_flight="$2"; shift 2 ;;
        --http-in-flight=*) http_in_flight="${1#*=}"; shift ;;
        --quic-in-flight) [ $# -ge 2 ] || die "--quic-in-flight needs a value"; quic_in_flight="$2"; shift 2 ;;
        --quic-in-flight=*) quic_in_flight="${1#*=}"; shift ;;
        --half-rate) [ $# -ge 2 ] || die "--half-rate needs a value"; half_rate="$2"; shift 2 ;;
        --half-rate=*) half_rate="${1#*=}"; shift ;;
        --sweep) sweep=1; shift ;;
        --no-build) build=0; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
bench_positive --records "$records" --repeat "$repeat" --http-in-flight "$http_in_flight" \
    --quic-in-flight "$quic_in_flight" --half-rate "$half_rate"
[ "$repeat" -ge 3 ] || echo "note: --repeat $repeat is below 3; fine for a smoke run" >&2

bench_check_requirements   # repo, target_dir
command -v curl >/dev/null || die "curl is required (the HTTP readiness check)"

# --- the binary -------------------------------------------------------------------------------
if [ "$build" = 1 ]; then bench_router_binary; else bench_router_binary nobuild; fi
bench_detect_gnu_time      # use_gnu_time (the client's peak RSS; the router's comes from /proc)
bench_init_results ingest

# --- temp dir and data ------------------------------------------------------------------------
bench_make_workdir         # work, removed at exit unless --keep
spid=""
stop_router() { # on exit or failure: the router wrapper we started, if it still runs
    if [ -n "$spid" ]; then
        kill -TERM "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        spid=""
    fi
}
trap 'stop_router; bench_cleanup' EXIT
load_start="$(uptime)"
# Run a private copy, so that a concurrent `cargo build` cannot swap the binary between runs.
bin_orig="$bin"
bin="$work/edge-router"
cp "$bin_orig" "$bin"
"$bin" send --help 2>/dev/null | grep -q -- --max-rate || die "$bin send has no --max-rate option"

bench_generate_data        # data (page-cached), bytes
digest_py='
import hashlib, sys
lines = sorted(open(sys.argv[1], "rb").read().splitlines())
print("%d %s" % (len(lines), hashlib.sha256(b"\n".join(lines)).hexdigest()))
'
expected_sorted="$(python3 -c "$digest_py" "$data")"

# The router's wrapper: runs the router with stderr passed through, forwards SIGTERM to it (after
# reading its peak RSS, VmHWM, from /proc: wait4's ru_maxrss would include this wrapper's memory,
# inherited through vfork), reaps it with os.wait4 and writes its exit status, CPU times and peak
# RSS as JSON to the file named first. Exits with the router's status.
serve="$work/serve.py"
cat > "$serve" <<'PY'
import json, os, signal, subprocess, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
child = subprocess.Popen(argv)
peak = {"kib": 0}
def vmhwm():
    try:
        for line in open("/proc/%d/status" % child.pid):
            if line.startswith("VmHWM:"):
                peak["kib"] = max(peak["kib"], int(line.split()[1]))
    except OSError:
        pass
def on_term(signum, frame):
    vmhwm()
    child.send_signal(signal.SIGTERM)
    peak["term"] = time.perf_counter()
signal.signal(signal.SIGTERM, on_term)
_, status, ru = os.wait4(child.pid, 0)
child.returncode = code = os.waitstatus_to_exitcode(status)
end = time.perf_counter()
with open(out, "w") as f:
    json.dump({"router_exit": code, "router_user_s": round(ru.ru_utime, 6),
               "router_sys_s": round(ru.ru_stime, 6),
               "router_cpu_s": round(ru.ru_utime + ru.ru_stime, 6),
               "router_maxrss_kib": peak["kib"], "router_life_s": round(end - t0, 3),
               "router_stop_s": round(end - peak["term"], 3) if "term" in peak else None}, f)
sys.exit(code if code >= 0 else 128 - code)
PY

out="$work/out.ndjson"
dead="$work/dead-letter.ndjson"
rlog="$work/router.log"
clog="$work/client.log"
rjson="$work/router.json"

fail() { # message: show the logs' tails, keep the temp dir, stop
    echo "--- router log (tail) ---" >&2; tail -n 20 "$rlog" >&2 2>/dev/null || true
    echo "--- client log (tail) ---" >&2; tail -n 20 "$clog" >&2 2>/dev/null || true
    keep=1
    die "$*"
}

free_port() { # tcp|udp: a free loopback port (the kernel's choice)
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}

# start_router PROTO: a fresh router on a free port, waited for until it takes records; sets
# spid, client_uri and client_trust (the --fingerprint option for QUIC).
start_router() {
    local proto="$1" port source i
    stop_router
    rm -f "$out" "$dead" "$rjson"
    if [ "$proto" = http ]; then
        port="$(free_port tcp)"
        source="http://127.0.0.1:$port"
        client_uri="http://127.0.0.1:$port"
    else
        port="$(free_port udp)"
        source="quic://127.0.0.1:$port?self_signed=true"
        client_uri="quic://127.0.0.1:$port"
    fi
    client_trust=()
    NO_COLOR=1 python3 "$serve" "$rjson" "$bin" run --source "$source" --sink "file:$out" \
        --dead-letter "$dead" --stats=json 2> "$rlog" &
    spid=$!
    for i in $(seq 1 600); do
        kill -0 "$spid" 2>/dev/null || { spid=""; fail "the router exited before it was ready ($source)"; }
        if [ "$proto" = http ]; then
            curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/ready" 2>/dev/null && return 0
        else
            fp="$(sed -n 's/.*listening on quic:.*(clients: --fingerprint \([0-9A-Fa-f:]*\)).*/\1/p' "$rlog" | head -n 1)"
            if [ -n "$fp" ]; then client_trust=(--fingerprint "$fp"); return 0; fi
        fi
        sleep 0.05
    done
    fail "the router did not get ready within 30 s ($source)"
}

# check_run VARIANT IN_FLIGHT WHAT: after a network run, sets fields (JSON) from the client's and
# the router's stats, failing unless every record arrived exactly once.
check_run() {
    local v="$1" inflight="$2" what="$3" how
    if [ -s "$dead" ]; then head -c 2000 "$dead" >&2; fail "$what: the router dead-lettered records; see $dead"; fi
    [ -f "$out" ] || fail "$what: the router wrote no output file at $out"
    if [ "${v#quic}" != "$v" ] || [ "$inflight" = 1 ]; then
        how=cmp
        cmp "$data" "$out" || fail "$what: the output file differs from the input; see $out"
    else
        how=sorted
        [ "$(python3 -c "$digest_py" "$out")" = "$expected_sorted" ] \
            || fail "$what: the output's lines are not exactly the input's lines (in any order); see $out"
    fi
    fields="$(python3 - "$clog" "$rlog" "$rjson" "$records" "$how" <<'PY'
import json, sys
clog, rlog, rjson, n, how = sys.argv[1:6]
n = int(n)
def last_json(path):
    found = None
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                pass
    return found
c = last_json(clog)
if c is None:
    sys.exit("no --stats line in the client's log")
if c.get("error") is not None:
    sys.exit("the client reports an error: %s" % c["error"])
if c["records_read"] != n or c["records_acknowledged"] != n:
    sys.exit("the client read %d and got %d acknowledged, expected %d"
             % (c["records_read"], c["records_acknowledged"], n))
r = last_json(rlog)
if r is None:
    sys.exit("no --stats=json line in the router's log")
t = r["totals"]
if t["read"] != n or t["written"] != n or t["dead_lettered"] != 0:
    sys.exit("the router read %d, wrote %d, dead-lettered %d; expected %d, %d, 0"
             % (t["read"], t["written"], t["dead_lettered"], n, n))
s = json.load(open(rjson))
if s["router_exit"] != 0:
    sys.exit("the router exited with status %d on SIGTERM" % s["router_exit"])
out = dict(s)
out.update({"client_records_per_sec": c["records_per_sec"], "client_elapsed_ms": c["elapsed_ms"],
            "batches": c["batches"], "resends": c["resends"], "connections": c["connections"],
            "p50_us": c["latency_us"]["p50"], "p99_us": c["latency_us"]["p99"],
            "p999_us": c["latency_us"]["p999"], "max_us": c["latency_us"]["max"],
            "acknowledged": c["records_acknowledged"], "written": t["written"], "check": how})
print(json.dumps(out))
PY
)" || fail "$what: delivery check failed (see above)"
}

merge_py='
import json, sys
r = json.loads(sys.argv[1])
for extra in sys.argv[2:]:
    r.update(json.loads(extra))
r["client_cpu_s"] = round(r["consumer_user_s"] + r["consumer_sys_s"], 6)
r["client_maxrss_kib"] = r["consumer_maxrss_kib"]
print(json.dumps(r))
sys.stderr.write("  rep %d %-12s wall %6.3fs %9.0f rec/s (client %9.0f)  p50/p99/p999 %6.2f/%6.2f/%6.2f ms"
    "  router cpu %5.2fs rss %4.0f MiB  client cpu %5.2fs  resends %d\n" % (
    r["rep"], r["variant"], r["wall_s"], r["records_per_s"], r["client_records_per_sec"],
    r["p50_us"] / 1e3, r["p99_us"] / 1e3, r["p999_us"] / 1e3, r["router_cpu_s"],
    r["router_maxrss_kib"] / 1024, r["client_cpu_s"], r["resends"]))
'

# The baseline: `cat data > out`, timed with os.wait4 (wall, CPU).
cat_py='
import json, os, subprocess, sys, time
data, out, n, nbytes, rep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with open(out, "wb") as f:
    t0 = time.perf_counter()
    p = subprocess.Popen(["cat", data], stdout=f)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("cat failed")
print(json.dumps({"variant": "cat", "rep": rep, "records": n, "bytes": nbytes, "wall_s": round(wall, 6),
                  "records_per_s": round(n / wall, 1), "mb_per_s": round(nbytes / 1e6 / wall, 3),
                  "cat_cpu_s": round(ru.ru_utime + ru.ru_stime, 6)}))
sys.stderr.write("  rep %d %-12s wall %6.3fs %9.0f rec/s\n" % (rep, "cat", wall, n / wall))
'

run_one() { # variant rep [in_flight]
    local v="$1" rep="$2" proto rate inflight line what extra
    if [ "$v" = cat ]; then
        rm -f "$out"
        line="$(python3 -c "$cat_py" "$data" "$out" "$records" "$bytes" "$rep")" || die "cat run failed"
        cmp "$data" "$out" || { keep=1; die "cat data > out wrote a different file"; }
        echo "$line" >> "$results"
        return 0
    fi
    case "$v" in
        http|http-half|http-if*) proto=http; inflight="${3:-$http_in_flight}" ;;
        quic|quic-half) proto=quic; inflight="${3:-$quic_in_flight}" ;;
        *) die "unknown variant $v" ;;
    esac
    case "$v" in *-half) rate="$half_rate" ;; *) rate=0 ;; esac
    what="$v, rep $rep"
    start_router "$proto"      # spid, client_uri, client_trust
    line="$(python3 "$bench_measure" unpinned "$v" "$rep" "$data" /dev/null "$clog" "$records" "$bytes" \
        "$use_gnu_time" "$bin" send "$client_uri" ${client_trust[@]+"${client_trust[@]}"} \
        --batch-records 1000 --in-flight "$inflight" --max-rate "$rate" --stats)" \
        || fail "client run failed ($what)"
    kill -TERM "$spid" 2>/dev/null || true
    wait "$spid" || true
    spid=""
    check_run "$v" "$inflight" "$what"   # fields
    extra="$(printf '{"variant": "%s", "proto": "%s", "in_flight": %d, "max_rate": %d, "batch_records": 1000}' \
        "$v" "$proto" "$inflight" "$rate")"
    python3 -c "$merge_py" "$line" "$extra" "$fields" >> "$results"
}

if [ "$sweep" = 1 ]; then
    echo "sweep: http at --in-flight 1, 2, 4, 8 (full speed, once each)" >&2
    for n in 1 2 4 8; do run_one "http-if$n" 0 "$n"; done
fi
variants=(cat http quic http-half quic-half)
echo "running $repeat interleaved repetitions of {${variants[*]}} on $records records ($bytes bytes);" \
     "http --in-flight $http_in_flight, quic --in-flight $quic_in_flight, half rate $half_rate records/s" >&2
for rep in $(seq 1 "$repeat"); do
    if [ $((rep % 2)) = 1 ]; then order=("${variants[@]}")
    else order=(); for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[i]}"); done; fi
    for v in "${order[@]}"; do run_one "$v" "$rep"; done
done
rm -f "$out"
load_end="$(uptime)"

# --- summary ----------------------------------------------------------------------------------
python3 - "$results" "$bin_orig" "$records" "$bytes" "$work" "$bench_lib" "$load_start" "$load_end" \
    "$half_rate" <<'PY'
import json, statistics, sys

path, binary, nrec, nbytes, work, lib, load_start, load_end, half = sys.argv[1:10]
sys.path.insert(0, lib)
from benchinfo import binary_version, fs_type, machine_line
nrec, nbytes, half = int(nrec), int(nbytes), int(half)
runs = [json.loads(l) for l in open(path) if l.strip()]
med = statistics.median

print()
print("edge-router network ingest -> file benchmark (client and router on one machine)")
print("  binary:   %s (%s; the runs used a copy in the temp dir)" % (binary, binary_version(binary)))
print("  data:     %d sensor records, %d bytes (%.1f bytes/record), temp dir on %s"
      % (nrec, nbytes, nbytes / nrec, fs_type(work)))
print("  machine:  %s" % machine_line())
print("  load:     at start: %s" % load_start.split("load average:")[-1].strip())
print("            at end:   %s" % load_end.split("load average:")[-1].strip())
print("  checks:   every run: all records acknowledged and written once, no dead letters, router")
print("            exit 0 on SIGTERM; output = input byte for byte (quic, http --in-flight 1) or")
print("            the same lines in another order (http with more in flight)")
print()

def table(names, title=None):
    if title:
        print(title)
    hdr = "%-12s %4s %4s %8s %7s %10s %10s %6s %7s %7s %7s %8s %8s %7s %7s %8s %7s" % (
        "variant", "runs", "infl", "max rate", "wall s", "records/s", "client r/s", "x cat",
        "p50 ms", "p99 ms", "p999 ms", "router s", "client s", "r ns/rec", "c ns/rec",
        "RSS MiB", "resends")
    print(hdr)
    print("-" * len(hdr))
    cat = [r for r in runs if r["variant"] == "cat"]
    cat_rps = med(r["records_per_s"] for r in cat) if cat else None
    m = {}
    for v in names:
        rs = [r for r in runs if r["variant"] == v]
        if not rs:
            continue
        if v == "cat":
            print("%-12s %4d %4s %8s %7.3f %10.0f %10s %6.2f %7s %7s %7s %8s %8.2f %7s %7s %8s %7s" % (
                v, len(rs), "-", "-", med(r["wall_s"] for r in rs), cat_rps, "-", 1.0, "-", "-",
                "-", "-", med(r["cat_cpu_s"] for r in rs), "-", "-", "-", "-"))
            continue
        x = {k: med(r[k] for r in rs) for k in (
            "wall_s", "records_per_s", "client_records_per_sec", "p50_us", "p99_us", "p999_us",
            "router_cpu_s", "client_cpu_s", "resends")}
        x["rss"] = max(r["router_maxrss_kib"] for r in rs) / 1024
        x["resends_total"] = sum(r["resends"] for r in rs)
        x["p99_max_us"] = max(r["p99_us"] for r in rs)
        m[v] = x
        print("%-12s %4d %4d %8s %7.3f %10.0f %10.0f %6.2f %7.2f %7.2f %7.2f %8.2f %8.2f %7.0f %7.0f %8.1f %7d" % (
            v, len(rs), rs[0]["in_flight"], rs[0]["max_rate"] or "-", x["wall_s"], x["records_per_s"],
            x["client_records_per_sec"], x["records_per_s"] / cat_rps if cat_rps else float("nan"),
            x["p50_us"] / 1e3, x["p99_us"] / 1e3, x["p999_us"] / 1e3, x["router_cpu_s"],
            x["client_cpu_s"], x["router_cpu_s"] / nrec * 1e9, x["client_cpu_s"] / nrec * 1e9,
            x["rss"], x["resends_total"]))
    return m

sweep = sorted({r["variant"] for r in runs if r["variant"].startswith("http-if")})
if sweep:
    table(sweep, "in-flight sweep (http, full speed, one run each):")
    print()
m = table(["cat", "http", "quic", "http-half", "quic-half"])
print("(medians over runs; records/s: records acknowledged over the wall time of `cat data | send`,")
print(" connection set-up included; client r/s: the client's own records_per_sec; x cat: records/s")
print(" over that of `cat data > out`; p50/p99/p999: per-batch send-to-acknowledgement latency from")
print(" the client's hdrhistogram; router s / client s: user+sys CPU seconds of the router (whole")
print(" life) and of `send`; r/c ns/rec: those per record; RSS MiB: the router's largest peak RSS;")
print(" resends: total over the runs)")
print()
def verdict(ok):
    return "met" if ok else "NOT met"
for v, label in (("http", "HTTP"), ("quic", "QUIC")):
    if v in m:
        print("target: %s >= 1,000,000 records/s: %.0f -> %s" % (
            label, m[v]["records_per_s"], verdict(m[v]["records_per_s"] >= 1e6)))
for v, label in (("http-half", "HTTP"), ("quic-half", "QUIC")):
    if v in m:
        note = ""
        if m[v]["records_per_s"] < 0.9 * half:
            note = " (but only %.0f records/s reached, not the %d asked for)" % (m[v]["records_per_s"], half)
        print("target: %s p99 < 10 ms at %d records/s: median p99 %.2f ms (worst run %.2f ms) -> %s%s" % (
            label, half, m[v]["p99_us"] / 1e3, m[v]["p99_max_us"] / 1e3,
            verdict(m[v]["p99_us"] < 10000 and m[v]["records_per_s"] >= 0.9 * half), note))
print()
print("raw per-run numbers (JSON lines): %s" % path)
PY
