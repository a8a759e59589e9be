/* ws_frame.c — RFC 6455 frame reader for client frames and server frame encoding.
 *
 * Fast path: frames that lie wholly inside the caller's buffer are unmasked in
 * place and delivered from there. Only the tail of a frame cut by a read
 * boundary is copied into r->pending, and only fragmented messages are
 * accumulated in r->msg; both are freed as soon as they are consumed, so an idle
 * connection holds no buffer. Every header is validated as soon as its bytes
 * are present, so an oversized or illegal frame is refused before any of its
 * payload is buffered. Payload bytes are unmasked and UTF-8 checked exactly once,
 * as they arrive, which makes invalid text fail at the first bad byte. */
#include "workers/ws_frame.h"

#include <stdlib.h>
#include <string.h>

#include "src/common/utf8.h"

/* frame_header_parse(): the header is not complete yet. */
#define WS_NEED_MORE (-1)

/* Handed to callbacks for empty fragmented messages, so data is never NULL. */
static const uint8_t ws_empty_payload[1] = { 0 };

typedef struct {
    bool fin;
    uint8_t opcode;
    uint8_t mask[4];
    uint32_t header_len;   /* 6, 8 or 14: client frames always carry a mask */
    uint64_t payload_len;  /* bounded by WS_MAX_MESSAGE once the header is accepted */
} ws_frame_hdr;

void ws_reader_init(ws_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->utf8_state = UTF8_ACCEPT;
}

static void pending_release(ws_reader *r)
{
    free(r->pending);
    r->pending = NULL;
    r->pending_len = 0;
    r->pending_cap = 0;
}

static void message_release(ws_reader *r)
{
    free(r->msg);
    r->msg = NULL;
    r->msg_len = 0;
    r->msg_cap = 0;
    r->msg_opcode = 0;
    r->utf8_state = UTF8_ACCEPT;
}

void ws_reader_reset(ws_reader *r)
{
    pending_release(r);
    message_release(r);
    r->closed = false;
}

static bool opcode_is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

static bool opcode_is_known(uint8_t opcode)
{
    switch (opcode) {
    case WS_OP_CONT: case WS_OP_TEXT: case WS_OP_BINARY:
    case WS_OP_CLOSE: case WS_OP_PING: case WS_OP_PONG:
        return true;
    default:
        return false;
    }
}

/* Payload of this frame feeds the incremental UTF-8 check of a text message. */
static bool frame_is_text(const ws_reader *r, const ws_frame_hdr *h)
{
    return h->opcode == WS_OP_TEXT ||
           (h->opcode == WS_OP_CONT && r->msg_opcode == WS_OP_TEXT);
}

/* First byte: FIN, RSV1-3, opcode, and whether the opcode fits the message
 * state. Checked on its own so a bad frame fails even before byte two. */
static int header_check_first_byte(const ws_reader *r, uint8_t b0)
{
    uint8_t opcode = b0 & 0x0F;

    if (b0 & 0x70)
        return WS_CLOSE_PROTOCOL_ERROR;  /* no extension was negotiated */
    if (!opcode_is_known(opcode))
        return WS_CLOSE_PROTOCOL_ERROR;
    if (opcode_is_control(opcode) && !(b0 & 0x80))
        return WS_CLOSE_PROTOCOL_ERROR;  /* control frames cannot be fragmented */
    if (opcode == WS_OP_CONT && r->msg_opcode == 0)
        return WS_CLOSE_PROTOCOL_ERROR;
    if ((opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) && r->msg_opcode != 0)
        return WS_CLOSE_PROTOCOL_ERROR;  /* previous message not finished */
    return 0;
}

static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Parses and validates the header at buf. Returns 0 with h filled, WS_NEED_MORE
 * with *need = bytes required before it can say more, or a close code. */
static int frame_header_parse(const ws_reader *r, const uint8_t *buf, size_t avail,
                              ws_frame_hdr *h, size_t *need)
{
    int rc;

    if (avail < 1) {
        *need = 2;
        return WS_NEED_MORE;
    }
    rc = header_check_first_byte(r, buf[0]);
    if (rc != 0)
        return rc;
    if (avail < 2) {
        *need = 2;
        return WS_NEED_MORE;
    }

    uint8_t b1 = buf[1];
    uint8_t len7 = b1 & 0x7F;
    uint32_t ext_len = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;

    if (!(b1 & 0x80))
        return WS_CLOSE_PROTOCOL_ERROR;  /* clients must mask every frame */
    h->fin = (buf[0] & 0x80) != 0;
    h->opcode = buf[0] & 0x0F;
    if (opcode_is_control(h->opcode) && len7 > WS_MAX_CONTROL_PAYLOAD)
        return WS_CLOSE_PROTOCOL_ERROR;

    h->header_len = 2 + ext_len + 4;
    if (avail < h->header_len) {
        *need = h->header_len;
        return WS_NEED_MORE;
    }

    h->payload_len = ext_len ? read_be(buf + 2, ext_len) : len7;
    if (h->payload_len >> 63)
        return WS_CLOSE_PROTOCOL_ERROR;
    if (!opcode_is_control(h->opcode)) {
        uint64_t so_far = h->opcode == WS_OP_CONT ? r->msg_len : 0;
        if (h->payload_len > WS_MAX_MESSAGE - so_far)
            return WS_CLOSE_TOO_BIG;
    }
    memcpy(h->mask, buf + 2 + ext_len, 4);
    return 0;
}

