// {{name}}: an aggregate stage in C (contract 0.2). Counts records and sums a whole-number
// field per key, and emits one record per key on every `tick` (every `tick_ms` of the stage,
// 1 s by default: set `tick_ms = 60000` for per-minute counts) and on `flush` (at shutdown and
// before a reload), then starts again from zero. Config (JSON): {"key": "device", "sum":
// "bytes"} (the defaults).
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
//
// Ownership follows the C bindings of `wit-bindgen c`: every argument of an export belongs to
// the callee (freed here), and everything returned must come from malloc (the bindings free it
// after the router copied it). No stdio: printf would make the component import WASI.
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "edge_config.h"
#include "edge_json.h"

// Most keys held at once: the contract allows 65,536 outputs per `tick` or `flush`.
#define KEYS_MAX 65536
#define KEY_CHARS_MAX 256

typedef edge_router_plugin_types_output_meta_t output_meta_t;

// State set by init.
static uint8_t key_name[EDGE_CONFIG_VALUE_MAX], sum_name[EDGE_CONFIG_VALUE_MAX];
static size_t key_name_len, sum_name_len;
static char not_whole[EDGE_CONFIG_VALUE_MAX + 32]; // "`bytes` is not a whole number"

// The open counts, in the order first seen, and a hash table of indices into them.
typedef struct {
    uint8_t *key;
    size_t len;
    uint64_t count;
    int64_t sum;
} total_t;
static total_t *totals;
static size_t total_count, total_cap;
static uint32_t *slots; // index + 1 into totals; 0: empty
static size_t slot_cap; // a power of two

static uint64_t hash(const uint8_t *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325u; // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3u;
    return h;
}

static void place(uint32_t index) {
    const total_t *t = &totals[index];
    size_t at = (size_t)hash(t->key, t->len) & (slot_cap - 1);
    while (slots[at] != 0) at = (at + 1) & (slot_cap - 1);
    slots[at] = index + 1;
}

// The total of key (len bytes), added if new; NULL when KEYS_MAX keys are open.
static total_t *total_of(const uint8_t *key, size_t len) {
    if (slot_cap > 0) {
        for (size_t at = (size_t)hash(key, len) & (slot_cap - 1); slots[at] != 0; at = (at + 1) & (slot_cap - 1)) {
            total_t *t = &totals[slots[at] - 1];
            if (t->len == len && memcmp(t->key, key, len) == 0) return t;
        }
    }
    if (total_count >= KEYS_MAX) return NULL;
    if (total_count == total_cap) {
        total_cap = total_cap * 2 + 16;
        totals = realloc(totals, total_cap * sizeof *totals);
        if (totals == NULL) abort();
    }
    total_t *t = &totals[total_count++];
    t->key = malloc(len > 0 ? len : 1);
    if (t->key == NULL) abort();
    memcpy(t->key, key, len);
    t->len = len;
    t->count = 0;
    t->sum = 0;
    if (2 * total_count > slot_cap) { // grow and rehash
        free(slots);
        slot_cap = slot_cap > 0 ? slot_cap * 2 : 64;
        slots = calloc(slot_cap, sizeof *slots);
        if (slots == NULL) abort();
        for (size_t i = 0; i < total_count; i++) place((uint32_t)i);
    } else {
        place((uint32_t)(total_count - 1));
    }
    return t;
}

// Called once per record: 1 absorbed, 0 dropped; -1 with *error set rejects it.
static int add(const uint8_t *rec, size_t len, const char **error) {
    if (!edge_json_is_object(rec, len)) {
        *error = "not a JSON object";
        return -1;
    }
    const uint8_t *from, *to;
    if (!edge_json_member(rec, len, key_name, key_name_len, &from, &to) || *from != '"') return 0;
    // The key unescaped (never longer than as written).
    uint8_t *key = malloc((size_t)(to - from) + 1);
    if (key == NULL) abort();
    size_t key_len;
    if (!edge_config_string(&from, to, key, (size_t)(to - from) + 1, &key_len)) {
        free(key);
        return 0;
    }
    int64_t amount = 0;
    if (edge_json_member(rec, len, sum_name, sum_name_len, &from, &to) && !edge_json_whole_number(from, to, &amount)) {
        free(key);
        *error = not_whole;
        return -1;
    }
    total_t *t = total_of(key, key_len);
    free(key);
    if (t == NULL) {
        *error = "more than 65536 keys open";
        return -1;
    }
    t->count++;
    t->sum = (int64_t)((uint64_t)t->sum + (uint64_t)amount);
    return 1;
}

