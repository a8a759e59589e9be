/* test_queue.c — queue datagrams: encode/decode round trips, truncated and
 * corrupt input, and a real socket pair carrying messages. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/queue.h"
#include "tests/check_main.h"

START_TEST(test_round_trip)
{
    const char *json = "{\"type\":\"notification\"}";
    queue_msg m = {.type = QMSG_NOTIFY, .user = 42, .generation = 7, .accepted_ns = 123456789,
                   .id = (INT64_C(1) << 53) - 1, .seq = UINT64_MAX - 1,
                   .payload = (const uint8_t *)json, .payload_len = (uint32_t)strlen(json)};
    uint8_t buf[256];
    size_t n = queue_msg_encode(buf, sizeof buf, &m);
    ck_assert_uint_eq(n, QUEUE_HEADER_LEN + strlen(json));
    queue_msg d;
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
    ck_assert_int_eq(d.type, QMSG_NOTIFY);
    ck_assert_int_eq(d.user, 42);
    ck_assert_uint_eq(d.generation, 7);
    ck_assert_uint_eq(d.accepted_ns, 123456789);
    ck_assert_int_eq(d.id, (INT64_C(1) << 53) - 1);
    ck_assert_uint_eq(d.seq, UINT64_MAX - 1);
    ck_assert_uint_eq(d.payload_len, strlen(json));
    ck_assert_mem_eq(d.payload, json, strlen(json));

    queue_msg e = {.type = QMSG_EVICT, .user = INT64_MAX, .generation = UINT64_MAX};
    n = queue_msg_encode(buf, sizeof buf, &e);
    ck_assert_uint_eq(n, QUEUE_HEADER_LEN);
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
    ck_assert_int_eq(d.type, QMSG_EVICT);
    ck_assert_int_eq(d.user, INT64_MAX);
    ck_assert_uint_eq(d.generation, UINT64_MAX);
    ck_assert_ptr_null(d.payload);
}
END_TEST

START_TEST(test_encode_rejects)
{
    uint8_t buf[64];
    const uint8_t payload[40] = {0};
    queue_msg m = {.type = QMSG_NOTIFY, .user = 1, .generation = 1, .payload = payload,
                   .payload_len = sizeof payload};
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0); /* does not fit */
    m.payload_len = 4;
    m.user = 0;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0); /* bad user */
    m.user = 1;
    m.type = 9;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0); /* bad type */
    m.type = QMSG_EVICT;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0); /* evict with payload */
    m.type = QMSG_BROADCAST;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0); /* broadcast to a user */
    m.user = 0;
    ck_assert_uint_gt(queue_msg_encode(buf, sizeof buf, &m), 0);
    m.type = QMSG_MARKS;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0); /* not whole marks */
}
END_TEST

START_TEST(test_marks_round_trip)
{
    queue_mark in[3] = {{.user = 1, .id = 2, .state = 2, .at_ms = 0},
                        {.user = INT64_MAX, .id = (INT64_C(1) << 53) - 1, .state = 3,
                         .at_ms = UINT64_C(1767225600123)},
                        {.user = 77, .id = 1, .state = 3, .at_ms = 5}};
    uint8_t packed[3 * QUEUE_MARK_LEN];
    for (int i = 0; i < 3; i++)
        queue_mark_encode(packed + i * QUEUE_MARK_LEN, &in[i]);
    queue_msg m = {.type = QMSG_MARKS, .payload = packed, .payload_len = sizeof packed};
    uint8_t buf[QUEUE_HEADER_LEN + sizeof packed];
    size_t n = queue_msg_encode(buf, sizeof buf, &m);
    ck_assert_uint_eq(n, sizeof buf);
    queue_msg d;
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
    ck_assert_int_eq(d.type, QMSG_MARKS);
    ck_assert_uint_eq(d.payload_len / QUEUE_MARK_LEN, 3);
    for (int i = 0; i < 3; i++) {
        queue_mark out;
        queue_mark_decode(d.payload + i * QUEUE_MARK_LEN, &out);
        ck_assert_int_eq(out.user, in[i].user);
        ck_assert_int_eq(out.id, in[i].id);
        ck_assert_uint_eq(out.state, in[i].state);
        ck_assert_uint_eq(out.at_ms, in[i].at_ms);
    }
}
END_TEST

