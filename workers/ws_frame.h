/* ws_frame.h — RFC 6455 server side framing, independent of any I/O.
 *
 * ws_reader turns the bytes a client sends into events (complete text/binary
 * messages, pings, pongs, close) while enforcing every rule a client must
 * follow: masking, reserved bits, known opcodes, unfragmented control frames of
 * at most 125 bytes, continuation ordering, UTF-8 text, and a message size cap.
 * It keeps no buffer while idle: a partial frame or a fragmented message is
 * held in malloc'd memory only until it completes. */
#ifndef WSN_WS_FRAME_H
#define WSN_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_TRY_AGAIN = 1013,
    WS_CLOSE_REPLACED = 4000,
};

#define WS_MAX_MESSAGE (64u * 1024u)     /* largest client message, all fragments */
#define WS_MAX_CONTROL_PAYLOAD 125u
#define WS_MAX_FRAME_HEADER 14u          /* 2 + 8 (length) + 4 (mask) */

typedef enum {
    WS_EV_TEXT,    /* complete text message (valid UTF-8) */
    WS_EV_BINARY,  /* complete binary message */
    WS_EV_PING,    /* data = ping payload, to be echoed in a pong */
    WS_EV_PONG,
    WS_EV_CLOSE,   /* close_code (1005 when the frame had no code), data = reason */
} ws_event_type;

typedef struct {
    ws_event_type type;
    const uint8_t *data;  /* valid only during the callback */
    size_t len;
    uint16_t close_code;
} ws_event;

/* Return 0 to continue, non-zero to stop feeding (ws_reader_feed returns it). */
typedef int (*ws_event_fn)(void *ctx, const ws_event *ev);

typedef struct {
    uint8_t *pending;       /* bytes of an incomplete frame, NULL when none */
    uint32_t pending_len;
    uint32_t pending_cap;
    uint8_t *msg;           /* fragments of a message in progress, NULL when none */
    uint32_t msg_len;
    uint32_t msg_cap;
    uint32_t utf8_state;    /* incremental validation across text fragments */
    uint8_t msg_opcode;     /* WS_OP_TEXT/BINARY while a fragmented message is open, else 0 */
    bool closed;            /* a close frame was received; later bytes are ignored */
} ws_reader;

void ws_reader_init(ws_reader *r);
/* Frees any held buffers; the reader may be reused after ws_reader_init. */
void ws_reader_reset(ws_reader *r);

/* Feed bytes received from the client (the buffer may be modified: it is unmasked
 * in place). Returns:
 *   0            all bytes consumed (a partial frame is kept for the next call),
 *   > 0          a WebSocket close code (1002, 1007, 1009) for a protocol violation,
 *                or 1011 when memory ran out: the connection must be closed with it,
 *   < 0          the callback returned non-zero (that value, negated if positive). */
int ws_reader_feed(ws_reader *r, uint8_t *data, size_t len, ws_event_fn fn, void *ctx);

/* Header of a server frame (never masked, FIN set). Returns its length (2, 4 or 10). */
size_t ws_frame_header_encode(uint8_t out[10], uint8_t opcode, uint64_t payload_len);

/* A whole close frame payload: 2-byte code + reason truncated to fit 123 bytes
 * at a UTF-8 boundary. Returns payload length. */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL_PAYLOAD], uint16_t code, const char *reason);

/* True for codes a peer may send in a close frame (RFC 6455 7.4). */
bool ws_close_code_valid(uint16_t code);

#endif
