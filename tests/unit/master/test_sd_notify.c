/* test_sd_notify.c — the sd_notify protocol without libsystemd: NOTIFY_SOCKET
 * parsing (path, abstract, bad values), WATCHDOG_USEC/WATCHDOG_PID, real
 * datagrams to a bound socket (path and abstract), the environment cleared for
 * children, and a vanished socket that is logged, not fatal. */
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "src/common/log.h"
#include "src/master/sd_notify.h"
#include "tests/check_main.h"

START_TEST(test_parse_path)
{
    struct sockaddr_un a;
    socklen_t len = 0;
    ck_assert_int_eq(sd_notify_parse_address("/run/systemd/notify", &a, &len), 0);
    ck_assert_int_eq(a.sun_family, AF_UNIX);
    ck_assert_str_eq(a.sun_path, "/run/systemd/notify");
    ck_assert_uint_eq(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
}
END_TEST

START_TEST(test_parse_abstract)
{
    struct sockaddr_un a;
    socklen_t len = 0;
    ck_assert_int_eq(sd_notify_parse_address("@wsn/notify", &a, &len), 0);
    ck_assert_int_eq(a.sun_path[0], '\0');
    ck_assert_mem_eq(a.sun_path + 1, "wsn/notify", 10);
    /* No trailing NUL: abstract names are length-delimited. */
    ck_assert_uint_eq(len, offsetof(struct sockaddr_un, sun_path) + 11);
}
END_TEST

START_TEST(test_parse_rejects)
{
    struct sockaddr_un a;
    socklen_t len;
    ck_assert_int_eq(sd_notify_parse_address("", &a, &len), -1);
    ck_assert_int_eq(sd_notify_parse_address("@", &a, &len), -1);
    ck_assert_int_eq(sd_notify_parse_address("relative/path", &a, &len), -1);
    ck_assert_int_eq(sd_notify_parse_address("vsock:2:1234", &a, &len), -1);
    char longp[sizeof a.sun_path + 2];
    memset(longp, 'x', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    ck_assert_int_eq(sd_notify_parse_address(longp, &a, &len), -1);
    /* A path fills sun_path but for its NUL; an abstract name may fill it all. */
    longp[sizeof a.sun_path - 1] = '\0';
    ck_assert_int_eq(sd_notify_parse_address(longp, &a, &len), 0);
    longp[sizeof a.sun_path - 1] = 'x';
    longp[sizeof a.sun_path] = '\0';
    ck_assert_int_eq(sd_notify_parse_address(longp, &a, &len), -1);
    longp[0] = '@';
    ck_assert_int_eq(sd_notify_parse_address(longp, &a, &len), 0);
}
END_TEST

START_TEST(test_watchdog)
{
    ck_assert_uint_eq(sd_notify_parse_watchdog("1000000", NULL, 42), 1000000);
    ck_assert_uint_eq(sd_notify_parse_watchdog("1000000", "42", 42), 1000000);
    ck_assert_uint_eq(sd_notify_parse_watchdog("1000000", "43", 42), 0);
    ck_assert_uint_eq(sd_notify_parse_watchdog("1000000", "4x", 42), 0);
    ck_assert_uint_eq(sd_notify_parse_watchdog(NULL, NULL, 42), 0);
    ck_assert_uint_eq(sd_notify_parse_watchdog("", NULL, 42), 0);
    ck_assert_uint_eq(sd_notify_parse_watchdog("0", NULL, 42), 0);
    ck_assert_uint_eq(sd_notify_parse_watchdog("-5", NULL, 42), 0);
    ck_assert_uint_eq(sd_notify_parse_watchdog("12abc", NULL, 42), 0);
    ck_assert_uint_eq(sd_notify_parse_watchdog("99999999999999999999999", NULL, 42), 0);
}
END_TEST

/* A datagram socket bound at name (a path, or "@..." abstract). */
static int bind_receiver(const char *name)
{
    struct sockaddr_un a;
    socklen_t len;
    ck_assert_int_eq(sd_notify_parse_address(name, &a, &len), 0);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, len), 0);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    ck_assert_str_eq(buf, want);
}

static void round_trip(const char *name)
{
    int rx = bind_receiver(name);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", name, 1), 0);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "3000000", 1), 0);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    ck_assert_int_eq(setenv("WATCHDOG_PID", pid, 1), 0);
    sd_notifier n;
    sd_notifier_open(&n);
    ck_assert(sd_notifier_enabled(&n));
    ck_assert_uint_eq(sd_notifier_watchdog_usec(&n), 3000000);
    /* Children must not inherit the duty. */
    ck_assert_ptr_null(getenv("NOTIFY_SOCKET"));
    ck_assert_ptr_null(getenv("WATCHDOG_USEC"));
    ck_assert_ptr_null(getenv("WATCHDOG_PID"));
    ck_assert_int_eq(sd_notifier_send(&n, "READY=1\nSTATUS=ok"), 0);
    expect_datagram(rx, "READY=1\nSTATUS=ok");
    ck_assert_int_eq(sd_notifier_sendf(&n, "STATUS=%d connections", 7), 0);
    expect_datagram(rx, "STATUS=7 connections");
    sd_notifier_close(&n);
    ck_assert(!sd_notifier_enabled(&n));
    close(rx);
}

START_TEST(test_send_path)
{
    char dir[] = "/tmp/test_sd_notify.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/notify", dir);
    round_trip(path);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_send_abstract)
{
    char name[64];
    snprintf(name, sizeof name, "@wsnotify-test-%ld", (long)getpid());
    round_trip(name);
}
END_TEST

START_TEST(test_unset_is_a_no_op)
{
    ck_assert_int_eq(unsetenv("NOTIFY_SOCKET"), 0);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "1000000", 1), 0);
    sd_notifier n;
    sd_notifier_open(&n);
    ck_assert(!sd_notifier_enabled(&n));
    ck_assert_uint_eq(sd_notifier_watchdog_usec(&n), 0);
    ck_assert_ptr_null(getenv("WATCHDOG_USEC"));
    ck_assert_int_eq(sd_notifier_send(&n, "READY=1"), 0);
    sd_notifier_close(&n);
}
END_TEST

START_TEST(test_bad_socket_is_not_fatal)
{
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", "not-absolute", 1), 0);
    sd_notifier n;
    sd_notifier_open(&n);
    ck_assert(!sd_notifier_enabled(&n));
    ck_assert_int_eq(sd_notifier_send(&n, "READY=1"), 0);
    sd_notifier_close(&n);

    /* A socket that is gone: the send fails (logged once), nothing else happens. */
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", "/nonexistent/wsnotify/notify", 1), 0);
    sd_notifier_open(&n);
    ck_assert(sd_notifier_enabled(&n));
    ck_assert_int_eq(sd_notifier_send(&n, "READY=1"), -1);
    ck_assert(n.send_failed);
    ck_assert_int_eq(sd_notifier_send(&n, "WATCHDOG=1"), -1);
    sd_notifier_close(&n);
}
END_TEST

int main(void)
{
    log_setup("test", LOG_ERROR);
    Suite *s = suite_create("sd_notify");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parse_path);
    tcase_add_test(tc, test_parse_abstract);
    tcase_add_test(tc, test_parse_rejects);
    tcase_add_test(tc, test_watchdog);
    tcase_add_test(tc, test_send_path);
    tcase_add_test(tc, test_send_abstract);
    tcase_add_test(tc, test_unset_is_a_no_op);
    tcase_add_test(tc, test_bad_socket_is_not_fatal);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
