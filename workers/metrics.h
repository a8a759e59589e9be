/* metrics.h — the Prometheus text exposition served on GET /metrics, rendered
 * from the counters of the shared region (so any worker answers for the whole
 * server, and counters survive worker restarts). */
#ifndef WSN_METRICS_H
#define WSN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4"

/* Upper bound of the exposition: fixed families plus one line per worker slot. */
#define METRICS_MAX_TEXT (24576u + 64u * REGION_MAX_SLOTS)

/* Write the whole exposition into out; node_id (cluster mode, else NULL)
 * adds the cluster's families. Returns its length, or 0 if it does not
 * fit (never with out_size >= METRICS_MAX_TEXT). */
size_t metrics_render(const shm_region *r, const char *node_id, char *out, size_t out_size);

#endif
