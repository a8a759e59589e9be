/* test_notify.c — unit tests for the input rules of notify_validate
 * (src/master/notify.c) that guard clients: links whose scheme would run
 * code (javascript:, data:, vbscript:) are refused however they are
 * disguised; every other link is left alone. And the client JSON, which the
 * daemon writes by hand, against json-c writing the same object. (The other
 * rules are tested in test_router.c.) */
#include <check.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "src/master/notify.h"
#include "tests/check_main.h"

static int validate_link(const char *link, char *err, size_t err_size)
{
    notify_request r = {.user_id = 1, .type = "t", .title = "T", .message = "M", .link = link};
    err[0] = '\0';
    return notify_validate(&r, err, err_size);
}

START_TEST(refused_schemes)
{
    const char *bad[] = {
        "javascript:alert(1)", "JavaScript:alert(1)", "JAVASCRIPT:x", "javascript:",
        " javascript:alert(1)", "   \t javascript:x", "\x01\x02\x1f javascript:x",
        "java\tscript:alert(1)", "java\nscript:x", "java\rscript:x", "j\ta\nv\ra\tscript:x",
        "javascript\t:x", "\tj\ta\tv\ta\ts\tc\tr\ti\tp\tt\t:x",
        "data:text/html;base64,PHNjcmlwdD4=", "DATA:text/html,<script>", " data:,x",
        "da\tta:x", "vbscript:msgbox(1)", "VBScript:x", "\x0b\x0cvbscript:x",
        "\xc2\xa0javascript:x",              /* NBSP, which trim() removes */
        "\xef\xbb\xbfjavascript:x",          /* a byte order mark */
        "\xe2\x80\x83\xe3\x80\x80javascript:x", /* em space, ideographic space */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256];
        ck_assert_msg(validate_link(bad[i], err, sizeof err) == -1, "'%s' accepted", bad[i]);
        ck_assert_msg(strncmp(err, "link", 4) == 0, "'%s' does not name link", err);
        ck_assert_msg(strstr(err, "scheme") != NULL, "%s", err);
    }
    char err[256];
    validate_link("  Java\tScript:x", err, sizeof err);
    ck_assert_str_eq(err, "link: the javascript: scheme is not allowed");
    validate_link("DaTa:x", err, sizeof err);
    ck_assert_str_eq(err, "link: the data: scheme is not allowed");
}
END_TEST

START_TEST(allowed_links)
{
    const char *good[] = {
        "", "/orders/1", "https://example.com/a?b=javascript:x", "http://x/data:y",
        "mailto:a@example.com", "tel:+123", "/javascript:x", "./javascript:x", "?javascript:x",
        "#javascript:x", "//example.com/javascript:x", "javascript", "javascriptx:y",
        "xjavascript:y", "java script:x", "java\x01script:x", "jscript:x", "datax:y",
        "vbscripts:x", "1javascript:x", "-data:x", "data", "orders/javascript:1",
        "java\xc2\xa0script:x", "\xe2\x80\x8bjavascript:x", /* zero-width space: not trimmed */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char err[256];
        ck_assert_msg(validate_link(good[i], err, sizeof err) == 0, "'%s' refused: %s", good[i],
                      err);
    }
    notify_request r = {.user_id = 1, .type = "t", .title = "T", .link = NULL};
    char err[64];
    ck_assert_int_eq(notify_validate(&r, err, sizeof err), 0);
}
END_TEST

START_TEST(broken_utf8_named_before_the_scheme)
{
    char err[256];
    ck_assert_int_eq(validate_link("\xff javascript:x", err, sizeof err), -1);
    ck_assert_str_eq(err, "link is not valid UTF-8");
}
END_TEST

/* What json-c writes for the same notification (the daemon's format before
 * it wrote its own, and what clients were given). */
static char *json_c_notification(const notify_request *r, int64_t id, const char *ts)
{
    json_object *root = json_object_new_object(), *data = json_object_new_object();
    json_object_object_add(root, "type", json_object_new_string("notification"));
    json_object_object_add(root, "data", data);
    json_object_object_add(data, "id", json_object_new_int64(id));
    json_object_object_add(data, "title", json_object_new_string(r->title));
    json_object_object_add(data, "message", json_object_new_string(r->message));
    json_object_object_add(data, "notification_type", json_object_new_string(r->type));
    json_object_object_add(data, "link", json_object_new_string(r->link));
    json_object_object_add(data, "timestamp", json_object_new_string(ts));
    char *out = strdup(json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
    return out;
}

static void same_as_json_c(const char *title, const char *message, const char *type,
                           const char *link, int64_t id)
{
    notify_request r = {.user_id = 1, .type = type, .title = title, .message = message,
                        .link = link};
    size_t len = 0;
    char *ours = notify_build_json(&r, id, "2026-12-01T12:00:00Z", &len);
    char *theirs = json_c_notification(&r, id, "2026-12-01T12:00:00Z");
    ck_assert_ptr_nonnull(ours);
    ck_assert_str_eq(ours, theirs);
    ck_assert_uint_eq(len, strlen(theirs));
    /* And it parses back to the same strings. */
    json_object *back = json_tokener_parse(ours);
    ck_assert_ptr_nonnull(back);
    json_object *data = json_object_object_get(back, "data");
    ck_assert_str_eq(json_object_get_string(json_object_object_get(data, "title")), title);
    ck_assert_str_eq(json_object_get_string(json_object_object_get(data, "message")), message);
    json_object_put(back);
    free(ours);
    free(theirs);
}

START_TEST(json_every_byte)
{
    /* Each byte 1..255 alone (those above 0x7f only inside valid UTF-8
     * sequences, as validation guarantees). */
    for (int c = 1; c < 0x80; c++) {
        char s[2] = {(char)c, '\0'};
        same_as_json_c(s, s, s, s, c);
    }
    same_as_json_c("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", "\x7f/\\\"", "t", "/a?b=c&d=e", 1);
    same_as_json_c("", "", "t", "", (INT64_C(1) << 53) - 1);
}
END_TEST

START_TEST(json_random_strings)
{
    static const char alphabet[] = "aZ09 \"\\/\b\t\n\f\r\x01\x1f\x7f{}[]:,<>&'";
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char fields[4][64];
        for (int f = 0; f < 4; f++) {
            seed = seed * 1103515245u + 12345u;
            int n = (int)(seed >> 16) % 60;
            for (int i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                fields[f][i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
            }
            fields[f][n] = '\0';
        }
        same_as_json_c(fields[0], fields[1], fields[2], fields[3], round * 7919);
    }
}
END_TEST

static Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("links");
    tcase_add_test(tc, refused_schemes);
    tcase_add_test(tc, allowed_links);
    tcase_add_test(tc, broken_utf8_named_before_the_scheme);
    suite_add_tcase(s, tc);
    TCase *json = tcase_create("json");
    tcase_add_test(json, json_every_byte);
    tcase_add_test(json, json_random_strings);
    suite_add_tcase(s, json);
    return s;
}

int main(void)
{
    return check_run_suite(notify_suite());
}
