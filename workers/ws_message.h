/* ws_message.h — the client → server messages of a WebSocket session, parsed
 * from one complete text message (JSON). */
#ifndef WSN_WS_MESSAGE_H
#define WSN_WS_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    WS_MSG_PING,     /* {"type":"ping"} */
    WS_MSG_ACK,      /* {"type":"ack","data":{"id":N}}, ack_id = N */
    WS_MSG_BAD_ACK,  /* an ack without a usable data.id */
    WS_MSG_UNKNOWN,  /* an object whose "type" is some other string */
    WS_MSG_INVALID,  /* not one JSON object with a string "type" */
} ws_message_type;

typedef struct {
    ws_message_type type;
    int64_t ack_id;  /* for WS_MSG_ACK only, else 0 */
} ws_message;

/* Classify one complete text message (at most WS_MAX_MESSAGE bytes, valid UTF-8):
 *   {"type":"ping"}                      → WS_MSG_PING;
 *   {"type":"ack","data":{"id":N}}       → WS_MSG_ACK when N is a JSON integer
 *                                          (no fraction, no exponent) in 0..INT64_MAX;
 *   an ack whose data or data.id is missing, not an object / not such an integer
 *   (a string, 1.0, 1e3, -1, 2^63, true, null)  → WS_MSG_BAD_ACK;
 *   any other object with a string "type" → WS_MSG_UNKNOWN;
 *   anything else: not strict JSON (RFC 8259; no comments, single quotes or
 *   trailing commas), not an object, no string "type", something other than
 *   whitespace after the object, nesting deeper than 16 → WS_MSG_INVALID.
 * Unknown fields are ignored; of duplicate keys the last wins (json-c).
 * Returns 0 with *out set, or -1 when memory ran out (*out is then INVALID). */
int ws_message_parse(const uint8_t *data, size_t len, ws_message *out);

#endif
