/* handoff.c — the WSNOTIFY_WORKER string (see handoff.h):
 *   SLOT:SLOTS:LISTEN_FD:SHM_FD:QUEUE_FD:MASTER_FD:OUT_0,OUT_1,...,OUT_{SLOTS-1} */
#include "shm/handoff.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/region.h"

_Static_assert(HANDOFF_MAX_SLOTS == REGION_MAX_SLOTS, "a worker of every slot can be handed its queues");

int handoff_format(const worker_handoff *h, char *out, size_t out_size)
{
    int n = snprintf(out, out_size, "%d:%d:%d:%d:%d:%d:", h->slot, h->slots, h->listen_fd,
                     h->shm_fd, h->queue_fd, h->master_fd);
    if (n < 0 || (size_t)n >= out_size)
        return -1;
    size_t len = (size_t)n;
    for (int i = 0; i < h->slots; i++) {
        n = snprintf(out + len, out_size - len, i ? ",%d" : "%d", h->queue_out[i]);
        if (n < 0 || (size_t)n >= out_size - len)
            return -1;
        len += (size_t)n;
    }
    return 0;
}

static int parse_int(const char **p, char end, int min, int max)
{
    char *e = NULL;
    errno = 0;
    long v = strtol(*p, &e, 10);
    if (errno != 0 || e == *p || *e != end || v < min || v > max)
        return -1;
    *p = e + (end ? 1 : 0);
    return (int)v;
}

int handoff_parse(const char *spec, worker_handoff *h)
{
    const char *p = spec;
    memset(h, 0, sizeof *h);
    h->slots = 1;
    if ((h->slot = parse_int(&p, ':', 0, HANDOFF_MAX_SLOTS - 1)) < 0 ||
        (h->slots = parse_int(&p, ':', 1, HANDOFF_MAX_SLOTS)) < 0 ||
        (h->listen_fd = parse_int(&p, ':', 0, 1 << 20)) < 0 ||
        (h->shm_fd = parse_int(&p, ':', 0, 1 << 20)) < 0 ||
        (h->queue_fd = parse_int(&p, ':', 0, 1 << 20)) < 0 ||
        (h->master_fd = parse_int(&p, ':', 0, 1 << 20)) < 0 || h->slot >= h->slots)
        return -1;
    for (int i = 0; i < h->slots; i++) {
        char end = i + 1 < h->slots ? ',' : '\0';
        if ((h->queue_out[i] = parse_int(&p, end, 0, 1 << 20)) < 0)
            return -1;
    }
    return 0;
}
