#!/usr/bin/env bash
# firehose.sh — benchmark edge-router's Kinesis Data Firehose sink: stdin -> a DirectPut delivery
# stream into S3 on a local moto server, with record packing on and off.
#
# Usage (from anywhere; paths are resolved relative to this script):
#   benches/firehose.sh [--records N] [--repeat R] [--no-readback] [--no-build]
#                       [--tmpdir DIR] [--results FILE] [--keep]
#
#   --records N      number of `sensor` records to generate (default 200000, ~110 bytes each)
#   --repeat R       runs per variant (packed, unpacked), interleaved (default 5)
#   --no-readback    check delivery from the router's --stats=json only, without reading the S3
#                    objects back
#   --no-build       use the binary already in the target directory (or EDGE_ROUTER_BIN)
#   --tmpdir DIR     where the data, logs and read-backs go (default $TMPDIR or /tmp)
#   --results FILE   where to write the raw per-run numbers as JSON lines
#                    (default <target dir>/bench/firehose-<timestamp>.jsonl)
#   --keep           keep the temp dir (data, router and moto logs, read-backs)
#
# Environment:
#   EDGE_ROUTER_BIN               use this binary instead of building one
#   CARGO_TARGET_DIR              respected by the build (`cargo build --release -p edge-router`)
#                                 and by tests/firehose/setup.sh
#   EDGE_ROUTER_GENERATE_BIN  the `edge-router generate` that makes the data (default: the binary
#                       under test; set it when that binary is older than the command)
#   EDGE_ROUTER_FIREHOSE_PYTHON   a venv's python with boto3, beside its moto_server: when set,
#                                 tests/firehose/setup.sh is not run (it installs moto[server] and
#                                 boto3 from PyPI under the target dir otherwise; needs python3 with
#                                 venv)
#
# What it measures: one generated data file (page-cached) is piped into
#   cat data | edge-router run --sink 'firehose://bench?region=us-east-1&endpoint=http://127.0.0.1:PORT
#              &pack=BOOL' --dead-letter DL --stats=json
# against moto_server (moto 5.2.5, loopback only, in memory), restarted before every run with a
# fresh S3 bucket and a fresh DirectPut delivery stream into it (created with
# tests/firehose/firehose_tool.py, outside the timed part). Every other sink setting is the
# default: packs of up to 900 KiB, newline delimiter, linger 200 ms, 500 records and 4 MiB per
# PutRecordBatch, 4 calls in flight. Variants:
#   packed     pack=true   many user records per Firehose record     R runs
#   unpacked   pack=false  one user record per Firehose record       R runs
# They alternate which goes first; one unmeasured warm-up run (1,000 records, packed) goes first.
# moto delivers synchronously (each PutRecordBatch becomes one S3 object) and is single-threaded
# Python, so the unpacked runs mostly measure moto (compare "server s" with "wall s").
#
# Per run: wall time, records/s and MB/s of input, user+sys CPU and peak RSS of the router
# (benches/lib/measure.py, shared with the other benchmarks), moto's CPU seconds (less those of
# its start-up and the setup calls) from /proc, and from the router's --stats=json:
# PutRecordBatch requests, Firehose records, retries, bytes sent, and the estimated billed bytes
# (each Firehose record rounded up to 5 KB) as sent and as they would be with one Firehose record
# per user record (firehose_billed_bytes, firehose_billed_bytes_unpacked).
#
# Correctness, checked after every run (the script stops and keeps the temp dir otherwise): the
# router exits 0, its stats say read = written = N, dead_lettered = 0, in_flight = 0, no retries,
# Firehose records = N when unpacked, no dead-letter file; and (unless --no-readback) the bucket,
# read back with firehose_tool.py (boto3), holds one object per PutRecordBatch request, each ending
# with a newline, whose lines are exactly the input lines (count and a digest of the sorted lines).
#
# It prints a summary table (medians), the Firehose records per user record, the billed-bytes cut
# of packing next to the issue's target (>= 40x for ~110-byte records; "met" / "NOT met", for
# information), the machine load, and the path of the JSON lines file. This is a manual benchmark,
# not a test: it asserts correctness, never timing.
set -euo pipefail

