#!/usr/bin/env bash
# kinesis.sh — benchmark edge-router's Kinesis Data Streams sink: stdin -> a 4-shard stream on a
# local kinesalite, with and without KPL aggregation.
#
# Usage (from anywhere; paths are resolved relative to this script):
#   benches/kinesis.sh [--records N] [--repeat R] [--limited-records M] [--shards S]
#                      [--partition SPEC] [--no-readback] [--no-build]
#                      [--tmpdir DIR] [--results FILE] [--keep]
#
#   --records N          number of `sensor` records to generate (default 200000, ~110 bytes each)
#   --repeat R           runs per unlimited variant (raw, agg), interleaved (default 5)
#   --limited-records M  the one raw-limit run sends only the first M records, since the default
#                        rate limit holds it to ~950 records/s per shard (default 20000, at most N)
#   --shards S           shards of the stream (default 4)
#   --partition SPEC     the sink's `partition` (default random: a fresh 16-hex-digit key per record)
#   --no-readback        check delivery from the router's --stats=json only, without reading the
#                        stream back (reading back 200,000 raw records takes ~10 s per run)
#   --no-build           use the binary already in the target directory (or EDGE_ROUTER_BIN)
#   --tmpdir DIR         where the data, logs and read-backs go (default $TMPDIR or /tmp)
#   --results FILE       where to write the raw per-run numbers as JSON lines
#                        (default <target dir>/bench/kinesis-<timestamp>.jsonl)
#   --keep               keep the temp dir (data, router and kinesalite logs, read-backs)
#
# Environment:
#   EDGE_ROUTER_BIN                 use this binary instead of building one
#   CARGO_TARGET_DIR                respected by the build (`cargo build --release -p edge-router`)
#                                   and by tests/kinesis/setup.sh
#   EDGE_ROUTER_GENERATE_BIN  the `edge-router generate` that makes the data (default: the binary
#                       under test; set it when that binary is older than the command)
#   EDGE_ROUTER_KINESALITE_MODULES  kinesalite's node_modules, and
#   EDGE_ROUTER_KINESIS_PYTHON      a python with boto3 and aws-kinesis-agg: when both are set,
#                                   tests/kinesis/setup.sh is not run (it installs them under the
#                                   target dir otherwise; needs node, npm and python3)
#
# What it measures: one generated data file (page-cached) is piped into
#   cat data | edge-router run --sink 'kinesis://bench?region=us-east-1&endpoint=http://127.0.0.1:PORT
#              &partition=SPEC&aggregate=BOOL[&rate_limit_percent=0]' --dead-letter DL --stats=json
# against kinesalite 3.3.3 (tests/kinesis/kinesalite.js: loopback only, in memory), restarted
# before every run (it grows in memory without bound) with a fresh S-shard stream (created with
# tests/kinesis/kinesis_tool.py, outside the timed part). Variants:
#   raw        aggregate=false, rate_limit_percent=0 (off)      R runs
#   agg        aggregate=true,  rate_limit_percent=0 (off)      R runs
#   agg-limit  aggregate=true,  the default limit (100%)        1 run
#   raw-limit  aggregate=false, the default limit, first M      1 run
# kinesalite never throttles, so the rate limit is off for the throughput runs (raw, agg) and
# they measure the router against kinesalite; kinesalite is single-threaded node and usually
# the bottleneck (compare "server CPU s" with "wall s"). The limited runs show the sink keeping
# the per-shard limits against a real server (the sink's limiter admits ~95% of 1000 records/s
# and 1 MiB/s per shard; `cargo bench -p edge-router --bench kinesis_sim` simulates the same in
# virtual time). raw and agg alternate which goes first; the limited runs come last. One
# unmeasured warm-up run (1,000 records, aggregated) goes first.
#
# Per run: wall time, records/s and MB/s of input, user+sys CPU and peak RSS of the router
# (benches/lib/measure.py, shared with the other benchmarks), kinesalite's CPU seconds (less
# those of its start-up and CreateStream) and peak RSS (/proc), and from the router's
# --stats=json: PutRecords requests, Kinesis records (an aggregate counts once), retries and
# throttles, hence user records per request and Kinesis records per user record. With the
# read-back, the Kinesis records and bytes (data + partition key, as Kinesis meters them) each
# shard holds, hence each shard's use of its 1000 records/s and 1 MiB/s over the run's wall time.
#
# Correctness, checked after every run (the script stops and keeps the temp dir otherwise): the
# router exits 0, its stats say written = N, dead_lettered = 0, in_flight = 0, no dead-letter file;
# and (unless --no-readback) the stream read back with kinesis_tool.py (boto3) holds exactly the
# Kinesis records the stats count, and its user records (de-aggregated with aws-kinesis-agg,
# every record that starts with the KPL magic de-aggregating as a valid aggregate) are exactly the
# input lines (count and a digest of the sorted payloads).
#
# It prints a summary table (medians), the aggregation speed-up, the machine load, and the path of
# the JSON lines file. This is a manual benchmark, not a test: it asserts correctness, never timing.
set -euo pipefail

