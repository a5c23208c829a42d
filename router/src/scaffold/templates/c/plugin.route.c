// {{name}}: a route stage in C. Sends the records that contain the configured text to one
// destination (a sink name in the router's config), the others to the router's default sinks.
// Config (JSON): {"contains": "ERROR", "destination": "alerts"} (the defaults).
//
// Ownership follows the C bindings of `wit-bindgen c`: every argument of an export belongs to
// the callee (freed here), and everything returned must come from malloc (the bindings free it
// after the router copied it). No stdio: printf would make the component import WASI.
#include <stdlib.h>
#include <string.h>

#include "edge_config.h"
#include "route.h"

// State set by init (one instance per stage instance).
static uint8_t needle[EDGE_CONFIG_VALUE_MAX] = "ERROR";
static size_t needle_len = 5;
static char destination[EDGE_CONFIG_VALUE_MAX] = "alerts";

// Called once per record: the index of a destination init returned (here only 0), or -1 for
// the router's default sinks. To reject a record instead, set *error to a message.
static int route(const uint8_t *rec, size_t len, const char **error) {
    (void)error;
    return edge_contains(rec, len, needle, needle_len) ? 0 : -1;
}

static bool on_config_value(const char *key, const uint8_t *value, size_t len, char *err) {
    if (strcmp(key, "contains") != 0 && strcmp(key, "destination") != 0) {
        edge_config_error(err, "unknown key `", key, "`");
        return false;
    }
    if (len == 0) {
        edge_config_error(err, "`", key, "` must be a non-empty string");
        return false;
    }
    if (strcmp(key, "contains") == 0) {
        memcpy(needle, value, len);
        needle_len = len;
    } else {
        memcpy(destination, value, len + 1);
    }
    return true;
}

bool exports_route_init(route_string_t *config, route_init_context_t *context, route_list_string_t *ret, route_string_t *err) {
    char message[EDGE_CONFIG_ERROR_MAX];
    bool ok = edge_config_parse(config->ptr, config->len, on_config_value, message);
    if (ok) {
        // The destination names this plugin uses (sinks of the router's config).
        route_string_t *names = malloc(sizeof *names);
        if (names == NULL) abort();
        route_string_dup(&names[0], destination);
        *ret = (route_list_string_t){names, 1};
    } else {
        route_string_dup(err, message);
    }
    route_string_free(config);
    route_init_context_free(context);
    return ok;
}

void exports_route_route(route_batch_t *batch, route_route_result_t *ret) {
    size_t n = batch->spans.len / 2;
    route_option_u32_t *destinations = malloc((n > 0 ? n : 1) * sizeof *destinations);
    route_record_error_t *errors = malloc((n > 0 ? n : 1) * sizeof *errors);
    if (destinations == NULL || errors == NULL) abort(); // traps: the router isolates the record
    size_t error_count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t start = batch->spans.ptr[2 * i], end = batch->spans.ptr[2 * i + 1];
        const char *error = NULL;
        int d = route(batch->data.ptr + start, end - start, &error);
        destinations[i].is_some = d >= 0 && error == NULL;
        destinations[i].val = d >= 0 ? (uint32_t)d : 0;
        if (error != NULL) {
            errors[error_count].index = (uint32_t)i;
            route_string_dup(&errors[error_count].message, error);
            error_count++;
        }
    }
    // The bindings free only non-empty lists after the call: an empty one must not hold memory.
    if (n == 0) { free(destinations); destinations = NULL; }
    if (error_count == 0) { free(errors); errors = NULL; }
    ret->destinations = (route_list_option_u32_t){destinations, n};
    ret->errors = (route_list_record_error_t){errors, error_count};
    route_batch_free(batch);
}
