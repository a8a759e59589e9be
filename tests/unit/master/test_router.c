/* test_router.c — notification validation, the client JSON (escaping, UTF-8,
 * every field), timestamps, and routing through a real region and queue. */
#include <check.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/queue.h"
#include "src/master/router.h"
#include "tests/check_main.h"

static notify_request valid_request(void)
{
    notify_request r = {.user_id = 1, .type = "match_created", .title = "T", .message = "M",
                        .link = "/orders/1", .send_push = true, .id = 0};
    return r;
}

static void expect_invalid(const notify_request *r, const char *field)
{
    char err[256] = "";
    ck_assert_int_eq(notify_validate(r, err, sizeof err), -1);
    ck_assert_msg(strstr(err, field) != NULL, "'%s' does not name %s", err, field);
}

START_TEST(test_validation)
{
    char err[256];
    notify_request r = valid_request();
    ck_assert_int_eq(notify_validate(&r, err, sizeof err), 0);
    r.user_id = 0;
    expect_invalid(&r, "user_id");
    r.user_id = -5;
    expect_invalid(&r, "user_id");
    r = valid_request();
    r.type = "";
    expect_invalid(&r, "type");
    r.type = NULL;
    expect_invalid(&r, "type");
    r = valid_request();
    r.title = "";
    expect_invalid(&r, "title");
    r = valid_request();
    r.id = -1;
    expect_invalid(&r, "id");
    r.id = NOTIFY_ID_MAX + 1;
    expect_invalid(&r, "id");
    r.id = NOTIFY_ID_MAX;
    ck_assert_int_eq(notify_validate(&r, err, sizeof err), 0);
    r = valid_request();
    r.message = "\xc3\x28";
    expect_invalid(&r, "message");
    r = valid_request();
    r.link = "\xed\xa0\x80";
    expect_invalid(&r, "link");
    r = valid_request();
    r.message = NULL;
    r.link = NULL;
    ck_assert_int_eq(notify_validate(&r, err, sizeof err), 0);
}
END_TEST

START_TEST(test_content_limit)
{
    char err[256];
    char *big = malloc(NOTIFY_MAX_CONTENT + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', NOTIFY_MAX_CONTENT + 1);
    big[NOTIFY_MAX_CONTENT - 1] = '\0'; /* title "T" + 16383 = exactly 16 KiB */
    notify_request r = valid_request();
    r.link = "";
    r.message = big;
    ck_assert_int_eq(notify_validate(&r, err, sizeof err), 0);
    big[NOTIFY_MAX_CONTENT - 1] = 'x';
    big[NOTIFY_MAX_CONTENT] = '\0';
    expect_invalid(&r, "title+message+link");
    free(big);
}
END_TEST

START_TEST(test_json_fields_and_escaping)
{
    notify_request r = valid_request();
    r.title = "He said \"hi\"\\ / </script>";
    r.message = "line1\nline2\t\x01\x1f caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x89";
    r.link = "/orders/1?a=b&c=d";
    size_t len = 0;
    char *json = notify_build_json(&r, 9007199254740991LL, "2026-01-15T20:00:00Z", &len);
    ck_assert_ptr_nonnull(json);
    ck_assert_uint_eq(strlen(json), len);
    /* Raw control characters never appear; UTF-8 is kept as is. */
    for (size_t i = 0; i < len; i++)
        ck_assert_msg((unsigned char)json[i] >= 0x20, "control byte at %zu", i);
    ck_assert_ptr_nonnull(strstr(json, "caf\xc3\xa9"));
    ck_assert_ptr_nonnull(strstr(json, "\xf0\x9f\x8e\x89"));
    json_object *o = json_tokener_parse(json);
    ck_assert_ptr_nonnull(o);
    json_object *type, *data, *v;
    ck_assert(json_object_object_get_ex(o, "type", &type));
    ck_assert_str_eq(json_object_get_string(type), "notification");
    ck_assert(json_object_object_get_ex(o, "data", &data));
    ck_assert(json_object_object_get_ex(data, "id", &v));
    ck_assert_int_eq(json_object_get_int64(v), 9007199254740991LL);
    ck_assert(json_object_object_get_ex(data, "title", &v));
    ck_assert_str_eq(json_object_get_string(v), r.title);
    ck_assert(json_object_object_get_ex(data, "message", &v));
    ck_assert_str_eq(json_object_get_string(v), r.message);
    ck_assert(json_object_object_get_ex(data, "notification_type", &v));
    ck_assert_str_eq(json_object_get_string(v), "match_created");
    ck_assert(json_object_object_get_ex(data, "link", &v));
    ck_assert_str_eq(json_object_get_string(v), r.link);
    ck_assert(json_object_object_get_ex(data, "timestamp", &v));
    ck_assert_str_eq(json_object_get_string(v), "2026-01-15T20:00:00Z");
    json_object_put(o);
    free(json);
}
END_TEST

START_TEST(test_timestamp)
{
    char ts[21];
    notify_format_timestamp(0, ts);
    ck_assert_str_eq(ts, "1970-01-01T00:00:00Z");
    notify_format_timestamp(1768507200, ts);
    ck_assert_str_eq(ts, "2026-01-15T20:00:00Z");
}
END_TEST

typedef struct {
    shm_region shm;
    queue_pair q[2];
    int out[2];
    router r;
} fixture;

static void fixture_open(fixture *f)
{
    ck_assert_int_eq(region_create(&f->shm, 2, 16), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(queue_pair_create(&f->q[i]), 0);
        f->out[i] = f->q[i].sender_end;
    }
    f->r = (router){.shm = &f->shm, .slots = 2, .queue_out = f->out};
}

static void fixture_close(fixture *f)
{
    for (int i = 0; i < 2; i++) {
        close(f->q[i].worker_end);
        close(f->q[i].sender_end);
    }
    region_detach(&f->shm);
}

/* User online at the worker of slot, as that worker's claim would make it. */
static dir_holder connect_user(fixture *f, int64_t user, int slot)
{
    dir_holder me = {.slot = slot, .epoch = directory_slot_epoch(f->shm.dir, slot),
                     .generation = directory_next_generation(f->shm.dir)};
    dir_holder prev;
    ck_assert_int_eq(directory_claim(f->shm.dir, user, &me, &prev), DIR_OK);
    return me;
}

START_TEST(test_route_offline_and_ids)
{
    fixture f;
    fixture_open(&f);
    char err[256];
    notify_result res;
    notify_request r = valid_request();
    ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_OK);
    ck_assert(!res.delivered);
    int64_t first = res.notification_id;
    ck_assert_int_gt(first, 0);
    ck_assert_int_lt(first, NOTIFY_ID_MAX);
    ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_OK);
    ck_assert_int_gt(res.notification_id, first);
    r.id = 777;
    ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_OK);
    ck_assert_int_eq(res.notification_id, 777);
    r.title = "";
    ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "title"));
    ck_assert_uint_eq(f.shm.hdr->notifications[NOTIFY_OFFLINE], 3);
    ck_assert_uint_eq(f.shm.hdr->notifications[NOTIFY_INVALID], 1);
    fixture_close(&f);
}
END_TEST

