#!/usr/bin/env bash
# aws_api.sh — benchmark the HTTP source's Kinesis-compatible API (signatures verified) against
# its own `/v1/records` path: records/s and the receiving router's CPU per record.
#
# Usage (from anywhere; paths are resolved relative to this script):
#   benches/aws_api.sh [--records N] [--repeat R] [--concurrency C] [--shards S]
#                      [--no-build] [--tmpdir DIR] [--results FILE] [--keep]
#
#   --records N       number of `sensor` records to generate (default 1000000, ~110 bytes each)
#   --repeat R        runs per variant, interleaved (default 3)
#   --concurrency C   requests in flight for `send` and `aws_put` (default 8)
#   --shards S        `aws_shards` of the receiving router (default: the router's default, 1024)
#   --no-build        use the binaries already built (or EDGE_ROUTER_BIN / EDGE_ROUTER_AWS_PUT_BIN)
#   --tmpdir DIR      where the data, outputs and logs go (default $TMPDIR or /tmp)
#   --results FILE    raw per-run numbers as JSON lines (default <target>/bench/aws_api-<ts>.jsonl)
#   --keep            keep the temp dir
#
# Environment:
#   EDGE_ROUTER_BIN          the router binary (default: `cargo build --release -p edge-router`)
#   EDGE_ROUTER_AWS_PUT_BIN  the client (default: `cargo build --release -p edge-router --bench
#                            aws_put`; benches/aws_put.rs: the AWS SDK for Rust, PutRecords of
#                            500 records, C requests in flight, SigV4-signed)
#   CARGO_TARGET_DIR, EDGE_ROUTER_GENERATE_BIN as for the other benchmarks
#
# Each run starts a fresh receiving router on a free loopback port,
#   edge-router run -c recv.toml --stats=json      (http source, aws_api = true, aws_credentials
#                                                   from a secret file, file sink, de-aggregation on)
# and sends the same data file with one of:
#   v1          cat data | edge-router send http://... --batch-records 500 --in-flight C
#               (the /v1/records baseline: benches/ingest.sh's path, 500-record batches)
#   aws-put     aws_put --endpoint http://... --concurrency C   (500-record PutRecords)
#   relay-raw   cat data | edge-router run --sink 'kinesis://bench?endpoint=http://...&aggregate=false'
#   relay-agg   the same with aggregate=true (KPL aggregates, opened by the receiving router)
# then stops the receiver with SIGTERM. Per run: wall time of the sender, records/s over it, the
# receiver's user+sys CPU over its whole life (os.wait4) and per record, the sender's CPU.
# Checks after every run: the receiver read and wrote exactly N records, dead-lettered none,
# exited 0, and its output holds exactly the input's lines (in any order).
#
# The summary prints medians per variant, each variant's receiver CPU per record against v1's
# (target: at most 2x), and the relay-agg records/s (target: at least 500,000). This is a manual
# benchmark, not a test: it asserts correctness, never timing.
set -euo pipefail

records=1000000
repeat=3
concurrency=8
shards=""
build=1
tmp_parent="${TMPDIR:-/tmp}"
results=""
keep=0

bench_name=aws_api.sh
bench_script="${BASH_SOURCE[0]}"
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

while [ $# -gt 0 ]; do
    bench_common_option "$@"
    if [ "$bench_shift" -gt 0 ]; then shift "$bench_shift"; continue; fi
    case "$1" in
        --concurrency) [ $# -ge 2 ] || die "--concurrency needs a value"; concurrency="$2"; shift 2 ;;
        --concurrency=*) concurrency="${1#*=}"; shift ;;
        --shards) [ $# -ge 2 ] || die "--shards needs a value"; shards="$2"; shift 2 ;;
        --shards=*) shards="${1#*=}"; shift ;;
        --no-build) build=0; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
bench_positive --records "$records" --repeat "$repeat" --concurrency "$concurrency"
[ -z "$shards" ] || bench_positive --shards "$shards"

bench_check_requirements   # repo, target_dir
command -v curl >/dev/null || die "curl is required (the readiness check)"

# --- the binaries -----------------------------------------------------------------------------
if [ "$build" = 1 ]; then bench_router_binary; else bench_router_binary nobuild; fi
if [ -n "${EDGE_ROUTER_AWS_PUT_BIN:-}" ]; then
    put_bin="$EDGE_ROUTER_AWS_PUT_BIN"
