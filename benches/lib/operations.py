#!/usr/bin/env python3
# operations.py — the work of benches/operations.sh (see its header). Not meant to be run by hand.
#
#   operations.py BIN WORK DATA RECORDS BYTES REPEAT RELOADS SCRAPE_MS GNU_TIME MEASURE RESULTS
import json, os, re, socket, subprocess, sys, threading, time, urllib.request

import compare


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scraper(url, every_s, stop, count):
    """GETs url every every_s seconds until stop is set; counts successful scrapes."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
            count[0] += 1
        except OSError:
            pass  # not listening yet, or gone
        stop.wait(every_s)


def part1(binary, work, data, nrec, nbytes, repeat, scrape_ms, gnu_time, measure, results):
    dead = os.path.join(work, "dead.ndjson")
    cfg = os.path.join(work, "plain.toml")
    quick_out, config_out = os.path.join(work, "out-router"), os.path.join(work, "out-config")
    with open(cfg, "w") as f:
        f.write('[sources.in]\nkind = "stdin"\n\n[sinks.out]\nkind = "file"\npath = "%s"\n\n'
                '[dead_letter]\npath = "%s"\n' % (config_out, dead))
    quick = [binary, "run", "--sink", "file:" + quick_out, "--dead-letter", dead]
    port = free_port()

    def start_scraper():
        stop, count = threading.Event(), [0]
        t = threading.Thread(target=scraper, args=(
            "http://127.0.0.1:%d/metrics" % port, scrape_ms / 1000, stop, count))
        t.start()
        return stop, count, t

    def stop_scraper(ctx):
        stop, count, t = ctx
        stop.set()
        t.join()
        return {"scrapes": count[0]}

    variants = [
        compare.Variant("cat", ["sh", "-c", 'exec cat > "$0"', os.path.join(work, "out")]),
        compare.Variant("quick", quick, out=quick_out, clean=[quick_out, dead]),
        compare.Variant("metrics", quick + ["--metrics", "127.0.0.1:%d" % port], out=quick_out,
                        clean=[quick_out, dead], before=start_scraper, after=stop_scraper),
        compare.Variant("config", [binary, "run", "-c", cfg], out=config_out,
                        clean=[config_out, dead]),
    ]
    rows = compare.run(variants, ("pinned", "unpinned"), repeat, data, nrec, nbytes, gnu_time,
                       measure, results, work)
    names = [v.name for v in variants]
    print("\n## Part 1: throughput, medians of %d runs (%d records)\n" % (repeat, nrec))
    print("| mode | variant | wall s | records/s | x cat | router CPU s | wall vs quick | CPU vs quick | scrapes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ("pinned", "unpinned"):
        med = {n: (compare.medians(rows, mode, n, lambda r: r["wall_s"]),
                   compare.medians(rows, mode, n, compare.cpu),
                   compare.medians(rows, mode, n, lambda r: r.get("scrapes", 0)))
               for n in names}
        for n in names:
            wall, cpu, scrapes = med[n]
            vs = lambda i: "" if n in ("cat", "quick") else "%+.1f%%" % (100 * (med[n][i] / med["quick"][i] - 1))
            print("| %s | %s | %.3f | %.2fM | %.2f | %s | %s | %s | %s |" % (
                mode, n, wall, nrec / wall / 1e6, med["cat"][0] / wall,
                "" if n == "cat" else "%.3f" % cpu, vs(0), vs(1),
                "%d" % scrapes if n == "metrics" else ""))


def part2(binary, work, data, reloads, results):
    port = free_port()
    metrics = "127.0.0.1:%d" % port
    cfg = os.path.join(work, "reload.toml")
    outs = [os.path.join(work, "reload-a.ndjson"), os.path.join(work, "reload-b.ndjson")]
    dead = os.path.join(work, "reload-dead.ndjson")
    for p in outs + [dead]:
        if os.path.exists(p):
            os.remove(p)

    def write_config(which):
        sites = ['"plant-%d"' % i for i in ((1, 2, 3, 4, 5) if which == 0 else (3, 4, 5, 6, 7))]
        with open(cfg, "w") as f:
            f.write('[sources.in]\nkind = "stdin"\n\n'
                    '[[stages]]\nname = "sites"\nkind = "filter"\nkeep_if = { field = "site", in = [%s] }\n\n'
                    '[sinks.out]\nkind = "file"\npath = "%s"\n\n[dead_letter]\npath = "%s"\n\n'
                    '[metrics]\naddress = "%s"\n' % (", ".join(sites), outs[which], dead, metrics))

    write_config(0)
    log = open(os.path.join(work, "reload-router.log"), "wb")
    router = subprocess.Popen([binary, "run", "-c", cfg, "--stats=json"], stdin=subprocess.PIPE,
                              stderr=log)
    stop = threading.Event()
    fed = [0]

    def feed():
        with open(data, "rb") as f:
            blob = f.read()
        try:
            while not stop.is_set():
                router.stdin.write(blob)
                fed[0] += 1
        except BrokenPipeError:
            pass
        router.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    deadline = time.time() + 20
    while not os.path.exists(outs[0]) or os.path.getsize(outs[0]) == 0:
        if time.time() > deadline:
            sys.exit("the router wrote nothing in 20 s")
        time.sleep(0.05)
    pauses = {"switch": [], "unchanged": []}
    walls = {"switch": [], "unchanged": []}
    which = 0
    for k in range(reloads):
        kind = "unchanged" if k % 4 == 3 else "switch"
        if kind == "switch":
            which = 1 - which
            write_config(which)
        t0 = time.perf_counter()
        r = subprocess.run([binary, "reload", "--metrics", metrics], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit("reload %d failed: %s" % (k, r.stderr))
        m = re.search(r"pause ([0-9.]+) ms", r.stdout)
        if not m:
            sys.exit("no pause in %r" % r.stdout)
        pauses[kind].append(float(m.group(1)))
        walls[kind].append(wall * 1000)
        with open(results, "a") as f:
            f.write(json.dumps({"part": "reload", "kind": kind, "pause_ms": float(m.group(1)),
                                "reload_wall_ms": wall * 1000, "said": r.stdout.strip()}) + "\n")
        time.sleep(0.25)
    stop.set()
    feeder.join()
    router.wait(timeout=120)
    log.close()
    text = open(os.path.join(work, "reload-router.log")).read()
    stats = json.loads([l for l in text.splitlines() if l.startswith("{")][-1])
    lines = sum(sum(1 for _ in open(p, "rb")) for p in outs if os.path.exists(p))
    t = stats["totals"]
    ok = lines == t["written"] and t["read"] == t["written"] + t["dropped_by_stage"] + t["dead_lettered"]
    print("\n## Part 2: reload pause under load (%d reloads, %d copies of the data fed, %d records read)\n"
          % (reloads, fed[0], t["read"]))
    print("| reload | n | pause median ms | p90 | max | `edge-router reload` wall median ms | max |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("switch", "unchanged"):
        ps, ws = sorted(pauses[kind]), sorted(walls[kind])
        if not ps:
            continue
        p90 = ps[min(len(ps) - 1, int(0.9 * len(ps)))]
        print("| %s | %d | %.2f | %.2f | %.2f | %.1f | %.1f |" % (
            kind, len(ps), compare.median(ps), p90, ps[-1], compare.median(ws), ws[-1]))
    print("\noutputs hold %d lines, the router wrote %d, read %d = written + dropped by the filter + "
          "dead-lettered: %s" % (lines, t["written"], t["read"], "yes" if ok else "NO"))
    if not ok:
        sys.exit("accounting mismatch after reloads")


def main():
    (binary, work, data, nrec, nbytes, repeat, reloads, scrape_ms, gnu_time, measure,
     results) = sys.argv[1:12]
    part1(binary, work, data, int(nrec), int(nbytes), int(repeat), int(scrape_ms), gnu_time,
          measure, results)
    part2(binary, work, data, int(reloads), results)


main()
