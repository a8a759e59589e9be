/* test_ws_frame.c — unit tests for the RFC 6455 frame reader and frame encoding. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check_main.h"
#include "workers/ws_frame.h"

/* ---- building client frames ------------------------------------------- */

enum { LEN_MINIMAL = 0, LEN_FORCE16 = 126, LEN_FORCE64 = 127 };

typedef struct {
    uint8_t *p;
    size_t len;
    size_t cap;
} buf_t;

static void buf_put(buf_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        ck_assert_ptr_nonnull(b->p);
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Any first byte (FIN, RSV, opcode), masked or not, with a chosen length form.
 * The mask key varies with the position so frames never share one. */
static void put_raw_frame(buf_t *b, uint8_t b0, bool masked, int len_form,
                          const void *payload, size_t len)
{
    uint8_t hdr[14];
    size_t n = 0;
    uint8_t key[4] = { (uint8_t)(0xA1 ^ b->len), 0x3C, (uint8_t)(0x7E + b->len), 0x05 };

    hdr[n++] = b0;
    if (len_form == LEN_MINIMAL && len < 126) {
        hdr[n++] = (uint8_t)len;
    } else if (len_form != LEN_FORCE64 && len <= 0xFFFF) {
        hdr[n++] = 126;
        hdr[n++] = (uint8_t)(len >> 8);
        hdr[n++] = (uint8_t)len;
    } else {
        hdr[n++] = 127;
        for (int i = 7; i >= 0; i--)
            hdr[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (masked) {
        hdr[1] |= 0x80;
        memcpy(hdr + n, key, 4);
        n += 4;
    }
    buf_put(b, hdr, n);
    size_t start = b->len;
    buf_put(b, payload, len);
    if (masked) {
        for (size_t i = 0; i < len; i++)
            b->p[start + i] ^= key[i & 3];
    }
}

static void put_frame(buf_t *b, bool fin, uint8_t opcode, const void *payload, size_t len)
{
    put_raw_frame(b, (uint8_t)((fin ? 0x80 : 0) | opcode), true, LEN_MINIMAL, payload, len);
}

static void put_str_frame(buf_t *b, bool fin, uint8_t opcode, const char *s)
{
    put_frame(b, fin, opcode, s, strlen(s));
}

static void put_close(buf_t *b, uint16_t code, const char *reason)
{
    uint8_t p[WS_MAX_CONTROL_PAYLOAD];
    size_t rlen = strlen(reason);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rlen);
    put_frame(b, true, WS_OP_CLOSE, p, 2 + rlen);
}

/* ---- recording events ------------------------------------------------- */

#define MAX_EVENTS 64

typedef struct {
    ws_event_type type;
    uint16_t close_code;
    size_t len;
    uint8_t *data;
    const uint8_t *where;    /* the pointer the reader handed out */
    bool msg_was_null;       /* r->msg during the callback */
} rec_event;

typedef struct {
    rec_event ev[MAX_EVENTS];
    size_t n;
    int stop_with;           /* returned by the callback when non-zero */
    const ws_reader *r;
} recorder;

static int record(void *ctx, const ws_event *ev)
{
    recorder *rec = ctx;
    ck_assert_uint_lt(rec->n, MAX_EVENTS);
    ck_assert_ptr_nonnull(ev->data);

    rec_event *e = &rec->ev[rec->n++];
    e->type = ev->type;
    e->close_code = ev->close_code;
    e->len = ev->len;
    e->where = ev->data;
    e->msg_was_null = rec->r == NULL || rec->r->msg == NULL;
    e->data = malloc(ev->len ? ev->len : 1);
    ck_assert_ptr_nonnull(e->data);
    memcpy(e->data, ev->data, ev->len);
    return rec->stop_with;
}

static void recorder_init(recorder *rec, const ws_reader *r)
{
    memset(rec, 0, sizeof(*rec));
    rec->r = r;
}

static void recorder_free(recorder *rec)
{
    for (size_t i = 0; i < rec->n; i++)
        free(rec->ev[i].data);
    rec->n = 0;
}

static void assert_same_events(const recorder *a, const recorder *b)
{
    ck_assert_uint_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        ck_assert_int_eq(a->ev[i].type, b->ev[i].type);
        ck_assert_uint_eq(a->ev[i].close_code, b->ev[i].close_code);
        ck_assert_uint_eq(a->ev[i].len, b->ev[i].len);
        ck_assert_mem_eq(a->ev[i].data, b->ev[i].data, a->ev[i].len);
    }
}

static void assert_event(const recorder *rec, size_t i, ws_event_type type,
                         const void *data, size_t len)
{
    ck_assert_uint_lt(i, rec->n);
    ck_assert_int_eq(rec->ev[i].type, type);
    ck_assert_uint_eq(rec->ev[i].len, len);
    if (len > 0)
        ck_assert_mem_eq(rec->ev[i].data, data, len);
}

static void assert_str_event(const recorder *rec, size_t i, ws_event_type type, const char *s)
{
    assert_event(rec, i, type, s, strlen(s));
}

/* Each piece gets its own exactly sized heap copy (the reader unmasks in
 * place), so ASan catches any read beyond what was fed. */
static int feed_piece(ws_reader *r, const uint8_t *src, size_t n, recorder *rec)
{
    uint8_t *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    if (n > 0)
        memcpy(copy, src, n);
    int rc = ws_reader_feed(r, copy, n, record, rec);
    free(copy);
    return rc;
}

static int feed_buf(ws_reader *r, const buf_t *b, recorder *rec)
{
    return feed_piece(r, b->p, b->len, rec);
}

/* Feeds a buffer holding exactly one frame with a fresh reader and returns
 * the reader's verdict; events are left in rec. */
static int feed_fresh(const buf_t *b, recorder *rec, ws_reader *r)
{
    ws_reader_init(r);
    recorder_init(rec, r);
    return feed_buf(r, b, rec);
}

static void assert_idle(const ws_reader *r)
{
    ck_assert_ptr_null(r->pending);
    ck_assert_ptr_null(r->msg);
    ck_assert_uint_eq(r->pending_len, 0);
    ck_assert_uint_eq(r->msg_len, 0);
    ck_assert_uint_eq(r->msg_opcode, 0);
}

/* The verdict for a single frame given by its first byte and payload. */
static int verdict_of(uint8_t b0, bool masked, int len_form, const void *payload, size_t len)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_raw_frame(&b, b0, masked, len_form, payload, len);
    int rc = feed_fresh(&b, &rec, &r);
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);
    return rc;
}