else
    profile=(--release); [ "$build" = 1 ] || profile=(--release --offline)
    echo "building: cargo build --release -p edge-router --bench aws_put" >&2
    put_bin="$(cd "$repo" && cargo build "${profile[@]}" -p edge-router --bench aws_put \
        --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "aws_put" and m.get("executable"):
        print(m["executable"])')" || die "building aws_put failed"
fi
[ -x "$put_bin" ] || die "no aws_put client at '$put_bin'"
bench_init_results aws_api

# --- temp dir and data ------------------------------------------------------------------------
bench_make_workdir
rpid=""
stop_router() {
    if [ -n "$rpid" ]; then kill -TERM "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; rpid=""; fi
}
trap 'stop_router; bench_cleanup' EXIT
load_start="$(uptime)"
bin_orig="$bin"
bin="$work/edge-router"
cp "$bin_orig" "$bin"
bench_generate_data        # data, bytes

secret="bench-secret-0123456789"
printf '%s\n' "$secret" > "$work/aws-secret"
export AWS_ACCESS_KEY_ID=AKIDEDGEBENCH AWS_SECRET_ACCESS_KEY="$secret" AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE="$work/none" AWS_SHARED_CREDENTIALS_FILE="$work/none"

# A process runner: runs ARGV (stdin from DATA when given), reaps it with os.wait4 and writes
# its exit status, wall time and CPU as JSON to OUT. SIGTERM is forwarded.
run_py="$work/run.py"
cat > "$run_py" <<'PY'
import json, os, signal, subprocess, sys, time
out, stdin_path, log, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
stdin = open(stdin_path, "rb") if stdin_path != "-" else subprocess.DEVNULL
t0 = time.perf_counter()
with open(log, "wb") as logf:
    child = subprocess.Popen(argv, stdin=stdin, stdout=logf, stderr=subprocess.STDOUT)
    signal.signal(signal.SIGTERM, lambda s, f: child.send_signal(signal.SIGTERM))
    _, status, ru = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    json.dump({"exit": code, "wall_s": round(time.perf_counter() - t0, 6),
               "cpu_s": round(ru.ru_utime + ru.ru_stime, 6), "maxrss_kib": ru.ru_maxrss}, f)
sys.exit(0)
PY

digest_py='
import hashlib, sys
lines = sorted(l for l in open(sys.argv[1], "rb").read().splitlines() if l)
print("%d %s" % (len(lines), hashlib.sha256(b"\n".join(lines)).hexdigest()))
'
expected="$(python3 -c "$digest_py" "$data")"
out="$work/out.ndjson"
rlog="$work/recv.log"
clog="$work/client.log"

fail() {
    echo "--- receiver log (tail) ---" >&2; tail -n 20 "$rlog" >&2 2>/dev/null || true
    echo "--- sender log (tail) ---" >&2; tail -n 20 "$clog" >&2 2>/dev/null || true
    keep=1
    die "$*"
}

start_receiver() { # sets rpid, port
    stop_router
    rm -f "$out" "$work/recv.json" "$work/dead.ndjson"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    cat > "$work/recv.toml" <<EOF
[sources.web]
kind = "http"
address = "127.0.0.1:$port"
aws_api = true
aws_credentials = [{ access_key_id = "AKIDEDGEBENCH", secret_file = "$work/aws-secret" }]
${shards:+aws_shards = $shards}

[sinks.out]
kind = "file"
path = "$out"

[dead_letter]
path = "$work/dead.ndjson"
EOF
    NO_COLOR=1 python3 "$run_py" "$work/recv.json" - "$rlog" "$bin" run -c "$work/recv.toml" --stats=json &
    rpid=$!
    for _ in $(seq 1 600); do
        kill -0 "$rpid" 2>/dev/null || { rpid=""; fail "the receiver exited before it was ready"; }
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/ready" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "the receiver did not get ready within 30 s"
}

run_one() { # variant rep
    local v="$1" rep="$2" endpoint
    start_receiver
    endpoint="http://127.0.0.1:$port"
    case "$v" in
        v1) python3 "$run_py" "$work/client.json" "$data" "$clog" \
                "$bin" send "$endpoint" --batch-records 500 --in-flight "$concurrency" --stats ;;
        aws-put) python3 "$run_py" "$work/client.json" - "$clog" \
                "$put_bin" --endpoint "$endpoint" --data "$data" --concurrency "$concurrency" ;;
        relay-raw|relay-agg)
            local agg=false; [ "$v" = relay-agg ] && agg=true
            NO_COLOR=1 python3 "$run_py" "$work/client.json" "$data" "$clog" \
                "$bin" run --sink "kinesis://bench?region=us-east-1&endpoint=$endpoint&aggregate=$agg" \
                --dead-letter "$work/relay-dead.ndjson" --stats=json ;;
    esac
    stop_router
    python3 - "$work/client.json" "$work/recv.json" "$rlog" "$records" "$v" "$rep" >> "$results" <<'PY' \
        || fail "$v, rep $rep: check failed"
