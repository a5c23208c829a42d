// Helpers for edge-router plugins in JavaScript, contract 0.2 (transform and aggregate stages):
// write one function per record, these do the batch.
//
// A batch arrives as one Uint8Array plus two offsets per record; outputs go back as one byte
// array plus an end offset each, with keys, attributes and destinations in a sparse list.
// `transformBatch` calls your `transform(record)` once per record (with the record's bytes, a
// Uint8Array view) and gathers the outputs it returns; `processBatch` calls your `add(record)`
// once per record; `outputs` turns what your `emit()` returns into a `tick` or `flush` answer.
// A throw in `transform` or `add` becomes that record's error (the router dead-letters it with
// the message, or applies the stage's `on_error`) instead of trapping the whole call; a throw in
// `tick` or `flush` traps, and the instance's state is lost. `parseConfig` turns the stage's
// config into an object or throws a message the router prints at start-up.
//
// An output is a Uint8Array (its payload), or an object `{ payload, partitionKey,
// explicitHashKey, attributes, destinations }`: `attributes` an object of strings,
// `destinations` names of sinks among those `init` returned. What is unset is taken from the
// input record (transform) or left empty (aggregate).
//
// This file belongs to your project: change it as you like.

/** Longest partition key, in characters (the router's and Kinesis's limit). */
export const KEY_CHARS_MAX = 256;

const encoder = new TextEncoder();

/** The stage's `config` table as an object; throws a string (start-up stops with it). */
export function parseConfig(config) {
  let value;
  try {
    value = JSON.parse(config);
  } catch (e) {
    throw `config is not JSON: ${e.message}`;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw "config must be a JSON object";
  }
  return value;
}

function recordError(index, e) {
  const message = typeof e === "string" ? e : e && e.message ? e.message : String(e);
  return { index, message: message || "error" };
}

/** Whether x is bytes: a Uint8Array (from the bindings or made here; `instanceof` does not
 * tell the bindings' arrays apart reliably). */
function isBytes(x) {
  return ArrayBuffer.isView(x) && x.BYTES_PER_ELEMENT === 1;
}

/** Outputs being gathered for one call. */
class Gathered {
  constructor(names) {
    this.parts = [];
    this.len = 0;
    this.ends = [];
    this.meta = [];
    this.index = new Map(names.map((name, i) => [name, i]));
  }

  add(out) {
    const o = isBytes(out) ? { payload: out } : out;
    if (o === null || typeof o !== "object") throw "an output is a Uint8Array or an object with a payload";
    const payload = typeof o.payload === "string" ? encoder.encode(o.payload) : o.payload;
    if (!isBytes(payload)) throw "an output's payload is a Uint8Array or a string";
    const key = o.partitionKey;
    if (key !== undefined && key !== null) {
      const chars = typeof key === "string" ? [...key].length : 0;
      if (chars < 1 || chars > KEY_CHARS_MAX) throw `a partition key is a string of 1 to ${KEY_CHARS_MAX} characters`;
    }
    const attributes = Object.entries(o.attributes || {}).map(([k, v]) => [k, String(v)]);
    const destinations = [];
    for (const name of o.destinations || []) {
      if (!this.index.has(name)) {
        throw `unknown destination ${JSON.stringify(name)} (init returned ${JSON.stringify([...this.index.keys()])})`;
      }
      const d = this.index.get(name);
      if (!destinations.includes(d)) destinations.push(d);
    }
    const output = this.ends.length;
    this.parts.push(payload);
    this.len += payload.length;
    this.ends.push(this.len);
    const hasKey = key !== undefined && key !== null;
    const hashKey = o.explicitHashKey === null ? undefined : o.explicitHashKey;
    if (hasKey || hashKey !== undefined || attributes.length > 0 || destinations.length > 0) {
      this.meta.push({
        output,
        partitionKey: hasKey ? key : undefined,
        explicitHashKey: hashKey,
        attributes,
        destinations,
      });
    }
  }

  mark() {
    return [this.parts.length, this.len, this.ends.length, this.meta.length];
  }

  rewind([parts, len, ends, meta]) {
    this.parts.length = parts;
    this.len = len;
    this.ends.length = ends;
    this.meta.length = meta;
  }

  outputs() {
    const data = new Uint8Array(this.len);
    let at = 0;
    for (const p of this.parts) {
      data.set(p, at);
      at += p.length;
    }
    return { data, ends: this.ends, meta: this.meta };
  }
}

/** `transform(record) -> array` per record: its outputs (an empty array drops the record), in
 * order; a throw is its error (and what it returned is not used). `names`: the destination
 * names `init` returned. */
export function transformBatch(batch, transform, names = []) {
  const { data, spans } = batch;
  const out = new Gathered(names);
  const inputs = [];
  const errors = [];
  for (let i = 0; 2 * i + 1 < spans.length; i++) {
    const mark = out.mark();
    try {
      for (const o of transform(data.subarray(spans[2 * i], spans[2 * i + 1])) || []) out.add(o);
    } catch (e) {
      out.rewind(mark);
      errors.push(recordError(i, e));
      continue;
    }
    for (let k = mark[2]; k < out.ends.length; k++) inputs.push(i);
  }
  return { outputs: out.outputs(), inputs, merged: [], errors };
}

/** `add(record)` per record: takes it into the state; returning false drops it (counted as
 * dropped); a throw is its error. */
export function processBatch(batch, add) {
  const { data, spans } = batch;
  const dropped = [];
  const errors = [];
  for (let i = 0; 2 * i + 1 < spans.length; i++) {
    try {
      if (add(data.subarray(spans[2 * i], spans[2 * i + 1])) === false) dropped.push(i);
    } catch (e) {
      errors.push(recordError(i, e));
    }
  }
  return { outputs: { data: new Uint8Array(0), ends: [], meta: [] }, dropped, errors };
}

/** A `tick` or `flush` answer from `items` (outputs as above), e.g. what `emit()` returned.
 * `names`: the destination names `init` returned. */
export function outputs(items, names = []) {
  const out = new Gathered(names);
  for (const o of items) out.add(o);
  return out.outputs();
}

/** Whether `haystack` (a Uint8Array) contains `needle` (a Uint8Array): a plain byte scan. */
export function containsBytes(haystack, needle) {
  const n = needle.length;
  if (n === 0) return true;
  const first = needle[0];
  for (let i = haystack.indexOf(first); i !== -1 && i + n <= haystack.length; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < n && haystack[i + j] === needle[j]) j++;
    if (j === n) return true;
  }
  return false;
}
