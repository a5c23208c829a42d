"""{{name}}: an aggregate stage (contract 0.2). Counts records and sums a whole-number field per
key, and emits one record per key on every `tick` (every `tick_ms` of the stage, 1 s by default:
set `tick_ms = 60000` for per-minute counts) and on `flush` (at shutdown and before a reload),
then starts again from zero. Config (JSON): {"key": "device", "sum": "bytes"} (the defaults).

- A record whose top-level field `key` is a string is counted under that string; the whole
  number in its field `sum` (if any) is added to the key's sum.
- A record without the key is dropped (counted as dropped by the stage); one whose `sum` is not
  a whole number, or that is not a JSON object, is an error (dead-lettered by default).
- Emitted, per key in the order first seen: {"device":"gw-1","count":2,"bytes":200}, its
  partition key the key (when it is 1 to 256 characters).

State lives in this instance. The router sends every record of a key to the same instance (when
the stage's `key` names the same field); a trap loses the instance's open counts."""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import edge_plugin
from edge_plugin import Output

# Most keys held at once: the contract allows 65,536 outputs per `tick` or `flush`.
KEYS_MAX = 65536
LIMIT = 2 ** 53

# componentize-py makes a new WitWorld object for every call: state lives at module level.
STATE = {"key": "device", "sum": "bytes"}
# Key -> [count, sum], in the order first seen.
TOTALS = {}


def whole_number(value):
    """`value` as an int if it is a whole number of at most 2^53, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if abs(value) <= LIMIT else None


def add(record: bytes):
    """Called once per record: takes it into the counts; False drops it; an exception
    dead-letters it."""
    try:
        doc = json.loads(record)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    key = doc.get(STATE["key"])
    if not isinstance(key, str):
        return False
    value = 0
    if STATE["sum"] in doc:
        value = whole_number(doc[STATE["sum"]])
        if value is None:
            raise ValueError(f"`{STATE['sum']}` is not a whole number")
    total = TOTALS.get(key)
    if total is None:
        if len(TOTALS) >= KEYS_MAX:
            raise ValueError(f"more than {KEYS_MAX} keys open")
        total = TOTALS[key] = [0, 0]
    total[0] += 1
    total[1] += value
    return True


def emit() -> list:
    """The counts so far, one record per key; then none are open."""
    dumps = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731
    outputs = []
    for key, (count, total) in TOTALS.items():
        payload = "".join(("{", dumps(STATE["key"]), ":", dumps(key), ',"count":', str(count), ",",
                           dumps(STATE["sum"]), ":", str(total), "}"))
        has_key = 1 <= len(key) <= edge_plugin.KEY_CHARS_MAX
        outputs.append(Output(payload.encode(), partition_key=key if has_key else None))
    TOTALS.clear()
    return outputs


class WitWorld(wit_world.WitWorld):
    def init(self, config: str, context: types.InitContext) -> types.InitAnswer:
        cfg = edge_plugin.parse_config(config)
        for key, value in cfg.items():
            if key not in ("key", "sum"):
                raise Err(f"config: unknown key `{key}`")
            if not isinstance(value, str) or not value:
                raise Err(f"config: `{key}` must be a non-empty string")
            STATE[key] = value
        return types.InitAnswer([], False)

    def process(self, batch: types.Batch) -> wit_world.ProcessResult:
        return edge_plugin.process_batch(batch, add)

    def tick(self, now_unix_nanos: int) -> types.Outputs:
        return edge_plugin.outputs(emit())

    def flush(self) -> types.Outputs:
        return edge_plugin.outputs(emit())