/* ---- basic messages --------------------------------------------------- */

START_TEST(test_single_text_in_place)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_str_frame(&b, true, WS_OP_TEXT, "hello");
    ws_reader_init(&r);
    recorder_init(&rec, &r);
    /* Not via feed_piece: check the data pointer lies inside our buffer. */
    ck_assert_int_eq(ws_reader_feed(&r, b.p, b.len, record, &rec), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_str_event(&rec, 0, WS_EV_TEXT, "hello");
    ck_assert_ptr_eq(rec.ev[0].where, b.p + 6);
    ck_assert(rec.ev[0].msg_was_null);
    assert_idle(&r);
    ck_assert(!r.closed);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_single_binary_and_empty)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;
    const uint8_t bin[] = { 0x00, 0xFF, 0x80, 0xC0, 0x01 };

    put_frame(&b, true, WS_OP_BINARY, bin, sizeof(bin));
    put_frame(&b, true, WS_OP_TEXT, "", 0);
    put_frame(&b, true, WS_OP_BINARY, "", 0);
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 3);
    assert_event(&rec, 0, WS_EV_BINARY, bin, sizeof(bin));
    assert_event(&rec, 1, WS_EV_TEXT, "", 0);
    assert_event(&rec, 2, WS_EV_BINARY, "", 0);
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_unmask_all_lengths_and_splits)
{
    /* Every payload length around the 8-byte unmask stride, split anywhere. */
    uint8_t payload[100];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 37 + 11);

    for (size_t len = 0; len <= sizeof(payload); len++) {
        buf_t b = { 0 };
        put_frame(&b, true, WS_OP_BINARY, payload, len);
        for (size_t cut = 0; cut <= b.len; cut++) {
            ws_reader r;
            recorder rec;
            ws_reader_init(&r);
            recorder_init(&rec, &r);
            ck_assert_int_eq(feed_piece(&r, b.p, cut, &rec), 0);
            ck_assert_int_eq(feed_piece(&r, b.p + cut, b.len - cut, &rec), 0);
            ck_assert_uint_eq(rec.n, 1);
            assert_event(&rec, 0, WS_EV_BINARY, payload, len);
            assert_idle(&r);
            recorder_free(&rec);
        }
        buf_free(&b);
    }
}
END_TEST

START_TEST(test_partial_frame_kept_then_freed)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_str_frame(&b, true, WS_OP_TEXT, "split me");
    ws_reader_init(&r);
    recorder_init(&rec, &r);
    ck_assert_int_eq(feed_piece(&r, b.p, 9, &rec), 0);
    ck_assert_uint_eq(rec.n, 0);
    ck_assert_ptr_nonnull(r.pending);
    ck_assert_uint_eq(r.pending_len, 9);
    ck_assert_int_eq(feed_piece(&r, b.p + 9, b.len - 9, &rec), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_str_event(&rec, 0, WS_EV_TEXT, "split me");
    ck_assert(rec.ev[0].msg_was_null);  /* unfragmented: never copied into msg */
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_reset_frees_partial_state)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_str_frame(&b, false, WS_OP_TEXT, "first part");
    put_str_frame(&b, true, WS_OP_CONT, "second part");
    ws_reader_init(&r);
    recorder_init(&rec, &r);
    ck_assert_int_eq(feed_piece(&r, b.p, b.len - 3, &rec), 0);
    ck_assert_ptr_nonnull(r.msg);
    ck_assert_ptr_nonnull(r.pending);
    ws_reader_reset(&r);  /* ASan's leak check verifies both were freed */
    assert_idle(&r);
    ck_assert(!r.closed);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

/* ---- header rules ----------------------------------------------------- */

START_TEST(test_unmasked_rejected)
{
    ck_assert_int_eq(verdict_of(0x81, false, LEN_MINIMAL, "hi", 2), WS_CLOSE_PROTOCOL_ERROR);
    ck_assert_int_eq(verdict_of(0x89, false, LEN_MINIMAL, "", 0), WS_CLOSE_PROTOCOL_ERROR);
    ck_assert_int_eq(verdict_of(0x81, true, LEN_MINIMAL, "hi", 2), 0);
}
END_TEST

START_TEST(test_reserved_bits_rejected)
{
    for (uint8_t rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        ck_assert_int_eq(verdict_of((uint8_t)(0x81 | rsv), true, LEN_MINIMAL, "x", 1),
                         WS_CLOSE_PROTOCOL_ERROR);
        ck_assert_int_eq(verdict_of((uint8_t)(0x89 | rsv), true, LEN_MINIMAL, "", 0),
                         WS_CLOSE_PROTOCOL_ERROR);
    }
}
END_TEST

