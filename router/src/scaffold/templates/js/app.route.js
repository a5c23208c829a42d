// {{name}}: a route stage. Sends the records that contain the configured text to one
// destination (a sink name in the router's config), the others to the router's default sinks.
// Config (JSON): {"contains": "ERROR", "destination": "alerts"} (the defaults).
import { containsBytes, parseConfig, routeBatch } from "./edge-plugin.js";

// State set by `init` lives in module-level variables (one instance per stage instance).
let needle = new TextEncoder().encode("ERROR");
let destination = "alerts";

/** Called once per record (its bytes): a destination name init returned, null for the default
 * sinks, a throw dead-letters it. */
function routeRecord(record) {
  return containsBytes(record, needle) ? destination : null;
}

// init: func(config: string, context: init-context) -> result<list<string>, string>
export function init(config, _context) {
  for (const [key, value] of Object.entries(parseConfig(config))) {
    if (key !== "contains" && key !== "destination") throw `config: unknown key \`${key}\``;
    if (typeof value !== "string" || value === "") throw `config: \`${key}\` must be a non-empty string`;
    if (key === "contains") needle = new TextEncoder().encode(value);
    else destination = value;
  }
  // The destination names this plugin uses (sinks of the router's config).
  return [destination];
}

export function route(batch) {
  return routeBatch(batch, [destination], routeRecord);
}
