/* test_metrics.c — the /metrics exposition rendered from a real shared region
 * filled with known values: the exact sample lines, the structure of the text
 * format (HELP then TYPE then samples, once per family, well-formed labels),
 * the histograms (bucket boundaries, cumulative counts, +Inf == _count, _sum),
 * the history's families, and the size bound with 256 slots of maximal
 * counters. */
#include <check.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/counters.h"
#include "shm/region.h"
#include "tests/check_main.h"
#include "src/common/auth.h"
#include "workers/metrics.h"

#define MAX_LINES 2048

static const char *const families[][2] = {
    {"wsnotify_connections", "gauge"},
    {"wsnotify_connections_accepted_total", "counter"},
    {"wsnotify_auth_failures_total", "counter"},
    {"wsnotify_evictions_total", "counter"},
    {"wsnotify_notifications_total", "counter"},
    {"wsnotify_queue_dropped_total", "counter"},
    {"wsnotify_frames_total", "counter"},
    {"wsnotify_worker_restarts_total", "counter"},
    {"wsnotify_delivery_latency_seconds", "histogram"},
    {"wsnotify_history_total", "counter"},
    {"wsnotify_replayed_total", "counter"},
    {"wsnotify_acks_total", "counter"},
    {"wsnotify_marks_lost_total", "counter"},
    {"wsnotify_store_bytes", "gauge"},
    {"wsnotify_store_entries", "gauge"},
    {"wsnotify_ack_waiters", "gauge"},
    {"wsnotify_store_commit_seconds", "histogram"},
};
#define FAMILIES (sizeof families / sizeof families[0])

/* The rendered text split into NUL-terminated lines (in place). */
typedef struct {
    char *text;
    char *line[MAX_LINES];
    size_t n;
} exposition;

static void render(const shm_region *r, exposition *e)
{
    e->text = malloc(METRICS_MAX_TEXT + 1);
    ck_assert_ptr_nonnull(e->text);
    size_t len = metrics_render(r, NULL, e->text, METRICS_MAX_TEXT + 1);
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_le(len, METRICS_MAX_TEXT);
    ck_assert_int_eq(e->text[len - 1], '\n');
    ck_assert_uint_eq(strlen(e->text), len);
    e->n = 0;
    for (char *p = e->text; *p != '\0';) {
        char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        ck_assert_uint_lt(e->n, MAX_LINES);
        e->line[e->n++] = p;
        p = nl + 1;
    }
}

static bool has_line(const exposition *e, const char *want)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->line[i], want) == 0)
            return true;
    return false;
}

static void expect_line(const exposition *e, const char *want)
{
    ck_assert_msg(has_line(e, want), "missing line: %s", want);
}

static bool name_char(char ch) { return isalnum((unsigned char)ch) || ch == '_'; }

/* The family a sample name belongs to (histogram suffixes stripped). */
static int family_of(const char *name, size_t len)
{
    for (size_t f = 0; f < FAMILIES; f++) {
        size_t fl = strlen(families[f][0]);
        if (len == fl && memcmp(name, families[f][0], fl) == 0)
            return (int)f;
        if (strcmp(families[f][1], "histogram") == 0 && len > fl &&
            memcmp(name, families[f][0], fl) == 0) {
            const char *sfx = name + fl;
            size_t sl = len - fl;
            if ((sl == 7 && memcmp(sfx, "_bucket", 7) == 0) ||
                (sl == 4 && memcmp(sfx, "_sum", 4) == 0) ||
                (sl == 6 && memcmp(sfx, "_count", 6) == 0))
                return (int)f;
        }
    }
    return -1;
}

/* {name="value",...}: names are identifiers, values quoted without escapes. */
static const char *skip_labels(const char *p, const char *line)
{
    if (*p != '{')
        return p;
    p++;
    for (;;) {
        const char *start = p;
        while (name_char(*p))
            p++;
        ck_assert_msg(p > start && !isdigit((unsigned char)*start), "bad label name: %s", line);
        ck_assert_msg(p[0] == '=' && p[1] == '"', "bad label: %s", line);
        p += 2;
        while (*p != '"') {
            ck_assert_msg(*p != '\0' && *p != '\\' && *p != '\n', "bad label value: %s", line);
            p++;
        }
        p++;
        if (*p == '}')
            return p + 1;
        ck_assert_msg(*p == ',', "bad label list: %s", line);
        p++;
    }
}

/* Every line is a HELP, a TYPE or a sample; each family has HELP then TYPE then
 * its samples, in one block; sample values are numbers. */