START_TEST(test_unknown_opcodes_rejected)
{
    const uint8_t bad[] = { 3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF };
    for (size_t i = 0; i < sizeof(bad); i++) {
        ck_assert_int_eq(verdict_of((uint8_t)(0x80 | bad[i]), true, LEN_MINIMAL, "x", 1),
                         WS_CLOSE_PROTOCOL_ERROR);
    }
}
END_TEST

START_TEST(test_control_frame_rules)
{
    uint8_t big[126];
    memset(big, 'p', sizeof(big));
    const uint8_t ctl[] = { WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG };

    for (size_t i = 0; i < sizeof(ctl); i++) {
        /* Fragmented control frame. */
        ck_assert_int_eq(verdict_of(ctl[i], true, LEN_MINIMAL, "", 0), WS_CLOSE_PROTOCOL_ERROR);
        /* 126 bytes, and 125 bytes in a 16-bit or 64-bit length form. */
        ck_assert_int_eq(verdict_of((uint8_t)(0x80 | ctl[i]), true, LEN_MINIMAL, big, 126),
                         WS_CLOSE_PROTOCOL_ERROR);
        ck_assert_int_eq(verdict_of((uint8_t)(0x80 | ctl[i]), true, LEN_FORCE16, big, 125),
                         WS_CLOSE_PROTOCOL_ERROR);
        ck_assert_int_eq(verdict_of((uint8_t)(0x80 | ctl[i]), true, LEN_FORCE64, big, 2),
                         WS_CLOSE_PROTOCOL_ERROR);
    }
    ck_assert_int_eq(verdict_of(0x89, true, LEN_MINIMAL, big, 125), 0);
    ck_assert_int_eq(verdict_of(0x8A, true, LEN_MINIMAL, big, 125), 0);
}
END_TEST

START_TEST(test_length_top_bit_rejected)
{
    uint8_t frame[14] = { 0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4 };
    ws_reader r;
    recorder rec;

    ws_reader_init(&r);
    recorder_init(&rec, &r);
    ck_assert_int_eq(feed_piece(&r, frame, sizeof(frame), &rec), WS_CLOSE_PROTOCOL_ERROR);
    ws_reader_reset(&r);

    /* 2^63 - 1 is "just" too big, not a protocol error. */
    frame[2] = 0x7F;
    ws_reader_init(&r);
    ck_assert_int_eq(feed_piece(&r, frame, sizeof(frame), &rec), WS_CLOSE_TOO_BIG);
    ws_reader_reset(&r);
    ck_assert_uint_eq(rec.n, 0);
}
END_TEST

START_TEST(test_length_forms)
{
    const size_t most = 65536;
    uint8_t *payload = malloc(most);
    ck_assert_ptr_nonnull(payload);
    for (size_t i = 0; i < most; i++)
        payload[i] = (uint8_t)(i ^ (i >> 8));

    const struct { size_t len; int form; } cases[] = {
        { 125, LEN_MINIMAL }, { 126, LEN_MINIMAL }, { 127, LEN_MINIMAL },
        { 65535, LEN_MINIMAL }, { 65536, LEN_MINIMAL },
        { 5, LEN_FORCE16 }, { 5, LEN_FORCE64 }, { 300, LEN_FORCE64 }, { 0, LEN_FORCE64 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t b = { 0 };
        ws_reader r;
        recorder rec;
        size_t expect_hdr = cases[i].form == LEN_FORCE64 || cases[i].len > 0xFFFF ? 14
                          : cases[i].form == LEN_FORCE16 || cases[i].len >= 126 ? 8 : 6;

        put_raw_frame(&b, 0x82, true, cases[i].form, payload, cases[i].len);
        ck_assert_uint_eq(b.len, expect_hdr + cases[i].len);
        ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
        ck_assert_uint_eq(rec.n, 1);
        assert_event(&rec, 0, WS_EV_BINARY, payload, cases[i].len);
        assert_idle(&r);
        recorder_free(&rec);
        buf_free(&b);
    }
    free(payload);
}
END_TEST

/* ---- fragmentation ---------------------------------------------------- */

START_TEST(test_cont_without_message)
{
    ck_assert_int_eq(verdict_of(0x80, true, LEN_MINIMAL, "x", 1), WS_CLOSE_PROTOCOL_ERROR);
    ck_assert_int_eq(verdict_of(0x00, true, LEN_MINIMAL, "x", 1), WS_CLOSE_PROTOCOL_ERROR);

    /* Also right after a completed fragmented message. */
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;
    put_str_frame(&b, false, WS_OP_BINARY, "a");
    put_str_frame(&b, true, WS_OP_CONT, "b");
    put_str_frame(&b, true, WS_OP_CONT, "c");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), WS_CLOSE_PROTOCOL_ERROR);
    ck_assert_uint_eq(rec.n, 1);
    assert_str_event(&rec, 0, WS_EV_BINARY, "ab");
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_new_message_inside_fragmented)
{
    const uint8_t starts[] = { WS_OP_TEXT, WS_OP_BINARY };
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 2; j++) {
            buf_t b = { 0 };
            ws_reader r;
            recorder rec;
            put_str_frame(&b, false, starts[i], "part");
            put_str_frame(&b, true, starts[j], "new");
            ck_assert_int_eq(feed_fresh(&b, &rec, &r), WS_CLOSE_PROTOCOL_ERROR);
            ck_assert_uint_eq(rec.n, 0);
            ws_reader_reset(&r);
            recorder_free(&rec);
            buf_free(&b);
        }
    }
}
END_TEST

