// PII redaction (an enrich stage in JavaScript): masks e-mail addresses and IPv4 addresses.
// The same plugin as plugins/python/pii-redact, built with componentize-js (plugins/build.sh).
//
// Config (JSON, all optional): {"email": "<email>", "ipv4": "x.x.x.x"} -- the replacement texts.
// Records without either are left unchanged (and are not sent back to the router).
//
// Records are bytes, not necessarily UTF-8, and every byte outside a match must come back as it
// came. A record that is valid UTF-8 (nearly all) is decoded by a strict TextDecoder (fatal:
// invalid input throws instead of becoming U+FFFD; ignoreBOM: a leading byte-order mark is kept)
// and encoded back by TextEncoder: valid UTF-8 round-trips exactly, in native code. Any other
// record is mapped byte for byte to the characters U+0000-U+00FF ("latin1") and back. The
// patterns are ASCII-only, so they match the same bytes either way, as Python's bytes patterns
// do. Replacement texts are written as UTF-8.

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
const IPV4 =
  /(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9.])/g;
// The same, not global: for `test`, which is much cheaper than `replace` in this engine (it has
// no JIT), and most records have no address.
const HAS_IPV4 = new RegExp(IPV4.source);

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

// The replacement texts (set by `init`) as `String.replace` patterns (`$` doubled): `text` for
// decoded UTF-8 records, `latin1` (one character per UTF-8 byte) for the others.
let email = { text: "<email>", latin1: "<email>" };
let ipv4 = { text: "x.x.x.x", latin1: "x.x.x.x" };

// Bytes -> a string with one character per byte (chunked: `apply` has an argument limit).
function bytesToLatin1(bytes) {
  const CHUNK = 8192;
  if (bytes.length <= CHUNK) return String.fromCharCode.apply(null, bytes);
  const parts = [];
  for (let i = 0; i < bytes.length; i += CHUNK) {
    parts.push(String.fromCharCode.apply(null, bytes.subarray(i, i + CHUNK)));
  }
  return parts.join("");
}

function replacement(cfg, key, fallback) {
  const value = key in cfg ? cfg[key] : fallback;
  if (typeof value !== "string") throw `config: \`${key}\` must be a string`;
  const pattern = (s) => s.replaceAll("$", "$$$$");
  return { text: pattern(value), latin1: pattern(bytesToLatin1(encoder.encode(value))) };
}

// init: func(config: string, context: init-context) -> result<_, string>
// A thrown string is the error.
export function init(config, _context) {
  let cfg;
  try {
    cfg = JSON.parse(config);
  } catch (e) {
    throw `config is not JSON: ${e.message}`;
  }
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) {
    throw "config must be a JSON object";
  }
  email = replacement(cfg, "email", "<email>");
  ipv4 = replacement(cfg, "ipv4", "x.x.x.x");
}

// enrich: func(batch: batch) -> enrich-result
export function enrich(batch) {
  const { data, spans } = batch;
  const changed = [];
  const ends = [];
  let out = new Uint8Array(Math.min(data.length, 1 << 16) + 64);
  let len = 0;
  // Makes room for `more` bytes at the end of `out`.
  const reserve = (more) => {
    if (len + more <= out.length) return;
    const bigger = new Uint8Array(Math.max(2 * out.length, len + more));
    bigger.set(out.subarray(0, len));
    out = bigger;
  };
  for (let i = 0; 2 * i + 1 < spans.length; i++) {
    const bytes = data.subarray(spans[2 * i], spans[2 * i + 1]);
    let rec;
    let latin1 = false;
    try {
      rec = utf8.decode(bytes);
    } catch {
      rec = bytesToLatin1(bytes);
      latin1 = true;
    }
    // As in Python: e-mail addresses first, then IPv4 addresses in the result.
    const step1 = rec.includes("@") ? rec.replace(EMAIL, latin1 ? email.latin1 : email.text) : rec;
    const redacted =
      step1 !== rec || HAS_IPV4.test(step1)
        ? step1.replace(IPV4, latin1 ? ipv4.latin1 : ipv4.text)
        : step1;
    if (redacted === rec) continue;
    if (latin1) {
      reserve(redacted.length);
      for (let j = 0; j < redacted.length; j++) out[len++] = redacted.charCodeAt(j);
    } else {
      reserve(3 * redacted.length); // at most 3 UTF-8 bytes per UTF-16 code unit
      len += encoder.encodeInto(redacted, out.subarray(len)).written;
    }
    changed.push(i);
    ends.push(len);
  }
  return { changed, data: out.subarray(0, len), ends, errors: [] };
}
