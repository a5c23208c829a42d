// {{name}}: an enrich stage. Adds "tag": TAG to every record that is a JSON object, keeping
// every byte of the record; any other record is an error (dead-lettered by default).
// Config (JSON): {"tag": "edge"} (the default).
import { enrichBatch, parseConfig } from "./edge-plugin.js";

const encoder = new TextEncoder();
// State set by `init` lives in module-level variables (one instance per stage instance).
let field = encoder.encode('"tag":"edge"');

const isSpace = (b) => b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a;

/** Called once per record (its bytes): the new payload, null to leave it, a throw dead-letters it. */
function enrichRecord(record) {
  let start = 0;
  let end = record.length - 1;
  while (start < record.length && isSpace(record[start])) start++;
  while (end >= 0 && isSpace(record[end])) end--;
  if (end <= start || record[start] !== 0x7b || record[end] !== 0x7d) {
    throw "not a JSON object";
  }
  let empty = true;
  for (let i = start + 1; i < end; i++) if (!isSpace(record[i])) empty = false;
  const comma = empty ? 0 : 1;
  const out = new Uint8Array(record.length + comma + field.length);
  out.set(record.subarray(0, end), 0);
  if (comma) out[end] = 0x2c;
  out.set(field, end + comma);
  out.set(record.subarray(end), end + comma + field.length);
  return out;
}

// init: func(config: string, context: init-context) -> result<_, string>; a thrown string is the error.
export function init(config, _context) {
  for (const [key, value] of Object.entries(parseConfig(config))) {
    if (key !== "tag") throw `config: unknown key \`${key}\``;
    if (typeof value !== "string") throw "config: `tag` must be a string";
    field = encoder.encode(`"tag":${JSON.stringify(value)}`);
  }
}

export function enrich(batch) {
  return enrichBatch(batch, enrichRecord);
}