static void check_structure(const exposition *e)
{
    int state[FAMILIES] = {0}; /* 0 none, 1 HELP, 2 TYPE, 3 samples, 4 done */
    int current = -1;
    for (size_t i = 0; i < e->n; i++) {
        const char *l = e->line[i];
        char name[128], type[32];
        if (strncmp(l, "# HELP ", 7) == 0) {
            ck_assert_int_eq(sscanf(l + 7, "%127s", name), 1);
            int f = family_of(name, strlen(name));
            ck_assert_msg(f >= 0 && strcmp(name, families[f][0]) == 0, "HELP of %s", name);
            ck_assert_msg(state[f] == 0, "second HELP for %s", name);
            ck_assert_msg(strlen(l) > 8 + strlen(name), "empty HELP for %s", name);
            if (current >= 0)
                state[current] = 4;
            current = f;
            state[f] = 1;
        } else if (strncmp(l, "# TYPE ", 7) == 0) {
            ck_assert_int_eq(sscanf(l + 7, "%127s %31s", name, type), 2);
            int f = family_of(name, strlen(name));
            ck_assert_msg(f == current && state[f] == 1, "TYPE out of place: %s", l);
            ck_assert_str_eq(type, families[f][1]);
            state[f] = 2;
        } else {
            ck_assert_msg(l[0] != '#' && l[0] != '\0', "unexpected line: '%s'", l);
            const char *p = l;
            while (name_char(*p))
                p++;
            int f = family_of(l, (size_t)(p - l));
            ck_assert_msg(f >= 0 && f == current && state[f] >= 2, "sample out of place: %s", l);
            state[f] = 3;
            p = skip_labels(p, l);
            ck_assert_msg(*p == ' ', "no value: %s", l);
            char *end = NULL;
            strtod(p + 1, &end);
            ck_assert_msg(end != p + 1 && *end == '\0', "bad value: %s", l);
        }
    }
    for (size_t f = 0; f < FAMILIES; f++)
        ck_assert_msg(state[f] >= 3, "family %s missing or without samples", families[f][0]);
}

static unsigned long long sample(const exposition *e, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->line[i], prefix, n) == 0 && e->line[i][n] == ' ')
            return strtoull(e->line[i] + n + 1, NULL, 10);
    ck_abort_msg("no sample %s", prefix);
    return 0;
}

/* Buckets of histogram name in order, non-decreasing, le increasing (the
 * same bounds for every histogram), last +Inf == _count. */
static void check_histogram_of(const exposition *e, const char *name,
                               unsigned long long want_count)
{
    char bucket[128];
    snprintf(bucket, sizeof bucket, "%s_bucket{le=\"", name);
    size_t blen = strlen(bucket);
    unsigned long long prev = 0;
    double prev_le = -1;
    int buckets = 0;
    bool inf = false;
    for (size_t i = 0; i < e->n; i++) {
        const char *l = e->line[i];
        if (strncmp(l, bucket, blen) != 0)
            continue;
        ck_assert_msg(!inf, "bucket after +Inf: %s", l);
        const char *le = l + blen;
        const char *q = strchr(le, '"');
        ck_assert_ptr_nonnull(q);
        if (strncmp(le, "+Inf\"", 5) == 0) {
            inf = true;
        } else {
            ck_assert_int_lt(buckets, COUNTERS_LATENCY_BOUNDS);
            ck_assert_msg(strncmp(le, counters_latency_bounds[buckets].le,
                                  strlen(counters_latency_bounds[buckets].le)) == 0,
                          "le not the delivery latency's: %s", l);
            double v = strtod(le, NULL);
            ck_assert_msg(v > prev_le, "le not increasing: %s", l);
            prev_le = v;
        }
        unsigned long long v = strtoull(q + 3, NULL, 10);
        ck_assert_msg(v >= prev, "cumulative bucket decreased: %s", l);
        prev = v;
        buckets++;
    }
    ck_assert(inf);
    ck_assert_int_eq(buckets, REGION_LATENCY_BUCKETS);
    char count[128];
    snprintf(count, sizeof count, "%s_count", name);
    ck_assert_uint_eq(prev, sample(e, count));
    ck_assert_uint_eq(prev, want_count);
}

static void check_histogram(const exposition *e, unsigned long long want_count)
{
    check_histogram_of(e, "wsnotify_delivery_latency_seconds", want_count);
}

