/* ws_message.c — classify a client's JSON text message (ping, ack, unknown,
 * invalid) without any I/O, so the session only acts on the result and the
 * parser can be unit tested and fuzzed on its own. */
#include "workers/ws_message.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

/* Our messages are two levels deep; anything far deeper is hostile, and
 * json-c's own default (32) would still let it build that many objects. */
#define WS_MESSAGE_MAX_DEPTH 16

/* Compares with the length: a "type" of "ping\u0000x" is not "ping". */
static bool string_is(json_object *v, const char *lit)
{
    size_t n = strlen(lit);
    return json_object_is_type(v, json_type_string) &&
           (size_t)json_object_get_string_len(v) == n &&
           memcmp(json_object_get_string(v), lit, n) == 0;
}

/* A JSON integer in 0..INT64_MAX, exactly. json-c keeps integers above
 * INT64_MAX as a uint64 (clamping those beyond 2^64-1 to UINT64_MAX) and
 * clamps the int64 view to INT64_MAX, so a literal INT64_MAX is told apart
 * from a clamped bigger number by its uint64 view. Doubles (1.0, 1e3, even
 * when integral) are not integers here: an id is a counter, never a float. */
static bool exact_id(json_object *v, int64_t *out)
{
    if (!json_object_is_type(v, json_type_int))
        return false;
    int64_t i = json_object_get_int64(v);
    if (i < 0)
        return false;
    if (i == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX)
        return false;
    *out = i;
    return true;
}

static void classify_ack(json_object *msg, ws_message *out)
{
    json_object *data = NULL;
    json_object *id = NULL;
    int64_t n = 0;
    /* get_ex on a non-object (data: 5, data: null) is simply false. */
    if (json_object_object_get_ex(msg, "data", &data) &&
        json_object_object_get_ex(data, "id", &id) && exact_id(id, &n)) {
        out->type = WS_MSG_ACK;
        out->ack_id = n;
        return;
    }
    out->type = WS_MSG_BAD_ACK;
}

static void classify(json_object *msg, ws_message *out)
{
    json_object *type = NULL;
    if (!json_object_is_type(msg, json_type_object) ||
        !json_object_object_get_ex(msg, "type", &type) ||
        !json_object_is_type(type, json_type_string))
        return; /* stays WS_MSG_INVALID */
    if (string_is(type, "ping"))
        out->type = WS_MSG_PING;
    else if (string_is(type, "ack"))
        classify_ack(msg, out);
    else
        out->type = WS_MSG_UNKNOWN;
}

int ws_message_parse(const uint8_t *data, size_t len, ws_message *out)
{
    out->type = WS_MSG_INVALID;
    out->ack_id = 0;
    /* Nothing to parse (json-c would only say "continue"); a length json-c's
     * int cannot carry is far beyond any message the reader lets through. */
    if (data == NULL || len == 0 || len > INT_MAX)
        return 0;

    /* A fresh tokener per message: no state can leak from one to the next. */
    json_tokener *tok = json_tokener_new_ex(WS_MESSAGE_MAX_DEPTH);
    if (tok == NULL)
        return -1;
    /* Strict: RFC 8259 JSON only. It still lets NaN and Infinity through as
     * values, which is harmless: they are never an id (not integers). */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *msg = json_tokener_parse_ex(tok, (const char *)data, (int)len);
    enum json_tokener_error err = json_tokener_get_error(tok);
    /* json-c eats trailing whitespace; anything else left over is garbage,
     * and a NUL byte ends its input early, which the length check catches. */
    bool complete = msg != NULL && err == json_tokener_success &&
                    json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
#if JSON_C_VERSION_NUM >= ((0 << 16) | (17 << 8))
    /* From json-c 0.17 on an allocation failure has its own error; 0.16
     * reports it as a parse error, so there it reads as an invalid message. */
    if (err == json_tokener_error_memory) {
        json_object_put(msg);
        return -1;
    }
#endif
    if (complete)
        classify(msg, out);
    json_object_put(msg);
    return 0;
}