import json, sys
cj, rj, rlog, n, v, rep = sys.argv[1:7]
n = int(n)
c, r = json.load(open(cj)), json.load(open(rj))
if c["exit"] != 0:
    sys.exit("the sender exited with %d" % c["exit"])
if r["exit"] != 0:
    sys.exit("the receiver exited with %d" % r["exit"])
stats = None
for line in open(rlog, errors="replace"):
    if line.startswith("{"):
        try:
            stats = json.loads(line)
        except ValueError:
            pass
t = stats["totals"]
if t["read"] != n or t["written"] != n or t["dead_lettered"] != 0:
    sys.exit("the receiver read %d, wrote %d, dead-lettered %d; expected %d" % (t["read"], t["written"], t["dead_lettered"], n))
src = next(x for x in stats["components"] if x["name"] == "sources.web")
print(json.dumps({"variant": v, "rep": int(rep), "records": n, "wall_s": c["wall_s"],
                  "records_per_s": round(n / c["wall_s"], 1), "sender_cpu_s": c["cpu_s"],
                  "receiver_cpu_s": r["cpu_s"], "receiver_ns_per_record": round(r["cpu_s"] * 1e9 / n, 1),
                  "receiver_maxrss_kib": r["maxrss_kib"],
                  "aggregates": src.get("aws_aggregates", 0)}))
sys.stderr.write("  rep %s %-10s wall %7.3fs %10.0f rec/s  receiver cpu %6.2fs (%6.0f ns/rec)  sender cpu %6.2fs\n"
                 % (rep, v, c["wall_s"], n / c["wall_s"], r["cpu_s"], r["cpu_s"] * 1e9 / n, c["cpu_s"]))
PY
    [ "$(python3 -c "$digest_py" "$out")" = "$expected" ] || fail "$v, rep $rep: the output's lines are not the input's"
}

variants=(v1 aws-put relay-raw relay-agg)
echo "running $repeat interleaved repetitions of {${variants[*]}} on $records records ($bytes bytes)" >&2
for rep in $(seq 1 "$repeat"); do
    if [ $((rep % 2)) = 1 ]; then order=("${variants[@]}")
    else order=(); for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[i]}"); done; fi
    for v in "${order[@]}"; do run_one "$v" "$rep"; done
done
load_end="$(uptime)"

python3 - "$results" "$records" "$bytes" "$load_start" "$load_end" "$concurrency" <<'PY'
import json, statistics, sys
path, n, nbytes, ls, le, conc = sys.argv[1:7]
runs = [json.loads(l) for l in open(path) if l.strip()]
med = statistics.median
print()
print("edge-router AWS API benchmark: %s sensor records (%s bytes), %s in flight" % (n, nbytes, conc))
print("  load at start: %s; at end: %s" % (ls.split("load average:")[-1].strip(), le.split("load average:")[-1].strip()))
print()
hdr = "%-10s %4s %8s %11s %12s %9s %10s" % ("variant", "runs", "wall s", "records/s", "recv ns/rec", "x v1 cpu", "sender s")
print(hdr)
print("-" * len(hdr))
base = med(r["receiver_ns_per_record"] for r in runs if r["variant"] == "v1")
m = {}
for v in ["v1", "aws-put", "relay-raw", "relay-agg"]:
    rs = [r for r in runs if r["variant"] == v]
    if not rs:
        continue
    m[v] = (med(r["records_per_s"] for r in rs), med(r["receiver_ns_per_record"] for r in rs))
    print("%-10s %4d %8.3f %11.0f %12.0f %9.2f %10.2f" % (v, len(rs), med(r["wall_s"] for r in rs), m[v][0],
          m[v][1], m[v][1] / base, med(r["sender_cpu_s"] for r in rs)))
print()
for v in ["aws-put", "relay-raw", "relay-agg"]:
    if v in m:
        print("target: %-9s receiver CPU/record within 2x of v1: %.2fx  %s" % (v, m[v][1] / base, "met" if m[v][1] <= 2 * base else "NOT met"))
if "relay-agg" in m:
    print("target: relay-agg at least 500,000 records/s: %.0f  %s" % (m["relay-agg"][0], "met" if m["relay-agg"][0] >= 500000 else "NOT met"))
print("raw numbers: %s" % path)
PY
