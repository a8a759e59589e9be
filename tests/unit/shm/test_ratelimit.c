/* test_ratelimit.c — the rate limiters of shm/ratelimit.c: the sliding-window
 * arithmetic and its Retry-After, the shared per-user table (limit 0, many
 * users, the region's copy seen through two mappings), several processes
 * hammering one user at once (counted exactly), processes SIGKILLed while
 * hammering (nothing to wedge), and the per-connection message counter. */
#include <check.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/ratelimit.h"
#include "shm/region.h"
#include "tests/check_main.h"

#define MINUTE RATELIMIT_CONNECT_WINDOW_MS
/* Some minute of CLOCK_MONOTONIC, well away from 0. */
#define T0 (UINT64_C(1000) * MINUTE)

typedef struct {
    void *mem;
    size_t size;
    ratelimit *rl;
} table;

static table table_new(uint32_t capacity)
{
    table t;
    t.size = ratelimit_size(capacity);
    ck_assert_uint_gt(t.size, 0);
    t.mem = mmap(NULL, t.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(t.mem, MAP_FAILED);
    ck_assert_int_eq(ratelimit_init(t.mem, capacity), 0);
    t.rl = ratelimit_attach(t.mem);
    ck_assert_ptr_nonnull(t.rl);
    return t;
}

static void table_free(table *t)
{
    ck_assert_int_eq(munmap(t->mem, t->size), 0);
}

static bool hit(table *t, int64_t user, uint32_t limit, uint64_t now)
{
    return ratelimit_hit(t->rl, user, limit, now).allowed;
}

/* ---- window arithmetic ------------------------------------------------ */

START_TEST(test_window_allows)
{
    /* Empty: up to limit. */
    ck_assert(ratelimit_window_allows(0, 0, 0, 1000, 1));
    ck_assert(ratelimit_window_allows(0, 4, 500, 1000, 5));
    ck_assert(!ratelimit_window_allows(0, 5, 500, 1000, 5));
    /* The previous window weighs by what is left of it, rounded down:
     * 10 * 0.5 + 4 + 1 = 10, and 10 * 0.501 + 4 + 1 is still 10. */
    ck_assert(ratelimit_window_allows(10, 4, 500, 1000, 10));
    ck_assert(ratelimit_window_allows(10, 4, 499, 1000, 10));
    ck_assert(!ratelimit_window_allows(10, 5, 500, 1000, 10));
    ck_assert(!ratelimit_window_allows(10, 4, 400, 1000, 10));
    /* At the very end of the window the previous one no longer counts. */
    ck_assert(ratelimit_window_allows(1000, 9, 1000, 1000, 10));
    /* 0 = no limit. */
    ck_assert(ratelimit_window_allows(60000, 60000, 0, 1000, 0));
    ck_assert_uint_eq(ratelimit_window_wait(60000, 60000, 0, 1000, 0), 0);
}
END_TEST

/* The wait is exact: allowed after it, not a millisecond before, for every
 * state in a grid (checked by rolling the window by hand). */
static bool allowed_after(uint32_t prev, uint32_t cur, uint32_t elapsed, uint32_t window,
                          uint32_t limit, uint32_t d)
{
    uint64_t t = (uint64_t)elapsed + d;
    if (t < window)
        return ratelimit_window_allows(prev, cur, (uint32_t)t, window, limit);
    if (t < 2 * (uint64_t)window)
        return ratelimit_window_allows(cur, 0, (uint32_t)(t - window), window, limit);
    return ratelimit_window_allows(0, 0, (uint32_t)(t - 2 * window), window, limit);
}

START_TEST(test_window_wait_exact)
{
    const uint32_t window = 1000;
    for (uint32_t limit = 1; limit <= 6; limit++)
        for (uint32_t prev = 0; prev <= 9; prev++)
            for (uint32_t cur = 0; cur <= 9; cur++)
                for (uint32_t e = 0; e < window; e += 37) {
                    uint32_t d = ratelimit_window_wait(prev, cur, e, window, limit);
                    ck_assert_msg(allowed_after(prev, cur, e, window, limit, d),
                                  "not allowed after wait %u (p=%u c=%u e=%u l=%u)", d, prev, cur,
                                  e, limit);
                    if (d > 0)
                        ck_assert_msg(!allowed_after(prev, cur, e, window, limit, d - 1),
                                      "allowed before wait %u (p=%u c=%u e=%u l=%u)", d, prev,
                                      cur, e, limit);
                    ck_assert_uint_le(d, 2 * window);
                }
}
END_TEST

/* ---- shared table, one process ---------------------------------------- */

START_TEST(test_burst_cut_at_limit)
{
    table t = table_new(100);
    uint64_t now = T0 + 20000;
    for (int i = 0; i < 5; i++)
        ck_assert(hit(&t, 42, 5, now + (uint64_t)i));
    ratelimit_verdict v = ratelimit_hit(t.rl, 42, 5, now + 5);
    ck_assert(!v.allowed);
    ck_assert_uint_eq(v.attempts, 6);
    /* 6 attempts this minute weigh floor(6 * (1 - f)) next minute: 4 once under
     * 50 s of it is left, 10.001 s in. */
    ck_assert_uint_eq(v.retry_after_ms, (MINUTE - 20005) + 10001);
    /* Other users are not affected. */
    ck_assert(hit(&t, 43, 5, now + 6));
    table_free(&t);
}
END_TEST

/* Retry-After is honest: two users with the same history, one tries a
 * millisecond too early (refused), the other right on time (allowed). */
START_TEST(test_retry_after_honest)
{
    table t = table_new(100);
    const uint32_t limit = 3;
    uint64_t starts[] = {T0, T0 + 1, T0 + 30000, T0 + MINUTE - 1};
    for (size_t k = 0; k < sizeof starts / sizeof starts[0]; k++) {
        int64_t early = 1000 + 2 * (int64_t)k;
        int64_t on_time = early + 1;
        ratelimit_verdict v[2];
        for (int u = 0; u < 2; u++)
            for (uint32_t i = 0; i <= limit; i++)
                v[u] = ratelimit_hit(t.rl, u ? on_time : early, limit, starts[k]);
        ck_assert(!v[0].allowed && !v[1].allowed);
        ck_assert_uint_eq(v[0].retry_after_ms, v[1].retry_after_ms);
        uint64_t at = starts[k] + v[0].retry_after_ms;
        ck_assert(!hit(&t, early, limit, at - 1));
        ck_assert(hit(&t, on_time, limit, at));
    }
    table_free(&t);
}
END_TEST

/* Unlike a fixed window, a minute boundary does not reset the count. */
START_TEST(test_sliding_across_boundary)
{
    table t = table_new(100);
    for (int64_t u = 7; u <= 9; u++)
        for (int i = 0; i < 5; i++)
            ck_assert(hit(&t, u, 5, T0 + MINUTE - 10 + (uint64_t)i));
    /* Right at the next minute all 5 still weigh. */
    ck_assert(!hit(&t, 7, 5, T0 + MINUTE));
    /* 1 s in they weigh floor(4.92) = 4: one fits, not the 5 a fixed window gives. */
    ck_assert(hit(&t, 8, 5, T0 + MINUTE + 1000));
    ck_assert(!hit(&t, 8, 5, T0 + MINUTE + 1000));
    /* 24 s in, floor(3.0) = 3: two fit. */
    ck_assert(hit(&t, 9, 5, T0 + MINUTE + 24000));
    ck_assert(hit(&t, 9, 5, T0 + MINUTE + 24000));
    ck_assert(!hit(&t, 9, 5, T0 + MINUTE + 24000));
    /* Two minutes later everything is forgotten. */
    for (int i = 0; i < 5; i++)
        ck_assert(hit(&t, 7, 5, T0 + 3 * MINUTE + (uint64_t)i));
    table_free(&t);
}
END_TEST

/* Refused attempts count: a client retrying faster than the limit stays out. */
START_TEST(test_refused_attempts_count)
{
    table t = table_new(100);
    uint64_t now = T0;
    for (int i = 0; i < 2; i++)
        ck_assert(hit(&t, 9, 2, now));
    for (int i = 0; i < 30; i++) {   /* one try every 5 s for 150 s */
        now += 5000;
        ck_assert_msg(!hit(&t, 9, 2, now), "allowed at +%d s", (int)((now - T0) / 1000));
    }
    /* Backing off for Retry-After gets in. */
    ratelimit_verdict v = ratelimit_hit(t.rl, 9, 2, now + 1);
    ck_assert(!v.allowed);
    ck_assert(hit(&t, 9, 2, now + 1 + v.retry_after_ms));
    table_free(&t);
}
END_TEST

START_TEST(test_limit_zero)
{
    table t = table_new(100);
    for (int i = 0; i < 10000; i++) {
        ratelimit_verdict v = ratelimit_hit(t.rl, 5, 0, T0);
        ck_assert(v.allowed);
        ck_assert_uint_eq(v.retry_after_ms, 0);
    }
    /* Nothing was counted while unlimited. */
    for (int i = 0; i < 5; i++)
        ck_assert(hit(&t, 5, 5, T0));
    ck_assert(!hit(&t, 5, 5, T0));
    table_free(&t);
}
END_TEST

/* Many users at once (as many as the directory holds): each one's first
 * `limit` attempts always pass (the table may forget, never over-count), and
 * nearly every user is refused the next one. */
START_TEST(test_many_users)
{
    const uint32_t capacity = 20000;
    const uint32_t limit = 5;
    table t = table_new(capacity);
    for (uint32_t round = 0; round < limit; round++)
        for (uint32_t u = 1; u <= capacity; u++)
            ck_assert_msg(hit(&t, (int64_t)u * 7919, limit, T0 + round),
                          "user %u refused attempt %u", u, round + 1);
    uint32_t refused = 0;
    for (uint32_t u = 1; u <= capacity; u++)
        refused += !hit(&t, (int64_t)u * 7919, limit, T0 + limit);
    ck_assert_msg(refused >= capacity / 10 * 9, "only %u of %u users limited", refused,
                  capacity);
    /* Negative and huge ids are users like any other. */
    for (uint32_t i = 0; i < limit; i++) {
        ck_assert(hit(&t, INT64_MAX, limit, T0));
        ck_assert(hit(&t, INT64_MIN, limit, T0));
    }
    ck_assert(!hit(&t, INT64_MAX, limit, T0));
    table_free(&t);
}
END_TEST

/* Size follows --max-connections; bad capacities are refused. */
START_TEST(test_size)
{
    ck_assert_uint_eq(ratelimit_size(0), 0);
    ck_assert_uint_eq(ratelimit_size((UINT32_C(1) << 24) + 1), 0);
    ck_assert_uint_ge(ratelimit_size(100000), 2 * 100000 * sizeof(uint64_t));
    ck_assert_uint_gt(ratelimit_size(1 << 20), ratelimit_size(1 << 10));
    ck_assert_int_eq(ratelimit_init(NULL, 10), -1);
    ck_assert_ptr_null(ratelimit_attach(NULL));
}
END_TEST

/* The region carries one limiter; a second mapping (another process's view)
 * counts into the same windows. */
START_TEST(test_region_shares_limiter)
{
    shm_region a, b;
    ck_assert_int_eq(region_create(&a, 2, 64), 0);
    ck_assert_ptr_nonnull(a.rl);
    int fd = dup(a.fd);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(region_attach(&b, fd), 0);
    ck_assert_ptr_nonnull(b.rl);
    ck_assert_ptr_ne(a.rl, b.rl);
    uint64_t now = ratelimit_clock_ms();
    ck_assert(ratelimit_hit(a.rl, 77, 2, now).allowed);
    ck_assert(ratelimit_hit(b.rl, 77, 2, now).allowed);
    ck_assert(!ratelimit_hit(a.rl, 77, 2, now).allowed);
    /* The directory is untouched by it. */
    ck_assert_uint_eq(directory_count(a.dir), 0);
    region_detach(&b);
    region_detach(&a);
}
END_TEST

/* ---- several processes ------------------------------------------------ */

enum { PROCS = 8, HITS_PER_PROC = 3000 };

typedef struct {
    _Atomic uint32_t go;
    _Atomic uint32_t allowed[PROCS];
} race_log;

static pid_t spawn(void (*body)(table *, race_log *, int), table *t, race_log *log, int i)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(30); /* a child left behind by a failed test dies */
        body(t, log, i);
        _exit(0);
    }
    return pid;
}

