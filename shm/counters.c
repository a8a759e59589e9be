/* counters.c — the label sets of the shared counters and the helpers that feed
 * them (see counters.h). */
#include "shm/counters.h"

#include <time.h>

#include "src/common/auth.h"

/* Bounds suited to sub-millisecond delivery; the le label is kept as text so it
 * reads exactly as written here. */
const counters_bound counters_latency_bounds[COUNTERS_LATENCY_BOUNDS] = {
    {100000u, "0.0001"},    {250000u, "0.00025"},  {500000u, "0.0005"},
    {1000000u, "0.001"},    {2500000u, "0.0025"},  {5000000u, "0.005"},
    {10000000u, "0.01"},    {25000000u, "0.025"},  {100000000u, "0.1"},
    {500000000u, "0.5"},    {1000000000u, "1"},
};
_Static_assert(AUTH_RESULT_COUNT <= COUNTERS_AUTH_REASONS,
               "region_slot.auth_failures must hold every auth_result");

const char *const counters_outcome_label[NOTIFY_OUTCOMES] = {
    [NOTIFY_DELIVERED] = "delivered", [NOTIFY_OFFLINE] = "offline",
    [NOTIFY_DROPPED] = "dropped",     [NOTIFY_INVALID] = "invalid",
    [NOTIFY_NOT_PUSHED] = "not_pushed", [NOTIFY_UNAVAILABLE] = "unavailable",
    [NOTIFY_INTERNAL] = "internal",   [NOTIFY_DUPLICATE] = "duplicate",
    [NOTIFY_EXHAUSTED] = "exhausted", [NOTIFY_UNAUTHENTICATED] = "unauthenticated",
};

unsigned counters_latency_bucket(uint64_t ns)
{
    unsigned i = 0;
    while (i < COUNTERS_LATENCY_BOUNDS && ns > counters_latency_bounds[i].ns)
        i++;
    return i;
}

void counters_observe_latency_ns(region_slot *s, uint64_t ns)
{
    atomic_fetch_add_explicit(&s->latency_bucket[counters_latency_bucket(ns)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&s->latency_sum_ns, ns, memory_order_relaxed);
}

void counters_observe_delivery(region_slot *s, uint64_t accepted_ns)
{
    struct timespec now;
    if (accepted_ns == 0 || clock_gettime(CLOCK_REALTIME, &now) != 0)
        return;
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    /* CLOCK_REALTIME may step back between the master's stamp and now. */
    counters_observe_latency_ns(s, now_ns > accepted_ns ? now_ns - accepted_ns : 0);
}

void counters_count_auth_failure(region_slot *s, int reason)
{
    if (reason > AUTH_OK && reason < AUTH_RESULT_COUNT)
        atomic_fetch_add_explicit(&s->auth_failures[reason], 1, memory_order_relaxed);
}