/* XORs the mask into p, which starts at byte `offset` of the payload; a word at
 * a time since this touches every byte a client sends. */
static void unmask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset)
{
    uint8_t key[8];
    uint64_t key64;
    size_t i = 0;

    for (size_t k = 0; k < 8; k++)
        key[k] = mask[(offset + k) & 3];
    memcpy(&key64, key, sizeof(key64));

    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        w ^= key64;
        memcpy(p + i, &w, sizeof(w));
    }
    for (; i < len; i++)
        p[i] ^= key[i & 7];
}

/* Called once for every run of payload bytes, in order, as they arrive. */
static int payload_arrived(ws_reader *r, const ws_frame_hdr *h, uint8_t *p, size_t len,
                           uint64_t offset)
{
    unmask(p, len, h->mask, offset);
    if (frame_is_text(r, h)) {
        r->utf8_state = utf8_validate_step(r->utf8_state, p, len);
        if (r->utf8_state == UTF8_REJECT)
            return WS_CLOSE_INVALID_DATA;
    }
    return 0;
}

/* Maps a callback's non-zero return to ws_reader_feed's negative range. */
static int deliver(ws_event_fn fn, void *ctx, ws_event_type type,
                   const uint8_t *data, size_t len, uint16_t close_code)
{
    ws_event ev = {
        .type = type,
        .data = data ? data : ws_empty_payload,
        .len = len,
        .close_code = close_code,
    };
    int rc = fn(ctx, &ev);
    return rc > 0 ? -rc : rc;
}

static int msg_append(ws_reader *r, const uint8_t *p, size_t len)
{
    size_t need = (size_t)r->msg_len + len;  /* <= WS_MAX_MESSAGE, checked in the header */

    if (len == 0)
        return 0;
    if (need > r->msg_cap) {
        size_t cap = r->msg_cap ? (size_t)r->msg_cap * 2 : 4096;
        if (cap > WS_MAX_MESSAGE)
            cap = WS_MAX_MESSAGE;
        if (cap < need)
            cap = need;
        uint8_t *grown = realloc(r->msg, cap);
        if (grown == NULL)
            return WS_CLOSE_INTERNAL;
        r->msg = grown;
        r->msg_cap = (uint32_t)cap;
    }
    memcpy(r->msg + r->msg_len, p, len);
    r->msg_len = (uint32_t)need;
    return 0;
}

static int handle_data_frame(ws_reader *r, const ws_frame_hdr *h, const uint8_t *p,
                             size_t len, ws_event_fn fn, void *ctx)
{
    bool text = frame_is_text(r, h);
    int rc;

    if (h->fin && text && r->utf8_state != UTF8_ACCEPT)
        return WS_CLOSE_INVALID_DATA;  /* message ends inside a character */

    if (h->opcode != WS_OP_CONT && h->fin) {
        /* The common case: a whole message in one frame, delivered in place. */
        return deliver(fn, ctx, text ? WS_EV_TEXT : WS_EV_BINARY, p, len, 0);
    }

    if (h->opcode != WS_OP_CONT)
        r->msg_opcode = h->opcode;
    rc = msg_append(r, p, len);
    if (rc != 0 || !h->fin)
        return rc;

    rc = deliver(fn, ctx, text ? WS_EV_TEXT : WS_EV_BINARY, r->msg, r->msg_len, 0);
    message_release(r);
    return rc;
}

static int handle_close_frame(ws_reader *r, const uint8_t *p, size_t len,
                              ws_event_fn fn, void *ctx)
{
    uint16_t code = WS_CLOSE_NO_STATUS;
    int rc;

    if (len == 1)
        return WS_CLOSE_PROTOCOL_ERROR;
    if (len >= 2) {
        code = (uint16_t)((p[0] << 8) | p[1]);
        if (!ws_close_code_valid(code))
            return WS_CLOSE_PROTOCOL_ERROR;
        if (!utf8_valid(p + 2, len - 2))
            return WS_CLOSE_INVALID_DATA;
        p += 2;
        len -= 2;
    }
    r->closed = true;
    rc = deliver(fn, ctx, WS_EV_CLOSE, p, len, code);
    message_release(r);  /* an unfinished message will never complete now */
    return rc;
}

