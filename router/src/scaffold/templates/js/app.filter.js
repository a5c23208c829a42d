// {{name}}: a filter stage. Drops the records that contain the configured text and keeps the
// others. Config (JSON): {"drop_if_contains": "debug"} (the default).
import { containsBytes, filterBatch, parseConfig } from "./edge-plugin.js";

// State set by `init` lives in module-level variables (one instance per stage instance).
let needle = new TextEncoder().encode("debug");

/** Called once per record (its bytes): true keeps it, false drops it, a throw dead-letters it. */
function keep(record) {
  // Scan, don't parse: a byte search is all this needs.
  return !containsBytes(record, needle);
}

// init: func(config: string, context: init-context) -> result<_, string>; a thrown string is the error.
export function init(config, _context) {
  for (const [key, value] of Object.entries(parseConfig(config))) {
    if (key !== "drop_if_contains") throw `config: unknown key \`${key}\``;
    if (typeof value !== "string" || value === "") {
      throw "config: `drop_if_contains` must be a non-empty string";
    }
    needle = new TextEncoder().encode(value);
  }
}

export function filter(batch) {
  return filterBatch(batch, keep);
}