START_TEST(test_fragmented_with_interleaved_control)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_str_frame(&b, false, WS_OP_TEXT, "Hel");
    put_str_frame(&b, true, WS_OP_PING, "p1");
    put_str_frame(&b, false, WS_OP_CONT, "");
    put_str_frame(&b, false, WS_OP_CONT, "lo, ");
    put_str_frame(&b, true, WS_OP_PONG, "p2");
    put_str_frame(&b, true, WS_OP_CONT, "world");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 3);
    assert_str_event(&rec, 0, WS_EV_PING, "p1");
    assert_str_event(&rec, 1, WS_EV_PONG, "p2");
    assert_str_event(&rec, 2, WS_EV_TEXT, "Hello, world");
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_message_state_frame_by_frame)
{
    /* After every whole message nothing is held; in between, only msg is. */
    buf_t f1 = { 0 }, f2 = { 0 }, f3 = { 0 }, f4 = { 0 };
    ws_reader r;
    recorder rec;

    put_str_frame(&f1, true, WS_OP_TEXT, "one");
    put_str_frame(&f2, false, WS_OP_BINARY, "tw");
    put_str_frame(&f3, true, WS_OP_PING, "");
    put_str_frame(&f4, true, WS_OP_CONT, "o");
    ws_reader_init(&r);
    recorder_init(&rec, &r);

    ck_assert_int_eq(feed_buf(&r, &f1, &rec), 0);
    assert_idle(&r);
    ck_assert_int_eq(feed_buf(&r, &f2, &rec), 0);
    ck_assert_ptr_null(r.pending);
    ck_assert_ptr_nonnull(r.msg);
    ck_assert_uint_eq(r.msg_len, 2);
    ck_assert_uint_eq(r.msg_opcode, WS_OP_BINARY);
    ck_assert_int_eq(feed_buf(&r, &f3, &rec), 0);
    ck_assert_ptr_null(r.pending);
    ck_assert_int_eq(feed_buf(&r, &f4, &rec), 0);
    assert_idle(&r);

    ck_assert_uint_eq(rec.n, 3);
    assert_str_event(&rec, 0, WS_EV_TEXT, "one");
    assert_event(&rec, 1, WS_EV_PING, "", 0);
    assert_str_event(&rec, 2, WS_EV_BINARY, "two");
    recorder_free(&rec);
    buf_free(&f1);
    buf_free(&f2);
    buf_free(&f3);
    buf_free(&f4);
}
END_TEST

START_TEST(test_empty_fragmented_message)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_frame(&b, false, WS_OP_TEXT, "", 0);
    put_frame(&b, true, WS_OP_CONT, "", 0);
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_event(&rec, 0, WS_EV_TEXT, "", 0);
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

/* ---- message size limit ----------------------------------------------- */

START_TEST(test_max_message_single_frame)
{
    uint8_t *payload = malloc(WS_MAX_MESSAGE + 1);
    ck_assert_ptr_nonnull(payload);
    memset(payload, 'a', WS_MAX_MESSAGE + 1);
    const uint8_t ops[] = { WS_OP_TEXT, WS_OP_BINARY };

    for (size_t i = 0; i < 2; i++) {
        buf_t b = { 0 };
        ws_reader r;
        recorder rec;

        put_frame(&b, true, ops[i], payload, WS_MAX_MESSAGE);
        ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
        ck_assert_uint_eq(rec.n, 1);
        assert_event(&rec, 0, ops[i] == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY,
                     payload, WS_MAX_MESSAGE);
        assert_idle(&r);
        recorder_free(&rec);
        buf_free(&b);

        put_frame(&b, true, ops[i], payload, WS_MAX_MESSAGE + 1);
        ck_assert_int_eq(feed_fresh(&b, &rec, &r), WS_CLOSE_TOO_BIG);
        ck_assert_uint_eq(rec.n, 0);
        ws_reader_reset(&r);
        recorder_free(&rec);
        buf_free(&b);
    }
    free(payload);
}
END_TEST

START_TEST(test_too_big_detected_from_header)
{
    /* Only the 14-byte header is sent, a byte at a time: the reader must refuse
     * on the last header byte, having buffered no more than the header. */
    uint8_t hdr[14] = { 0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 1, 9, 9, 9, 9 };
    ws_reader r;
    recorder rec;

    ws_reader_init(&r);
    recorder_init(&rec, &r);
    for (size_t i = 0; i < 13; i++) {
        ck_assert_int_eq(feed_piece(&r, hdr + i, 1, &rec), 0);
        ck_assert_uint_le(r.pending_cap, WS_MAX_FRAME_HEADER);
    }
    ck_assert_int_eq(feed_piece(&r, hdr + 13, 1, &rec), WS_CLOSE_TOO_BIG);
    ws_reader_reset(&r);

    /* Header whole, no payload at all. */
    ws_reader_init(&r);
    ck_assert_int_eq(feed_piece(&r, hdr, sizeof(hdr), &rec), WS_CLOSE_TOO_BIG);
    ck_assert_ptr_null(r.pending);
    ws_reader_reset(&r);

    /* A frame exactly at the limit is buffered whole when it arrives in pieces. */
    hdr[7] = 1;
    hdr[9] = 0;
    ws_reader_init(&r);
    ck_assert_int_eq(feed_piece(&r, hdr, sizeof(hdr), &rec), 0);
    ck_assert_ptr_nonnull(r.pending);
    ck_assert_uint_le(r.pending_cap, WS_MAX_FRAME_HEADER + WS_MAX_MESSAGE);
    ws_reader_reset(&r);
    ck_assert_uint_eq(rec.n, 0);
}
END_TEST