/* The payload is complete, unmasked and (for text) UTF-8 checked so far. */
static int frame_complete(ws_reader *r, const ws_frame_hdr *h, const uint8_t *p,
                          ws_event_fn fn, void *ctx)
{
    size_t len = (size_t)h->payload_len;

    switch (h->opcode) {
    case WS_OP_CLOSE:
        return handle_close_frame(r, p, len, fn, ctx);
    case WS_OP_PING:
        return deliver(fn, ctx, WS_EV_PING, p, len, 0);
    case WS_OP_PONG:
        return deliver(fn, ctx, WS_EV_PONG, p, len, 0);
    default:
        return handle_data_frame(r, h, p, len, fn, ctx);
    }
}

static int pending_reserve(ws_reader *r, size_t cap)
{
    if (cap <= r->pending_cap)
        return 0;
    uint8_t *grown = realloc(r->pending, cap);
    if (grown == NULL)
        return WS_CLOSE_INTERNAL;
    r->pending = grown;
    r->pending_cap = (uint32_t)cap;
    return 0;
}

/* Appends bytes of the pending frame; payload bytes among them are processed
 * at once (h is NULL while the header is still incomplete). */
static int pending_append(ws_reader *r, const ws_frame_hdr *h, const uint8_t *src, size_t n)
{
    uint32_t start = r->pending_len;
    int rc = pending_reserve(r, h ? h->header_len + (size_t)h->payload_len
                                  : WS_MAX_FRAME_HEADER);
    if (rc != 0)
        return rc;
    memcpy(r->pending + start, src, n);
    r->pending_len += (uint32_t)n;

    if (h == NULL || r->pending_len <= h->header_len)
        return 0;
    uint32_t from = start > h->header_len ? start : h->header_len;
    return payload_arrived(r, h, r->pending + from, r->pending_len - from,
                           from - h->header_len);
}

/* Continues the frame held in r->pending with bytes from *data. Returns 0 when
 * that frame is done (processed and freed) or all input was taken. */
static int pending_feed(ws_reader *r, uint8_t **data, size_t *len, ws_event_fn fn, void *ctx)
{
    for (;;) {
        ws_frame_hdr h;
        size_t need;
        int rc = frame_header_parse(r, r->pending, r->pending_len, &h, &need);

        if (rc > 0)
            return rc;
        if (rc == 0) {
            need = h.header_len + (size_t)h.payload_len;
            if (r->pending_len == need) {
                rc = frame_complete(r, &h, r->pending + h.header_len, fn, ctx);
                pending_release(r);
                return rc;
            }
        }
        if (*len == 0)
            return 0;

        size_t take = need - r->pending_len;
        if (take > *len)
            take = *len;
        rc = pending_append(r, rc == 0 ? &h : NULL, *data, take);
        if (rc != 0)
            return rc;
        *data += take;
        *len -= take;
    }
}

int ws_reader_feed(ws_reader *r, uint8_t *data, size_t len, ws_event_fn fn, void *ctx)
{
    while (len > 0 && !r->closed) {
        ws_frame_hdr h;
        size_t need;
        int rc;

        if (r->pending_len > 0) {
            rc = pending_feed(r, &data, &len, fn, ctx);
            if (rc != 0)
                return rc;
            continue;
        }

        rc = frame_header_parse(r, data, len, &h, &need);
        if (rc > 0)
            return rc;
        if (rc == WS_NEED_MORE)
            return pending_append(r, NULL, data, len);

        size_t frame_len = h.header_len + (size_t)h.payload_len;
        if (frame_len > len) {
            /* Cut by the read: keep the tail, sized for the whole frame. The
             * header goes first so the payload is handled like later bytes. */
            rc = pending_reserve(r, frame_len);
            if (rc != 0)
                return rc;
            memcpy(r->pending, data, h.header_len);
            r->pending_len = h.header_len;
            return pending_append(r, &h, data + h.header_len, len - h.header_len);
        }

        uint8_t *payload = data + h.header_len;
        rc = payload_arrived(r, &h, payload, (size_t)h.payload_len, 0);
        if (rc == 0)
            rc = frame_complete(r, &h, payload, fn, ctx);
        if (rc != 0)
            return rc;
        data += frame_len;
        len -= frame_len;
    }
    return 0;
}

size_t ws_frame_header_encode(uint8_t out[10], uint8_t opcode, uint64_t payload_len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0F));
    if (payload_len < 126) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL_PAYLOAD], uint16_t code, const char *reason)
{
    const size_t room = WS_MAX_CONTROL_PAYLOAD - 2;
    size_t n = reason ? strlen(reason) : 0;

    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (n > room) {
        /* Cut before the character that straddles the limit, never inside it. */
        n = room;
        while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(out + 2, reason, n);
    return 2 + n;
}

bool ws_close_code_valid(uint16_t code)
{
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1014)
        return true;
    return code >= 3000 && code <= 4999;
}