static void hammer_one_user(table *t, race_log *log, int i)
{
    while (atomic_load(&log->go) == 0)
        ;
    for (int k = 0; k < HITS_PER_PROC; k++)
        if (hit(t, 12345, RATELIMIT_MAX_CONNECTS, T0 + 30000))
            atomic_fetch_add(&log->allowed[i], 1);
}

static void wait_all(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int status = 0;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
    }
}

/* Runs body in PROCS processes released at once; returns the sum of what they
 * counted in log->allowed[]. */
static uint32_t race(table *t, void (*body)(table *, race_log *, int))
{
    race_log *log = mmap(NULL, sizeof *log, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(log, MAP_FAILED);
    memset(log, 0, sizeof *log);
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++)
        pids[i] = spawn(body, t, log, i);
    atomic_store(&log->go, 1);
    wait_all(pids, PROCS);
    uint32_t total = 0;
    for (int i = 0; i < PROCS; i++)
        total += atomic_load(&log->allowed[i]);
    munmap(log, sizeof *log);
    return total;
}

/* Every attempt is counted exactly once: with 24000 attempts at the same
 * instant, exactly `limit` pass, whichever processes make them. */
START_TEST(test_processes_count_exactly)
{
    table t = table_new(1000);
    ck_assert_uint_eq(race(&t, hammer_one_user), RATELIMIT_MAX_CONNECTS);
    /* The count saturates instead of wrapping: still refused, still counted. */
    ratelimit_verdict v = ratelimit_hit(t.rl, 12345, RATELIMIT_MAX_CONNECTS, T0 + 30000);
    ck_assert(!v.allowed);
    ck_assert_uint_ge(v.attempts, 4000);
    table_free(&t);
}
END_TEST

