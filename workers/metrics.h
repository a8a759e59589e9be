/* metrics.h — the Prometheus text exposition served on GET /metrics, rendered
 * from the counters of the shared region (so any worker answers for the whole
 * server, and counters survive worker restarts), and the helpers the workers
 * use to feed the counters that exist only for /metrics. */
#ifndef WSN_METRICS_H
#define WSN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4"

/* Upper bound of the exposition: fixed families plus one line per worker slot. */
#define METRICS_MAX_TEXT (8192u + 64u * REGION_MAX_SLOTS)

/* Histogram bucket (index into region_slot.latency_bucket) of a latency. */
unsigned metrics_latency_bucket(uint64_t ns);

/* Count one delivery that took ns nanoseconds. */
void metrics_observe_latency_ns(region_slot *s, uint64_t ns);

/* Count a delivery of a notification accepted at accepted_ns (CLOCK_REALTIME
 * nanoseconds, set by the master) and written now. 0 = unknown: not counted. */
void metrics_observe_delivery(region_slot *s, uint64_t accepted_ns);

/* Count a 401; reason is an auth_result other than AUTH_OK (others ignored). */
void metrics_count_auth_failure(region_slot *s, int reason);

/* Write the whole exposition into out. Returns its length, or 0 if it does not
 * fit (never with out_size >= METRICS_MAX_TEXT). */
size_t metrics_render(const shm_region *r, char *out, size_t out_size);

#endif
