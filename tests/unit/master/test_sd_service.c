/* test_sd_service.c — the master's systemd conversation (sd_service.c) on a
 * real event loop and a real notify socket: WATCHDOG=1 keeps coming while the
 * gRPC thread's beat is fresh, stops while it is stale (a wedged gRPC thread
 * gets the service restarted like a hung loop), and resumes after. */
#include <check.h>
#include <event2/event.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shm/region.h"
#include "src/master/sd_service.h"
#include "tests/check_main.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* WATCHDOG=1 datagrams that arrive on fd within ms of running base. */
static int watchdogs_during(struct event_base *base, int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    int n = 0;
    char buf[512];
    ssize_t got;
    while ((got = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
        buf[got] = '\0';
        n += strstr(buf, "WATCHDOG=1") != NULL;
    }
    return n;
}

START_TEST(test_watchdog_follows_the_grpc_beat)
{
    char dir[] = "/tmp/wsn-sdsvc-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[sizeof dir + 16];
    snprintf(path, sizeof path, "%s/notify", dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "100000", 1), 0); /* a ping every 50 ms */
    ck_assert_int_eq(unsetenv("WATCHDOG_PID"), 0);

    shm_region shm;
    ck_assert_int_eq(region_create(&shm, 1, 16), 0);
    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    sd_service s;
    memset(&s, 0, sizeof s);
    sd_service_open(&s);
    ck_assert_int_eq(sd_service_start(&s, base, &shm, 1), 0);

    _Atomic uint64_t beat;
    atomic_init(&beat, now_ms());
    sd_service_watch_grpc(&s, &beat);
    ck_assert_int_ge(watchdogs_during(base, fd, 300), 3);

    /* The gRPC thread has not turned for longer than the bound. */
    atomic_store(&beat, now_ms() - SD_SERVICE_GRPC_STALL_MS - 1000);
    ck_assert_int_eq(watchdogs_during(base, fd, 300), 0);

    atomic_store(&beat, now_ms());
    ck_assert_int_ge(watchdogs_during(base, fd, 300), 3);

    /* Stopping ends the watch (the endpoint goes away): pings go on. */
    atomic_store(&beat, now_ms() - SD_SERVICE_GRPC_STALL_MS - 1000);
    sd_service_stopping(&s);
    ck_assert_int_ge(watchdogs_during(base, fd, 300), 3);

    sd_service_close(&s);
    event_base_free(base);
    region_detach(&shm);
    close(fd);
    unlink(path);
    rmdir(dir);
}
END_TEST

static Suite *sd_service_suite(void)
{
    Suite *s = suite_create("sd_service");
    TCase *tc = tcase_create("watchdog");
    tcase_add_test(tc, test_watchdog_follows_the_grpc_beat);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(sd_service_suite());
}
