// {{name}}: a transform stage in C (contract 0.2). Passes every record on with its partition
// key set from a field, and for a record containing a text emits a second, derived record: one
// input, two outputs. Config (JSON): {"key": "device", "alert_if_contains": "ERROR"} (the
// defaults).
//
// - Output 1: the record unchanged, its partition key the string value of the top-level field
//   `key` (left unset when the record has no such string, or it is empty or longer than 256
//   characters).
// - Output 2, only when the record contains `alert_if_contains`: {"alert":RECORD}, with the
//   same partition key and the attribute `type` = `alert`.
// - A record that is not a JSON object is an error (dead-lettered by default).
//
// Ownership follows the C bindings of `wit-bindgen c`: every argument of an export belongs to
// the callee (freed here), and everything returned must come from malloc (the bindings free it
// after the router copied it). No stdio: printf would make the component import WASI.
#include <stdlib.h>
#include <string.h>

#include "edge_config.h"
#include "edge_json.h"
#include "transform.h"

#define KEY_CHARS_MAX 256

typedef edge_router_plugin_types_output_meta_t output_meta_t;

// State set by init.
static uint8_t key_name[EDGE_CONFIG_VALUE_MAX], needle[EDGE_CONFIG_VALUE_MAX];
static size_t key_name_len, needle_len;

// One call's outputs, being built: payloads back to back, an end offset and the input's index
// per output, and the metadata of the outputs that set any.
typedef struct {
    edge_buf_t data;
    uint32_t *ends, *inputs;
    size_t count, cap;
    output_meta_t *meta;
    size_t meta_count;
} outputs_t;

static void *grow(void *ptr, size_t count, size_t *cap, size_t size) {
    if (count < *cap) return ptr;
    *cap = *cap * 2 + 16;
    ptr = realloc(ptr, *cap * size);
    if (ptr == NULL) abort();
    return ptr;
}

// Ends the output whose payload was just added to o->data; it came from input `input`.
static void end_output(outputs_t *o, uint32_t input) {
    size_t cap = o->cap;
    o->ends = grow(o->ends, o->count, &cap, sizeof *o->ends);
    cap = o->cap;
    o->inputs = grow(o->inputs, o->count, &cap, sizeof *o->inputs);
    o->cap = cap;
    o->ends[o->count] = (uint32_t)o->data.len;
    o->inputs[o->count] = input;
    o->count++;
}

// A string the bindings own (malloc'ed; an empty one holds no memory).
static transform_string_t owned(const uint8_t *s, size_t n) {
    transform_string_t out = {NULL, 0};
    if (n == 0) return out;
    out.ptr = malloc(n);
    if (out.ptr == NULL) abort();
    memcpy(out.ptr, s, n);
    out.len = n;
    return out;
}

// Sets the partition key (key != NULL) and the attribute type=alert (alert) on the last output.
static void set_meta(outputs_t *o, const uint8_t *key, size_t key_len, bool alert) {
    if (key == NULL && !alert) return;
    // Entries are one per output at most: meta_count <= count <= cap.
    o->meta = realloc(o->meta, (o->meta_count + 1) * sizeof *o->meta);
    if (o->meta == NULL) abort();
    output_meta_t *m = &o->meta[o->meta_count++];
    memset(m, 0, sizeof *m);
    m->output = (uint32_t)(o->count - 1);
    if (key != NULL) {
        m->partition_key.is_some = true;
        m->partition_key.val = owned(key, key_len);
    }
    if (alert) {
        transform_tuple2_string_string_t *attr = malloc(sizeof *attr);
        if (attr == NULL) abort();
        attr->f0 = owned((const uint8_t *)"type", 4);
        attr->f1 = owned((const uint8_t *)"alert", 5);
        m->attributes = (transform_list_tuple2_string_string_t){attr, 1};
    }
}

