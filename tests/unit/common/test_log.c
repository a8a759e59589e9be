/* test_log.c — unit tests for log lines: one line per call, whatever bytes
 * the message carries (a client's email may hold a newline). */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/check_main.h"
#include "src/common/log.h"

/* What one log_msg call writes to stderr. */
static size_t capture(char *out, size_t size, const char *arg)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fds[1], STDERR_FILENO), 0);
    log_info("login failed: %s from 127.0.0.1:1", arg);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, size - 1);
    close(fds[0]);
    ck_assert_int_gt(n, 0);
    out[n] = '\0';
    return (size_t)n;
}

START_TEST(test_control_bytes_escaped)
{
    char line[2048];
    size_t n = capture(line, sizeof line, "x@y.z\n2030-01-01T00:00:00.000Z wsnotifyd[1] info\r\t\x7f");
    ck_assert_ptr_eq(strchr(line, '\n'), line + n - 1);
    ck_assert_ptr_null(strchr(line, '\r'));
    ck_assert_ptr_nonnull(strstr(line, "x@y.z\\x0a2030-01-01"));
    ck_assert_ptr_nonnull(strstr(line, "info\\x0d\\x09\\x7f from 127.0.0.1:1\n"));
}
END_TEST

START_TEST(test_plain_and_utf8_unchanged)
{
    char line[2048];
    capture(line, sizeof line, "J\xc3\xbcrgen@example.com");
    ck_assert_ptr_nonnull(strstr(line, "login failed: J\xc3\xbcrgen@example.com from 127.0.0.1:1\n"));
}
END_TEST

START_TEST(test_long_message_truncated_to_one_line)
{
    char big[3000];
    memset(big, '\n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char line[4096];
    size_t n = capture(line, sizeof line, big);
    ck_assert_uint_le(n, 1024);
    ck_assert_ptr_eq(strchr(line, '\n'), line + n - 1);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_control_bytes_escaped);
    tcase_add_test(tc, test_plain_and_utf8_unchanged);
    tcase_add_test(tc, test_long_message_truncated_to_one_line);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_setup("test", LOG_INFO);
    return check_run_suite(log_suite());
}
