"""PII redaction (an enrich stage in Python): masks e-mail addresses and IPv4 addresses.

Config (JSON, all optional): {"email": "<email>", "ipv4": "x.x.x.x"} -- the replacement texts.
Records without either are left unchanged (and are not sent back to the router).
"""
import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
IPV4 = re.compile(
    rb"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9.])"
)

# componentize-py makes a new WitWorld object for every call, so state set up by `init` lives
# at module level.
REPLACE = {"email": b"<email>", "ipv4": b"x.x.x.x"}


class WitWorld(wit_world.WitWorld):
    def init(self, config: str, context: types.InitContext) -> None:
        try:
            cfg = json.loads(config)
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        if not isinstance(cfg, dict):
            raise Err("config must be a JSON object")
        REPLACE["email"] = str(cfg.get("email", "<email>")).encode()
        REPLACE["ipv4"] = str(cfg.get("ipv4", "x.x.x.x")).encode()

    def enrich(self, batch: types.Batch) -> wit_world.EnrichResult:
        data, spans = batch.data, batch.spans
        email, ipv4 = REPLACE["email"], REPLACE["ipv4"]
        changed, out, ends = [], bytearray(), []
        for i in range(len(spans) // 2):
            rec = data[spans[2 * i]:spans[2 * i + 1]]
            new = IPV4.sub(ipv4, EMAIL.sub(email, rec))
            if new != rec:
                changed.append(i)
                out += new
                ends.append(len(out))
        return wit_world.EnrichResult(changed, bytes(out), ends, [])
