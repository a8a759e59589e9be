/* test_handover.c — the pure parts of the history hand-over (workers/handover.c):
 * the live-vs-replay decision at and around S, and the FIFO of items held
 * during a replay (order, copies, the byte bound, compaction while it drains). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tests/check_main.h"
#include "workers/handover.h"

static handover_item live(uint64_t seq)
{
    return (handover_item){.kind = HANDOVER_LIVE, .seq = seq, .id = (int64_t)seq + 1000};
}

START_TEST(decide_live_around_s)
{
    const uint64_t s = 500;
    handover_item it = live(499);
    ck_assert_int_eq(handover_decide(false, s, &it), HANDOVER_DROP);
    ck_assert_int_eq(handover_decide(true, s, &it), HANDOVER_DROP);
    it = live(500); /* S itself was read from the store */
    ck_assert_int_eq(handover_decide(false, s, &it), HANDOVER_DROP);
    ck_assert_int_eq(handover_decide(true, s, &it), HANDOVER_DROP);
    it = live(501); /* accepted after the claim: live, after the replay */
    ck_assert_int_eq(handover_decide(false, s, &it), HANDOVER_HOLD);
    ck_assert_int_eq(handover_decide(true, s, &it), HANDOVER_SEND);
    it = live(1);
    ck_assert_int_eq(handover_decide(true, s, &it), HANDOVER_DROP);
}
END_TEST

START_TEST(decide_unstored_broadcast_reply)
{
    /* seq 0: not stored (no history, a retry): never in a replay. */
    handover_item it = live(0);
    ck_assert_int_eq(handover_decide(false, 500, &it), HANDOVER_HOLD);
    ck_assert_int_eq(handover_decide(true, 500, &it), HANDOVER_SEND);
    it = (handover_item){.kind = HANDOVER_BROADCAST, .seq = 3};
    ck_assert_int_eq(handover_decide(false, 500, &it), HANDOVER_HOLD);
    ck_assert_int_eq(handover_decide(true, 500, &it), HANDOVER_SEND);
    it = (handover_item){.kind = HANDOVER_REPLY};
    ck_assert_int_eq(handover_decide(false, 500, &it), HANDOVER_HOLD);
    ck_assert_int_eq(handover_decide(true, 500, &it), HANDOVER_SEND);
}
END_TEST

START_TEST(decide_s_zero_and_64_bit)
{
    /* Nothing accepted yet (S = 0): every stored one is live. */
    handover_item it = live(1);
    ck_assert_int_eq(handover_decide(false, 0, &it), HANDOVER_HOLD);
    ck_assert_int_eq(handover_decide(true, 0, &it), HANDOVER_SEND);
    /* S is kept whole (64 bits): no wrap-around past 2^32 or 2^63. */
    const uint64_t big = (UINT64_C(1) << 32) + 5;
    it = live(big - (UINT64_C(1) << 32)); /* same low 32 bits as a seq far below S */
    ck_assert_int_eq(handover_decide(true, big, &it), HANDOVER_DROP);
    it = live(big + (UINT64_C(1) << 31));
    ck_assert_int_eq(handover_decide(true, big, &it), HANDOVER_SEND);
    it = live(UINT64_MAX);
    ck_assert_int_eq(handover_decide(true, UINT64_MAX - 1, &it), HANDOVER_SEND);
    ck_assert_int_eq(handover_decide(true, UINT64_MAX, &it), HANDOVER_DROP);
}
END_TEST

START_TEST(held_fifo_order_and_copies)
{
    handover_held q = {0};
    handover_item out;
    ck_assert(!handover_held_peek(&q, &out));
    ck_assert_uint_eq(handover_held_bytes(&q), 0);
    char text[32];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(text, sizeof text, "{\"n\":%d}", i);
        handover_item it = {.kind = (uint8_t)(i % 3 + 1), .seq = (uint64_t)i * 7,
                            .id = -i, .accepted_ns = (uint64_t)i << 40,
                            .data = (const uint8_t *)text, .len = (uint32_t)n};
        ck_assert_int_eq(handover_held_push(&q, &it, 1u << 20), 0);
        memset(text, 'x', sizeof text); /* the FIFO holds a copy */
    }
    for (int i = 0; i < 100; i++) {
        ck_assert(handover_held_peek(&q, &out));
        int n = snprintf(text, sizeof text, "{\"n\":%d}", i);
        ck_assert_int_eq(out.kind, i % 3 + 1);
        ck_assert_uint_eq(out.seq, (uint64_t)i * 7);
        ck_assert_int_eq(out.id, -i);
        ck_assert_uint_eq(out.accepted_ns, (uint64_t)i << 40);
        ck_assert_uint_eq(out.len, (uint32_t)n);
        ck_assert_mem_eq(out.data, text, (size_t)n);
        handover_held_pop(&q);
    }
    ck_assert(!handover_held_peek(&q, &out));
    ck_assert_uint_eq(handover_held_bytes(&q), 0);
    handover_held_pop(&q); /* popping an empty FIFO is a no-op */
    handover_held_free(&q);
    ck_assert_ptr_null(q.buf);
}
END_TEST

