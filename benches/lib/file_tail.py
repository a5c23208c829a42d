"""The file source benchmark (see benches/file_tail.sh for what it measures and its options)."""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ["EDGE_ROUTER_BIN"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def switches(pid):
    """Voluntary context switches (wake-ups after sleeping) of all the process's threads."""
    n = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        n += int(line.split()[1])
        except FileNotFoundError:
            pass
    return n


def write_config(d, include, extra="", sink="out.ndjson"):
    with open(os.path.join(d, "bench.toml"), "w") as f:
        f.write(
            f"""[sources.logs]
kind = "file"
include = ["{include}"]
start_at = "beginning"
checkpoint_dir = "state"
{extra}

[sinks.out]
kind = "file"
path = "{sink}"

[dead_letter]
path = "dead.ndjson"
"""
        )


def start_router(d):
    log = open(os.path.join(d, "router.log"), "wb")
    p = subprocess.Popen(
        [BIN, "run", "-c", "bench.toml"], cwd=d, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=log,
    )
    deadline = time.time() + 60
    while b"watching" not in open(os.path.join(d, "router.log"), "rb").read():
        if p.poll() is not None or time.time() > deadline:
            sys.exit("router did not start: " + open(os.path.join(d, "router.log")).read())
        time.sleep(0.005)
    return p


def stop_router(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


def part_read(tmp, mb, repeat):
    data = os.path.join(tmp, "data.log")
    lines = 0
    with open(data, "wb") as f:
        gen = subprocess.Popen([BIN, "generate", "sensor", str(mb * 1024 * 1024 // 110)],
                               stdout=subprocess.PIPE)
        for chunk in iter(lambda: gen.stdout.read(1 << 20), b""):
            f.write(chunk)
            lines += chunk.count(b"\n")
        gen.wait()
    size = os.path.getsize(data)
    subprocess.run(["cat", data], stdout=subprocess.DEVNULL, check=True)  # page cache
    rows = {"cat": [], "router": [], "router_cpu": []}
    for r in range(repeat):
        out = os.path.join(tmp, "cat.out")
        t0 = time.perf_counter()
        with open(out, "wb") as o:
            subprocess.run(["cat", data], stdout=o, check=True)
        rows["cat"].append(time.perf_counter() - t0)
        os.remove(out)
        d = tempfile.mkdtemp(dir=tmp)
        write_config(d, data, "watch = \"events\"")
        t0 = time.perf_counter()
        p = start_router(d)
        outp = os.path.join(d, "out.ndjson")
        while not (os.path.exists(outp) and os.path.getsize(outp) >= size):
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(p.pid)
        stop_router(p)
        if os.path.getsize(outp) != size or subprocess.run(["cmp", "-s", data, outp]).returncode:
            sys.exit(f"router output differs from the input (kept in {d})")
        rows["router"].append(wall)
        rows["router_cpu"].append(cpu)
        shutil.rmtree(d)
        print(f"  read run {r + 1}: cat {rows['cat'][-1]:.3f} s, router {wall:.3f} s "
              f"({cpu:.2f} CPU s)", file=sys.stderr)
    os.remove(data)
    cat, router = statistics.median(rows["cat"]), statistics.median(rows["router"])
    cpu = statistics.median(rows["router_cpu"])
    print(f"read {size / 1e6:.0f} MB ({lines} lines) from the beginning into a file sink:")
    print(f"  cat file > out      median {cat:.3f} s  {size / cat / 1e6:8.0f} MB/s")
    print(f"  edge-router (file)  median {router:.3f} s  {size / router / 1e6:8.0f} MB/s"
          f"  {cpu / (lines / 1e6):.3f} CPU s per million lines")
    print(f"  router / cat throughput: {cat / router:.2f}x  "
          f"(per run: {', '.join(f'{c / t:.2f}' for c, t in zip(rows['cat'], rows['router']))})")


def part_fluentbit():
    fb = shutil.which("fluent-bit") or shutil.which("td-agent-bit")
    if not fb:
        print("fluent bit: not installed here (no fluent-bit on PATH): not measured")
    else:
        print(f"fluent bit: found at {fb}, but this script does not drive it yet: not measured")


def part_steady(tmp, rate, seconds):
    d = tempfile.mkdtemp(dir=tmp)
    log = os.path.join(d, "app.log")
    open(log, "w").close()
    write_config(d, log, "ack = \"queued\"")
    p = start_router(d)
    out = os.path.join(d, "out.ndjson")
    lat = []
    done = threading.Event()

    def reader():
        while not os.path.exists(out):
            time.sleep(0.0005)
        with open(out, "rb") as f:
            rest = b""
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    if done.is_set():
                        return
                    time.sleep(0.0005)
                    continue
                now = time.time_ns()
                chunk = rest + chunk
                parts = chunk.split(b"\n")
                rest = parts.pop()
                for line in parts:
                    ts, i = line.split(b" ", 2)[:2]
                    lat.append(((now - int(ts)) / 1e6, int(i)))

    t = threading.Thread(target=reader)
    t.start()
    total = rate * seconds
    per_ms = max(1, rate // 1000)
    pad = b"x" * 60
    cpu0, t0 = cpu_seconds(p.pid), time.perf_counter()
    with open(log, "ab", buffering=0) as f:
        written = 0
        start = time.perf_counter()
        while written < total:
            target = min(total, int((time.perf_counter() - start) * rate) + per_ms)
            if target > written:
                ts = time.time_ns()
                f.write(b"".join(b"%d %d %s\n" % (ts, i, pad) for i in range(written, target)))
                written = target
            time.sleep(0.001)
    cpu1, t1 = cpu_seconds(p.pid), time.perf_counter()
    deadline = time.time() + 60
    while len(lat) < total and time.time() < deadline:
        time.sleep(0.01)
    done.set()
    t.join()
    stop_router(p)
    got = len(lat)
    worst = max(lat)
    warm = sorted(ms for ms, i in lat if i >= rate)
    lat = sorted(ms for ms, _ in lat)
    q = lambda x, v=lat: v[min(len(v) - 1, int(x * len(v)))]
    print(f"steady tailing, {rate} lines/s for {seconds} s ({total} lines, {got} read back):")
    print(f"  router CPU {100 * (cpu1 - cpu0) / (t1 - t0):.1f} % of one core "
          f"(writer achieved {total / (t1 - t0):.0f} lines/s)")
    print(f"  end-to-end latency ms: p50 {q(0.5):.1f}  p99 {q(0.99):.1f}  max {lat[-1]:.1f} "
          f"(line {worst[1]}); after the first second: p99 {q(0.99, warm):.1f}")
    if got != total:
        sys.exit(f"only {got} of {total} lines arrived (kept in {d})")
    shutil.rmtree(d)


def part_idle(tmp, files, seconds):
    d = tempfile.mkdtemp(dir=tmp)
    logs = os.path.join(d, "logs")
    os.mkdir(logs)
    for i in range(files):
        with open(os.path.join(logs, f"{i}.log"), "w") as f:
            f.write(f"line {i}\n")
    print(f"idle, {files} watched files, nothing written, {seconds} s each:")
    for mode, extra in [("events", "watch = \"events\""),
                        ("poll (rescan 1 s)", "watch = \"poll\"\nrescan_interval_ms = 1000")]:
        write_config(d, os.path.join(logs, "*.log"), extra)
        shutil.rmtree(os.path.join(d, "state"), ignore_errors=True)
        p = start_router(d)
        while not os.path.exists(os.path.join(d, "out.ndjson")) or \
                sum(1 for _ in open(os.path.join(d, "out.ndjson"))) < files:
            time.sleep(0.05)
        time.sleep(2)
        c0, s0, t0 = cpu_seconds(p.pid), switches(p.pid), time.perf_counter()
        time.sleep(seconds)
        c1, s1, t1 = cpu_seconds(p.pid), switches(p.pid), time.perf_counter()
        stop_router(p)
        os.remove(os.path.join(d, "out.ndjson"))
        print(f"  {mode:18} CPU {100 * (c1 - c0) / (t1 - t0):.2f} % of one core "
              f"({1000 * (c1 - c0) / (t1 - t0):.1f} ms/s; clock ticks of 10 ms), "
              f"{(s1 - s0) / (t1 - t0):.1f} wake-ups/s (all threads)")
    shutil.rmtree(d)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--mb", type=int, default=1024)
    a.add_argument("--repeat", type=int, default=3)
    a.add_argument("--rate", type=int, default=100_000)
    a.add_argument("--seconds", type=int, default=10)
    a.add_argument("--idle-files", type=int, default=1000)
    a.add_argument("--idle-seconds", type=int, default=30)
    a.add_argument("--tmpdir", default=os.environ.get("TMPDIR", "/tmp"))
    a.add_argument("--only", choices=["read", "fluentbit", "steady", "idle"])
    o = a.parse_args()
    tmp = tempfile.mkdtemp(prefix="file_tail-", dir=o.tmpdir)
    print(f"binary: {BIN}", file=sys.stderr)
    try:
        if o.only in (None, "read"):
            part_read(tmp, o.mb, o.repeat)
        if o.only in (None, "fluentbit"):
            part_fluentbit()
        if o.only in (None, "steady"):
            part_steady(tmp, o.rate, o.seconds)
        if o.only in (None, "idle"):
            part_idle(tmp, o.idle_files, o.idle_seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main()
