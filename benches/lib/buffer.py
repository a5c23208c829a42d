#!/usr/bin/env python3
# buffer.py — the work of benches/buffer.sh (see its header). Not meant to be run by hand.
#
#   buffer.py BIN WORK DATA RECORDS BYTES REPEAT GNU_TIME MEASURE RESULTS
import json, os, sys

import compare


def main():
    binary, work, data, nrec, nbytes, repeat, gnu_time, measure, results = sys.argv[1:10]
    nrec, nbytes, repeat = int(nrec), int(nbytes), int(repeat)
    out, dead = os.path.join(work, "out-router"), os.path.join(work, "dead.ndjson")
    buf = os.path.join(work, "buffer")
    variants = [compare.Variant("cat", ["sh", "-c", 'exec cat > "$0"', os.path.join(work, "out")])]
    for name, buffer in [("memory", ""), ("never", 'fsync = "never"'),
                         ("interval", 'fsync = "interval"'), ("always", 'fsync = "always"')]:
        cfg = os.path.join(work, name + ".toml")
        table = '\n[sinks.out.buffer]\ndir = "%s"\n%s\n' % (buf, buffer) if name != "memory" else ""
        with open(cfg, "w") as f:
            f.write('[sources.in]\nkind = "stdin"\n\n[sinks.out]\nkind = "file"\npath = "%s"\n%s\n'
                    '[dead_letter]\npath = "%s"\n' % (out, table, dead))

        def written(_ctx, name=name):
            # The router's own `--stats=json` line (its stderr is the consumer log).
            log = os.path.join(work, "consumer.log")
            stats = json.loads([l for l in open(log).read().splitlines() if l.startswith("{")][-1])
            comp = {c["name"]: c for c in stats["components"]}
            sink = comp["sinks.out"]["bytes_out"]
            appended = comp.get("buffers.out", {}).get("bytes_in", 0)
            return {"buffer_bytes": appended, "file_bytes": sink}

        variants.append(compare.Variant(name, [binary, "run", "-c", cfg, "--stats=json"], out=out,
                                        clean=[out, dead, buf], after=written))
    rows = compare.run(variants, ("unpinned", "pinned"), repeat, data, nrec, nbytes, gnu_time,
                       measure, results, work)
    print("\n## stdin -> [disk buffer] -> file, medians of %d runs (%d records, %.1f MB)\n"
          % (repeat, nrec, nbytes / 1e6))
    print("| mode | variant | wall s | records/s | MB/s | x memory-only | router CPU s | write amplification |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("unpinned", "pinned"):
        mem = compare.medians(rows, mode, "memory", lambda r: r["wall_s"])
        for v in variants:
            wall = compare.medians(rows, mode, v.name, lambda r: r["wall_s"])
            amp = compare.medians(rows, mode, v.name,
                                  lambda r: (r.get("buffer_bytes", 0) + r.get("file_bytes", 0)) / nbytes)
            print("| %s | %s | %.3f | %.2fM | %.0f | %s | %s | %s |" % (
                mode, v.name, wall, nrec / wall / 1e6, nbytes / wall / 1e6,
                "" if v.name == "cat" else "%.2f" % (mem / wall),
                "" if v.name == "cat" else "%.3f" % compare.medians(rows, mode, v.name, compare.cpu),
                "" if v.name == "cat" else "%.2f" % amp))


main()