START_TEST(held_fifo_bound)
{
    handover_held q = {0};
    uint8_t payload[1000];
    memset(payload, 'p', sizeof payload);
    handover_item it = {.kind = HANDOVER_LIVE, .data = payload, .len = sizeof payload};
    size_t max = 10000;
    int pushed = 0;
    while (handover_held_push(&q, &it, max) == 0)
        pushed++;
    ck_assert_int_gt(pushed, 5);
    ck_assert_uint_le(handover_held_bytes(&q), max);
    ck_assert_int_eq(handover_held_push(&q, &it, max), -1); /* refused, nothing changed */
    size_t held = handover_held_bytes(&q);
    handover_held_pop(&q);
    ck_assert_uint_lt(handover_held_bytes(&q), held);
    ck_assert_int_eq(handover_held_push(&q, &it, max), 0); /* room again once one is taken */
    /* An empty item (a zero-length payload) is still an item. */
    handover_item empty = {.kind = HANDOVER_REPLY};
    handover_held_free(&q);
    ck_assert_int_eq(handover_held_push(&q, &empty, max), 0);
    handover_item out;
    ck_assert(handover_held_peek(&q, &out));
    ck_assert_uint_eq(out.len, 0);
    handover_held_pop(&q);
    ck_assert(!handover_held_peek(&q, &out));
    handover_held_free(&q);
}
END_TEST

/* Fed while it drains (live datagrams during the release), the buffer
 * reuses what was taken instead of growing for ever. */
START_TEST(held_fifo_compacts)
{
    handover_held q = {0};
    uint8_t payload[200];
    memset(payload, 'q', sizeof payload);
    uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 10000; round++) {
        handover_item it = {.kind = HANDOVER_LIVE, .seq = ++next_in, .data = payload,
                            .len = sizeof payload};
        ck_assert_int_eq(handover_held_push(&q, &it, 1u << 20), 0);
        if (round % 2 == 0)
            ck_assert_int_eq(handover_held_push(&q, &(handover_item){.kind = HANDOVER_LIVE,
                                                                      .seq = ++next_in,
                                                                      .data = payload,
                                                                      .len = sizeof payload},
                                                1u << 20),
                             0);
        for (int k = 0; k < 2; k++) {
            handover_item out;
            if (next_out < next_in - 8 && handover_held_peek(&q, &out)) {
                ck_assert_uint_eq(out.seq, ++next_out);
                handover_held_pop(&q);
            }
        }
    }
    ck_assert_uint_lt(q.cap, 64u * 1024u);
    handover_item out;
    while (handover_held_peek(&q, &out)) {
        ck_assert_uint_eq(out.seq, ++next_out);
        handover_held_pop(&q);
    }
    ck_assert_uint_eq(next_out, next_in);
    handover_held_free(&q);
}
END_TEST

static Suite *handover_suite(void)
{
    Suite *s = suite_create("handover");
    TCase *decide = tcase_create("decide");
    tcase_add_test(decide, decide_live_around_s);
    tcase_add_test(decide, decide_unstored_broadcast_reply);
    tcase_add_test(decide, decide_s_zero_and_64_bit);
    suite_add_tcase(s, decide);
    TCase *held = tcase_create("held");
    tcase_add_test(held, held_fifo_order_and_copies);
    tcase_add_test(held, held_fifo_bound);
    tcase_add_test(held, held_fifo_compacts);
    suite_add_tcase(s, held);
    return s;
}

int main(void)
{
    return check_run_suite(handover_suite());
}
