// {{name}}: a transform stage (contract 0.2). Passes every record on with its partition key set
// from a field, and for a record containing a text emits a second, derived record: one input,
// two outputs. Config (JSON): {"key": "device", "alert_if_contains": "ERROR"} (the defaults).
//
// - Output 1: the record unchanged, its partition key the string value of the top-level field
//   `key` (left unset when the record has no such string, or it is empty or longer than 256
//   characters).
// - Output 2, only when the record contains `alert_if_contains`: {"alert":RECORD}, with the
//   same partition key and the attribute `type` = `alert`.
// - A record that is not a JSON object is an error (dead-lettered by default).
import { KEY_CHARS_MAX, containsBytes, parseConfig, transformBatch } from "./edge-plugin.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const alertOpen = encoder.encode('{"alert":');
// State set by `init` lives in module-level variables (one instance per stage instance).
let keyName = "device";
let needle = encoder.encode("ERROR");

/** Called once per record (its bytes): its outputs (an empty array drops it); a throw
 * dead-letters it. */
function transformRecord(record) {
  let doc;
  try {
    doc = JSON.parse(decoder.decode(record));
  } catch {
    doc = null;
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw "not a JSON object";
  let key = Object.hasOwn(doc, keyName) ? doc[keyName] : undefined;
  if (typeof key !== "string" || key.length === 0 || [...key].length > KEY_CHARS_MAX) key = undefined;
  const outputs = [{ payload: record, partitionKey: key }];
  if (containsBytes(record, needle)) {
    const alert = new Uint8Array(alertOpen.length + record.length + 1);
    alert.set(alertOpen, 0);
    alert.set(record, alertOpen.length);
    alert[alert.length - 1] = 0x7d; // }
    outputs.push({ payload: alert, partitionKey: key, attributes: { type: "alert" } });
  }
  return outputs;
}

// init: func(config: string, context: init-context) -> result<init-answer, string>; a thrown
// string is the error.
export function init(config, _context) {
  for (const [key, value] of Object.entries(parseConfig(config))) {
    if (key !== "key" && key !== "alert_if_contains") throw `config: unknown key \`${key}\``;
    if (typeof value !== "string" || value === "") throw `config: \`${key}\` must be a non-empty string`;
    if (key === "key") keyName = value;
    else needle = encoder.encode(value);
  }
  // No destination names (outputs go where the input would), no input metadata needed.
  return { destinations: [], wantsMetadata: false };
}

export function transform(batch) {
  return transformBatch(batch, transformRecord);
}
