/* test_marks.c — the worker's SENT/ACKED batch (workers/marks.c): packing,
 * the full batch, one QMSG_MARKS datagram per flush that the master's decoder
 * reads back mark for mark, and a full master queue (marks dropped and
 * counted in marks_lost, never blocking). */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/queue.h"
#include "shm/region.h"
#include "shm/store.h"
#include "src/common/log.h"
#include "tests/check_main.h"
#include "workers/marks.h"
#include "workers/worker-t.h"

/* A worker with only what marks.c touches: the batch, the master's queue, the
 * slot's counters. No event: marks_put then never schedules a flush. */
typedef struct {
    worker w;
    shm_region r;
    int master_end;   /* what the master reads */
} fake;

static void fake_init(fake *f)
{
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(region_create(&f->r, 1, 16), 0);
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, fds), 0);
    f->master_end = fds[0];
    f->w.h.master_fd = fds[1];
    f->w.stats = &f->r.hdr->slot[0];
    ck_assert_int_eq(marks_init(&f->w.marks), 0);
}

static void fake_free(fake *f)
{
    marks_free(&f->w.marks);
    close(f->master_end);
    close(f->w.h.master_fd);
    region_detach(&f->r);
}

/* The next datagram on the master's end, decoded; its mark count. */
static size_t read_marks(fake *f, uint8_t *buf, size_t size, queue_msg *m)
{
    ssize_t n = recv(f->master_end, buf, size, MSG_DONTWAIT);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(queue_msg_decode(buf, (size_t)n, m), 0);
    ck_assert_int_eq(m->type, QMSG_MARKS);
    ck_assert_int_eq(m->user, 0);
    ck_assert_uint_eq(m->payload_len % QUEUE_MARK_LEN, 0);
    return m->payload_len / QUEUE_MARK_LEN;
}

