"""{{name}}: an enrich stage. Adds "tag": TAG to every record that is a JSON object, keeping
every byte of the record; any other record is an error (dead-lettered by default).
Config (JSON): {"tag": "edge"} (the default)."""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import edge_plugin

# componentize-py makes a new WitWorld object for every call: state lives at module level.
FIELD = [b'"tag":"edge"']
SPACE = b" \t\r\n"


def enrich(record: bytes) -> bytes | None:
    """Called once per record: the new payload, None to leave it, an exception dead-letters it."""
    body = record.strip(SPACE)
    if len(body) < 2 or body[:1] != b"{" or body[-1:] != b"}":
        raise ValueError("not a JSON object")
    end = record.rindex(b"}")
    comma = b"" if not record[record.index(b"{") + 1:end].strip(SPACE) else b","
    return record[:end] + comma + FIELD[0] + record[end:]


class WitWorld(wit_world.WitWorld):
    def init(self, config: str, context: types.InitContext) -> None:
        cfg = edge_plugin.parse_config(config)
        for key, value in cfg.items():
            if key != "tag":
                raise Err(f"config: unknown key `{key}`")
            if not isinstance(value, str):
                raise Err("config: `tag` must be a string")
            FIELD[0] = b'"tag":' + json.dumps(value, ensure_ascii=False).encode()

    def enrich(self, batch: types.Batch) -> wit_world.EnrichResult:
        return edge_plugin.enrich_batch(batch, enrich)
