/* clock.c — the daemon's clocks (see clock.h). clock_gettime cannot fail for
 * these clocks on Linux; a zeroed timespec would read as 0 if it did. */
#include "src/common/clock.h"

#include <time.h>

static struct timespec now(clockid_t id)
{
    struct timespec ts = {0, 0};
    (void)clock_gettime(id, &ts);
    return ts;
}

uint64_t clock_monotonic_ms(void)
{
    struct timespec ts = now(CLOCK_MONOTONIC);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t clock_realtime_ns(void)
{
    struct timespec ts = now(CLOCK_REALTIME);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t clock_realtime_ms(void) { return clock_realtime_ns() / 1000000u; }