/* Processes sharing a few sets (users colliding, evicting each other) and
 * racing over a minute boundary: nobody is ever refused before its limit. */
static void hammer_sets(table *t, race_log *log, int i)
{
    while (atomic_load(&log->go) == 0)
        ;
    uint64_t start = T0 + MINUTE - 50;
    for (int64_t u = 0; u < 200; u++) {
        int64_t user = (int64_t)i * 1000 + u;
        for (int k = 0; k < 3; k++)
            if (!hit(t, user, 3, start + (uint64_t)u / 2))
                _exit(1);
        if (hit(t, user, 3, start + (uint64_t)u / 2))
            atomic_fetch_add(&log->allowed[i], 1); /* forgotten: evicted by a neighbour */
    }
}

START_TEST(test_processes_never_too_strict)
{
    table t = table_new(1); /* the smallest table: 1024 sets for 1600 users */
    uint32_t forgotten = race(&t, hammer_sets);
    ck_assert_msg(forgotten < PROCS * 200 / 4, "%u of %u users forgotten", forgotten,
                  PROCS * 200);
    table_free(&t);
}
END_TEST

static void hammer_forever(table *t, race_log *log, int i)
{
    (void)log;
    for (uint64_t k = 0;; k++)
        hit(t, 555 + (int64_t)(k % 3), 100, T0 + (uint64_t)i * 7 + k / 1000);
}

