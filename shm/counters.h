/* counters.h — what the shared counters mean: the label of each notification
 * outcome, the bounds of the delivery latency histogram, and the helpers that
 * feed the per-slot counters (401 reasons, delivery latency). The counters
 * themselves live in the shared region (region.h); /metrics renders them. */
#ifndef WSN_COUNTERS_H
#define WSN_COUNTERS_H

#include <stdint.h>

#include "shm/counters-t.h"
#include "shm/region.h"

typedef struct {
    uint64_t ns;
    const char *le;   /* the Prometheus le label, exactly as written */
} counters_bound;

extern const counters_bound counters_latency_bounds[COUNTERS_LATENCY_BOUNDS];
extern const char *const counters_outcome_label[NOTIFY_OUTCOMES];

/* Histogram bucket (index into region_slot.latency_bucket) of a latency. */
unsigned counters_latency_bucket(uint64_t ns);

/* Count one delivery that took ns nanoseconds. */
void counters_observe_latency_ns(region_slot *s, uint64_t ns);

/* Count a delivery of a notification accepted at accepted_ns (CLOCK_REALTIME
 * nanoseconds, set by the master) and written now. 0 = unknown: not counted. */
void counters_observe_delivery(region_slot *s, uint64_t accepted_ns);

/* Count a 401; reason is an auth_result other than AUTH_OK (others ignored). */
void counters_count_auth_failure(region_slot *s, int reason);

#endif