static bool queue_empty(fake *f)
{
    uint8_t b;
    return recv(f->master_end, &b, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

START_TEST(append_and_message)
{
    marks_batch b;
    ck_assert_int_eq(marks_init(&b), 0);
    for (uint32_t i = 0; i + 1 < MARKS_BATCH; i++) {
        queue_mark m = {.user = 7, .id = (int64_t)i + 1, .state = STORE_SENT, .at_ms = i};
        ck_assert(!marks_append(&b, &m));
    }
    queue_mark last = {.user = INT64_MAX, .id = STORE_MAX_ID, .state = STORE_ACKED,
                       .at_ms = UINT64_MAX};
    ck_assert(marks_append(&b, &last)); /* the one that fills it */
    queue_msg msg;
    marks_message(&b, &msg);
    ck_assert_int_eq(msg.type, QMSG_MARKS);
    ck_assert_uint_eq(msg.payload_len, MARKS_BATCH * QUEUE_MARK_LEN);
    uint8_t *dgram = malloc(QUEUE_MAX_DATAGRAM);
    ck_assert_ptr_nonnull(dgram);
    size_t n = queue_msg_encode(dgram, QUEUE_MAX_DATAGRAM, &msg);
    ck_assert_uint_gt(n, 0);
    queue_msg back;
    ck_assert_int_eq(queue_msg_decode(dgram, n, &back), 0);
    queue_mark m;
    queue_mark_decode(back.payload + 5 * QUEUE_MARK_LEN, &m);
    ck_assert_int_eq(m.user, 7);
    ck_assert_int_eq(m.id, 6);
    ck_assert_int_eq(m.state, STORE_SENT);
    ck_assert_uint_eq(m.at_ms, 5);
    queue_mark_decode(back.payload + (MARKS_BATCH - 1) * QUEUE_MARK_LEN, &m);
    ck_assert_int_eq(m.user, INT64_MAX);
    ck_assert_int_eq(m.id, STORE_MAX_ID);
    ck_assert_int_eq(m.state, STORE_ACKED);
    ck_assert_uint_eq(m.at_ms, UINT64_MAX);
    free(dgram);
    marks_free(&b);
    ck_assert_ptr_null(b.buf);
}
END_TEST

START_TEST(put_and_flush)
{
    fake f;
    fake_init(&f);
    uint8_t *buf = malloc(QUEUE_MAX_DATAGRAM);
    ck_assert_ptr_nonnull(buf);
    marks_flush(&f.w); /* nothing to send: no datagram */
    ck_assert(queue_empty(&f));
    marks_put(&f.w, 1, 10, STORE_SENT, 0);
    marks_put(&f.w, 1, 10, STORE_ACKED, 1234);
    marks_put(&f.w, 2, 11, STORE_SENT, 0);
    ck_assert(queue_empty(&f)); /* batched until the flush */
    marks_flush(&f.w);
    queue_msg m;
    ck_assert_uint_eq(read_marks(&f, buf, QUEUE_MAX_DATAGRAM, &m), 3);
    queue_mark k;
    queue_mark_decode(m.payload + QUEUE_MARK_LEN, &k);
    ck_assert_int_eq(k.user, 1);
    ck_assert_int_eq(k.id, 10);
    ck_assert_int_eq(k.state, STORE_ACKED);
    ck_assert_uint_eq(k.at_ms, 1234);
    ck_assert(queue_empty(&f));
    /* A full batch goes out at once, the next mark starts a new one. */
    for (uint32_t i = 0; i <= MARKS_BATCH; i++)
        marks_put(&f.w, 3, (int64_t)i + 1, STORE_SENT, 0);
    ck_assert_uint_eq(read_marks(&f, buf, QUEUE_MAX_DATAGRAM, &m), MARKS_BATCH);
    ck_assert(queue_empty(&f));
    ck_assert_uint_eq(f.w.marks.count, 1);
    marks_flush(&f.w);
    ck_assert_uint_eq(read_marks(&f, buf, QUEUE_MAX_DATAGRAM, &m), 1);
    ck_assert_uint_eq(atomic_load(&f.w.stats->marks_lost), 0);
    free(buf);
    fake_free(&f);
}
END_TEST

START_TEST(full_queue_loses_and_counts)
{
    fake f;
    fake_init(&f);
    log_setup("test", LOG_ERROR); /* the warning is expected */
    /* Fill the master's queue with batches until it refuses one. */
    uint64_t sent = 0;
    for (int round = 0; round < 100000; round++) {
        marks_put(&f.w, 5, round + 1, STORE_SENT, 0);
        marks_flush(&f.w);
        if (atomic_load(&f.w.stats->marks_lost) > 0)
            break;
        sent++;
    }
    ck_assert_uint_eq(atomic_load(&f.w.stats->marks_lost), 1);
    ck_assert_uint_eq(f.w.marks.count, 0); /* dropped, never retried */
    for (int i = 0; i < 10; i++)
        marks_put(&f.w, 5, 1, STORE_ACKED, 1);
    marks_flush(&f.w);
    ck_assert_uint_eq(atomic_load(&f.w.stats->marks_lost), 11);
    /* Once the master reads, marks go through again. */
    uint8_t buf[256];
    uint64_t got = 0;
    while (recv(f.master_end, buf, sizeof buf, MSG_DONTWAIT) > 0)
        got++;
    ck_assert_uint_eq(got, sent);
    marks_put(&f.w, 5, 2, STORE_ACKED, 2);
    marks_flush(&f.w);
    queue_msg m;
    ck_assert_uint_eq(read_marks(&f, buf, sizeof buf, &m), 1);
    ck_assert_uint_eq(atomic_load(&f.w.stats->marks_lost), 11);
    fake_free(&f);
}
END_TEST

START_TEST(no_history_no_marks)
{
    fake f;
    fake_init(&f);
    marks_free(&f.w.marks); /* what a worker without history has */
    marks_put(&f.w, 1, 1, STORE_SENT, 0);
    marks_flush(&f.w);
    ck_assert(queue_empty(&f));
    ck_assert_uint_eq(atomic_load(&f.w.stats->marks_lost), 0);
    fake_free(&f);
}
END_TEST

static Suite *marks_suite(void)
{
    Suite *s = suite_create("marks");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, append_and_message);
    tcase_add_test(tc, put_and_flush);
    tcase_add_test(tc, full_queue_loses_and_counts);
    tcase_add_test(tc, no_history_no_marks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(marks_suite());
}
