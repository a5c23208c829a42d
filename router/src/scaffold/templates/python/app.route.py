"""{{name}}: a route stage. Sends the records that contain the configured text to one
destination (a sink name in the router's config), the others to the router's default sinks.
Config (JSON): {"contains": "ERROR", "destination": "alerts"} (the defaults)."""
import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import edge_plugin

# componentize-py makes a new WitWorld object for every call: state lives at module level.
STATE = {"contains": b"ERROR", "destination": "alerts"}


def route(record: bytes) -> str | None:
    """Called once per record: a destination name init returned, None for the default sinks,
    an exception dead-letters it."""
    return STATE["destination"] if STATE["contains"] in record else None


class WitWorld(wit_world.WitWorld):
    def init(self, config: str, context: types.InitContext) -> list[str]:
        cfg = edge_plugin.parse_config(config)
        for key, value in cfg.items():
            if key not in ("contains", "destination"):
                raise Err(f"config: unknown key `{key}`")
            if not isinstance(value, str) or not value:
                raise Err(f"config: `{key}` must be a non-empty string")
            STATE[key] = value.encode() if key == "contains" else value
        # The destination names this plugin uses (sinks of the router's config).
        return [STATE["destination"]]

    def route(self, batch: types.Batch) -> wit_world.RouteResult:
        return edge_plugin.route_batch(batch, [STATE["destination"]], route)
