/* fuzz_ws_frame.c — libFuzzer harness for the RFC 6455 frame reader. The
 * client byte stream is fed twice: whole, and cut at input-chosen points into
 * separately allocated pieces (so the pending-frame and fragmented-message
 * state is carried across feeds); both runs must produce the same events, the
 * same result code and the same leftover state. Every event is checked
 * against the rules the reader promises to enforce, and the close helpers
 * are run on values derived from the input.
 *
 * Input: byte 0 = k (bits 0-2: number of cuts), stop flag (bit 3: the
 * callback returns 7 at event number bits 4-7); then k little-endian u16 cut
 * offsets (taken modulo the stream length + 1); the rest is the stream. */
#include <stdbool.h>
#include <string.h>

#include "src/common/utf8.h"
#include "tests/fuzz/fuzz.h"
#include "workers/ws_frame.h"

#define MAX_CUTS 7
#define STOP_VALUE 7

typedef struct {
    uint8_t *p;
    size_t len;
    size_t cap;
} bytes;

typedef struct {
    bytes log;        /* every event: type, close code, length, data */
    unsigned events;
    bool stop;        /* return STOP_VALUE at event number stop_at */
    unsigned stop_at;
} run;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *grown = realloc(b->p, cap);
        if (grown == NULL)
            abort();
        b->p = grown;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void check_close_helpers(uint16_t code, const uint8_t *reason, size_t len)
{
    /* ws_close_code_valid: the RFC 6455 7.4 ranges, never the reserved ones. */
    if (ws_close_code_valid(code))
        FUZZ_ASSERT(code >= 1000 && code <= 4999 && code != 1004 && code != 1005 &&
                    code != 1006 && code != 1015);

    /* ws_close_payload on the reason as a C string (cut at its first NUL). */
    char reason_str[256];
    size_t n = len < sizeof reason_str - 1 ? len : sizeof reason_str - 1;
    memcpy(reason_str, reason, n);
    reason_str[n] = '\0';
    size_t slen = strlen(reason_str);
    uint8_t out[WS_MAX_CONTROL_PAYLOAD];
    size_t plen = ws_close_payload(out, code, reason_str);
    FUZZ_ASSERT(plen >= 2 && plen <= WS_MAX_CONTROL_PAYLOAD);
    FUZZ_ASSERT(out[0] == (uint8_t)(code >> 8) && out[1] == (uint8_t)code);
    FUZZ_ASSERT(plen - 2 <= slen && memcmp(out + 2, reason_str, plen - 2) == 0);
    if (slen <= WS_MAX_CONTROL_PAYLOAD - 2)
        FUZZ_ASSERT(plen - 2 == slen);
    /* A valid reason is cut at a character boundary, so it stays valid. */
    if (utf8_valid((const uint8_t *)reason_str, slen))
        FUZZ_ASSERT(utf8_valid(out + 2, plen - 2));
    (void)ws_close_payload(out, code, NULL);

    /* The server frame header round-trips its length. */
    uint8_t hdr[10];
    uint64_t plens[] = { len, code, (uint64_t)code << 16 | len, 125, 126, 65535, 65536 };
    for (size_t i = 0; i < sizeof plens / sizeof plens[0]; i++) {
        size_t h = ws_frame_header_encode(hdr, (uint8_t)(code & 0x0F), plens[i]);
        FUZZ_ASSERT(h == 2 || h == 4 || h == 10);
        FUZZ_ASSERT(hdr[0] == (0x80 | (code & 0x0F)) && !(hdr[1] & 0x80));
        uint64_t back = hdr[1];
        if (h == 4)
            back = (uint64_t)hdr[2] << 8 | hdr[3];
        else if (h == 10) {
            back = 0;
            for (int k = 0; k < 8; k++)
                back = back << 8 | hdr[2 + k];
        }
        FUZZ_ASSERT(back == plens[i]);
    }
}

static int on_event(void *ctx, const ws_event *ev)
{
    run *r = ctx;
    FUZZ_ASSERT(ev->data != NULL);
    switch (ev->type) {
    case WS_EV_TEXT:
        FUZZ_ASSERT(utf8_valid(ev->data, ev->len));
        /* fall through */
    case WS_EV_BINARY:
        FUZZ_ASSERT(ev->len <= WS_MAX_MESSAGE);
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        FUZZ_ASSERT(ev->len <= WS_MAX_CONTROL_PAYLOAD);
        break;
    case WS_EV_CLOSE:
        FUZZ_ASSERT(ev->close_code == WS_CLOSE_NO_STATUS || ws_close_code_valid(ev->close_code));
        FUZZ_ASSERT(ev->close_code != WS_CLOSE_NO_STATUS || ev->len == 0);
        FUZZ_ASSERT(ev->len <= WS_MAX_CONTROL_PAYLOAD - 2);
        FUZZ_ASSERT(utf8_valid(ev->data, ev->len));
        check_close_helpers(ev->close_code, ev->data, ev->len);
        break;
    default:
        FUZZ_ASSERT(!"unknown event type");
    }
    uint8_t head[7] = { (uint8_t)ev->type, (uint8_t)(ev->close_code >> 8), (uint8_t)ev->close_code,
                        (uint8_t)(ev->len >> 24), (uint8_t)(ev->len >> 16),
                        (uint8_t)(ev->len >> 8), (uint8_t)ev->len };
    put(&r->log, head, sizeof head);
    put(&r->log, ev->data, ev->len);
    unsigned n = r->events++;
    return r->stop && n == r->stop_at ? STOP_VALUE : 0;
}