/* Processes SIGKILLed in the middle of their updates, again and again: every
 * word is always whole, so the survivors (and the parent) carry on, and a
 * user's count is still exact afterwards. */
START_TEST(test_killed_process_does_not_wedge)
{
    table t = table_new(64);
    struct timespec pause = {0, 20 * 1000 * 1000};
    for (int round = 0; round < 10; round++) {
        pid_t pids[4];
        for (int i = 0; i < 4; i++)
            pids[i] = spawn(hammer_forever, &t, NULL, i);
        nanosleep(&pause, NULL);
        for (int i = 0; i < 4; i++) {
            ck_assert_int_eq(kill(pids[i], SIGKILL), 0);
            int status = 0;
            ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
            ck_assert(WIFSIGNALED(status));
        }
        /* The hammered users still answer, and a fresh user counts exactly. */
        ratelimit_hit(t.rl, 555, 100, T0);
        int64_t fresh = 10000 + round;
        for (int i = 0; i < 5; i++)
            ck_assert(hit(&t, fresh, 5, T0 + 5 * MINUTE));
        ck_assert(!hit(&t, fresh, 5, T0 + 5 * MINUTE));
    }
    table_free(&t);
}
END_TEST

/* ---- per-connection counter ------------------------------------------ */

START_TEST(test_local_burst)
{
    ratelimit_local s;
    memset(&s, 0, sizeof s);
    ck_assert_uint_le(sizeof s, 8);
    for (int i = 0; i < 10; i++)
        ck_assert(ratelimit_local_hit(&s, 10, 1000, 5000));
    ck_assert(!ratelimit_local_hit(&s, 10, 1000, 5000));
}
END_TEST