// Every total as an output record, then none open.
static void emit_all(aggregate_outputs_t *ret) {
    edge_buf_t data = {NULL, 0, 0};
    uint32_t *ends = total_count > 0 ? malloc(total_count * sizeof *ends) : NULL;
    output_meta_t *meta = total_count > 0 ? malloc(total_count * sizeof *meta) : NULL;
    if (total_count > 0 && (ends == NULL || meta == NULL)) abort();
    size_t meta_count = 0;
    for (size_t i = 0; i < total_count; i++) {
        total_t *t = &totals[i];
        edge_buf_add(&data, "{", 1);
        edge_buf_json_string(&data, key_name, key_name_len);
        edge_buf_add(&data, ":", 1);
        edge_buf_json_string(&data, t->key, t->len);
        edge_buf_add(&data, ",\"count\":", 9);
        edge_buf_int(&data, (int64_t)t->count);
        edge_buf_add(&data, ",", 1);
        edge_buf_json_string(&data, sum_name, sum_name_len);
        edge_buf_add(&data, ":", 1);
        edge_buf_int(&data, t->sum);
        edge_buf_add(&data, "}", 1);
        ends[i] = (uint32_t)data.len;
        if (t->len > 0 && edge_json_utf8(t->key, t->len) && edge_json_chars(t->key, t->len) <= KEY_CHARS_MAX) {
            output_meta_t *m = &meta[meta_count++];
            memset(m, 0, sizeof *m);
            m->output = (uint32_t)i;
            m->partition_key.is_some = true;
            m->partition_key.val = (aggregate_string_t){t->key, t->len}; // handed over: freed by the bindings
        } else {
            free(t->key);
        }
    }
    if (meta_count == 0) { free(meta); meta = NULL; }
    ret->data = (aggregate_list_u8_t){data.ptr, data.len};
    ret->ends = (aggregate_list_u32_t){ends, total_count};
    ret->meta = (edge_router_plugin_types_list_output_meta_t){meta, meta_count};
    total_count = 0;
    if (slots != NULL) memset(slots, 0, slot_cap * sizeof *slots);
}

static bool on_config_value(const char *key, const uint8_t *value, size_t len, char *err) {
    uint8_t *into;
    size_t *into_len;
    if (strcmp(key, "key") == 0) {
        into = key_name;
        into_len = &key_name_len;
    } else if (strcmp(key, "sum") == 0) {
        into = sum_name;
        into_len = &sum_name_len;
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

bool exports_aggregate_init(aggregate_string_t *config, aggregate_init_context_t *context,
                            aggregate_init_answer_t *ret, aggregate_string_t *err) {
    char message[EDGE_CONFIG_ERROR_MAX];
    on_config_value("key", (const uint8_t *)"device", 6, message); // the defaults
    on_config_value("sum", (const uint8_t *)"bytes", 5, message);
    bool ok = edge_config_parse(config->ptr, config->len, on_config_value, message);
    if (ok) {
        size_t n = 0;
        not_whole[n++] = '`';
        memcpy(not_whole + n, sum_name, sum_name_len);
        n += sum_name_len;
        memcpy(not_whole + n, "` is not a whole number", 24); // with its NUL
        ret->destinations = (aggregate_list_string_t){NULL, 0};
        ret->wants_metadata = false;
    } else {
        aggregate_string_dup(err, message);
    }
    aggregate_string_free(config);
    aggregate_init_context_free(context);
    return ok;
}

void exports_aggregate_process(aggregate_batch_t *batch, aggregate_process_result_t *ret) {
    size_t n = batch->spans.len / 2;
    uint32_t *dropped = malloc((n > 0 ? n : 1) * sizeof *dropped);
    aggregate_record_error_t *errors = malloc((n > 0 ? n : 1) * sizeof *errors);
    if (dropped == NULL || errors == NULL) abort();
    size_t dropped_count = 0, error_count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t start = batch->spans.ptr[2 * i], end = batch->spans.ptr[2 * i + 1];
        const char *error = NULL;
        int r = add(batch->data.ptr + start, end - start, &error);
        if (r < 0) {
            errors[error_count].index = (uint32_t)i;
            aggregate_string_dup(&errors[error_count].message, error);
            error_count++;
        } else if (r == 0) {
            dropped[dropped_count++] = (uint32_t)i;
        }
    }
    // The bindings free only non-empty lists after the call: an empty one must not hold memory.
    if (dropped_count == 0) { free(dropped); dropped = NULL; }
    if (error_count == 0) { free(errors); errors = NULL; }
    ret->outputs = (aggregate_outputs_t){ {NULL, 0}, {NULL, 0}, {NULL, 0} }; // emits only on tick and flush
    ret->dropped = (aggregate_list_u32_t){dropped, dropped_count};
    ret->errors = (aggregate_list_record_error_t){errors, error_count};
    aggregate_batch_free(batch);
}

void exports_aggregate_tick(uint64_t now_unix_nanos, aggregate_outputs_t *ret) {
    (void)now_unix_nanos;
    emit_all(ret);
}

void exports_aggregate_flush(aggregate_outputs_t *ret) {
    emit_all(ret);
}
