// {{name}}: an aggregate stage (contract 0.2). Counts records and sums a whole-number field per
// key, and emits one record per key on every `tick` (every `tick_ms` of the stage, 1 s by
// default: set `tick_ms = 60000` for per-minute counts) and on `flush` (at shutdown and before a
// reload), then starts again from zero. Config (JSON): {"key": "device", "sum": "bytes"} (the
// defaults).
//
// - A record whose top-level field `key` is a string is counted under that string; the whole
//   number in its field `sum` (if any) is added to the key's sum.
// - A record without the key is dropped (counted as dropped by the stage); one whose `sum` is
//   not a whole number, or that is not a JSON object, is an error (dead-lettered by default).
// - Emitted, per key in the order first seen: {"device":"gw-1","count":2,"bytes":200}, its
//   partition key the key (when it is 1 to 256 characters).
//
// State lives in this instance. The router sends every record of a key to the same instance
// (when the stage's `key` names the same field); a trap loses the instance's open counts.
import { KEY_CHARS_MAX, outputs, parseConfig, processBatch } from "./edge-plugin.js";

// Most keys held at once: the contract allows 65,536 outputs per `tick` or `flush`.
const KEYS_MAX = 65536;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
// State set by `init` lives in module-level variables (one instance per stage instance).
let keyName = "device";
let sumName = "bytes";
// Key -> { count, sum }, in the order first seen.
const totals = new Map();

/** Called once per record (its bytes): takes it into the counts; false drops it; a throw
 * dead-letters it. */
function add(record) {
  let doc;
  try {
    doc = JSON.parse(decoder.decode(record));
  } catch {
    doc = null;
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw "not a JSON object";
  const key = Object.hasOwn(doc, keyName) ? doc[keyName] : undefined;
  if (typeof key !== "string") return false;
  let value = 0;
  if (Object.hasOwn(doc, sumName)) {
    value = doc[sumName];
    if (!Number.isInteger(value) || Math.abs(value) > 2 ** 53) throw `\`${sumName}\` is not a whole number`;
  }
  let total = totals.get(key);
  if (total === undefined) {
    if (totals.size >= KEYS_MAX) throw `more than ${KEYS_MAX} keys open`;
    total = { count: 0, sum: 0 };
    totals.set(key, total);
  }
  total.count += 1;
  total.sum += value;
  return true;
}

/** The counts so far, one record per key; then none are open. */
function emit() {
  const out = [];
  for (const [key, { count, sum }] of totals) {
    const text = `{${JSON.stringify(keyName)}:${JSON.stringify(key)},"count":${count},${JSON.stringify(sumName)}:${sum}}`;
    const chars = [...key].length;
    out.push({ payload: encoder.encode(text), partitionKey: chars >= 1 && chars <= KEY_CHARS_MAX ? key : undefined });
  }
  totals.clear();
  return out;
}

// init: func(config: string, context: init-context) -> result<init-answer, string>; a thrown
// string is the error.
export function init(config, _context) {
  for (const [key, value] of Object.entries(parseConfig(config))) {
    if (key !== "key" && key !== "sum") throw `config: unknown key \`${key}\``;
    if (typeof value !== "string" || value === "") throw `config: \`${key}\` must be a non-empty string`;
    if (key === "key") keyName = value;
    else sumName = value;
  }
  return { destinations: [], wantsMetadata: false };
}

export function process(batch) {
  return processBatch(batch, add);
}

// tick: func(now-unix-nanos: u64) -> outputs (now is a BigInt).
export function tick(_nowUnixNanos) {
  return outputs(emit());
}

export function flush() {
  return outputs(emit());
}
