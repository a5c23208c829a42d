"""{{name}}: a filter stage. Drops the records that contain the configured text and keeps the
others. Config (JSON): {"drop_if_contains": "debug"} (the default)."""
import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import edge_plugin

# componentize-py makes a new WitWorld object for every call: state lives at module level.
NEEDLE = [b"debug"]


def keep(record: bytes) -> bool:
    """Called once per record: True keeps it, False drops it, an exception dead-letters it."""
    # Scan, don't parse: a byte search is all this needs.
    return NEEDLE[0] not in record


class WitWorld(wit_world.WitWorld):
    def init(self, config: str, context: types.InitContext) -> None:
        cfg = edge_plugin.parse_config(config)
        for key, value in cfg.items():
            if key != "drop_if_contains":
                raise Err(f"config: unknown key `{key}`")
            if not isinstance(value, str) or not value:
                raise Err("config: `drop_if_contains` must be a non-empty string")
            NEEDLE[0] = value.encode()

    def filter(self, batch: types.Batch) -> wit_world.FilterResult:
        return edge_plugin.filter_batch(batch, keep)
