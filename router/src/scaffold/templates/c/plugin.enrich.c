// {{name}}: an enrich stage in C. Adds "tag": TAG to every record that is a JSON object,
// keeping every byte of the record; any other record is an error (dead-lettered by default).
// Config (JSON): {"tag": "edge"} (the default).
//
// Ownership follows the C bindings of `wit-bindgen c`: every argument of an export belongs to
// the callee (freed here), and everything returned must come from malloc (the bindings free it
// after the router copied it). No stdio: printf would make the component import WASI.
#include <stdlib.h>
#include <string.h>

#include "edge_config.h"
#include "enrich.h"

// State set by init: `"tag":"..."`, JSON-escaped (at most 6 bytes per byte of the value).
static uint8_t field[16 + 6 * EDGE_CONFIG_VALUE_MAX];
static size_t field_len;

// A growable output buffer for the changed records of one batch.
typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} buffer_t;

static void reserve(buffer_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap * 2 > b->len + more ? b->cap * 2 : b->len + more;
    b->ptr = realloc(b->ptr, cap);
    if (b->ptr == NULL) abort(); // traps: the router isolates the record
    b->cap = cap;
}

static bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Called once per record: appends the new payload to out and returns true, or returns false
// to leave the record as it is. To reject it, set *error to a message.
static bool enrich(const uint8_t *rec, size_t len, buffer_t *out, const char **error) {
    size_t start = 0, end = len;
    while (start < len && is_space(rec[start])) start++;
    while (end > start && is_space(rec[end - 1])) end--;
    if (end - start < 2 || rec[start] != '{' || rec[end - 1] != '}') {
        *error = "not a JSON object";
        return false;
    }
    end--; // the closing brace
    bool empty = true;
    for (size_t i = start + 1; i < end; i++) empty = empty && is_space(rec[i]);
    reserve(out, len + 1 + field_len);
    memcpy(out->ptr + out->len, rec, end);
    out->len += end;
    if (!empty) out->ptr[out->len++] = ',';
    memcpy(out->ptr + out->len, field, field_len);
    out->len += field_len;
    memcpy(out->ptr + out->len, rec + end, len - end);
    out->len += len - end;
    return true;
}

static bool on_config_value(const char *key, const uint8_t *value, size_t len, char *err) {
    if (strcmp(key, "tag") != 0) {
        edge_config_error(err, "unknown key `", key, "`");
        return false;
    }
    // `"tag":` and the value as a JSON string.
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    memcpy(field, "\"tag\":\"", 7);
    n = 7;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = value[i];
        if (c == '"' || c == '\\') {
            field[n++] = '\\';
            field[n++] = c;
        } else if (c < 0x20) {
            memcpy(field + n, "\\u00", 4);
            field[n + 4] = (uint8_t)hex[c >> 4];
            field[n + 5] = (uint8_t)hex[c & 15];
            n += 6;
        } else {
            field[n++] = c;
        }
    }
    field[n++] = '"';
    field_len = n;
    return true;
}

bool exports_enrich_init(enrich_string_t *config, enrich_init_context_t *context, enrich_string_t *err) {
    char message[EDGE_CONFIG_ERROR_MAX];
    on_config_value("tag", (const uint8_t *)"edge", 4, message); // the default
    bool ok = edge_config_parse(config->ptr, config->len, on_config_value, message);
    if (!ok) enrich_string_dup(err, message);
    enrich_string_free(config);
    enrich_init_context_free(context);
    return ok;
}

void exports_enrich_enrich(enrich_batch_t *batch, enrich_enrich_result_t *ret) {
    size_t n = batch->spans.len / 2;
    uint32_t *changed = malloc((n > 0 ? n : 1) * sizeof *changed);
    uint32_t *ends = malloc((n > 0 ? n : 1) * sizeof *ends);
    enrich_record_error_t *errors = malloc((n > 0 ? n : 1) * sizeof *errors);
    if (changed == NULL || ends == NULL || errors == NULL) abort();
    buffer_t out = {NULL, 0, 0};
    reserve(&out, batch->data.len + 64);
    size_t changed_count = 0, error_count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t start = batch->spans.ptr[2 * i], end = batch->spans.ptr[2 * i + 1];
        const char *error = NULL;
        size_t before = out.len;
        bool did_change = enrich(batch->data.ptr + start, end - start, &out, &error);
        if (error != NULL) {
            out.len = before;
            errors[error_count].index = (uint32_t)i;
            enrich_string_dup(&errors[error_count].message, error);
            error_count++;
        } else if (did_change) {
            changed[changed_count] = (uint32_t)i;
            ends[changed_count] = (uint32_t)out.len;
            changed_count++;
        }
    }
    // The bindings free only non-empty lists after the call: an empty one must not hold memory.
    if (changed_count == 0) { free(changed); changed = NULL; free(ends); ends = NULL; }
    if (out.len == 0) { free(out.ptr); out.ptr = NULL; }
    if (error_count == 0) { free(errors); errors = NULL; }
    ret->changed = (enrich_list_u32_t){changed, changed_count};
    ret->data = (enrich_list_u8_t){out.ptr, out.len};
    ret->ends = (enrich_list_u32_t){ends, changed_count};
    ret->errors = (enrich_list_record_error_t){errors, error_count};
    enrich_batch_free(batch);
}
