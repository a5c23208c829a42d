// contains-filter: a filter stage written in C (wasi-libc, bindings by `wit-bindgen c`).
//
// Keeps the records that contain at least one of the configured byte strings, like `grep -F`;
// with "invert": true it drops them instead. Config (JSON):
//
//     {"any": ["ERROR", "panic"], "invert": false}
//
// `any` is required: a non-empty array of non-empty strings (JSON escapes allowed, at most 64
// strings of at most 1 KiB each); `invert` is optional. Any other key, or a config that is not
// such an object, is rejected by `init` with a message naming what was wrong.
//
// Ownership follows the C bindings of wit-bindgen: every argument of an export belongs to the
// callee (freed here), and every list or string returned is malloc'ed and freed by the bindings
// after the router copied it.

#define _GNU_SOURCE // memmem
#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define MAX_NEEDLES 64
#define MAX_NEEDLE_BYTES 1024

typedef struct {
    uint8_t *bytes;
    size_t len;
} needle_t;

static needle_t needles[MAX_NEEDLES];
static size_t needle_count;
static bool invert;

// ---- a minimal JSON reader for the config ---------------------------------------------------

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    char err[160];
} reader_t;

static void skip_ws(reader_t *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

// Appends text to the error message (cut at its capacity).
static void err_append(reader_t *r, const char *text, size_t n) {
    size_t have = strlen(r->err);
    if (n > sizeof r->err - 1 - have) n = sizeof r->err - 1 - have;
    memcpy(r->err + have, text, n);
    r->err[have + n] = 0;
}

// Records the first error (no stdio: printf would import WASI for its output).
static bool fail(reader_t *r, const char *what) {
    if (r->err[0] == 0) {
        err_append(r, "config: ", 8);
        err_append(r, what, strlen(what));
    }
    return false;
}

static bool expect(reader_t *r, uint8_t c, const char *what) {
    skip_ws(r);
    if (r->p >= r->end || *r->p != c) return fail(r, what);
    r->p++;
    return true;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { out[0] = 0xC0 | (cp >> 6); out[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        out[0] = 0xE0 | (cp >> 12); out[1] = 0x80 | ((cp >> 6) & 0x3F); out[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    out[0] = 0xF0 | (cp >> 18); out[1] = 0x80 | ((cp >> 12) & 0x3F);
    out[2] = 0x80 | ((cp >> 6) & 0x3F); out[3] = 0x80 | (cp & 0x3F);
    return 4;
}

static bool read_hex4(reader_t *r, uint32_t *cp) {
    if (r->end - r->p < 4) return fail(r, "a \\u escape needs four hex digits");
    *cp = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(r->p[i]);
        if (d < 0) return fail(r, "a \\u escape needs four hex digits");
        *cp = *cp * 16 + (uint32_t)d;
    }
    r->p += 4;
    return true;
}

// Reads a JSON string into out (at most cap bytes, unescaped); *len is its length. `what` is
// the error when there is no string, `too_long` when it does not fit.
static bool read_string(reader_t *r, uint8_t *out, size_t cap, size_t *len, const char *what,
                        const char *too_long) {
    if (!expect(r, '"', what)) return false;
    *len = 0;
    while (r->p < r->end && *r->p != '"') {
        uint8_t tmp[4];
        size_t n = 1;
        uint8_t c = *r->p++;
        if (c < 0x20) return fail(r, "a control character in a string");
        tmp[0] = c;
        if (c == '\\') {
            if (r->p >= r->end) break;
            c = *r->p++;
            switch (c) {
            case '"': case '\\': case '/': tmp[0] = c; break;
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (!read_hex4(r, &cp)) return false;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    uint32_t lo;
                    if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u') return fail(r, "a lone surrogate in a \\u escape");
                    r->p += 2;
                    if (!read_hex4(r, &lo)) return false;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail(r, "a lone surrogate in a \\u escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return fail(r, "a lone surrogate in a \\u escape");
                }
                n = put_utf8(tmp, cp);
                break;
            }
            default: return fail(r, "an unknown escape in a string");
            }
        }
        if (*len + n > cap) return fail(r, too_long);
        memcpy(out + *len, tmp, n);
        *len += n;
    }
    if (r->p >= r->end) return fail(r, "a string is not closed");
    r->p++;
    return true;
}

static bool read_literal(reader_t *r, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0) return false;
    r->p += n;
    return true;
}

static void free_needles(void) {
    for (size_t i = 0; i < needle_count; i++) free(needles[i].bytes);
    needle_count = 0;
}

static bool parse_config(reader_t *r) {
    bool have_any = false;
    if (!expect(r, '{', "must be a JSON object")) return false;
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
    } else {
        for (;;) {
            uint8_t key[32];
            size_t key_len;
            if (!read_string(r, key, sizeof key, &key_len, "expected a key", "a key is too long")) return false;
            if (!expect(r, ':', "expected ':' after a key")) return false;
            skip_ws(r);
            if (key_len == 3 && memcmp(key, "any", 3) == 0) {
                if (!expect(r, '[', "`any` must be an array of strings")) return false;
                skip_ws(r);
                while (r->p < r->end && *r->p != ']') {
                    if (needle_count == MAX_NEEDLES) return fail(r, "`any` has more than 64 strings");
                    uint8_t buf[MAX_NEEDLE_BYTES];
                    size_t len;
                    if (!read_string(r, buf, sizeof buf, &len, "`any` must be an array of strings",
                                     "`any`: a string is longer than 1024 bytes")) return false;
                    if (len == 0) return fail(r, "`any` holds an empty string (it would match every record)");
                    uint8_t *copy = malloc(len);
                    if (copy == NULL) return fail(r, "out of memory");
                    memcpy(copy, buf, len);
                    needles[needle_count++] = (needle_t){copy, len};
                    skip_ws(r);
                    if (r->p < r->end && *r->p == ',') { r->p++; skip_ws(r); }
                    else if (r->p < r->end && *r->p != ']') return fail(r, "`any`: expected ',' or ']'");
                }
                if (!expect(r, ']', "`any` is not closed")) return false;
                if (needle_count == 0) return fail(r, "`any` must hold at least one string");
                have_any = true;
            } else if (key_len == 6 && memcmp(key, "invert", 6) == 0) {
                if (read_literal(r, "true")) invert = true;
                else if (read_literal(r, "false")) invert = false;
                else return fail(r, "`invert` must be true or false");
            } else {
                fail(r, "unknown key `");
                err_append(r, (const char *)key, key_len);
                err_append(r, "` (known: any, invert)", 22);
                return false;
            }
            skip_ws(r);
            if (r->p < r->end && *r->p == ',') { r->p++; continue; }
            if (!expect(r, '}', "expected ',' or '}'")) return false;
            break;
        }
    }
    skip_ws(r);
    if (r->p != r->end) return fail(r, "text after the object");
    if (!have_any) return fail(r, "`any` is required (the strings to look for)");
    return true;
}