records=200000
repeat=5
readback=1
build=1
tmp_parent="${TMPDIR:-/tmp}"
results=""
keep=0

bench_name=firehose.sh
bench_script="${BASH_SOURCE[0]}"
# Shared with the other benchmarks: usage, die, option parsing, build, data, measuring helper.
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

while [ $# -gt 0 ]; do
    bench_common_option "$@"
    if [ "$bench_shift" -gt 0 ]; then shift "$bench_shift"; continue; fi
    case "$1" in
        --no-readback) readback=0; shift ;;
        --no-build) build=0; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
bench_positive --records "$records" --repeat "$repeat"
[ "$repeat" -ge 3 ] || echo "note: --repeat $repeat is below 3; fine for a smoke run" >&2

bench_check_requirements   # repo, target_dir

# --- moto and boto3 -----------------------------------------------------------------------------
if [ -n "${EDGE_ROUTER_FIREHOSE_PYTHON:-}" ]; then
    echo "using EDGE_ROUTER_FIREHOSE_PYTHON from the environment" >&2
else
    echo "setting up moto[server] and boto3: tests/firehose/setup.sh" >&2
    setup_env="$(CARGO_TARGET_DIR="$target_dir" "$repo/tests/firehose/setup.sh")" || die "tests/firehose/setup.sh failed"
    eval "$setup_env"
fi
fpython="$EDGE_ROUTER_FIREHOSE_PYTHON"
moto_server="$(dirname "$fpython")/moto_server"
[ -x "$moto_server" ] || die "no moto_server beside $fpython"
"$fpython" -c 'import boto3, moto' 2>/dev/null || die "$fpython cannot import boto3 and moto"
firehose_tool="$repo/tests/firehose/firehose_tool.py"
moto_version="$("$fpython" -c 'import moto; print(moto.__version__)')"

# --- the binary -------------------------------------------------------------------------------
if [ "$build" = 1 ]; then bench_router_binary; else bench_router_binary nobuild; fi
bench_detect_gnu_time      # use_gnu_time
bench_init_results firehose

# --- temp dir and data ------------------------------------------------------------------------
bench_make_workdir         # work, removed at exit unless --keep
mpid=""
stop_moto() {
    if [ -n "$mpid" ]; then
        kill "$mpid" 2>/dev/null || true
        wait "$mpid" 2>/dev/null || true
        mpid=""
    fi
}
trap 'stop_moto; bench_cleanup' EXIT
load_start="$(uptime)"
# Run a private copy, so that a concurrent `cargo build` cannot swap the binary between runs.
bin_orig="$bin"
bin="$work/edge-router"
cp "$bin_orig" "$bin"
"$bin" run --help > /dev/null || die "$bin does not run"

bench_generate_data        # data (page-cached), bytes
data_warm="$work/data-warm.ndjson"
head -n 1000 "$data" > "$data_warm"
bytes_warm="$(wc -c < "$data_warm" | tr -d ' ')"

# The multiset of input lines, as count and digest of the sorted lines, to compare with what the
# bucket holds.
digest_py='
import hashlib, sys
lines = sorted(open(sys.argv[1], "rb").read().splitlines())
print("%d %s" % (len(lines), hashlib.sha256(b"\n".join(lines)).hexdigest()))
'
expected_full="$(python3 -c "$digest_py" "$data")"
expected_warm="$(python3 -c "$digest_py" "$data_warm")"

# The router gets fixed dummy credentials and nothing from the user's AWS setup.
: > "$work/aws-config"
: > "$work/aws-credentials"
router_env=(env -u AWS_PROFILE -u AWS_REGION -u AWS_DEFAULT_REGION -u AWS_ENDPOINT_URL
            -u AWS_ENDPOINT_URL_FIREHOSE -u AWS_SESSION_TOKEN
            AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
            AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/aws-credentials"
            NO_COLOR=1)

log="$work/run.log"
dead="$work/dead-letter.ndjson"
mlog="$work/moto.log"
stream=bench
bucket=bench-bucket

fail() { # message: show the router log's tail, keep the temp dir, stop
    tail -n 20 "$log" >&2 2>/dev/null || true
    keep=1
    die "$*"
}

