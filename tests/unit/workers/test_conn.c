/* test_conn.c — the transport (workers/conn.c) over a real socketpair and a
 * real libevent loop, with protocol callbacks that fail the test when called
 * unexpectedly: output buffering that stays linear however it is appended and
 * drained, every byte delivered in order, the per-connection and per-loop
 * output bounds, and on_close/on_free called once each. */
#include <check.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/check_main.h"
#include "workers/conn.h"

typedef struct {
    conn io; /* first, as the protocols do */
    int closes;
    const char *close_why;
    int frees;
    bool expect_data;
} fake;

static fake *the_fake; /* the one connection under test; freed memory must not be touched */
static int freed;

static void on_data(conn *c, uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
    ck_abort_msg("on_data called: the peer never writes");
}

static void on_close(conn *c, const char *why)
{
    fake *f = (fake *)c;
    f->closes++;
    f->close_why = why;
}

static void on_free(conn *c)
{
    ck_assert_int_eq(((fake *)c)->closes, 1);
    freed++;
    free(c);
    the_fake = NULL;
}

static const conn_ops fake_ops = {.on_data = on_data, .on_close = on_close, .on_free = on_free};

typedef struct {
    conn_loop loop;
    int peer;
    uint8_t scratch[4096];
} rig;

static void rig_open(rig *r, size_t out_limit)
{
    memset(r, 0, sizeof *r);
    r->loop.base = event_base_new();
    ck_assert_ptr_nonnull(r->loop.base);
    r->loop.scratch = r->scratch;
    r->loop.scratch_size = sizeof r->scratch;
    r->loop.out_limit = out_limit;
    conn_loop_clock(&r->loop);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int small = 4096;
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    r->peer = sv[1];
    the_fake = calloc(1, sizeof *the_fake);
    ck_assert_ptr_nonnull(the_fake);
    freed = 0;
    ck_assert_int_eq(conn_init(&the_fake->io, &r->loop, sv[0], NULL, &fake_ops), 0);
}

static void rig_close(rig *r)
{
    if (the_fake != NULL)
        conn_abort(&the_fake->io, "test over");
    conn_reap(&r->loop);
    ck_assert_int_eq(freed, 1);
    close(r->peer);
    event_base_free(r->loop.base);
}

/* Read what the peer has; check it continues the pattern at *pos. */
static size_t drain_peer(rig *r, size_t max, uint64_t *pos)
{
    uint8_t buf[65536];
    size_t got = 0;
    while (got < max) {
        size_t want = max - got < sizeof buf ? max - got : sizeof buf;
        ssize_t n = recv(r->peer, buf, want, 0);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++, (*pos)++)
            ck_assert_uint_eq(buf[i], (uint8_t)(*pos * 7 + (*pos >> 9)));
        got += (size_t)n;
    }
    return got;
}

START_TEST(test_output_linear_and_in_order)
{
    rig r;
    rig_open(&r, 0);
    uint8_t chunk[37];
    uint64_t written = 0;
    uint64_t read_pos = 0;
    /* Half a MiB pending first, then 2 MiB more in small appends while the
     * peer drains as much as is appended: about 512 KiB stay pending all
     * along, which a buffer moved on every append would copy each time. */
    while (written < 2u * 1024 * 1024 + 512u * 1024) {
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = (uint8_t)((written + i) * 7 + ((written + i) >> 9));
        ck_assert_int_eq(conn_write(&the_fake->io, chunk, sizeof chunk), 0);
        written += sizeof chunk;
        if (written > 512u * 1024 && written % (37 * 512) == 0) {
            for (size_t got = 0; got < 37 * 512;) {
                got += drain_peer(&r, 37 * 512 - got, &read_pos);
                event_base_loop(r.loop.base, EVLOOP_NONBLOCK);
            }
        }
        ck_assert_uint_lt(the_fake->io.out_len, CONN_MAX_OUTPUT);
    }
    ck_assert_uint_gt(the_fake->io.out_len, 256u * 1024);
    while (read_pos < written) {
        drain_peer(&r, 1u << 20, &read_pos);
        event_base_loop(r.loop.base, EVLOOP_NONBLOCK);
    }
    ck_assert_uint_eq(read_pos, written);
    ck_assert_uint_eq(r.loop.out_total, 0);
    /* Every byte buffered once, plus O(1) copies per byte when growing: far
     * from the pending-bytes-per-append of a buffer moved on every append. */
    ck_assert_uint_le(r.loop.out_copied, 3 * written);
    ck_assert_int_eq(the_fake->closes, 0);
    rig_close(&r);
}
END_TEST

START_TEST(test_slow_reader_dropped)
{
    rig r;
    rig_open(&r, 0);
    static uint8_t block[64 * 1024];
    int rc = 0;
    for (int i = 0; i < 64 && rc == 0; i++)
        rc = conn_write(&the_fake->io, block, sizeof block);
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(the_fake->closes, 1);
    ck_assert_ptr_eq(the_fake->close_why, conn_error_slow_reader);
    ck_assert_int_eq(conn_write(&the_fake->io, block, 1), -1); /* dead: refused */
    conn_reap(&r.loop);
    ck_assert_int_eq(freed, 1);
    ck_assert_uint_eq(r.loop.out_total, 0);
    close(r.peer);
    event_base_free(r.loop.base);
}
END_TEST

START_TEST(test_loop_output_limit)
{
    rig r;
    rig_open(&r, 100000);
    static uint8_t block[16 * 1024];
    int rc = 0;
    for (int i = 0; i < 64 && rc == 0; i++)
        rc = conn_write(&the_fake->io, block, sizeof block);
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_eq(the_fake->close_why, conn_error_loop_output);
    conn_reap(&r.loop);
    ck_assert_int_eq(freed, 1);
    ck_assert_uint_eq(r.loop.out_total, 0);
    close(r.peer);
    event_base_free(r.loop.base);
}
END_TEST

START_TEST(test_close_after_output_delivers_then_half_closes)
{
    rig r;
    rig_open(&r, 0);
    static uint8_t block[200 * 1024];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (uint8_t)(i * 7 + (i >> 9));
    ck_assert_int_eq(conn_write(&the_fake->io, block, sizeof block), 0);
    conn_close_after_output(&the_fake->io);
    ck_assert_int_eq(the_fake->closes, 1);
    ck_assert_ptr_null(the_fake->close_why);
    ck_assert_int_eq(the_fake->io.state, CONN_CLOSING);
    uint64_t pos = 0;
    for (int spins = 0; pos < sizeof block && spins < 100000; spins++) {
        drain_peer(&r, 1u << 20, &pos);
        event_base_loop(r.loop.base, EVLOOP_NONBLOCK);
    }
    ck_assert_uint_eq(pos, sizeof block);
    uint8_t one;
    ssize_t n;
    for (int spins = 0; (n = recv(r.peer, &one, 1, 0)) < 0 && spins < 100000; spins++)
        event_base_loop(r.loop.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(n, 0); /* our FIN after the last byte */
    rig_close(&r);
}
END_TEST

static Suite *conn_suite(void)
{
    Suite *s = suite_create("conn");
    TCase *tc = tcase_create("transport");
    tcase_add_test(tc, test_output_linear_and_in_order);
    tcase_add_test(tc, test_slow_reader_dropped);
    tcase_add_test(tc, test_loop_output_limit);
    tcase_add_test(tc, test_close_after_output_delivers_then_half_closes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(conn_suite());
}