records=200000
repeat=5
limited_records=20000
shards=4
partition=random
readback=1
build=1
tmp_parent="${TMPDIR:-/tmp}"
results=""
keep=0

bench_name=kinesis.sh
bench_script="${BASH_SOURCE[0]}"
# Shared with the other benchmarks: usage, die, option parsing, build, data, measuring helper.
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

while [ $# -gt 0 ]; do
    bench_common_option "$@"
    if [ "$bench_shift" -gt 0 ]; then shift "$bench_shift"; continue; fi
    case "$1" in
        --limited-records) [ $# -ge 2 ] || die "--limited-records needs a value"; limited_records="$2"; shift 2 ;;
        --limited-records=*) limited_records="${1#*=}"; shift ;;
        --shards) [ $# -ge 2 ] || die "--shards needs a value"; shards="$2"; shift 2 ;;
        --shards=*) shards="${1#*=}"; shift ;;
        --partition) [ $# -ge 2 ] || die "--partition needs a value"; partition="$2"; shift 2 ;;
        --partition=*) partition="${1#*=}"; shift ;;
        --no-readback) readback=0; shift ;;
        --no-build) build=0; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
bench_positive --records "$records" --repeat "$repeat" --limited-records "$limited_records" --shards "$shards"
[ "$limited_records" -le "$records" ] || limited_records="$records"
[ "$shards" -le 100 ] || die "--shards must be at most 100 (kinesalite.js's shardLimit)"
case "$partition" in *[\&\ ]*|'') die "--partition '$partition' must not be empty or contain '&' or spaces" ;; esac
[ "$repeat" -ge 3 ] || echo "note: --repeat $repeat is below 3; fine for a smoke run" >&2

bench_check_requirements   # repo, target_dir
command -v node >/dev/null || die "node is required (for kinesalite)"

# --- kinesalite and the read-back tools ----------------------------------------------------------
if [ -n "${EDGE_ROUTER_KINESALITE_MODULES:-}" ] && [ -n "${EDGE_ROUTER_KINESIS_PYTHON:-}" ]; then
    echo "using EDGE_ROUTER_KINESALITE_MODULES and EDGE_ROUTER_KINESIS_PYTHON from the environment" >&2
else
    echo "setting up kinesalite, boto3 and aws-kinesis-agg: tests/kinesis/setup.sh" >&2
    setup_env="$(CARGO_TARGET_DIR="$target_dir" "$repo/tests/kinesis/setup.sh")" || die "tests/kinesis/setup.sh failed"
    eval "$setup_env"
fi
modules="$EDGE_ROUTER_KINESALITE_MODULES"
kpython="$EDGE_ROUTER_KINESIS_PYTHON"
[ -d "$modules/kinesalite" ] || die "no kinesalite in $modules"
"$kpython" -c 'import boto3, aws_kinesis_agg.deaggregator' 2>/dev/null \
    || die "$kpython cannot import boto3 and aws_kinesis_agg"
kinesalite_js="$repo/tests/kinesis/kinesalite.js"
kinesis_tool="$repo/tests/kinesis/kinesis_tool.py"
kinesalite_version="$(node -p "require('$modules/kinesalite/package.json').version")"

# --- the binary -------------------------------------------------------------------------------
if [ "$build" = 1 ]; then bench_router_binary; else bench_router_binary nobuild; fi
bench_detect_gnu_time      # use_gnu_time
bench_init_results kinesis

# --- temp dir and data ------------------------------------------------------------------------
bench_make_workdir         # work, removed at exit unless --keep
kpid=""
stop_kinesalite() {
    if [ -n "$kpid" ]; then
        kill "$kpid" 2>/dev/null || true
        wait "$kpid" 2>/dev/null || true
        kpid=""
    fi
}
trap 'stop_kinesalite; bench_cleanup' EXIT
load_start="$(uptime)"
# Run a private copy, so that a concurrent `cargo build` cannot swap the binary between runs.
bin_orig="$bin"
bin="$work/edge-router"
cp "$bin_orig" "$bin"
"$bin" run --help > /dev/null || die "$bin does not run"