# start_moto: a fresh moto_server on a free loopback port (port, endpoint, mpid) with an empty
# bucket and a DirectPut delivery stream into it.
start_moto() {
    local i
    stop_moto
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    endpoint="http://127.0.0.1:$port"
    "$moto_server" -H 127.0.0.1 -p "$port" >> "$mlog" 2>&1 &
    mpid=$!
    for i in $(seq 1 600); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
            "$port" 2>/dev/null && break
        kill -0 "$mpid" 2>/dev/null || { tail -n 20 "$mlog" >&2; keep=1; die "moto_server exited before listening"; }
        sleep 0.05
    done
    kill -0 "$mpid" 2>/dev/null || { keep=1; die "moto_server exited"; }
    "$fpython" "$firehose_tool" create "$endpoint" "$stream" "$bucket" \
        || { keep=1; die "creating the bucket and delivery stream on moto failed"; }
}

# server_cpu [BASE]: moto's user+sys CPU seconds so far, less BASE, as a JSON field.
server_cpu() {
    python3 - "$mpid" "${1:-0}" <<'PY'
import json, os, sys
pid, base = sys.argv[1], float(sys.argv[2])
stat = open("/proc/%s/stat" % pid).read()
fields = stat[stat.rindex(")") + 2:].split()
cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime
print(json.dumps({"server_cpu_s": round(cpu - base, 2)}))
PY
}

# check_run PACK WHAT EXPECTED: the run that just ended delivered every record exactly once; sets
# fields to the JSON fields it adds to the run's line (the sink's counters, the read-back).
check_run() {
    local pack="$1" what="$2" expected="$3"
    if [ -s "$dead" ]; then
        head -c 2000 "$dead" >&2
        fail "$what: the router dead-lettered records; see $dead"
    fi
    if [ "$readback" = 1 ]; then
        "$fpython" "$firehose_tool" read "$endpoint" "$bucket" > "$work/readback.jsonl" \
            || fail "$what: reading the bucket back failed"
    fi
    fields="$(python3 - "$log" "$expected" "$pack" "$readback" "$work/readback.jsonl" <<'PY'
import base64, hashlib, json, sys
log, expected, pack, readback, readback_path = sys.argv[1:6]
n_expected, digest_expected = expected.split()
n_expected = int(n_expected)
stats = None
for line in open(log, errors="replace"):
    if line.startswith("{"):
        stats = json.loads(line)
if stats is None:
    sys.exit("no --stats=json line in the router's log")
t = stats["totals"]
sinks = [c for c in stats["components"] if c["kind"] == "sink"]
if len(sinks) != 1:
    sys.exit("expected one sink in the stats, found %d" % len(sinks))
s = sinks[0]
if t["read"] != n_expected or t["written"] != n_expected:
    sys.exit("the router read %d and wrote %d records, expected %d" % (t["read"], t["written"], n_expected))
if t["dead_lettered"] != 0 or stats["in_flight"] != 0:
    sys.exit("dead_lettered %d, in_flight %d; expected 0 and 0" % (t["dead_lettered"], stats["in_flight"]))
out = {k: s.get(k, 0) for k in ("firehose_requests", "firehose_records", "firehose_retries",
                                "firehose_bytes", "firehose_billed_bytes",
                                "firehose_billed_bytes_unpacked")}
out["written"] = t["written"]
out["router_elapsed_ms"] = stats.get("elapsed_ms")
if out["firehose_requests"] == 0 or out["firehose_records"] == 0:
    sys.exit("the stats count no PutRecordBatch requests or Firehose records")
if out["firehose_retries"] != 0:
    # moto never fails an entry: a retry means a timed-out call, which may duplicate lines.
    sys.exit("%d retries against moto (timed-out calls?)" % out["firehose_retries"])
if pack == "false" and out["firehose_records"] != n_expected:
    sys.exit("unpacked: %d Firehose records for %d user records" % (out["firehose_records"], n_expected))
if out["firehose_billed_bytes_unpacked"] != n_expected * 5120:
    sys.exit("firehose_billed_bytes_unpacked is %d, expected %d x 5120"
             % (out["firehose_billed_bytes_unpacked"], n_expected))
if readback == "1":
    lines, objects, nbytes = [], 0, 0
    for line in open(readback_path):
        data = base64.b64decode(json.loads(line)["data"])
        objects += 1
        nbytes += len(data)
        if not data.endswith(b"\n"):
            sys.exit("an S3 object ends inside a line")
        lines.extend(data.splitlines())
    # moto turns each PutRecordBatch into one S3 object.
    if objects != out["firehose_requests"]:
        sys.exit("the bucket holds %d objects for %d PutRecordBatch requests" % (objects, out["firehose_requests"]))
    if nbytes != out["firehose_bytes"]:
        sys.exit("the bucket holds %d bytes, the stats say %d were sent" % (nbytes, out["firehose_bytes"]))
    lines.sort()
    digest = hashlib.sha256(b"\n".join(lines)).hexdigest()
    if len(lines) != n_expected or digest != digest_expected:
        sys.exit("the bucket holds %d lines; expected exactly the %d input lines (digest %s)"
                 % (len(lines), n_expected, "differs" if digest != digest_expected else "equal"))
    out["s3_objects"] = objects
    out["s3_lines"] = len(lines)
print(json.dumps(out))
PY
)" || fail "$what: delivery check failed (see above)"
}

