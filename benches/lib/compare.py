#!/usr/bin/env python3
# compare.py — runs variants of `cat DATA | CONSUMER` interleaved through measure.py, checks each
# router output, and prints medians. Imported by the benchmark helpers in benches/lib
# (operations.py, buffer.py); not run by itself.
import filecmp, json, os, shutil, statistics, subprocess, sys


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Variant:
    """One consumer: `argv` reads stdin; `out` (if set) must equal the input afterwards;
    `clean` lists paths removed before each run; `before()` returns a context handed to
    `after(ctx)`, which returns extra fields for the row."""

    def __init__(self, name, argv, out=None, clean=(), before=None, after=None):
        self.name, self.argv, self.out, self.clean = name, argv, out, list(clean)
        self.before, self.after = before, after


def run(variants, modes, repeat, data, nrec, nbytes, gnu_time, measure, results, work):
    """Runs every variant `repeat` times per mode, rotating the order; returns the rows."""
    out, log = os.path.join(work, "out"), os.path.join(work, "consumer.log")
    rows = []
    for rep in range(repeat):
        for mode in modes:
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                for p in [out] + v.clean:
                    if os.path.isdir(p):
                        shutil.rmtree(p)
                    elif os.path.exists(p):
                        os.remove(p)
                ctx = v.before() if v.before else None
                r = subprocess.run([sys.executable, measure, mode, v.name, str(rep), data, out, log,
                                    str(nrec), str(nbytes), gnu_time] + v.argv,
                                   capture_output=True, text=True)
                extra = v.after(ctx) if v.after else {}
                if r.returncode != 0:
                    sys.exit("%s run failed: %s\n%s" % (v.name, r.stderr, open(log).read()))
                row = json.loads(r.stdout)
                row.update(extra)
                if v.out and not filecmp.cmp(data, v.out, shallow=False):
                    sys.exit("%s: output %s differs from the input" % (v.name, v.out))
                rows.append(row)
                with open(results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print("%-8s %-10s rep %d: %.3f s, %.2fM rec/s, consumer cpu %.3f s %s" % (
                    mode, v.name, rep, row["wall_s"], row["records_per_s"] / 1e6,
                    row["consumer_user_s"] + row["consumer_sys_s"],
                    json.dumps(extra) if extra else ""), file=sys.stderr)
    return rows


def medians(rows, mode, name, key):
    return median([key(r) for r in rows if r["mode"] == mode and r["tool"] == name])


def cpu(r):
    return r["consumer_user_s"] + r["consumer_sys_s"]