static void fill(shm_region *r)
{
    static const int64_t conns[4] = {3, 0, 5, 1};
    for (int i = 0; i < 4; i++) {
        region_slot *s = &r->hdr->slot[i];
        atomic_store(&s->connections, conns[i]);
        atomic_store(&s->accepted, (uint64_t)(10 * (i + 1)));
        atomic_store(&s->evictions, (uint64_t)i);
        atomic_store(&s->frames_in, 100);
        atomic_store(&s->frames_out, 200);
        atomic_store(&s->queue_dropped, i == 3 ? 7 : 0);
        atomic_store(&s->restarts, i == 1 ? 2 : 0);
        atomic_store(&s->replayed, (uint64_t)(1000 * (i + 1)));
        atomic_store(&s->acks, (uint64_t)(i + 40));
        atomic_store(&s->marks_lost, i == 2 ? 9 : 0);
        counters_count_auth_failure(s, AUTH_BAD_SIGNATURE);
    }
    for (int k = 0; k < HISTORY_COUNTERS; k++)
        atomic_store(&r->hdr->history[k], (uint64_t)(k + 1) * 11);
    atomic_store(&r->hdr->store_bytes, 1u << 20);
    atomic_store(&r->hdr->store_entries, 4242);
    atomic_store(&r->hdr->ack_waiters, 3);
    /* Commit latency: 2 within 250 us, 1 at 1 ms, 1 over every bound. */
    atomic_store(&r->hdr->commit_bucket[counters_latency_bucket(120000)], 2);
    atomic_store(&r->hdr->commit_bucket[counters_latency_bucket(1000000)], 1);
    atomic_store(&r->hdr->commit_bucket[COUNTERS_LATENCY_BOUNDS], 1);
    atomic_store(&r->hdr->commit_sum_ns, 3001240000u);
    counters_count_auth_failure(&r->hdr->slot[2], AUTH_EXPIRED);
    counters_count_auth_failure(&r->hdr->slot[2], AUTH_OK);              /* ignored */
    counters_count_auth_failure(&r->hdr->slot[2], AUTH_RESULT_COUNT);    /* ignored */
    counters_count_auth_failure(&r->hdr->slot[2], -1);                   /* ignored */
    for (int k = 0; k < NOTIFY_OUTCOMES; k++)
        for (int j = 0; j <= k; j++)
            region_count_notification(r, (notify_outcome)k);
    counters_observe_latency_ns(&r->hdr->slot[0], 50000);        /* 0.0001 */
    counters_observe_latency_ns(&r->hdr->slot[1], 300000);       /* 0.0005 */
    counters_observe_latency_ns(&r->hdr->slot[2], 300000);       /* 0.0005 */
    counters_observe_latency_ns(&r->hdr->slot[3], 2000000000u);  /* +Inf only */
}