// ---- the exports ----------------------------------------------------------------------------

bool exports_filter_init(filter_string_t *config, filter_init_context_t *context, filter_string_t *err) {
    reader_t r = {config->ptr, config->ptr + config->len, {0}};
    free_needles();
    invert = false;
    bool ok = parse_config(&r);
    if (!ok) {
        free_needles();
        filter_string_dup(err, r.err); // freed by the bindings after the call
    }
    filter_string_free(config);
    filter_init_context_free(context);
    return ok;
}

static bool contains_any(const uint8_t *rec, size_t len) {
    for (size_t i = 0; i < needle_count; i++) {
        if (memmem(rec, len, needles[i].bytes, needles[i].len) != NULL) return true;
    }
    return false;
}

void exports_filter_filter(filter_batch_t *batch, filter_filter_result_t *ret) {
    size_t n = batch->spans.len / 2;
    // The bindings free a returned list only when it is not empty: an empty one holds nothing.
    bool *keep = NULL;
    if (n > 0 && (keep = malloc(n)) == NULL) abort(); // traps: the router re-runs the batch
    const uint32_t *spans = batch->spans.ptr;
    for (size_t i = 0; i < n; i++) {
        uint32_t start = spans[2 * i], end = spans[2 * i + 1];
        keep[i] = contains_any(batch->data.ptr + start, end - start) != invert;
    }
    ret->keep = (filter_list_bool_t){keep, n};
    ret->errors = (filter_list_record_error_t){NULL, 0};
    filter_batch_free(batch);
}
