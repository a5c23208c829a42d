// Helpers for edge-router plugins in JavaScript: write one function per record, these do the batch.
//
// A batch arrives as one Uint8Array plus two offsets per record; an answer goes back as compact
// lists. `filterBatch`, `enrichBatch` and `routeBatch` call your function once per record (with
// the record's bytes, a Uint8Array view) and turn an exception into that record's error (the
// router dead-letters it with the message, or applies the stage's `on_error`) instead of letting
// it trap the whole call. `parseConfig` turns the stage's config into an object or throws a
// message the router prints at start-up.
//
// This file belongs to your project: change it as you like.

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

/** `keep(record) -> boolean` per record: true keeps it, false drops it, a throw is its error. */
export function filterBatch(batch, keep) {
  const { data, spans } = batch;
  const n = spans.length >> 1;
  const flags = new Array(n);
  const errors = [];
  for (let i = 0; i < n; i++) {
    try {
      flags[i] = !!keep(data.subarray(spans[2 * i], spans[2 * i + 1]));
    } catch (e) {
      flags[i] = false;
      errors.push(recordError(i, e));
    }
  }
  return { keep: flags, errors };
}

/** `enrich(record) -> Uint8Array | null` per record: the new payload, or null to leave it as it
 * is; a throw is its error. Only the changed records go back to the router. */
export function enrichBatch(batch, enrich) {
  const { data, spans } = batch;
  const changed = [];
  const ends = [];
  const errors = [];
  const parts = [];
  let len = 0;
  for (let i = 0; 2 * i + 1 < spans.length; i++) {
    let out;
    try {
      out = enrich(data.subarray(spans[2 * i], spans[2 * i + 1]));
    } catch (e) {
      errors.push(recordError(i, e));
      continue;
    }
    if (out === null || out === undefined) continue;
    parts.push(out);
    len += out.length;
    changed.push(i);
    ends.push(len);
  }
  const joined = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    joined.set(p, at);
    at += p.length;
  }
  return { changed, data: joined, ends, errors };
}

/** `route(record) -> string | null` per record: one of `names` (what `init` returned), or null
 * for the router's default sinks; a throw (or a name not in `names`) is its error. */
export function routeBatch(batch, names, route) {
  const { data, spans } = batch;
  const index = new Map(names.map((name, i) => [name, i]));
  const destinations = [];
  const errors = [];
  for (let i = 0; 2 * i + 1 < spans.length; i++) {
    try {
      const name = route(data.subarray(spans[2 * i], spans[2 * i + 1]));
      if (name === null || name === undefined) {
        destinations.push(undefined);
      } else if (index.has(name)) {
        destinations.push(index.get(name));
      } else {
        throw `unknown destination ${JSON.stringify(name)} (init returned ${JSON.stringify(names)})`;
      }
    } catch (e) {
      destinations[i] = undefined;
      errors.push(recordError(i, e));
    }
  }
  return { destinations, errors };
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