START_TEST(test_truncated_and_corrupt)
{
    const char *json = "{}";
    queue_msg m = {.type = QMSG_NOTIFY, .user = 5, .generation = 9,
                   .payload = (const uint8_t *)json, .payload_len = 2};
    uint8_t buf[64];
    size_t n = queue_msg_encode(buf, sizeof buf, &m);
    queue_msg d;
    for (size_t len = 0; len < n; len++)
        ck_assert_int_eq(queue_msg_decode(buf, len, &d), -1);
    uint8_t longer[65];
    memcpy(longer, buf, n);
    longer[n] = 'x';
    ck_assert_int_eq(queue_msg_decode(longer, n + 1, &d), -1); /* length mismatch */
    /* Any single corrupted header byte that matters is refused. */
    size_t fields[] = {0, 1, 2, 3, 4, 48}; /* magic, version, type, length, reserved */
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        uint8_t copy[64];
        memcpy(copy, buf, n);
        copy[fields[i]] ^= 0x5a;
        ck_assert_msg(queue_msg_decode(copy, n, &d) == -1, "byte %zu", fields[i]);
    }
    /* user 0 / negative user */
    uint8_t copy[64];
    memcpy(copy, buf, n);
    memset(copy + 8, 0, 8);
    ck_assert_int_eq(queue_msg_decode(copy, n, &d), -1);
    memset(copy + 8, 0xff, 8);
    ck_assert_int_eq(queue_msg_decode(copy, n, &d), -1);
}
END_TEST

START_TEST(test_socket_pair)
{
    queue_pair q;
    ck_assert_int_eq(queue_pair_create(&q), 0);
    char payload[1000];
    memset(payload, 'a', sizeof payload);
    for (int i = 1; i <= 50; i++) {
        queue_msg m = {.type = QMSG_NOTIFY, .user = i, .generation = (uint64_t)i * 10,
                       .payload = (const uint8_t *)payload, .payload_len = (uint32_t)i * 10};
        ck_assert_int_eq(queue_send(q.sender_end, &m), 0);
    }
    uint8_t *buf = malloc(QUEUE_MAX_DATAGRAM);
    ck_assert_ptr_nonnull(buf);
    for (int i = 1; i <= 50; i++) {
        ssize_t n = recv(q.worker_end, buf, QUEUE_MAX_DATAGRAM, MSG_DONTWAIT);
        ck_assert_int_eq(n, (ssize_t)(QUEUE_HEADER_LEN + (size_t)i * 10));
        queue_msg d;
        ck_assert_int_eq(queue_msg_decode(buf, (size_t)n, &d), 0);
        ck_assert_int_eq(d.user, i); /* order kept */
        ck_assert_uint_eq(d.payload_len, (uint32_t)i * 10);
    }
    ck_assert_int_eq(recv(q.worker_end, buf, QUEUE_MAX_DATAGRAM, MSG_DONTWAIT), -1);
    ck_assert_int_eq(errno, EAGAIN);
    /* A full queue answers EAGAIN instead of blocking. */
    queue_msg big = {.type = QMSG_NOTIFY, .user = 1, .generation = 1,
                     .payload = (const uint8_t *)payload, .payload_len = sizeof payload};
    int sent = 0;
    while (queue_send(q.sender_end, &big) == 0 && sent < 1000000)
        sent++;
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_gt(sent, 10);
    free(buf);
    close(q.worker_end);
    close(q.sender_end);
}
END_TEST

START_TEST(test_routed_round_trip)
{
    const char *json = "{\"type\":\"notification\",\"id\":5}";
    queue_msg m = {.type = QMSG_ROUTED, .user = 42, .generation = 9,
                   .accepted_ns = UINT64_C(1700000000000000123), .id = 5,
                   .seq = (UINT64_C(1) << 53) - 1,
                   .payload = (const uint8_t *)json, .payload_len = (uint32_t)strlen(json)};
    uint8_t buf[256];
    size_t n = queue_msg_encode(buf, sizeof buf, &m);
    ck_assert_uint_eq(n, QUEUE_HEADER_LEN + strlen(json));
    ck_assert_uint_eq(buf[3], QMSG_ROUTED);
    queue_msg d;
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
    ck_assert_int_eq(d.type, QMSG_ROUTED);
    ck_assert_int_eq(d.user, 42);
    ck_assert_uint_eq(d.generation, 9);
    ck_assert_uint_eq(d.accepted_ns, UINT64_C(1700000000000000123));
    ck_assert_int_eq(d.id, 5);
    ck_assert_uint_eq(d.seq, (UINT64_C(1) << 53) - 1);
    ck_assert_uint_eq(d.payload_len, strlen(json));
    ck_assert_ptr_eq(d.payload, buf + QUEUE_HEADER_LEN);
    ck_assert_mem_eq(d.payload, json, strlen(json));
    /* seq 0 (not stored) and an empty payload are fine; user 0 is not. */
    m.seq = 0;
    m.payload_len = 0;
    m.payload = NULL;
    n = queue_msg_encode(buf, sizeof buf, &m);
    ck_assert_uint_eq(n, QUEUE_HEADER_LEN);
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
    ck_assert_uint_eq(d.seq, 0);
    ck_assert_ptr_null(d.payload);
    m.user = 0;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0);
    m.user = 1;
    n = queue_msg_encode(buf, sizeof buf, &m);
    memset(buf + 8, 0, 8); /* user 0 on the wire */
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), -1);
}
END_TEST