START_TEST(test_max_message_across_fragments)
{
    uint8_t *payload = malloc(WS_MAX_MESSAGE);
    ck_assert_ptr_nonnull(payload);
    for (size_t i = 0; i < WS_MAX_MESSAGE; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    const size_t first = 40000, rest = WS_MAX_MESSAGE - first;
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    /* Exactly 64 KiB in three fragments with a ping between. */
    put_frame(&b, false, WS_OP_TEXT, payload, first);
    put_frame(&b, true, WS_OP_PING, "x", 1);
    put_frame(&b, false, WS_OP_CONT, payload + first, rest - 10);
    put_frame(&b, true, WS_OP_CONT, payload + first + rest - 10, 10);
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 2);
    assert_event(&rec, 1, WS_EV_TEXT, payload, WS_MAX_MESSAGE);
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);

    /* One byte more: refused at the header of the last fragment. */
    put_frame(&b, false, WS_OP_BINARY, payload, first);
    put_frame(&b, false, WS_OP_CONT, payload + first, rest - 10);
    put_frame(&b, true, WS_OP_CONT, payload, 11);
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), WS_CLOSE_TOO_BIG);
    ck_assert_uint_eq(rec.n, 0);
    ck_assert_uint_le(r.msg_cap, WS_MAX_MESSAGE);
    ws_reader_reset(&r);
    recorder_free(&rec);

    /* Same, with only the offending fragment's header present. */
    ws_reader_init(&r);
    size_t upto = b.len - 11;
    ck_assert_int_eq(feed_piece(&r, b.p, upto, &rec), WS_CLOSE_TOO_BIG);
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);
    free(payload);
}
END_TEST

/* ---- UTF-8 ------------------------------------------------------------ */

START_TEST(test_invalid_utf8_text)
{
    ck_assert_int_eq(verdict_of(0x81, true, LEN_MINIMAL, "ok\xff", 3), WS_CLOSE_INVALID_DATA);
    ck_assert_int_eq(verdict_of(0x81, true, LEN_MINIMAL, "\xed\xa0\x80", 3), WS_CLOSE_INVALID_DATA);
    ck_assert_int_eq(verdict_of(0x81, true, LEN_MINIMAL, "\xc0\x80", 2), WS_CLOSE_INVALID_DATA);
    /* Truncated character at the end of an unfragmented message. */
    ck_assert_int_eq(verdict_of(0x81, true, LEN_MINIMAL, "ok\xe2\x82", 4), WS_CLOSE_INVALID_DATA);
    /* Binary is not checked. */
    ck_assert_int_eq(verdict_of(0x82, true, LEN_MINIMAL, "ok\xff", 3), 0);
    ck_assert_int_eq(verdict_of(0x81, true, LEN_MINIMAL, "\xf4\x8f\xbf\xbf", 4), 0);
}
END_TEST

START_TEST(test_utf8_across_fragments)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    /* A valid euro sign split over three fragments. */
    put_str_frame(&b, false, WS_OP_TEXT, "price \xe2");
    put_str_frame(&b, false, WS_OP_CONT, "\x82");
    put_str_frame(&b, true, WS_OP_CONT, "\xac");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    assert_str_event(&rec, 0, WS_EV_TEXT, "price \xe2\x82\xac");
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);

    /* A surrogate split between fragments. */
    put_str_frame(&b, false, WS_OP_TEXT, "a\xed");
    put_str_frame(&b, true, WS_OP_CONT, "\xa0\x80");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), WS_CLOSE_INVALID_DATA);
    ck_assert_uint_eq(rec.n, 0);
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);

    /* The message ends in the middle of a character. */
    put_str_frame(&b, false, WS_OP_TEXT, "a\xf0\x9f");
    put_str_frame(&b, true, WS_OP_CONT, "\x98");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), WS_CLOSE_INVALID_DATA);
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);

    /* Binary fragments are never checked, even with a text-like CONT. */
    put_str_frame(&b, false, WS_OP_BINARY, "\xff");
    put_str_frame(&b, true, WS_OP_CONT, "\xed\xa0");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    assert_str_event(&rec, 0, WS_EV_BINARY, "\xff\xed\xa0");
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_utf8_fails_fast)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    /* An invalid first fragment fails before the message is finished. */
    put_str_frame(&b, false, WS_OP_TEXT, "bad \xc1\xbf");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), WS_CLOSE_INVALID_DATA);
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);

    /* Within a frame still arriving: fails on the bad byte, not at the end. */
    uint8_t payload[1000];
    memset(payload, 'z', sizeof(payload));
    payload[2] = 0xFF;
    put_frame(&b, true, WS_OP_TEXT, payload, sizeof(payload));
    ws_reader_init(&r);
    recorder_init(&rec, &r);
    ck_assert_int_eq(feed_piece(&r, b.p, 8 + 2, &rec), 0);
    ck_assert_int_eq(feed_piece(&r, b.p + 10, 1, &rec), WS_CLOSE_INVALID_DATA);
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

/* ---- ping / close ----------------------------------------------------- */

