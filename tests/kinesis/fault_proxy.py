"""A fault-injecting HTTP proxy in front of a Kinesis server (kinesalite, for tests/kinesis.rs) or a
Firehose server (moto, for tests/firehose.rs).

    python fault_proxy.py LISTEN_PORT UPSTREAM_PORT ENTRY_FAIL_PERCENT THROTTLE_PERCENT ERROR_500_PERCENT SEED

Listens on 127.0.0.1:LISTEN_PORT and forwards to 127.0.0.1:UPSTREAM_PORT. Every request but
PutRecords passes through unchanged. A PutRecords call:
- with THROTTLE_PERCENT probability is answered HTTP 400 ThrottlingException, and with
  ERROR_500_PERCENT probability HTTP 500 InternalFailure, without reaching the server;
- otherwise each entry fails with ENTRY_FAIL_PERCENT probability: the failing entries are taken
  out of the request before it is forwarded, and put back into the answer as
  ProvisionedThroughputExceededException results at their positions (FailedRecordCount
  adjusted). So nothing the router is told failed was written, and nothing it is told was written
  is missing: a correct sink delivers exactly once through this proxy.
Firehose's PutRecordBatch is treated alike: whole calls fail the same way, and failed entries come
back as ServiceUnavailableException results in RequestResponses (FailedPutCount adjusted).
Prints "listening PORT" when ready; on SIGTERM prints one JSON line of counts to stdout and exits.
Besides the fault counts it tells which calls it saw ("actions": X-Amz-Target's operation, or the
Action of a query-protocol call such as STS AssumeRole, with how often) and which access key ids
signed them ("access_keys", from the Authorization header), so that with all percentages at 0 it
is a plain logging proxy (tests/kinesis.rs puts one in front of moto's STS).
"""

import http.client
import http.server
import json
import random
import signal
import socket
import sys
import threading
import urllib.parse

listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
entry_pct, throttle_pct, error_pct = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rng = random.Random(int(sys.argv[6]))
lock = threading.Lock()
counts = {"calls": 0, "throttled_calls": 0, "failed_calls": 0, "failed_entries": 0, "forwarded_entries": 0,
          "actions": {}, "access_keys": []}
local = threading.local()


def chance(pct):
    with lock:
        return rng.random() * 100 < pct


def upstream():
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local.conn = conn
    return conn


def forward(method, path, headers, body):
    for attempt in range(2):
        conn = upstream()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", "application/x-amz-json-1.1"), resp.read()
        except (ConnectionError, http.client.HTTPException, OSError):
            conn.close()
            local.conn = None
            if attempt == 1:
                raise
    raise RuntimeError("unreachable")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the second waits for the
    # client's delayed ACK (40 ms a call).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/x-amz-json-1.1", error_type=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(body)

    def note(self, target, body):
        action = target.rsplit(".", 1)[-1]
        if not action:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            action = form.get("Action", ["?"])[0]
        key = self.headers.get("Authorization", "").partition("Credential=")[2].partition("/")[0]
        with lock:
            counts["actions"][action] = counts["actions"].get(action, 0) + 1
            if key and key not in counts["access_keys"]:
                counts["access_keys"].append(key)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "host", "connection")}
        target = self.headers.get("X-Amz-Target", "")
        self.note(target, body)
        try:
            firehose = target.endswith(".PutRecordBatch")
            if not (target.endswith(".PutRecords") or firehose):
                status, ctype, data = forward("POST", self.path, headers, body)
                return self.reply(status, data, ctype)
            with lock:
                counts["calls"] += 1
            if chance(throttle_pct):
                with lock:
                    counts["throttled_calls"] += 1
                err = {"__type": "ThrottlingException", "message": "Rate exceeded (injected by fault_proxy)"}
                return self.reply(400, json.dumps(err).encode(), error_type="ThrottlingException")
            if chance(error_pct):
                with lock:
                    counts["failed_calls"] += 1
                err = {"__type": "InternalFailure", "message": "injected by fault_proxy"}
                return self.reply(500, json.dumps(err).encode(), error_type="InternalFailure")
            req = json.loads(body)
            entries = req["Records"]
            fail = [chance(entry_pct) for _ in entries]
            keep = [e for e, f in zip(entries, fail) if not f]
            with lock:
                counts["failed_entries"] += sum(fail)
                counts["forwarded_entries"] += len(keep)
            results = []
            if keep:
                req["Records"] = keep
                status, ctype, data = forward("POST", self.path, headers, json.dumps(req).encode())
                if status != 200:
                    return self.reply(status, data, ctype)
                results = json.loads(data)["RequestResponses" if firehose else "Records"]
            merged, it = [], iter(results)
            for f in fail:
                if f and firehose:
                    merged.append({
                        "ErrorCode": "ServiceUnavailableException",
                        "ErrorMessage": "Slow down (injected by fault_proxy)",
                    })
                elif f:
                    merged.append({
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "Rate exceeded for shard (injected by fault_proxy)",
                    })
                else:
                    merged.append(next(it))
            failed = sum(1 for r in merged if "ErrorCode" in r)
            if firehose:
                answer = {"FailedPutCount": failed, "Encrypted": False, "RequestResponses": merged}
            else:
                answer = {"FailedRecordCount": failed, "Records": merged}
            self.reply(200, json.dumps(answer).encode())
        except Exception as e:  # the upstream is down: answer like an unreachable service
            self.reply(503, json.dumps({"__type": "ServiceUnavailable", "message": str(e)}).encode())


def stop(*_):
    with lock:
        print(json.dumps(counts), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
server = http.server.ThreadingHTTPServer(("127.0.0.1", listen_port), Handler)
server.daemon_threads = True
print(f"listening {listen_port}", flush=True)
server.serve_forever()