START_TEST(test_local_steady_rate)
{
    /* 5 per second for 30 s with a limit of 10: never refused; nor is a steady
     * rate just under the limit. */
    ratelimit_local a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    for (uint32_t t = 0; t < 30000; t += 200)
        ck_assert(ratelimit_local_hit(&a, 10, 1000, 77 + t));
    for (uint32_t t = 0; t < 30000; t += 101)
        ck_assert_msg(ratelimit_local_hit(&b, 10, 1000, 77 + t), "refused at %u ms", t);
    /* 20 per second is not. */
    ratelimit_local c;
    memset(&c, 0, sizeof c);
    bool refused = false;
    for (uint32_t t = 0; t < 3000 && !refused; t += 50)
        refused = !ratelimit_local_hit(&c, 10, 1000, 77 + t);
    ck_assert(refused);
}
END_TEST

START_TEST(test_local_clock_wraps)
{
    ratelimit_local s;
    memset(&s, 0, sizeof s);
    uint32_t now = UINT32_MAX - 300;
    for (int i = 0; i < 10; i++)
        ck_assert(ratelimit_local_hit(&s, 10, 1000, now));
    /* 600 ms later, across the wrap: still the same window. */
    ck_assert(!ratelimit_local_hit(&s, 10, 1000, now + 600));
    /* Idle for a while: forgotten. */
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 10; i++)
        ck_assert(ratelimit_local_hit(&s, 10, 1000, now));
    for (int i = 0; i < 10; i++)
        ck_assert(ratelimit_local_hit(&s, 10, 1000, now + 2500));
}
END_TEST

START_TEST(test_local_limit_zero)
{
    ratelimit_local s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 100000; i++)
        ck_assert(ratelimit_local_hit(&s, 0, 1000, 1));
}
END_TEST

static Suite *ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("window");
    tcase_add_test(tc, test_window_allows);
    tcase_add_test(tc, test_window_wait_exact);
    suite_add_tcase(s, tc);
    tc = tcase_create("table");
    tcase_add_test(tc, test_burst_cut_at_limit);
    tcase_add_test(tc, test_retry_after_honest);
    tcase_add_test(tc, test_sliding_across_boundary);
    tcase_add_test(tc, test_refused_attempts_count);
    tcase_add_test(tc, test_limit_zero);
    tcase_add_test(tc, test_many_users);
    tcase_add_test(tc, test_size);
    tcase_add_test(tc, test_region_shares_limiter);
    suite_add_tcase(s, tc);
    tc = tcase_create("processes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_processes_count_exactly);
    tcase_add_test(tc, test_processes_never_too_strict);
    tcase_add_test(tc, test_killed_process_does_not_wedge);
    suite_add_tcase(s, tc);
    tc = tcase_create("connection");
    tcase_add_test(tc, test_local_burst);
    tcase_add_test(tc, test_local_steady_rate);
    tcase_add_test(tc, test_local_clock_wraps);
    tcase_add_test(tc, test_local_limit_zero);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(ratelimit_suite());
}