START_TEST(test_ping_payload_for_echo)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(255 - i);

    put_frame(&b, true, WS_OP_PING, payload, sizeof(payload));
    put_frame(&b, true, WS_OP_PING, "", 0);
    put_str_frame(&b, true, WS_OP_PONG, "late");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 3);
    assert_event(&rec, 0, WS_EV_PING, payload, sizeof(payload));
    assert_event(&rec, 1, WS_EV_PING, "", 0);
    assert_str_event(&rec, 2, WS_EV_PONG, "late");
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_close_with_code_and_reason)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_close(&b, 1000, "bye \xc3\xa9");
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_str_event(&rec, 0, WS_EV_CLOSE, "bye \xc3\xa9");
    ck_assert_uint_eq(rec.ev[0].close_code, 1000);
    ck_assert(r.closed);
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);

    const uint16_t ok_codes[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 4000, 4999 };
    for (size_t i = 0; i < sizeof(ok_codes) / sizeof(ok_codes[0]); i++) {
        put_close(&b, ok_codes[i], "");
        ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
        ck_assert_uint_eq(rec.n, 1);
        ck_assert_uint_eq(rec.ev[0].close_code, ok_codes[i]);
        ck_assert_uint_eq(rec.ev[0].len, 0);
        recorder_free(&rec);
        buf_free(&b);
    }
}
END_TEST

START_TEST(test_close_without_code)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_frame(&b, true, WS_OP_CLOSE, "", 0);
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 1);
    ck_assert_int_eq(rec.ev[0].type, WS_EV_CLOSE);
    ck_assert_uint_eq(rec.ev[0].close_code, WS_CLOSE_NO_STATUS);
    ck_assert_uint_eq(rec.ev[0].len, 0);
    ck_assert(r.closed);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

START_TEST(test_close_invalid)
{
    ck_assert_int_eq(verdict_of(0x88, true, LEN_MINIMAL, "\x03", 1), WS_CLOSE_PROTOCOL_ERROR);

    const uint16_t bad_codes[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535 };
    for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
        uint8_t p[2] = { (uint8_t)(bad_codes[i] >> 8), (uint8_t)bad_codes[i] };
        ck_assert_int_eq(verdict_of(0x88, true, LEN_MINIMAL, p, 2), WS_CLOSE_PROTOCOL_ERROR);
    }

    const uint8_t bad_reason[] = { 0x03, 0xE8, 'o', 'k', 0xC3 };
    ck_assert_int_eq(verdict_of(0x88, true, LEN_MINIMAL, bad_reason, sizeof(bad_reason)),
                     WS_CLOSE_INVALID_DATA);
    const uint8_t surrogate_reason[] = { 0x03, 0xE8, 0xED, 0xBF, 0xBF };
    ck_assert_int_eq(verdict_of(0x88, true, LEN_MINIMAL, surrogate_reason,
                                sizeof(surrogate_reason)), WS_CLOSE_INVALID_DATA);
}
END_TEST

START_TEST(test_bytes_after_close_ignored)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;
    const uint8_t garbage[] = { 0xFF, 0x00, 0x13, 0x37 };

    put_str_frame(&b, false, WS_OP_TEXT, "unfinished");
    put_close(&b, 1001, "going");
    put_str_frame(&b, true, WS_OP_TEXT, "after");
    buf_put(&b, garbage, sizeof(garbage));
    ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
    ck_assert_uint_eq(rec.n, 1);
    ck_assert_int_eq(rec.ev[0].type, WS_EV_CLOSE);
    ck_assert_uint_eq(rec.ev[0].close_code, 1001);
    ck_assert(r.closed);
    assert_idle(&r);  /* the unfinished message was dropped */

    /* Later feeds are ignored too. */
    ck_assert_int_eq(feed_piece(&r, garbage, sizeof(garbage), &rec), 0);
    ck_assert_int_eq(feed_buf(&r, &b, &rec), 0);
    ck_assert_uint_eq(rec.n, 1);
    assert_idle(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

/* ---- callback stop ---------------------------------------------------- */

START_TEST(test_callback_stop)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder rec;

    put_str_frame(&b, true, WS_OP_TEXT, "one");
    put_str_frame(&b, true, WS_OP_TEXT, "two");

    ws_reader_init(&r);
    recorder_init(&rec, &r);
    rec.stop_with = 7;
    ck_assert_int_eq(feed_buf(&r, &b, &rec), -7);
    ck_assert_uint_eq(rec.n, 1);
    ws_reader_reset(&r);
    recorder_free(&rec);

    ws_reader_init(&r);
    recorder_init(&rec, &r);
    rec.stop_with = -3;
    ck_assert_int_eq(feed_buf(&r, &b, &rec), -3);
    ck_assert_uint_eq(rec.n, 1);
    ws_reader_reset(&r);
    recorder_free(&rec);
    buf_free(&b);
}
END_TEST

/* ---- arbitrary read boundaries ---------------------------------------- */

/* A conversation touching every path: small and 16-bit-length frames,
 * fragments with interleaved control frames, a character split across
 * fragments, an empty message, a close, and junk after the close. */
static void build_conversation(buf_t *b)
{
    uint8_t bin[300];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 7);

    put_str_frame(b, true, WS_OP_TEXT, "{\"type\":\"ping\"}");
    put_str_frame(b, false, WS_OP_TEXT, "frag");
    put_str_frame(b, true, WS_OP_PING, "are you there");
    put_str_frame(b, false, WS_OP_CONT, "mented \xe2\x82");
    put_str_frame(b, true, WS_OP_PONG, "");
    put_str_frame(b, true, WS_OP_CONT, "\xac!");
    put_frame(b, true, WS_OP_BINARY, bin, sizeof(bin));
    put_frame(b, true, WS_OP_TEXT, "", 0);
    put_raw_frame(b, 0x81, true, LEN_FORCE64, "long form", 9);
    put_close(b, 1000, "done");
    buf_put(b, "\xff\xff", 2);
}

