// A small reader for a plugin config that is a flat JSON object of string values, such as
// {"tag": "edge"}: calls `on_value` once per key with the unescaped value (UTF-8). No stdio and
// no allocation: nothing here makes the component import WASI.
//
// This file belongs to your project: change it as you like.
#ifndef EDGE_CONFIG_H
#define EDGE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EDGE_CONFIG_VALUE_MAX 1024
#define EDGE_CONFIG_ERROR_MAX 200

// Called per key; returns false after writing a message into `err` (see edge_config_error).
typedef bool (*edge_config_fn)(const char *key, const uint8_t *value, size_t len, char *err);

// Writes "config: " + a + b + c into err (cut to EDGE_CONFIG_ERROR_MAX - 1 bytes).
static inline void edge_config_error(char *err, const char *a, const char *b, const char *c) {
    const char *parts[4] = {"config: ", a, b, c};
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        for (const char *p = parts[i]; p != NULL && *p != 0 && n < EDGE_CONFIG_ERROR_MAX - 1; p++) err[n++] = *p;
    }
    err[n] = 0;
}

static inline void edge_config_ws(const uint8_t **p, const uint8_t *end) {
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')) (*p)++;
}

static inline int edge_config_hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Reads a JSON string at *p into out (cap bytes, unescaped, NUL-terminated); false on error.
static inline bool edge_config_string(const uint8_t **p, const uint8_t *end, uint8_t *out, size_t cap, size_t *len) {
    if (*p >= end || **p != '"') return false;
    (*p)++;
    *len = 0;
    while (*p < end && **p != '"') {
        uint32_t c = *(*p)++;
        if (c < 0x20) return false;
        if (c == '\\') {
            if (*p >= end) return false;
            uint8_t e = *(*p)++;
            const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
            const char *at = e != 0 ? strchr(from, e) : NULL;
            if (at != NULL) {
                c = (uint8_t)to[at - from];
            } else if (e == 'u') {
                if (end - *p < 4) return false;
                c = 0;
                for (int i = 0; i < 4; i++) {
                    int d = edge_config_hex((*p)[i]);
                    if (d < 0) return false;
                    c = c * 16 + (uint32_t)d;
                }
                *p += 4;
                if (c >= 0xD800 && c < 0xDC00) { // a surrogate pair
                    uint32_t lo = 0;
                    if (end - *p < 6 || (*p)[0] != '\\' || (*p)[1] != 'u') return false;
                    for (int i = 2; i < 6; i++) {
                        int d = edge_config_hex((*p)[i]);
                        if (d < 0) return false;
                        lo = lo * 16 + (uint32_t)d;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) return false;
                    *p += 6;
                    c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                } else if (c >= 0xDC00 && c < 0xE000) {
                    return false;
                }
            } else {
                return false;
            }
            // UTF-8 encode c.
            uint8_t tmp[4];
            size_t n;
            if (c < 0x80) { tmp[0] = (uint8_t)c; n = 1; }
            else if (c < 0x800) { tmp[0] = 0xC0 | (c >> 6); tmp[1] = 0x80 | (c & 0x3F); n = 2; }
            else if (c < 0x10000) { tmp[0] = 0xE0 | (c >> 12); tmp[1] = 0x80 | ((c >> 6) & 0x3F); tmp[2] = 0x80 | (c & 0x3F); n = 3; }
            else { tmp[0] = 0xF0 | (c >> 18); tmp[1] = 0x80 | ((c >> 12) & 0x3F); tmp[2] = 0x80 | ((c >> 6) & 0x3F); tmp[3] = 0x80 | (c & 0x3F); n = 4; }
            if (*len + n >= cap) return false;
            memcpy(out + *len, tmp, n);
            *len += n;
        } else {
            if (*len + 1 >= cap) return false;
            out[(*len)++] = (uint8_t)c;
        }
    }
    if (*p >= end) return false;
    (*p)++;
    out[*len] = 0;
    return true;
}

// Parses `json` (len bytes): a JSON object whose values are strings. False with a message in
// err (EDGE_CONFIG_ERROR_MAX bytes) when it is not, or when on_value refuses a key.
static inline bool edge_config_parse(const uint8_t *json, size_t len, edge_config_fn on_value, char *err) {
    const uint8_t *p = json, *end = json + len;
    edge_config_ws(&p, end);
    if (p >= end || *p != '{') { edge_config_error(err, "must be a JSON object", NULL, NULL); return false; }
    p++;
    edge_config_ws(&p, end);
    bool first = true;
    while (p < end && *p != '}') {
        if (!first) {
            if (*p != ',') { edge_config_error(err, "expected ',' or '}'", NULL, NULL); return false; }
            p++;
            edge_config_ws(&p, end);
        }
        first = false;
        uint8_t key[64], value[EDGE_CONFIG_VALUE_MAX];
        size_t key_len, value_len;
        if (!edge_config_string(&p, end, key, sizeof key, &key_len)) {
            edge_config_error(err, "expected a key (a string of at most 63 bytes)", NULL, NULL);
            return false;
        }
        edge_config_ws(&p, end);
        if (p >= end || *p != ':') { edge_config_error(err, "expected ':' after `", (const char *)key, "`"); return false; }
        p++;
        edge_config_ws(&p, end);
        if (!edge_config_string(&p, end, value, sizeof value, &value_len)) {
            edge_config_error(err, "`", (const char *)key, "` must be a string (of at most 1023 bytes)");
            return false;
        }
        if (!on_value((const char *)key, value, value_len, err)) return false;
        edge_config_ws(&p, end);
    }
    if (p >= end) { edge_config_error(err, "the object is not closed", NULL, NULL); return false; }
    p++;
    edge_config_ws(&p, end);
    if (p != end) { edge_config_error(err, "text after the object", NULL, NULL); return false; }
    return true;
}

// Whether rec (len bytes) contains needle (n > 0 bytes): a plain byte scan.
static inline bool edge_contains(const uint8_t *rec, size_t len, const uint8_t *needle, size_t n) {
    if (n == 0 || n > len) return n == 0;
    for (const uint8_t *at = rec, *last = rec + len - n; at <= last; at++) {
        at = memchr(at, needle[0], (size_t)(last - at) + 1);
        if (at == NULL) return false;
        if (memcmp(at, needle, n) == 0) return true;
    }
    return false;
}

#endif