bench_generate_data        # data (page-cached), bytes
data_limited="$work/data-limited.ndjson"
head -n "$limited_records" "$data" > "$data_limited"
bytes_limited="$(wc -c < "$data_limited" | tr -d ' ')"
data_warm="$work/data-warm.ndjson"
head -n 1000 "$data" > "$data_warm"

# The multiset of input payloads (lines without their newline), as count and digest of the sorted
# lines, to compare with what the stream holds.
digest_py='
import hashlib, sys
lines = sorted(open(sys.argv[1], "rb").read().splitlines())
print("%d %s" % (len(lines), hashlib.sha256(b"\n".join(lines)).hexdigest()))
'
declare -A expected
for s in full limited warm; do
    case "$s" in full) f="$data" ;; limited) f="$data_limited" ;; warm) f="$data_warm" ;; esac
    expected[$s]="$(python3 -c "$digest_py" "$f")"
done

# The router gets fixed dummy credentials and nothing from the user's AWS setup.
: > "$work/aws-config"
: > "$work/aws-credentials"
router_env=(env -u AWS_PROFILE -u AWS_REGION -u AWS_DEFAULT_REGION -u AWS_ENDPOINT_URL
            -u AWS_ENDPOINT_URL_KINESIS -u AWS_SESSION_TOKEN
            AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
            AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/aws-credentials"
            NO_COLOR=1)

log="$work/run.log"
dead="$work/dead-letter.ndjson"
klog="$work/kinesalite.log"
stream=bench

fail() { # message: show the router log's tail, keep the temp dir, stop
    tail -n 20 "$log" >&2 2>/dev/null || true
    keep=1
    die "$*"
}

# start_kinesalite: a fresh kinesalite on a free loopback port (port, endpoint, kpid) holding a
# fresh, ACTIVE $shards-shard stream.
start_kinesalite() {
    local i
    stop_kinesalite
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    endpoint="http://127.0.0.1:$port"
    : > "$work/kinesalite.out"
    NODE_PATH="$modules" node "$kinesalite_js" "$port" > "$work/kinesalite.out" 2>> "$klog" &
    kpid=$!
    for i in $(seq 1 400); do
        grep -q "^listening $port" "$work/kinesalite.out" && break
        kill -0 "$kpid" 2>/dev/null || { cat "$klog" >&2; keep=1; die "kinesalite exited before listening"; }
        sleep 0.05
    done
    grep -q "^listening $port" "$work/kinesalite.out" || { keep=1; die "kinesalite not listening on $port after 20 s"; }
    "$kpython" "$kinesis_tool" create "$endpoint" "$stream" "$shards" \
        || { keep=1; die "creating the $shards-shard stream on kinesalite failed"; }
}

# server_usage [BASE]: kinesalite's user+sys CPU seconds so far, less BASE (its CPU seconds before
# the run: start-up and CreateStream), and its peak RSS (KiB) so far, as JSON fields.
server_usage() {
    python3 - "$kpid" "${1:-0}" <<'PY'
import json, os, sys
pid, base = sys.argv[1], float(sys.argv[2])
stat = open("/proc/%s/stat" % pid).read()
fields = stat[stat.rindex(")") + 2:].split()
tick = os.sysconf("SC_CLK_TCK")
cpu = (int(fields[11]) + int(fields[12])) / tick          # utime, stime (fields 14, 15 of stat)
hwm = 0
for line in open("/proc/%s/status" % pid):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1])
print(json.dumps({"server_cpu_s": round(cpu - base, 2), "server_maxrss_kib": hwm}))
PY
}