START_TEST(test_known_values)
{
    shm_region r;
    ck_assert_int_eq(region_create(&r, 4, 64), 0);
    fill(&r);
    exposition e;
    render(&r, &e);
    check_structure(&e);
    expect_line(&e, "wsnotify_connections{worker=\"0\"} 3");
    expect_line(&e, "wsnotify_connections{worker=\"1\"} 0");
    expect_line(&e, "wsnotify_connections{worker=\"2\"} 5");
    expect_line(&e, "wsnotify_connections{worker=\"3\"} 1");
    ck_assert(!has_line(&e, "wsnotify_connections{worker=\"4\"} 0"));
    expect_line(&e, "wsnotify_connections_accepted_total 100");
    expect_line(&e, "wsnotify_evictions_total 6");
    expect_line(&e, "wsnotify_queue_dropped_total 7");
    expect_line(&e, "wsnotify_worker_restarts_total 2");
    expect_line(&e, "wsnotify_frames_total{direction=\"in\"} 400");
    expect_line(&e, "wsnotify_frames_total{direction=\"out\"} 800");
    expect_line(&e, "wsnotify_notifications_total{outcome=\"delivered\"} 1");
    expect_line(&e, "wsnotify_notifications_total{outcome=\"offline\"} 2");
    expect_line(&e, "wsnotify_notifications_total{outcome=\"dropped\"} 3");
    expect_line(&e, "wsnotify_notifications_total{outcome=\"invalid\"} 4");
    expect_line(&e, "wsnotify_notifications_total{outcome=\"not_pushed\"} 5");
    expect_line(&e, "wsnotify_auth_failures_total{reason=\"bad_signature\"} 4");
    expect_line(&e, "wsnotify_auth_failures_total{reason=\"token_expired\"} 1");
    /* Every reason of auth.h has its series, zero or not; AUTH_OK has none. */
    for (int a = AUTH_OK + 1; a < AUTH_RESULT_COUNT; a++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "wsnotify_auth_failures_total{reason=\"%s\"}",
                 auth_result_reason((auth_result)a));
        (void)sample(&e, prefix);
    }
    expect_line(&e, "wsnotify_delivery_latency_seconds_bucket{le=\"0.0001\"} 1");
    expect_line(&e, "wsnotify_delivery_latency_seconds_bucket{le=\"0.00025\"} 1");
    expect_line(&e, "wsnotify_delivery_latency_seconds_bucket{le=\"0.0005\"} 3");
    expect_line(&e, "wsnotify_delivery_latency_seconds_bucket{le=\"1\"} 3");
    expect_line(&e, "wsnotify_delivery_latency_seconds_bucket{le=\"+Inf\"} 4");
    expect_line(&e, "wsnotify_delivery_latency_seconds_sum 2.000650000");
    expect_line(&e, "wsnotify_delivery_latency_seconds_count 4");
    check_histogram(&e, 4);
    expect_line(&e, "wsnotify_history_total{event=\"stored\"} 11");
    expect_line(&e, "wsnotify_history_total{event=\"duplicates\"} 22");
    expect_line(&e, "wsnotify_history_total{event=\"trimmed\"} 33");
    expect_line(&e, "wsnotify_history_total{event=\"expired\"} 44");
    expect_line(&e, "wsnotify_history_total{event=\"evicted\"} 55");
    expect_line(&e, "wsnotify_history_total{event=\"commit_failed\"} 66");
    expect_line(&e, "wsnotify_replayed_total 10000");
    expect_line(&e, "wsnotify_acks_total 166");
    expect_line(&e, "wsnotify_marks_lost_total 9");
    expect_line(&e, "wsnotify_store_bytes 1048576");
    expect_line(&e, "wsnotify_store_entries 4242");
    expect_line(&e, "wsnotify_ack_waiters 3");
    expect_line(&e, "wsnotify_store_commit_seconds_bucket{le=\"0.0001\"} 0");
    expect_line(&e, "wsnotify_store_commit_seconds_bucket{le=\"0.00025\"} 2");
    expect_line(&e, "wsnotify_store_commit_seconds_bucket{le=\"0.001\"} 3");
    expect_line(&e, "wsnotify_store_commit_seconds_bucket{le=\"1\"} 3");
    expect_line(&e, "wsnotify_store_commit_seconds_bucket{le=\"+Inf\"} 4");
    expect_line(&e, "wsnotify_store_commit_seconds_sum 3.001240000");
    check_histogram_of(&e, "wsnotify_store_commit_seconds", 4);
    free(e.text);
    region_detach(&r);
}
END_TEST

START_TEST(test_empty_region)
{
    shm_region r;
    ck_assert_int_eq(region_create(&r, 1, 16), 0);
    exposition e;
    render(&r, &e);
    check_structure(&e);
    expect_line(&e, "wsnotify_connections{worker=\"0\"} 0");
    expect_line(&e, "wsnotify_worker_restarts_total 0");
    expect_line(&e, "wsnotify_delivery_latency_seconds_sum 0.000000000");
    check_histogram(&e, 0);
    /* The history's series are there without history too, at zero. */
    for (const char *const *l = (const char *const[]){
             "wsnotify_history_total{event=\"stored\"} 0",
             "wsnotify_history_total{event=\"duplicates\"} 0",
             "wsnotify_history_total{event=\"trimmed\"} 0",
             "wsnotify_history_total{event=\"expired\"} 0",
             "wsnotify_history_total{event=\"evicted\"} 0",
             "wsnotify_history_total{event=\"commit_failed\"} 0",
             "wsnotify_replayed_total 0", "wsnotify_acks_total 0", "wsnotify_marks_lost_total 0",
             "wsnotify_store_bytes 0", "wsnotify_store_entries 0", "wsnotify_ack_waiters 0",
             "wsnotify_store_commit_seconds_sum 0.000000000", NULL};
         *l != NULL; l++)
        expect_line(&e, *l);
    check_histogram_of(&e, "wsnotify_store_commit_seconds", 0);
    free(e.text);
    region_detach(&r);
}
END_TEST

START_TEST(test_bucket_boundaries)
{
    /* le is inclusive: a value equal to a bound is in that bucket. */
    ck_assert_uint_eq(counters_latency_bucket(0), 0);
    ck_assert_uint_eq(counters_latency_bucket(100000), 0);
    ck_assert_uint_eq(counters_latency_bucket(100001), 1);
    ck_assert_uint_eq(counters_latency_bucket(250000), 1);
    ck_assert_uint_eq(counters_latency_bucket(1000000), 3);
    ck_assert_uint_eq(counters_latency_bucket(1000000000u), REGION_LATENCY_BUCKETS - 2);
    ck_assert_uint_eq(counters_latency_bucket(1000000001u), REGION_LATENCY_BUCKETS - 1);
    ck_assert_uint_eq(counters_latency_bucket(UINT64_MAX), REGION_LATENCY_BUCKETS - 1);
}
END_TEST

