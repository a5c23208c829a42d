// Small readers and writers for JSON records, by scanning (no parse tree, no allocation): the
// span of a top-level member's value, a string value unescaped, a whole number, and a JSON
// string written with escapes. Uses edge_config.h's string reader. No stdio: nothing here makes
// the component import WASI.
//
// This file belongs to your project: change it as you like.
#ifndef EDGE_JSON_H
#define EDGE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edge_config.h"

// Whether rec (len bytes) is a JSON object as far as its first and last non-space bytes tell.
static inline bool edge_json_is_object(const uint8_t *rec, size_t len) {
    const uint8_t *p = rec, *end = rec + len;
    edge_config_ws(&p, end);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n')) end--;
    return end - p >= 2 && p[0] == '{' && end[-1] == '}';
}

// Skips a JSON string at *p (at its opening quote); false if it is not closed.
static inline bool edge_json_skip_string(const uint8_t **p, const uint8_t *end) {
    (*p)++;
    while (*p < end) {
        uint8_t c = *(*p)++;
        if (c == '\\') {
            if (*p >= end) return false;
            (*p)++;
        } else if (c == '"') {
            return true;
        }
    }
    return false;
}

// Skips one JSON value at *p (a string, an object or array with what it holds, or a scalar).
static inline bool edge_json_skip_value(const uint8_t **p, const uint8_t *end) {
    if (*p >= end) return false;
    if (**p == '"') return edge_json_skip_string(p, end);
    if (**p == '{' || **p == '[') {
        size_t depth = 0;
        while (*p < end) {
            uint8_t c = **p;
            if (c == '"') {
                if (!edge_json_skip_string(p, end)) return false;
                continue;
            }
            (*p)++;
            if (c == '{' || c == '[') depth++;
            if ((c == '}' || c == ']') && --depth == 0) return true;
        }
        return false;
    }
    const uint8_t *start = *p;
    while (*p < end && **p != ',' && **p != '}' && **p != ']' && **p != ' ' && **p != '\t' && **p != '\r' && **p != '\n') (*p)++;
    return *p > start;
}

// Finds the top-level member `name` (name_len bytes, compared with the key unescaped) of the
// object in rec: its value's span [*from, *to). False when there is none (or rec is not an
// object as far as the scan goes).
static inline bool edge_json_member(const uint8_t *rec, size_t len, const uint8_t *name, size_t name_len,
                                    const uint8_t **from, const uint8_t **to) {
    const uint8_t *p = rec, *end = rec + len;
    edge_config_ws(&p, end);
    if (p >= end || *p != '{') return false;
    p++;
    for (;;) {
        edge_config_ws(&p, end);
        if (p >= end || *p != '"') return false;
        const uint8_t *key = p;
        if (!edge_json_skip_string(&p, end)) return false;
        const uint8_t *key_end = p;
        edge_config_ws(&p, end);
        if (p >= end || *p != ':') return false;
        p++;
        edge_config_ws(&p, end);
        const uint8_t *value = p;
        if (!edge_json_skip_value(&p, end)) return false;
        // The key without its quotes; unescaped only when it holds a backslash.
        bool same = false;
        if (memchr(key, '\\', (size_t)(key_end - key)) == NULL) {
            same = (size_t)(key_end - key - 2) == name_len && memcmp(key + 1, name, name_len) == 0;
        } else {
            uint8_t buf[EDGE_CONFIG_VALUE_MAX];
            size_t n;
            const uint8_t *k = key;
            same = edge_config_string(&k, key_end, buf, sizeof buf, &n) && n == name_len && memcmp(buf, name, n) == 0;
        }
        if (same) {
            *from = value;
            *to = p;
            return true;
        }
        edge_config_ws(&p, end);
        if (p >= end || *p != ',') return false;
        p++;
    }
}

// Whether s (len bytes) is valid UTF-8 (the contract's strings must be).
static inline bool edge_json_utf8(const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > len) return false;
        for (size_t j = 1; j < n; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
        }
        i += n;
    }
    return true;
}