# check_run AGGREGATE WHAT SET: the run that just ended delivered every record exactly once; sets
# fields to the JSON fields it adds to the run's line (stats, read-back, per-shard use).
check_run() {
    local agg="$1" what="$2" set="$3"
    if [ -s "$dead" ]; then
        head -c 2000 "$dead" >&2
        fail "$what: the router dead-lettered records; see $dead"
    fi
    if [ "$readback" = 1 ]; then
        "$kpython" "$kinesis_tool" read "$endpoint" "$stream" > "$work/readback.jsonl" \
            || fail "$what: reading the stream back failed"
        if [ "$agg" = true ]; then
            "$kpython" "$kinesis_tool" read "$endpoint" "$stream" --deaggregate > "$work/readback-user.jsonl" \
                || fail "$what: reading the stream back (de-aggregated) failed"
        else
            rm -f "$work/readback-user.jsonl"
        fi
    fi
    fields="$(python3 - "$log" "${expected[$set]}" "$readback" "$work/readback.jsonl" "$work/readback-user.jsonl" \
        2> "$work/check.err" <<'PY'
import base64, hashlib, json, os, sys
log, expected, readback, kin_path, user_path = sys.argv[1:6]
n_expected, digest_expected = expected.split()
n_expected = int(n_expected)
def fail(msg):
    sys.exit(msg)
stats = None
for line in open(log, errors="replace"):
    if line.startswith("{"):
        stats = json.loads(line)
if stats is None:
    fail("no --stats=json line in the router's log")
t = stats["totals"]
sink = [c for c in stats["components"] if c["kind"] == "sink"]
if len(sink) != 1:
    fail("expected one sink in the stats, found %d" % len(sink))
sink = sink[0]
if t["written"] != n_expected or t["read"] != n_expected:
    fail("the router read %d and wrote %d records, expected %d" % (t["read"], t["written"], n_expected))
if t["dead_lettered"] != 0 or stats["in_flight"] != 0:
    fail("dead_lettered %d, in_flight %d; expected 0 and 0" % (t["dead_lettered"], stats["in_flight"]))
out = {
    "written": t["written"],
    "kinesis_requests": sink.get("kinesis_requests", 0),
    "kinesis_records": sink.get("kinesis_records", 0),
    "kinesis_retries": sink.get("kinesis_retries", 0),
    "kinesis_throttles": sink.get("kinesis_throttles", 0),
    "router_elapsed_ms": stats.get("elapsed_ms"),
}
if out["kinesis_requests"] == 0 or out["kinesis_records"] == 0:
    fail("the stats count no PutRecords requests or Kinesis records")
out["shards_records"] = out["shards_bytes"] = None
if readback == "1":
    shards, per_records, per_bytes, payloads = [], {}, {}, []
    n_kinesis = 0
    magic = 0
    for line in open(kin_path):
        r = json.loads(line)
        if "seq" not in r:
            shards.append(r["shard"])
            continue
        data = base64.b64decode(r["data"])
        n_kinesis += 1
        per_records[r["shard"]] = per_records.get(r["shard"], 0) + 1
        per_bytes[r["shard"]] = per_bytes.get(r["shard"], 0) + len(data) + len(r["pk"].encode())
        if data[:4] == b"\xf3\x89\x9a\xc2":
            magic += 1
        payloads.append(data)
    if n_kinesis != out["kinesis_records"]:
        fail("the stream holds %d Kinesis records, the router's stats say %d (retries: %d)"
             % (n_kinesis, out["kinesis_records"], out["kinesis_retries"]))
    if os.path.exists(user_path):
        payloads = []
        for line in open(user_path):
            r = json.loads(line)
            if "seq" not in r:
                continue
            if r["raw_magic"] and not r["aggregated"]:
                fail("a Kinesis record with the KPL magic did not de-aggregate (bad digest?) in %s" % r["shard"])
            payloads.append(base64.b64decode(r["data"]))
    elif magic:
        fail("%d Kinesis records start with the KPL magic in a run without aggregation" % magic)
    payloads.sort()
    digest = hashlib.sha256(b"\n".join(payloads)).hexdigest()
    if len(payloads) != n_expected or digest != digest_expected:
        fail("the stream holds %d user records; expected exactly the %d input lines (digest %s)"
             % (len(payloads), n_expected, "differs" if digest != digest_expected else "equal"))
    out["shards_records"] = [per_records.get(s, 0) for s in shards]
    out["shards_bytes"] = [per_bytes.get(s, 0) for s in shards]
    out["readback_user_records"] = len(payloads)
print(json.dumps(out))
PY
)" || fail "$what: $(cat "$work/check.err")"
}

merge_py='
import json, sys
r = json.loads(sys.argv[1])
for extra in sys.argv[2:]:
    r.update(json.loads(extra))