START_TEST(test_observe_delivery)
{
    shm_region r;
    ck_assert_int_eq(region_create(&r, 1, 16), 0);
    region_slot *s = &r.hdr->slot[0];
    counters_observe_delivery(s, 0); /* unknown acceptance time: not counted */
    struct timespec now;
    ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &now), 0);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    counters_observe_delivery(s, now_ns + 3600000000000u); /* clock stepped back: 0 s */
    counters_observe_delivery(s, now_ns - 5000000000u);    /* 5 s ago: over every bound */
    ck_assert_uint_eq(atomic_load(&s->latency_bucket[0]), 1);
    ck_assert_uint_eq(atomic_load(&s->latency_bucket[REGION_LATENCY_BUCKETS - 1]), 1);
    uint64_t sum = atomic_load(&s->latency_sum_ns);
    ck_assert_uint_ge(sum, 5000000000u);
    ck_assert_uint_lt(sum, 65000000000u);
    exposition e;
    render(&r, &e);
    check_histogram(&e, 2);
    free(e.text);
    region_detach(&r);
}
END_TEST

START_TEST(test_size_bound)
{
    shm_region r;
    ck_assert_int_eq(region_create(&r, REGION_MAX_SLOTS, 16), 0);
    for (int i = 0; i < REGION_MAX_SLOTS; i++) {
        region_slot *s = &r.hdr->slot[i];
        atomic_store(&s->connections, INT64_MAX);
        atomic_store(&s->accepted, UINT64_MAX / REGION_MAX_SLOTS);
        atomic_store(&s->latency_sum_ns, UINT64_MAX / REGION_MAX_SLOTS);
        for (int a = 0; a < REGION_AUTH_REASONS; a++)
            atomic_store(&s->auth_failures[a], UINT64_MAX / REGION_MAX_SLOTS);
        for (int b = 0; b < REGION_LATENCY_BUCKETS; b++)
            atomic_store(&s->latency_bucket[b], UINT64_MAX / REGION_MAX_SLOTS / 16);
        atomic_store(&s->replayed, UINT64_MAX / REGION_MAX_SLOTS);
        atomic_store(&s->acks, UINT64_MAX / REGION_MAX_SLOTS);
        atomic_store(&s->marks_lost, UINT64_MAX / REGION_MAX_SLOTS);
    }
    for (int k = 0; k < HISTORY_COUNTERS; k++)
        atomic_store(&r.hdr->history[k], UINT64_MAX);
    for (int b = 0; b < REGION_LATENCY_BUCKETS; b++)
        atomic_store(&r.hdr->commit_bucket[b], UINT64_MAX / 16);
    atomic_store(&r.hdr->commit_sum_ns, UINT64_MAX);
    atomic_store(&r.hdr->store_bytes, UINT64_MAX);
    atomic_store(&r.hdr->store_entries, UINT64_MAX);
    atomic_store(&r.hdr->ack_waiters, UINT64_MAX);
    exposition e;
    render(&r, &e);
    check_structure(&e);
    expect_line(&e, "wsnotify_connections{worker=\"255\"} 9223372036854775807");
    free(e.text);
    /* Too small a buffer is refused, never truncated. */
    char small[512];
    ck_assert_uint_eq(metrics_render(&r, NULL, small, sizeof small), 0);
    ck_assert_uint_eq(metrics_render(&r, NULL, small, 0), 0);
    region_detach(&r);
}
END_TEST

START_TEST(test_negative_gauge_clamped)
{
    shm_region r;
    ck_assert_int_eq(region_create(&r, 2, 16), 0);
    atomic_store(&r.hdr->slot[1].connections, -2);
    exposition e;
    render(&r, &e);
    expect_line(&e, "wsnotify_connections{worker=\"1\"} 0");
    free(e.text);
    region_detach(&r);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_known_values);
    tcase_add_test(tc, test_empty_region);
    tcase_add_test(tc, test_bucket_boundaries);
    tcase_add_test(tc, test_observe_delivery);
    tcase_add_test(tc, test_size_bound);
    tcase_add_test(tc, test_negative_gauge_clamped);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(metrics_suite());
}