START_TEST(test_route_delivered)
{
    fixture f;
    fixture_open(&f);
    dir_holder me = connect_user(&f, 5, 1);
    char err[256];
    notify_result res;
    notify_request r = valid_request();
    r.user_id = 5;
    ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_OK);
    ck_assert(res.delivered);
    uint8_t buf[QUEUE_MAX_DATAGRAM];
    ck_assert_int_eq(recv(f.q[0].worker_end, buf, sizeof buf, MSG_DONTWAIT), -1);
    ssize_t n = recv(f.q[1].worker_end, buf, sizeof buf, MSG_DONTWAIT);
    ck_assert_int_gt(n, 0);
    queue_msg m;
    ck_assert_int_eq(queue_msg_decode(buf, (size_t)n, &m), 0);
    ck_assert_int_eq(m.type, QMSG_NOTIFY);
    ck_assert_int_eq(m.user, 5);
    ck_assert_uint_eq(m.generation, me.generation);
    ck_assert_uint_gt(m.accepted_ns, 0);
    ck_assert_ptr_nonnull(memmem(m.payload, m.payload_len, "\"notification_type\":\"match_created\"", 35));

    /* send_push false: numbered, not queued. */
    r.send_push = false;
    ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_OK);
    ck_assert(!res.delivered);
    ck_assert_int_gt(res.notification_id, 0);
    ck_assert_int_eq(recv(f.q[1].worker_end, buf, sizeof buf, MSG_DONTWAIT), -1);

    /* The slot's worker died: its user is offline at once. */
    r.send_push = true;
    directory_slot_bump(f.shm.dir, 1);
    ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_OK);
    ck_assert(!res.delivered);
    fixture_close(&f);
}
END_TEST

START_TEST(test_route_queue_full)
{
    fixture f;
    fixture_open(&f);
    connect_user(&f, 9, 0);
    char *msg = malloc(8000);
    ck_assert_ptr_nonnull(msg);
    memset(msg, 'm', 7999);
    msg[7999] = '\0';
    notify_request r = valid_request();
    r.user_id = 9;
    r.message = msg;
    char err[256];
    notify_result res;
    int delivered = 0;
    for (int i = 0; i < 100000; i++) {
        ck_assert_int_eq(router_send(&f.r, &r, &res, err, sizeof err), ROUTE_OK);
        if (!res.delivered)
            break;
        delivered++;
    }
    ck_assert(!res.delivered); /* nobody reads: the queue filled, the call still returned */
    ck_assert_int_gt(delivered, 0);
    ck_assert_uint_eq(f.shm.hdr->notifications[NOTIFY_DROPPED], 1);
    free(msg);
    fixture_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");
    tcase_add_test(tc, test_validation);
    tcase_add_test(tc, test_content_limit);
    tcase_add_test(tc, test_json_fields_and_escaping);
    tcase_add_test(tc, test_timestamp);
    tcase_add_test(tc, test_route_offline_and_ids);
    tcase_add_test(tc, test_route_delivered);
    tcase_add_test(tc, test_route_queue_full);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