// Characters (code points) of UTF-8 text.
static inline size_t edge_json_chars(const uint8_t *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += (s[i] & 0xC0) != 0x80;
    return n;
}

// The whole number written at [from, to): a JSON number with a whole value (`12`, `-3`,
// `12.0`, `1e2`), at most 2^53 in size. Read digit by digit (strtod would import WASI).
static inline bool edge_json_whole_number(const uint8_t *from, const uint8_t *to, int64_t *out) {
    const uint8_t *p = from;
    bool negative = p < to && *p == '-';
    if (negative) p++;
    const uint8_t *int_start = p;
    while (p < to && *p >= '0' && *p <= '9') p++;
    const uint8_t *int_end = p, *frac_start = p, *frac_end = p;
    if (int_end == int_start) return false;
    if (p < to && *p == '.') {
        frac_start = ++p;
        while (p < to && *p >= '0' && *p <= '9') p++;
        frac_end = p;
        if (frac_end == frac_start) return false;
    }
    long exponent = 0;
    if (p < to && (*p == 'e' || *p == 'E')) {
        p++;
        bool minus = p < to && *p == '-';
        if (p < to && (*p == '-' || *p == '+')) p++;
        if (p >= to || *p < '0' || *p > '9') return false;
        for (; p < to && *p >= '0' && *p <= '9'; p++) {
            if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
        }
        if (minus) exponent = -exponent;
    }
    if (p != to) return false;
    // The digits (integer part, then fraction), with the point after `point` of them.
    long int_len = (long)(int_end - int_start), frac_len = (long)(frac_end - frac_start);
    long point = int_len + exponent;
    const uint64_t limit = (uint64_t)1 << 53;
    uint64_t v = 0;
    for (long k = 0; k < int_len + frac_len; k++) {
        uint8_t d = (uint8_t)((k < int_len ? int_start[k] : frac_start[k - int_len]) - '0');
        if (k >= point) {
            if (d != 0) return false; // a fraction
            continue;
        }
        v = v * 10 + d;
        if (v > limit) return false;
    }
    for (long k = int_len + frac_len; k < point && v != 0; k++) {
        v *= 10;
        if (v > limit) return false;
    }
    *out = negative ? -(int64_t)v : (int64_t)v;
    return true;
}

// A growable byte buffer (malloc'ed: it can be handed to the bindings as a list).
typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} edge_buf_t;

static inline void edge_buf_reserve(edge_buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap * 2 > b->len + more ? b->cap * 2 : b->len + more + 64;
    b->ptr = realloc(b->ptr, cap);
    if (b->ptr == NULL) abort(); // traps: the router isolates the call's records
    b->cap = cap;
}

static inline void edge_buf_add(edge_buf_t *b, const void *data, size_t n) {
    edge_buf_reserve(b, n);
    memcpy(b->ptr + b->len, data, n);
    b->len += n;
}

// Appends s (len bytes of UTF-8) as a JSON string, escaped as JSON.stringify and Python's
// json.dumps do it.
static inline void edge_buf_json_string(edge_buf_t *b, const uint8_t *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    edge_buf_reserve(b, 2 + 6 * len);
    b->ptr[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        const char *short_escape = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                                 : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (short_escape != NULL) {
            memcpy(b->ptr + b->len, short_escape, 2);
            b->len += 2;
        } else if (c < 0x20) {
            memcpy(b->ptr + b->len, "\\u00", 4);
            b->ptr[b->len + 4] = (uint8_t)hex[c >> 4];
            b->ptr[b->len + 5] = (uint8_t)hex[c & 15];
            b->len += 6;
        } else {
            b->ptr[b->len++] = c;
        }
    }
    b->ptr[b->len++] = '"';
}

// Appends n in decimal.
static inline void edge_buf_int(edge_buf_t *b, int64_t n) {
    char digits[24];
    size_t k = 0;
    uint64_t u = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    do {
        digits[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (n < 0) digits[k++] = '-';
    edge_buf_reserve(b, k);
    while (k > 0) b->ptr[b->len++] = (uint8_t)digits[--k];
}

#endif