START_TEST(test_signal)
{
    uint8_t buf[128];
    queue_msg d;
    const uint64_t signals[] = {QSIGNAL_RELEASED, QSIGNAL_BARRIER};
    for (size_t i = 0; i < 2; i++) {
        queue_msg m = {.type = QMSG_SIGNAL, .user = INT64_MAX - (int64_t)i,
                       .generation = UINT64_MAX - i, .seq = signals[i]};
        size_t n = queue_msg_encode(buf, sizeof buf, &m);
        ck_assert_uint_eq(n, QUEUE_HEADER_LEN);
        ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
        ck_assert_int_eq(d.type, QMSG_SIGNAL);
        ck_assert_int_eq(d.user, INT64_MAX - (int64_t)i);
        ck_assert_uint_eq(d.generation, UINT64_MAX - i);
        ck_assert_uint_eq(d.seq, signals[i]);
        ck_assert_uint_eq(d.payload_len, 0);
        ck_assert_ptr_null(d.payload);
    }

    /* Refused by the encoder: a payload, another seq, user 0 or negative. */
    const uint8_t payload[4] = {'{', '}', ' ', ' '};
    queue_msg m = {.type = QMSG_SIGNAL, .user = 7, .generation = 3, .seq = QSIGNAL_BARRIER,
                   .payload = payload, .payload_len = 2};
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0);
    m.payload = NULL;
    m.payload_len = 0;
    const uint64_t bad_seqs[] = {0, 3, 4, 255, UINT64_MAX};
    for (size_t i = 0; i < sizeof bad_seqs / sizeof bad_seqs[0]; i++) {
        m.seq = bad_seqs[i];
        ck_assert_msg(queue_msg_encode(buf, sizeof buf, &m) == 0, "seq %zu encoded", i);
    }
    m.seq = QSIGNAL_RELEASED;
    m.user = 0;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0);
    m.user = -1;
    ck_assert_uint_eq(queue_msg_encode(buf, sizeof buf, &m), 0);

    /* Refused by the decoder: the same, on the wire. */
    m.user = 7;
    size_t n = queue_msg_encode(buf, sizeof buf, &m);
    ck_assert_uint_eq(n, QUEUE_HEADER_LEN);
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
    uint8_t copy[128];
    for (size_t i = 0; i < sizeof bad_seqs / sizeof bad_seqs[0]; i++) {
        memcpy(copy, buf, n);
        for (int b = 0; b < 8; b++)
            copy[40 + b] = (uint8_t)(bad_seqs[i] >> (8 * b));
        ck_assert_msg(queue_msg_decode(copy, n, &d) == -1, "seq %zu decoded", i);
    }
    memcpy(copy, buf, n);
    memset(copy + 8, 0, 8); /* user 0 */
    ck_assert_int_eq(queue_msg_decode(copy, n, &d), -1);
    memset(copy + 8, 0xff, 8); /* user -1 */
    ck_assert_int_eq(queue_msg_decode(copy, n, &d), -1);
    /* A ROUTED datagram with a payload, retyped as a SIGNAL (its seq valid). */
    queue_msg r = {.type = QMSG_ROUTED, .user = 7, .generation = 3, .seq = QSIGNAL_RELEASED,
                   .payload = payload, .payload_len = sizeof payload};
    n = queue_msg_encode(buf, sizeof buf, &r);
    ck_assert_uint_eq(n, QUEUE_HEADER_LEN + sizeof payload);
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
    buf[3] = QMSG_SIGNAL;
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), -1);
    buf[3] = QMSG_ROUTED;
    ck_assert_int_eq(queue_msg_decode(buf, n, &d), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = tcase_create("datagrams");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_encode_rejects);
    tcase_add_test(tc, test_marks_round_trip);
    tcase_add_test(tc, test_truncated_and_corrupt);
    tcase_add_test(tc, test_socket_pair);
    tcase_add_test(tc, test_routed_round_trip);
    tcase_add_test(tc, test_signal);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
