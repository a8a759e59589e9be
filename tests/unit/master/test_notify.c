/* test_notify.c — unit tests for the input rules of notify_validate
 * (src/master/notify.c) that guard clients: links whose scheme would run
 * code (javascript:, data:, vbscript:) are refused however they are
 * disguised; every other link is left alone. (The other rules and the JSON
 * are tested in test_router.c.) */
#include <check.h>
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

static Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("links");
    tcase_add_test(tc, refused_schemes);
    tcase_add_test(tc, allowed_links);
    tcase_add_test(tc, broken_utf8_named_before_the_scheme);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(notify_suite());
}
