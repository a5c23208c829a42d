// {{name}}: a filter stage in C. Drops the records that contain the configured text and keeps
// the others. Config (JSON): {"drop_if_contains": "debug"} (the default).
//
// Ownership follows the C bindings of `wit-bindgen c`: every argument of an export belongs to
// the callee (freed here), and everything returned must come from malloc (the bindings free it
// after the router copied it). No stdio: printf would make the component import WASI.
#include <stdlib.h>
#include <string.h>

#include "edge_config.h"
#include "filter.h"

// State set by init (one instance per stage instance).
static uint8_t needle[EDGE_CONFIG_VALUE_MAX] = "debug";
static size_t needle_len = 5;

// Called once per record: true keeps it, false drops it. To reject a record instead, set
// *error to a message (it is then dead-lettered, or follows the stage's on_error).
static bool keep(const uint8_t *rec, size_t len, const char **error) {
    (void)error;
    // Scan, don't parse: a byte search is all this needs.
    return !edge_contains(rec, len, needle, needle_len);
}

static bool on_config_value(const char *key, const uint8_t *value, size_t len, char *err) {
    if (strcmp(key, "drop_if_contains") != 0) {
        edge_config_error(err, "unknown key `", key, "`");
        return false;
    }
    if (len == 0) {
        edge_config_error(err, "`drop_if_contains` must be a non-empty string", NULL, NULL);
        return false;
    }
    memcpy(needle, value, len);
    needle_len = len;
    return true;
}

bool exports_filter_init(filter_string_t *config, filter_init_context_t *context, filter_string_t *err) {
    char message[EDGE_CONFIG_ERROR_MAX];
    bool ok = edge_config_parse(config->ptr, config->len, on_config_value, message);
    if (!ok) filter_string_dup(err, message);
    filter_string_free(config);
    filter_init_context_free(context);
    return ok;
}

void exports_filter_filter(filter_batch_t *batch, filter_filter_result_t *ret) {
    size_t n = batch->spans.len / 2;
    bool *flags = malloc(n > 0 ? n : 1);
    filter_record_error_t *errors = malloc((n > 0 ? n : 1) * sizeof *errors);
    if (flags == NULL || errors == NULL) abort(); // traps: the router isolates the record
    size_t error_count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t start = batch->spans.ptr[2 * i], end = batch->spans.ptr[2 * i + 1];
        const char *error = NULL;
        flags[i] = keep(batch->data.ptr + start, end - start, &error);
        if (error != NULL) {
            errors[error_count].index = (uint32_t)i;
            filter_string_dup(&errors[error_count].message, error);
            error_count++;
        }
    }
    // The bindings free only non-empty lists after the call: an empty one must not hold memory.
    if (n == 0) { free(flags); flags = NULL; }
    if (error_count == 0) { free(errors); errors = NULL; }
    ret->keep = (filter_list_bool_t){flags, n};
    ret->errors = (filter_list_record_error_t){errors, error_count};
    filter_batch_free(batch);
}