merge_py='
import json, sys
r = json.loads(sys.argv[1])
for extra in sys.argv[2:]:
    r.update(json.loads(extra))
r["router_cpu_s"] = round(r["consumer_user_s"] + r["consumer_sys_s"], 6)
print(json.dumps(r))
sys.stderr.write("  rep %d %-8s wall %7.3fs %9.0f rec/s %6.2f MB/s  router cpu %5.2fs  moto cpu %6.2fs"
    "  %4d requests  %.5f Firehose rec/user rec  billed %.1f MB (unpacked %.1f MB)\n" % (
    r["rep"], r["variant"], r["wall_s"], r["records_per_s"], r["mb_per_s"], r["router_cpu_s"],
    r["server_cpu_s"], r["firehose_requests"], r["firehose_records"] / r["written"],
    r["firehose_billed_bytes"] / 1e6, r["firehose_billed_bytes_unpacked"] / 1e6))
'

run_one() { # variant rep
    local v="$1" rep="$2" input nrec nb expected pack uri line usage base extra what
    case "$v" in
        packed) pack=true; input="$data"; nrec="$records"; nb="$bytes"; expected="$expected_full" ;;
        unpacked) pack=false; input="$data"; nrec="$records"; nb="$bytes"; expected="$expected_full" ;;
        warm-up) pack=true; input="$data_warm"; nrec=1000; nb="$bytes_warm"; expected="$expected_warm" ;;
        *) die "unknown variant $v" ;;
    esac
    what="$v, rep $rep"
    start_moto
    uri="firehose://$stream?region=us-east-1&endpoint=$endpoint&pack=$pack"
    rm -f "$dead"
    usage="$(server_cpu)" || fail "$what: reading moto's CPU time from /proc failed"
    base="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["server_cpu_s"])' "$usage")"
    line="$(python3 "$bench_measure" unpinned router "$rep" "$input" /dev/null "$log" "$nrec" "$nb" \
        "$use_gnu_time" "${router_env[@]}" "$bin" run --sink "$uri" --dead-letter "$dead" --stats=json)" \
        || fail "router run failed ($what)"
    usage="$(server_cpu "$base")" || fail "$what: reading moto's CPU time from /proc failed"
    check_run "$pack" "$what" "$expected"   # fields
    stop_moto
    if [ "$v" = warm-up ]; then return 0; fi
    extra="$(printf '{"variant": "%s", "pack": %s, "sink": "%s"}' "$v" "$pack" "$uri")"
    python3 -c "$merge_py" "$line" "$extra" "$usage" "$fields" >> "$results"
}

echo "moto $moto_version; delivery stream '$stream' into bucket '$bucket';" \
     "read-back $([ "$readback" = 1 ] && echo on || echo off)" >&2
echo "warm-up: one packed run of 1,000 records (not recorded)" >&2
run_one warm-up 0
echo "running $repeat interleaved repetitions of {packed, unpacked} on $records records ($bytes bytes)" >&2
for rep in $(seq 1 "$repeat"); do
    if [ $((rep % 2)) = 1 ]; then order="packed unpacked"; else order="unpacked packed"; fi
    for v in $order; do
        run_one "$v" "$rep"
    done