static bool rc_expected(int rc)
{
    return rc == 0 || rc == WS_CLOSE_PROTOCOL_ERROR || rc == WS_CLOSE_INVALID_DATA ||
           rc == WS_CLOSE_TOO_BIG || rc == WS_CLOSE_INTERNAL || rc == -STOP_VALUE;
}

/* Feeds stream[cut[i-1], cut[i]) piece by piece, each in its own exact-size
 * allocation, stopping at the first non-zero result as the session does.
 * Leaves the reader as it ended for the caller to compare. */
static int feed_pieces(ws_reader *rd, run *r, const uint8_t *stream, size_t len,
                       const size_t *cuts, size_t ncuts)
{
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        size_t n = to - from;
        uint8_t *piece = malloc(n ? n : 1);
        if (piece == NULL)
            abort();
        if (n)
            memcpy(piece, stream + from, n);
        bool was_closed = rd->closed;
        int rc = ws_reader_feed(rd, piece, n, on_event, r);
        free(piece);
        FUZZ_ASSERT(rc_expected(rc));
        if (was_closed)
            FUZZ_ASSERT(rc == 0); /* bytes after a close are ignored */
        if (rc != 0)
            return rc;
        from = to;
    }
    return 0;
}

static void check_idle_state(const ws_reader *rd)
{
    FUZZ_ASSERT(rd->pending_len <= rd->pending_cap);
    FUZZ_ASSERT((rd->pending == NULL) == (rd->pending_cap == 0));
    FUZZ_ASSERT(rd->msg_len <= rd->msg_cap && rd->msg_len <= WS_MAX_MESSAGE);
    FUZZ_ASSERT(rd->msg_opcode == 0 || rd->msg_opcode == WS_OP_TEXT ||
                rd->msg_opcode == WS_OP_BINARY);
    if (rd->msg_opcode == 0)
        FUZZ_ASSERT(rd->msg == NULL && rd->msg_len == 0);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a;
    size_t y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t ncuts = data[0] & MAX_CUTS;
    bool stop = (data[0] & 0x08) != 0;
    unsigned stop_at = data[0] >> 4;
    size_t skip = 1 + 2 * ncuts;
    if (skip > size)
        skip = size;
    const uint8_t *stream = data + skip;
    size_t len = size - skip;
    size_t cuts[MAX_CUTS];
    for (size_t i = 0; i < ncuts; i++) {
        size_t at = 1 + 2 * i;
        cuts[i] = at < size ? (size_t)fuzz_le(data + at, size - at, 2) % (len + 1) : 0;
    }
    qsort(cuts, ncuts, sizeof cuts[0], cmp_size);

    /* Whole. */
    run whole = { .stop = stop, .stop_at = stop_at };
    ws_reader a;
    ws_reader_init(&a);
    int rc_whole = feed_pieces(&a, &whole, stream, len, NULL, 0);

    /* In pieces. */
    run split = { .stop = stop, .stop_at = stop_at };
    ws_reader b;
    ws_reader_init(&b);
    int rc_split = feed_pieces(&b, &split, stream, len, cuts, ncuts);

    FUZZ_ASSERT(rc_whole == rc_split);
    FUZZ_ASSERT(whole.events == split.events);
    FUZZ_ASSERT(whole.log.len == split.log.len);
    FUZZ_ASSERT(whole.log.len == 0 || memcmp(whole.log.p, split.log.p, whole.log.len) == 0);
    if (rc_whole == 0) {
        /* Both consumed everything: the same frame is pending, the same
         * message is open, and the text check is at the same state. */
        check_idle_state(&a);
        check_idle_state(&b);
        FUZZ_ASSERT(a.closed == b.closed);
        FUZZ_ASSERT(a.pending_len == b.pending_len && a.msg_len == b.msg_len);
        FUZZ_ASSERT(a.msg_opcode == b.msg_opcode && a.utf8_state == b.utf8_state);
        FUZZ_ASSERT(a.pending_len == 0 || memcmp(a.pending, b.pending, a.pending_len) == 0);
        FUZZ_ASSERT(a.msg_len == 0 || memcmp(a.msg, b.msg, a.msg_len) == 0);
    }

    /* Reset frees everything, and a reset reader starts afresh. */
    ws_reader_reset(&a);
    ws_reader_reset(&b);
    FUZZ_ASSERT(a.pending == NULL && a.msg == NULL && !a.closed);

    /* Close helpers on values taken straight from the input. */
    if (size >= 2)
        check_close_helpers((uint16_t)fuzz_le(data, size, 2), data + 2, size - 2);

    free(whole.log.p);
    free(split.log.p);
    return 0;
}