r["router_cpu_s"] = round(r["consumer_user_s"] + r["consumer_sys_s"], 6)
print(json.dumps(r))
sys.stderr.write("  rep %d %-9s wall %7.3fs %9.0f rec/s %6.2f MB/s  router cpu %5.2fs  kinesalite cpu %5.2fs"
    "  %6.1f user rec/request  %.4f Kinesis rec/user rec\n" % (
    r["rep"], r["variant"], r["wall_s"], r["records_per_s"], r["mb_per_s"], r["router_cpu_s"],
    r["server_cpu_s"], r["written"] / r["kinesis_requests"], r["kinesis_records"] / r["written"]))
'

run_one() { # variant rep
    local v="$1" rep="$2" set input nrec nb agg limit uri line usage base extra what
    case "$v" in
        raw) set=full; agg=false; limit=0 ;;
        agg) set=full; agg=true; limit=0 ;;
        agg-limit) set=full; agg=true; limit="" ;;
        raw-limit) set=limited; agg=false; limit="" ;;
        warm-up) set=warm; agg=true; limit=0 ;;
        *) die "unknown variant $v" ;;
    esac
    case "$set" in
        full) input="$data"; nrec="$records"; nb="$bytes" ;;
        limited) input="$data_limited"; nrec="$limited_records"; nb="$bytes_limited" ;;
        warm) input="$data_warm"; nrec=1000; nb="$(wc -c < "$data_warm" | tr -d ' ')" ;;
    esac
    what="$v, rep $rep"
    start_kinesalite
    uri="kinesis://$stream?region=us-east-1&endpoint=$endpoint&partition=$partition&aggregate=$agg"
    if [ -n "$limit" ]; then uri="$uri&rate_limit_percent=$limit"; fi
    rm -f "$dead"
    usage="$(server_usage)" || fail "$what: reading kinesalite's CPU time from /proc failed"
    base="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["server_cpu_s"])' "$usage")"
    line="$(python3 "$bench_measure" unpinned router "$rep" "$input" /dev/null "$log" "$nrec" "$nb" \
        "$use_gnu_time" "${router_env[@]}" "$bin" run --sink "$uri" --dead-letter "$dead" --stats=json)" \
        || fail "router run failed ($what)"
    usage="$(server_usage "$base")" || fail "$what: reading kinesalite's CPU time from /proc failed"
    check_run "$agg" "$what" "$set"   # fields
    stop_kinesalite
    if [ "$v" = warm-up ]; then return 0; fi
    extra="$(printf '{"variant": "%s", "aggregate": %s, "rate_limit_percent": %s, "shards": %d, "partition": "%s", "sink": "%s"}' \
        "$v" "$agg" "${limit:-100}" "$shards" "$partition" "$uri")"
    python3 -c "$merge_py" "$line" "$extra" "$usage" "$fields" >> "$results"
}

echo "kinesalite $kinesalite_version; stream '$stream' with $shards shards; partition=$partition;" \
     "read-back $([ "$readback" = 1 ] && echo on || echo off)" >&2
echo "warm-up: one aggregated run of 1,000 records (not recorded)" >&2
run_one warm-up 0
echo "running $repeat interleaved repetitions of {raw, agg} (rate limit off) on $records records" \
     "($bytes bytes), then agg-limit on $records and raw-limit on $limited_records records once" >&2
for rep in $(seq 1 "$repeat"); do
    if [ $((rep % 2)) = 1 ]; then order="raw agg"; else order="agg raw"; fi
    for v in $order; do
        run_one "$v" "$rep"
    done
done
run_one agg-limit 1
run_one raw-limit 1
load_end="$(uptime)"

# --- summary ----------------------------------------------------------------------------------
python3 - "$results" "$bin_orig" "$records" "$bytes" "$limited_records" "$bench_lib" "$load_start" \
    "$load_end" "$kinesalite_version" "$shards" "$partition" "$readback" <<'PY'
import json, statistics, sys

(path, binary, nrec, nbytes, nlimited, lib, load_start, load_end, kver, shards, partition,
 readback) = sys.argv[1:13]
sys.path.insert(0, lib)
from benchinfo import binary_version, machine_line
nrec, nbytes, shards = int(nrec), int(nbytes), int(shards)
runs = [json.loads(l) for l in open(path) if l.strip()]
med = statistics.median
REC_LIMIT, BYTES_LIMIT = 1000, 1024 * 1024

