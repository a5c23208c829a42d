#!/usr/bin/env bash
# file_tail.sh — benchmark the file source (`kind = "file"`, issue 19). A manual benchmark, not a
# test: it checks the output (every line there), never timing.
#
# Usage: benches/file_tail.sh [--mb N] [--repeat R] [--rate L] [--seconds S] [--idle-files F]
#                             [--idle-seconds S] [--tmpdir DIR] [--only PART]
#   --mb N            size of the existing file read whole (default 1024, ~110-byte lines)
#   --repeat R        runs of the read-whole comparison, interleaved with cat (default 3)
#   --rate L          lines per second appended for the steady-tailing part (default 100000)
#   --seconds S       how long the steady part writes (default 10)
#   --idle-files F    files watched in the idle part (default 1000)
#   --idle-seconds S  how long idle CPU is measured, per mode (default 30)
#   --tmpdir DIR      where the data goes (default $TMPDIR or /tmp); needs ~2.2 x --mb free
#   --only PART       one of: read, fluentbit, steady, idle
#
# Environment: EDGE_ROUTER_BIN (the binary under test; default: build it with
# `cargo build --release -p edge-router`, honouring CARGO_TARGET_DIR).
#
# Parts, each against a baseline measured in the same run:
#   read       an existing file of --mb MiB read from its beginning into a file sink, against
#              `cat file > out` (target >= 0.75x): wall time from start until the output is
#              complete, CPU seconds of the router (utime+stime) per million lines; medians.
#   fluentbit  Fluent Bit's `tail` input into its `file` output on the same file, if installed
#              (`fluent-bit` on PATH); otherwise says so.
#   steady     a writer appends --rate lines/s (in 1 ms steps) for --seconds; each line carries
#              its write time; a reader follows the output file and takes, per line, now minus
#              that time: end-to-end latency p50/p99/max; and the router's CPU % of one core
#              over the writing (targets: < 10 %, p99 < 50 ms).
#   idle       --idle-files files matched by one glob, nothing written: router CPU % over
#              --idle-seconds with `watch = "events"` (the default) and with `watch = "poll"`
#              (rescan every 1 s), and the wake-ups (voluntary context switches) per second.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
if [ -z "${EDGE_ROUTER_BIN:-}" ]; then
    (cd "$root" && cargo build --release -p edge-router >&2)
    EDGE_ROUTER_BIN="${CARGO_TARGET_DIR:-$root/target}/release/edge-router"
fi
export EDGE_ROUTER_BIN
exec python3 "$here/lib/file_tail.py" "$@"
