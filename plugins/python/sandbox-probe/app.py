"""A deliberately nosy test plugin (a filter in Python) for the router's sandbox tests.

Each record names something to try: `file:PATH` opens and reads a file, `socket:HOST:PORT`
connects to a TCP port, `env` lists the environment, `time` reads the wall clock. A record is
kept only if the attempt *succeeded*; a failed attempt is reported as a per-record error with
the exception's message, so the test can see that the sandbox denied it.
"""
import os
import socket
import time

import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def init(self, config: str, context: types.InitContext) -> None:
        pass

    def filter(self, batch: types.Batch) -> wit_world.FilterResult:
        data, spans = batch.data, batch.spans
        keep, errors = [], []
        for i in range(len(spans) // 2):
            what = data[spans[2 * i]:spans[2 * i + 1]].decode("utf-8", "replace")
            try:
                if what.startswith("file:"):
                    with open(what[5:], "rb") as f:
                        f.read(16)
                elif what.startswith("socket:"):
                    host, port = what[7:].rsplit(":", 1)
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        s.connect((host, int(port)))
                    finally:
                        s.close()
                elif what == "env":
                    if not os.environ:
                        raise OSError("the environment is empty")
                elif what == "time":
                    if time.time() < 1:
                        raise OSError(f"the wall clock reads {time.time()}")
                keep.append(True)
            except Exception as e:  # the point is to report whatever the sandbox says
                keep.append(False)
                errors.append(types.RecordError(i, f"{type(e).__name__}: {e}"))
        return wit_world.FilterResult(keep, errors)
