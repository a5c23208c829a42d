#!/usr/bin/env python3
# measure.py — the measuring helper of the benchmark scripts in benches/ (stdin_to_file.sh,
# wasm_stages.sh). Not meant to be run by hand.
#
#   measure.py MODE TOOL REP DATA OUT LOG NRECORDS NBYTES GNU_TIME CONSUMER...
#
# Runs `[taskset -c 0] cat DATA | [taskset -c 0] CONSUMER...` (taskset when MODE is "pinned"),
# with the consumer's stdout going to OUT and its stderr to LOG, waits for both ends and prints
# one JSON line: wall time, CPU times and peak RSS of each end, records/s and MB/s from the wall
# time. GNU_TIME=1 wraps each end in /usr/bin/time for exact peak RSS (its files go next to LOG);
# otherwise peak RSS is wait4's ru_maxrss, which includes this helper's own memory.
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