static void check_conversation(const recorder *rec)
{
    ck_assert_uint_eq(rec->n, 8);
    assert_str_event(rec, 0, WS_EV_TEXT, "{\"type\":\"ping\"}");
    assert_str_event(rec, 1, WS_EV_PING, "are you there");
    assert_str_event(rec, 2, WS_EV_PONG, "");
    assert_str_event(rec, 3, WS_EV_TEXT, "fragmented \xe2\x82\xac!");
    ck_assert_int_eq(rec->ev[4].type, WS_EV_BINARY);
    ck_assert_uint_eq(rec->ev[4].len, 300);
    assert_str_event(rec, 5, WS_EV_TEXT, "");
    assert_str_event(rec, 6, WS_EV_TEXT, "long form");
    assert_str_event(rec, 7, WS_EV_CLOSE, "done");
    ck_assert_uint_eq(rec->ev[7].close_code, 1000);
}

START_TEST(test_split_byte_by_byte)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder whole, bytewise;

    build_conversation(&b);
    ck_assert_int_eq(feed_fresh(&b, &whole, &r), 0);
    check_conversation(&whole);
    assert_idle(&r);

    ws_reader_init(&r);
    recorder_init(&bytewise, &r);
    for (size_t i = 0; i < b.len; i++) {
        size_t before = bytewise.n;
        ck_assert_int_eq(feed_piece(&r, b.p + i, 1, &bytewise), 0);
        if (bytewise.n > before) {
            /* The byte that completed a frame leaves nothing pending, and a
             * finished message leaves no message buffer. */
            ck_assert_ptr_null(r.pending);
            ws_event_type t = bytewise.ev[bytewise.n - 1].type;
            if (t == WS_EV_TEXT || t == WS_EV_BINARY)
                assert_idle(&r);
        }
    }
    assert_same_events(&whole, &bytewise);
    ck_assert(r.closed);
    assert_idle(&r);
    recorder_free(&whole);
    recorder_free(&bytewise);
    buf_free(&b);
}
END_TEST

START_TEST(test_split_in_two_everywhere)
{
    buf_t b = { 0 };
    ws_reader r;
    recorder whole;

    build_conversation(&b);
    ck_assert_int_eq(feed_fresh(&b, &whole, &r), 0);

    for (size_t cut = 0; cut <= b.len; cut++) {
        recorder split;
        ws_reader_init(&r);
        recorder_init(&split, &r);
        ck_assert_int_eq(feed_piece(&r, b.p, cut, &split), 0);
        ck_assert_int_eq(feed_piece(&r, b.p + cut, b.len - cut, &split), 0);
        assert_same_events(&whole, &split);
        ck_assert(r.closed);
        assert_idle(&r);
        recorder_free(&split);
    }
    recorder_free(&whole);
    buf_free(&b);
}
END_TEST

START_TEST(test_split_in_three_everywhere)
{
    /* A shorter stream, every pair of cut points. */
    buf_t b = { 0 };
    ws_reader r;
    recorder whole;

    put_str_frame(&b, false, WS_OP_TEXT, "a\xc3");
    put_str_frame(&b, true, WS_OP_PING, "pi");
    put_str_frame(&b, true, WS_OP_CONT, "\xa9z");
    put_raw_frame(&b, 0x82, true, LEN_FORCE16, "bb", 2);
    ck_assert_int_eq(feed_fresh(&b, &whole, &r), 0);
    ck_assert_uint_eq(whole.n, 3);

    for (size_t c1 = 0; c1 <= b.len; c1++) {
        for (size_t c2 = c1; c2 <= b.len; c2++) {
            recorder split;
            ws_reader_init(&r);
            recorder_init(&split, &r);
            ck_assert_int_eq(feed_piece(&r, b.p, c1, &split), 0);
            ck_assert_int_eq(feed_piece(&r, b.p + c1, c2 - c1, &split), 0);
            ck_assert_int_eq(feed_piece(&r, b.p + c2, b.len - c2, &split), 0);
            assert_same_events(&whole, &split);
            assert_idle(&r);
            recorder_free(&split);
        }
    }
    recorder_free(&whole);
    buf_free(&b);
}
END_TEST

/* ---- encoding --------------------------------------------------------- */

