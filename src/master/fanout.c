/* fanout.c — a datagram to every accepting worker (see fanout.h). */
#include "src/master/fanout.h"

#include <errno.h>
#include <stdatomic.h>

int64_t fanout_to_workers(shm_region *shm, int slots, const int *queue_out, const queue_msg *m,
                          void (*failed)(void *ctx, int slot, int err), void *ctx)
{
    int64_t recipients = 0;
    for (int s = 0; s < slots; s++) {
        int64_t open = atomic_load_explicit(&shm->hdr->slot[s].connections,
                                            memory_order_relaxed);
        if (atomic_load_explicit(&shm->hdr->slot[s].ready, memory_order_relaxed) == 0)
            continue;
        if (queue_send(queue_out[s], m) != 0) {
            if (failed != NULL)
                failed(ctx, s, errno);
            continue;
        }
        recipients += open > 0 ? open : 0;
    }
    return recipients;
}