// Called once per record: adds its outputs to o (none drops it). To reject the record, set
// *error to a message before adding any output.
static void transform(const uint8_t *rec, size_t len, uint32_t input, outputs_t *o, const char **error) {
    if (!edge_json_is_object(rec, len)) {
        *error = "not a JSON object";
        return;
    }
    uint8_t key[4 * KEY_CHARS_MAX + 1];
    size_t key_len = 0;
    bool has_key = false;
    const uint8_t *from, *to;
    if (edge_json_member(rec, len, key_name, key_name_len, &from, &to) && *from == '"') {
        has_key = edge_config_string(&from, to, key, sizeof key, &key_len) && key_len > 0 &&
                  edge_json_utf8(key, key_len) && edge_json_chars(key, key_len) <= KEY_CHARS_MAX;
    }
    edge_buf_add(&o->data, rec, len);
    end_output(o, input);
    set_meta(o, has_key ? key : NULL, key_len, false);
    // Scan, don't parse: a byte search is all the second output needs.
    if (edge_contains(rec, len, needle, needle_len)) {
        edge_buf_add(&o->data, "{\"alert\":", 9);
        edge_buf_add(&o->data, rec, len);
        edge_buf_add(&o->data, "}", 1);
        end_output(o, input);
        set_meta(o, has_key ? key : NULL, key_len, true);
    }
}

static bool on_config_value(const char *key, const uint8_t *value, size_t len, char *err) {
    uint8_t *into;
    size_t *into_len;
    if (strcmp(key, "key") == 0) {
        into = key_name;
        into_len = &key_name_len;
    } else if (strcmp(key, "alert_if_contains") == 0) {
        into = needle;
        into_len = &needle_len;
    } else {
        edge_config_error(err, "unknown key `", key, "`");
        return false;
    }
    if (len == 0) {
        edge_config_error(err, "`", key, "` must be a non-empty string");
        return false;
    }
    memcpy(into, value, len);
    *into_len = len;
    return true;
}

bool exports_transform_init(transform_string_t *config, transform_init_context_t *context,
                            transform_init_answer_t *ret, transform_string_t *err) {
    char message[EDGE_CONFIG_ERROR_MAX];
    on_config_value("key", (const uint8_t *)"device", 6, message); // the defaults
    on_config_value("alert_if_contains", (const uint8_t *)"ERROR", 5, message);
    bool ok = edge_config_parse(config->ptr, config->len, on_config_value, message);
    if (ok) {
        // No destination names (outputs go where the input would), no input metadata needed.
        ret->destinations = (transform_list_string_t){NULL, 0};
        ret->wants_metadata = false;
    } else {
        transform_string_dup(err, message);
    }
    transform_string_free(config);
    transform_init_context_free(context);
    return ok;
}

void exports_transform_transform(transform_batch_t *batch, transform_transform_result_t *ret) {
    size_t n = batch->spans.len / 2;
    transform_record_error_t *errors = NULL;
    size_t error_count = 0, error_cap = 0;
    outputs_t o = { {NULL, 0, 0}, NULL, NULL, 0, 0, NULL, 0 };
    for (size_t i = 0; i < n; i++) {
        uint32_t start = batch->spans.ptr[2 * i], end = batch->spans.ptr[2 * i + 1];
        const char *error = NULL;
        transform(batch->data.ptr + start, end - start, (uint32_t)i, &o, &error);
        if (error != NULL) {
            errors = grow(errors, error_count, &error_cap, sizeof *errors);
            errors[error_count].index = (uint32_t)i;
            transform_string_dup(&errors[error_count].message, error);
            error_count++;
        }
    }
    // The bindings free only non-empty lists after the call: an empty one must not hold memory.
    if (o.data.len == 0) { free(o.data.ptr); o.data.ptr = NULL; }
    if (o.count == 0) { free(o.ends); o.ends = NULL; free(o.inputs); o.inputs = NULL; }
    ret->outputs.data = (transform_list_u8_t){o.data.ptr, o.data.len};
    ret->outputs.ends = (transform_list_u32_t){o.ends, o.count};
    ret->outputs.meta = (edge_router_plugin_types_list_output_meta_t){o.meta, o.meta_count};
    ret->inputs = (transform_list_u32_t){o.inputs, o.count};
    ret->merged = (transform_list_u32_t){NULL, 0};
    ret->errors = (transform_list_record_error_t){errors, error_count};
    transform_batch_free(batch);
}
