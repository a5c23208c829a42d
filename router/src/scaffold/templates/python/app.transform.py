"""{{name}}: a transform stage (contract 0.2). Passes every record on with its partition key set
from a field, and for a record containing a text emits a second, derived record: one input, two
outputs. Config (JSON): {"key": "device", "alert_if_contains": "ERROR"} (the defaults).

- Output 1: the record unchanged, its partition key the string value of the top-level field
  `key` (left unset when the record has no such string, or it is empty or longer than 256
  characters).
- Output 2, only when the record contains `alert_if_contains`: {"alert":RECORD}, with the same
  partition key and the attribute `type` = `alert`.
- A record that is not a JSON object is an error (dead-lettered by default)."""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import edge_plugin
from edge_plugin import Output

# componentize-py makes a new WitWorld object for every call: state lives at module level.
STATE = {"key": "device", "alert_if_contains": b"ERROR"}


def transform(record: bytes) -> list:
    """Called once per record: its outputs (an empty list drops it); an exception dead-letters it."""
    try:
        doc = json.loads(record)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    key = doc.get(STATE["key"])
    if not isinstance(key, str) or not 1 <= len(key) <= edge_plugin.KEY_CHARS_MAX:
        key = None
    outputs = [Output(record, partition_key=key)]
    if STATE["alert_if_contains"] in record:
        alert = b'{"alert":' + record + b"}"
        outputs.append(Output(alert, partition_key=key, attributes={"type": "alert"}))
    return outputs


class WitWorld(wit_world.WitWorld):
    def init(self, config: str, context: types.InitContext) -> types.InitAnswer:
        cfg = edge_plugin.parse_config(config)
        for key, value in cfg.items():
            if key not in ("key", "alert_if_contains"):
                raise Err(f"config: unknown key `{key}`")
            if not isinstance(value, str) or not value:
                raise Err(f"config: `{key}` must be a non-empty string")
            STATE[key] = value.encode() if key == "alert_if_contains" else value
        # No destination names (outputs go where the input would), no input metadata needed.
        return types.InitAnswer([], False)

    def transform(self, batch: types.Batch) -> wit_world.TransformResult:
        return edge_plugin.transform_batch(batch, transform)