START_TEST(test_header_encode)
{
    uint8_t h[10];

    ck_assert_uint_eq(ws_frame_header_encode(h, WS_OP_TEXT, 0), 2);
    ck_assert_mem_eq(h, "\x81\x00", 2);
    ck_assert_uint_eq(ws_frame_header_encode(h, WS_OP_PING, 125), 2);
    ck_assert_mem_eq(h, "\x89\x7d", 2);
    ck_assert_uint_eq(ws_frame_header_encode(h, WS_OP_BINARY, 126), 4);
    ck_assert_mem_eq(h, "\x82\x7e\x00\x7e", 4);
    ck_assert_uint_eq(ws_frame_header_encode(h, WS_OP_TEXT, 65535), 4);
    ck_assert_mem_eq(h, "\x81\x7e\xff\xff", 4);
    ck_assert_uint_eq(ws_frame_header_encode(h, WS_OP_TEXT, 65536), 10);
    ck_assert_mem_eq(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    ck_assert_uint_eq(ws_frame_header_encode(h, WS_OP_CLOSE, UINT64_C(0x0102030405060708)), 10);
    ck_assert_mem_eq(h, "\x88\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
}
END_TEST

START_TEST(test_close_payload)
{
    uint8_t out[WS_MAX_CONTROL_PAYLOAD];
    char reason[200];

    ck_assert_uint_eq(ws_close_payload(out, 4000, "replaced by a newer connection"), 2 + 30);
    ck_assert_mem_eq(out, "\x0f\xa0replaced by a newer connection", 32);
    ck_assert_uint_eq(ws_close_payload(out, 1001, ""), 2);
    ck_assert_mem_eq(out, "\x03\xe9", 2);
    ck_assert_uint_eq(ws_close_payload(out, 1000, NULL), 2);

    /* Exactly 123 bytes fit. */
    memset(reason, 'r', 123);
    reason[123] = '\0';
    ck_assert_uint_eq(ws_close_payload(out, 1000, reason), WS_MAX_CONTROL_PAYLOAD);
    reason[123] = 'r';
    reason[124] = '\0';
    ck_assert_uint_eq(ws_close_payload(out, 1000, reason), WS_MAX_CONTROL_PAYLOAD);

    /* A 2-byte character straddling the limit is dropped whole. */
    memset(reason, 'r', 122);
    memcpy(reason + 122, "\xc3\xa9tail", 7);
    ck_assert_uint_eq(ws_close_payload(out, 1000, reason), 2 + 122);
    /* A 4-byte character ending exactly at the limit is kept. */
    memset(reason, 'r', 119);
    memcpy(reason + 119, "\xf0\x9f\x98\x80" "x", 6);
    ck_assert_uint_eq(ws_close_payload(out, 1000, reason), WS_MAX_CONTROL_PAYLOAD);
    ck_assert_mem_eq(out + 2 + 119, "\xf0\x9f\x98\x80", 4);
    /* ... and one starting just before it is dropped. */
    memset(reason, 'r', 121);
    memcpy(reason + 121, "\xf0\x9f\x98\x80", 5);
    ck_assert_uint_eq(ws_close_payload(out, 1000, reason), 2 + 121);

    /* Whatever is cut, the result is a valid close frame payload. */
    for (size_t lead = 110; lead <= 123; lead++) {
        memset(reason, 'r', lead);
        strcpy(reason + lead, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac");
        size_t n = ws_close_payload(out, 1000, reason);
        buf_t b = { 0 };
        ws_reader r;
        recorder rec;
        put_frame(&b, true, WS_OP_CLOSE, out, n);
        ck_assert_int_eq(feed_fresh(&b, &rec, &r), 0);
        ck_assert_uint_eq(rec.n, 1);
        ck_assert_uint_eq(rec.ev[0].len, n - 2);
        ck_assert_uint_ge(n, WS_MAX_CONTROL_PAYLOAD - 2);
        recorder_free(&rec);
        buf_free(&b);
    }
}
END_TEST

START_TEST(test_close_code_valid)
{
    for (unsigned c = 0; c <= 65535; c++) {
        bool expect = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                      (c >= 3000 && c <= 4999);
        ck_assert_msg(ws_close_code_valid((uint16_t)c) == expect, "code %u", c);
    }
}
END_TEST

static Suite *ws_frame_suite(void)
{
    Suite *s = suite_create("ws_frame");
    TCase *basic = tcase_create("basic");
    TCase *rules = tcase_create("rules");
    TCase *split = tcase_create("split");
    TCase *encode = tcase_create("encode");

    tcase_add_test(basic, test_single_text_in_place);
    tcase_add_test(basic, test_single_binary_and_empty);
    tcase_add_test(basic, test_unmask_all_lengths_and_splits);
    tcase_add_test(basic, test_partial_frame_kept_then_freed);
    tcase_add_test(basic, test_reset_frees_partial_state);
    tcase_add_test(basic, test_callback_stop);
    tcase_add_test(basic, test_ping_payload_for_echo);

    tcase_add_test(rules, test_unmasked_rejected);
    tcase_add_test(rules, test_reserved_bits_rejected);
    tcase_add_test(rules, test_unknown_opcodes_rejected);
    tcase_add_test(rules, test_control_frame_rules);
    tcase_add_test(rules, test_length_top_bit_rejected);
    tcase_add_test(rules, test_length_forms);
    tcase_add_test(rules, test_cont_without_message);
    tcase_add_test(rules, test_new_message_inside_fragmented);
    tcase_add_test(rules, test_fragmented_with_interleaved_control);
    tcase_add_test(rules, test_message_state_frame_by_frame);
    tcase_add_test(rules, test_empty_fragmented_message);
    tcase_add_test(rules, test_max_message_single_frame);
    tcase_add_test(rules, test_too_big_detected_from_header);
    tcase_add_test(rules, test_max_message_across_fragments);
    tcase_add_test(rules, test_invalid_utf8_text);
    tcase_add_test(rules, test_utf8_across_fragments);
    tcase_add_test(rules, test_utf8_fails_fast);
    tcase_add_test(rules, test_close_with_code_and_reason);
    tcase_add_test(rules, test_close_without_code);
    tcase_add_test(rules, test_close_invalid);
    tcase_add_test(rules, test_bytes_after_close_ignored);

    tcase_add_test(split, test_split_byte_by_byte);
    tcase_add_test(split, test_split_in_two_everywhere);
    tcase_add_test(split, test_split_in_three_everywhere);

    tcase_add_test(encode, test_header_encode);
    tcase_add_test(encode, test_close_payload);
    tcase_add_test(encode, test_close_code_valid);

    suite_add_tcase(s, basic);
    suite_add_tcase(s, rules);
    suite_add_tcase(s, split);
    suite_add_tcase(s, encode);
    return s;
}

int main(void)
{
    return check_run_suite(ws_frame_suite());
}