def shard_use(r):
    """Mean over shards of (Kinesis records/s / 1000, bytes/s / 1 MiB) over the run's wall time."""
    if not r.get("shards_records"):
        return None
    n = len(r["shards_records"])
    rec = sum(x / r["wall_s"] / REC_LIMIT for x in r["shards_records"]) / n
    byt = sum(x / r["wall_s"] / BYTES_LIMIT for x in r["shards_bytes"]) / n
    return rec, byt

print()
print("edge-router Kinesis sink benchmark (against kinesalite %s on 127.0.0.1)" % kver)
print("  binary:   %s (%s; the runs used a copy in the temp dir)" % (binary, binary_version(binary)))
print("  data:     %d sensor records, %d bytes (%.1f bytes/record); raw-limit: the first %s"
      % (nrec, nbytes, nbytes / nrec, nlimited))
print("  stream:   %d shards, partition=%s, ordering unordered (default), linger 100 ms, max_in_flight 8"
      % (shards, partition))
print("  machine:  %s" % machine_line())
print("  load:     at start: %s" % load_start.split("load average:")[-1].strip())
print("            at end:   %s" % load_end.split("load average:")[-1].strip())
print("  checks:   every run wrote all records, no dead letters%s" % (
    "; the stream read back holds exactly the input (boto3, aws-kinesis-agg)" if readback == "1" else
    " (from --stats=json only: --no-readback)"))
print()
hdr = "%-10s %-5s %-5s %4s %8s %8s %10s %7s %8s %8s %9s %10s %7s %7s %7s %6s" % (
    "variant", "aggr", "limit", "runs", "records", "wall s", "records/s", "MB/s", "router s",
    "server s", "requests", "user/req", "kin/usr", "rec %", "MiB %", "retry")
print(hdr)
print("-" * len(hdr))
medians = {}
for v in ("raw", "agg", "agg-limit", "raw-limit"):
    rs = [r for r in runs if r["variant"] == v]
    if not rs:
        continue
    m = {k: med(r[k] for r in rs) for k in ("wall_s", "records_per_s", "mb_per_s", "router_cpu_s",
                                             "server_cpu_s", "kinesis_requests")}
    m["user_per_req"] = med(r["written"] / r["kinesis_requests"] for r in rs)
    m["kin_per_user"] = med(r["kinesis_records"] / r["written"] for r in rs)
    uses = [shard_use(r) for r in rs]
    uses = [u for u in uses if u]
    rec_use = "%.1f" % (100 * med(u[0] for u in uses)) if uses else "-"
    byt_use = "%.1f" % (100 * med(u[1] for u in uses)) if uses else "-"
    retries = sum(r["kinesis_retries"] for r in rs)
    medians[v] = m
    print("%-10s %-5s %-5s %4d %8d %8.3f %10.0f %7.2f %8.2f %8.2f %9.0f %10.1f %7.4f %7s %7s %6d" % (
        v, "on" if rs[0]["aggregate"] else "off",
        "%d%%" % rs[0]["rate_limit_percent"] if rs[0]["rate_limit_percent"] else "off",
        len(rs), rs[0]["records"], m["wall_s"], m["records_per_s"], m["mb_per_s"], m["router_cpu_s"],
        m["server_cpu_s"], m["kinesis_requests"], m["user_per_req"], m["kin_per_user"], rec_use,
        byt_use, retries))
print("(medians over runs; records/s and MB/s: input records and bytes over the wall time of the")
print(" whole run, router start-up included; router s / server s: user+sys CPU seconds of the router")
print(" and of kinesalite; user/req: user records per PutRecords request; kin/usr: Kinesis records")
print(" per user record (an aggregate counts once); rec % / MiB %: mean per-shard Kinesis records/s")
print(" over 1000 and bytes/s (data + partition key) over 1 MiB, from the stream read back, over the")
print(" wall time; retry: retried entries over all runs; kinesalite never throttles)")
print()
if "raw" in medians and "agg" in medians:
    print("aggregation: %.1fx the records/s of raw PutRecords (rate limit off, against kinesalite)"
          % (medians["agg"]["records_per_s"] / medians["raw"]["records_per_s"]))
for v in ("agg-limit", "raw-limit"):
    if v in medians:
        print("%s: %.0f user records/s over %d shards at the default limit (%.0f per shard)"
              % (v, medians[v]["records_per_s"], shards, medians[v]["records_per_s"] / shards))
print("simulated utilisation of the limits (virtual time): cargo bench -p edge-router --bench kinesis_sim")
print()
print("raw per-run numbers (JSON lines): %s" % path)
PY