done
load_end="$(uptime)"

# --- summary ----------------------------------------------------------------------------------
python3 - "$results" "$bin_orig" "$records" "$bytes" "$bench_lib" "$load_start" "$load_end" \
    "$moto_version" "$readback" <<'PY'
import json, statistics, sys

path, binary, nrec, nbytes, lib, load_start, load_end, mver, readback = sys.argv[1:10]
sys.path.insert(0, lib)
from benchinfo import binary_version, machine_line
nrec, nbytes = int(nrec), int(nbytes)
runs = [json.loads(l) for l in open(path) if l.strip()]
med = statistics.median

print()
print("edge-router Firehose sink benchmark (against moto %s on 127.0.0.1)" % mver)
print("  binary:   %s (%s; the runs used a copy in the temp dir)" % (binary, binary_version(binary)))
print("  data:     %d sensor records, %d bytes (%.1f bytes/record)" % (nrec, nbytes, nbytes / nrec))
print("  sink:     defaults: packs up to 900 KiB, linger 200 ms, 500 records / 4 MiB per request,"
      " 4 in flight")
print("  machine:  %s" % machine_line())
print("  load:     at start: %s" % load_start.split("load average:")[-1].strip())
print("            at end:   %s" % load_end.split("load average:")[-1].strip())
print("  checks:   every run wrote all records, no dead letters, no retries%s" % (
    "; the bucket read back holds exactly the input lines (boto3)" if readback == "1" else
    " (from --stats=json only: --no-readback)"))
print()
hdr = "%-9s %4s %8s %10s %7s %8s %8s %8s %9s %9s %10s %11s" % (
    "variant", "runs", "wall s", "records/s", "MB/s", "router s", "server s", "requests",
    "FH recs", "FH/user", "billed MB", "unpacked MB")
print(hdr)
print("-" * len(hdr))
medians = {}
for v in ("packed", "unpacked"):
    rs = [r for r in runs if r["variant"] == v]
    if not rs:
        continue
    m = {k: med(r[k] for r in rs) for k in (
        "wall_s", "records_per_s", "mb_per_s", "router_cpu_s", "server_cpu_s",
        "firehose_requests", "firehose_records", "firehose_billed_bytes",
        "firehose_billed_bytes_unpacked")}
    m["fh_per_user"] = med(r["firehose_records"] / r["written"] for r in rs)
    m["cut"] = med(r["firehose_billed_bytes_unpacked"] / r["firehose_billed_bytes"] for r in rs)
    medians[v] = m
    print("%-9s %4d %8.3f %10.0f %7.2f %8.2f %8.2f %8.0f %9.0f %9.5f %10.2f %11.2f" % (
        v, len(rs), m["wall_s"], m["records_per_s"], m["mb_per_s"], m["router_cpu_s"],
        m["server_cpu_s"], m["firehose_requests"], m["firehose_records"], m["fh_per_user"],
        m["firehose_billed_bytes"] / 1e6, m["firehose_billed_bytes_unpacked"] / 1e6))
print("(medians over runs; records/s and MB/s: input records and bytes over the wall time of the")
print(" whole run, router start-up and DescribeDeliveryStream included; router s / server s:")
print(" user+sys CPU seconds of the router and of moto_server; FH/user: Firehose records per user")
print(" record; billed MB: the router's estimate of Firehose's billed bytes (each Firehose record")
print(" rounded up to 5 KB = 5120 bytes), and unpacked MB that of one Firehose record per user record)")
print()
if "packed" in medians and "unpacked" in medians:
    print("packing: %.1fx the records/s of one user record per Firehose record (against moto)"
          % (medians["packed"]["records_per_s"] / medians["unpacked"]["records_per_s"]))
if "packed" in medians:
    cut = medians["packed"]["cut"]
    print("billed bytes: packing cuts them %.0fx (%.2f MB instead of %.2f MB); target >= 40x: %s"
          % (cut, medians["packed"]["firehose_billed_bytes"] / 1e6,
             medians["packed"]["firehose_billed_bytes_unpacked"] / 1e6,
             "met" if cut >= 40 else "NOT met"))
print()
print("raw per-run numbers (JSON lines): %s" % path)
PY
