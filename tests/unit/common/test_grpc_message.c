/* test_grpc_message.c — unit tests for the wire check of string fields
 * (src/common/grpc_message.c): a NUL byte in any string of a request, at any
 * depth, is found and named; bytes fields, unknown fields and clean requests
 * are not; and the unpacked message is what protobuf-c gives. */
#include <check.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <stdlib.h>
#include <string.h>

#include "proto/notification.pb-c.h"
#include "src/common/grpc_message.h"
#include "tests/check_main.h"

/* m packed, with every 'X' turned into a NUL byte: protobuf-c packs strings
 * with strlen, so the NUL goes in afterwards, as a client would send it. */
static uint8_t *pack_with_nuls(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(protobuf_c_message_pack(m, buf), *len);
    for (size_t i = 0; i < *len; i++)
        if (buf[i] == 'X')
            buf[i] = 0;
    return buf;
}

static const char *nul_in(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len)
{
    static char field[128];
    int r = grpc_message_find_nul(d, buf, len, field, sizeof field);
    ck_assert_int_ge(r, 0);
    ck_assert_int_eq(r == 1, field[0] != '\0');
    return field;
}

START_TEST(single_request_each_field)
{
    const char *fields[] = {"type", "title", "message", "link"};
    for (size_t f = 0; f < 5; f++) {
        Notification__SendNotificationRequest r = NOTIFICATION__SEND_NOTIFICATION_REQUEST__INIT;
        r.user_id = 7;
        r.type = f == 0 ? "tyXpe" : "type";
        r.title = f == 1 ? "X" : "title";
        r.message = f == 2 ? "message with a NUL at the end X" : "message";
        r.link = f == 3 ? "/orders/1X<script>" : "/orders/1";
        size_t len = 0;
        uint8_t *buf = pack_with_nuls(&r.base, &len);
        const char *got = nul_in(&notification__send_notification_request__descriptor, buf, len);
        ck_assert_str_eq(got, f < 4 ? fields[f] : "");

        /* Through a gRPC byte buffer, as the endpoint gets it. */
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        char field[64] = "junk";
        Notification__SendNotificationRequest *u =
            (Notification__SendNotificationRequest *)grpc_message_unpack_checked(
                &notification__send_notification_request__descriptor, bb, field, sizeof field);
        ck_assert_ptr_nonnull(u);
        ck_assert_str_eq(field, f < 4 ? fields[f] : "");
        /* What protobuf-c alone would have shown: a silently shorter string. */
        if (f == 1)
            ck_assert_str_eq(u->title, "");
        if (f == 3)
            ck_assert_str_eq(u->link, "/orders/1");
        ck_assert_int_eq(u->user_id, 7);
        protobuf_c_message_free_unpacked(&u->base, NULL);
        grpc_byte_buffer_destroy(bb);
        free(buf);
    }
}
END_TEST

START_TEST(batch_names_the_request)
{
    Notification__SendNotificationRequest items[4];
    Notification__SendNotificationRequest *ptrs[4];
    for (int i = 0; i < 4; i++) {
        Notification__SendNotificationRequest r = NOTIFICATION__SEND_NOTIFICATION_REQUEST__INIT;
        r.user_id = i + 1;
        r.type = "t";
        r.title = "title";
        r.link = i == 2 ? "/aXb" : "/ab";
        items[i] = r;
        ptrs[i] = &items[i];
    }
    Notification__SendNotificationsRequest batch = NOTIFICATION__SEND_NOTIFICATIONS_REQUEST__INIT;
    batch.n_notifications = 4;
    batch.notifications = ptrs;
    size_t len = 0;
    uint8_t *buf = pack_with_nuls(&batch.base, &len);
    ck_assert_str_eq(nul_in(&notification__send_notifications_request__descriptor, buf, len),
                     "notifications[2]: link");
    free(buf);
    items[2].link = "/ab";
    items[0].title = "Xfirst";
    buf = pack_with_nuls(&batch.base, &len);
    ck_assert_str_eq(nul_in(&notification__send_notifications_request__descriptor, buf, len),
                     "notifications[0]: title");
    free(buf);
    items[0].title = "first";
    buf = pack_with_nuls(&batch.base, &len);
    ck_assert_str_eq(nul_in(&notification__send_notifications_request__descriptor, buf, len), "");
    free(buf);
}
END_TEST

START_TEST(broadcast_and_other_fields)
{
    Notification__BroadcastRequest b = NOTIFICATION__BROADCAST_REQUEST__INIT;
    b.type = "t";
    b.title = "title";
    b.message = "mXm";
    size_t len = 0;
    uint8_t *buf = pack_with_nuls(&b.base, &len);
    ck_assert_str_eq(nul_in(&notification__broadcast_request__descriptor, buf, len), "message");
    free(buf);
    /* Unknown fields may hold anything: field 15 (bytes) with a NUL, a
     * varint, a fixed64 and a fixed32 before a clean title. */
    const uint8_t odd[] = {0x7a, 0x02, 'a', 0x00, 0x78, 0x96, 0x01, 0x79, 1, 2, 3, 4, 5, 6, 7, 8,
                           0x7d, 1, 2, 3, 4, 0x12, 0x01, 't', 0x1a, 0x02, 'o', 'k'};
    ck_assert_str_eq(nul_in(&notification__broadcast_request__descriptor, odd, sizeof odd), "");
    /* ... and a NUL in a known string after them is still found. */
    const uint8_t late[] = {0x7a, 0x02, 'a', 0x00, 0x12, 0x02, 'o', 0x00};
    ck_assert_str_eq(nul_in(&notification__broadcast_request__descriptor, late, sizeof late),
                     "title");
    /* Malformed input: truncated length, bad varint, a group. */
    char field[32];
    const uint8_t cut[] = {0x1a, 0x05, 'a'};
    ck_assert_int_eq(grpc_message_find_nul(&notification__broadcast_request__descriptor, cut,
                                           sizeof cut, field, sizeof field),
                     -1);
    const uint8_t group[] = {0x0b, 0x0c};
    ck_assert_int_eq(grpc_message_find_nul(&notification__broadcast_request__descriptor, group,
                                           sizeof group, field, sizeof field),
                     -1);
    ck_assert_int_eq(grpc_message_find_nul(&notification__broadcast_request__descriptor, odd, 0,
                                           field, sizeof field),
                     0);
}
END_TEST

static Suite *grpc_message_suite(void)
{
    Suite *s = suite_create("grpc_message");
    TCase *tc = tcase_create("nul");
    /* In each test's own (forked) process: gRPC's state does not survive a fork. */
    tcase_add_checked_fixture(tc, grpc_init, grpc_shutdown);
    tcase_add_test(tc, single_request_each_field);
    tcase_add_test(tc, batch_names_the_request);
    tcase_add_test(tc, broadcast_and_other_fields);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(grpc_message_suite());
}
