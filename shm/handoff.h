/* handoff.h — what the master hands a worker it starts: the slot and the
 * inherited descriptors (listening socket, shared region, the slot's queue, the
 * master's queue and every slot's sending end), carried as one string in the
 * environment variable WSNOTIFY_WORKER of the exec'd worker. The history
 * store's directory goes in WSNOTIFY_STORE (absent: no history). */
#ifndef WSN_HANDOFF_H
#define WSN_HANDOFF_H

#include <stddef.h>

#define HANDOFF_MAX_SLOTS 256
#define HANDOFF_STORE_ENV "WSNOTIFY_STORE"
/* Cluster mode: the master's instance name in Redis (cluster.h), for the
 * workers' claims and announcements. */
#define HANDOFF_INSTANCE_ENV "WSNOTIFY_INSTANCE"

typedef struct {
    int slot;
    int slots;
    int listen_fd;
    int shm_fd;
    int queue_fd;                       /* this slot's worker end */
    int master_fd;                      /* sender end of the master's queue (marks) */
    int queue_out[HANDOFF_MAX_SLOTS];   /* every slot's sender end */
} worker_handoff;

/* Parse the string the master puts in WSNOTIFY_WORKER. Returns 0 or -1. */
int handoff_parse(const char *spec, worker_handoff *h);

/* Format it (for the master). Returns 0, or -1 if it does not fit. */
int handoff_format(const worker_handoff *h, char *out, size_t out_size);

#endif
