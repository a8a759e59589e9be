/* fanout.h — one datagram to every accepting worker of this node: how a
 * Broadcast reaches the workers, whether it was sent here (router.c) or
 * came from another node (cluster.c). */
#ifndef WSN_FANOUT_H
#define WSN_FANOUT_H

#include <stdint.h>

#include "shm/queue.h"
#include "shm/region.h"

/* Queue m to every ready slot. failed (may be NULL) hears of each slot whose
 * queue refused it (errno in err). Returns the open connections of the
 * slots it was queued to (read before each send: the ones it will reach). */
int64_t fanout_to_workers(shm_region *shm, int slots, const int *queue_out, const queue_msg *m,
                          void (*failed)(void *ctx, int slot, int err), void *ctx);

#endif
