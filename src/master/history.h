/* history.h — the master's side of the notification history (README
 * "History"): the store's one writer, on a thread of its own. The gRPC thread
 * hands it every accepted notification (history_submit) after pushing it to
 * the worker; the history thread commits them in groups (one transaction per
 * drain), publishes committed_seq in the shared region, applies the workers'
 * SENT/ACKED marks (the master's queue), completes the calls waiting for an
 * ack (wait_ack_ms), sweeps expired entries, and only then answers: an OK
 * means committed.
 *
 * Ownership: an item belongs to the history from history_submit until its
 * reply's done() has been called (on the history thread), which frees it. */
#ifndef WSN_HISTORY_H
#define WSN_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"
#include "src/common/redis_url.h"
#include "src/master/notify.h"

struct store;
struct cluster;
struct cluster_broadcast;

#define HISTORY_MAX_WAITERS 10000   /* calls waiting for an ack at once; more: RESOURCE_EXHAUSTED */
#define HISTORY_SWEEP_MS 10000      /* expired entries are swept this often */

typedef struct history history;

typedef struct {
    /* Cluster mode (README "Cluster"): the history lives in Redis at
     * redis_url and dir is unused; else the LMDB store in dir. */
    const redis_url *redis_url;
    const char *node_id;
    int slots;
    const int *queue_out;      /* cluster mode: each slot's queue, for routed notifications */
    const char *dir;           /* the store's directory (exists) */
    bool durable;              /* false: the private temporary store (no fsync) */
    uint32_t history_size;     /* > 0, or 0 in cluster mode (routing only) */
    uint64_t ttl_ns;
    uint64_t map_size;         /* bytes */
    int marks_fd;              /* the master's queue, reading end */
} history_options;

/* One accepted notification on its way into the store. */
typedef struct history_item {
    struct history_item *next;
    int64_t user;
    int64_t id;
    uint64_t seq;
    uint64_t accepted_ns;
    notify_outcome outcome;       /* what the push did (delivered, offline, ...) */
    bool push;
    bool dup_of_pending;          /* a retry of a caller id not committed yet: not stored */
    /* Cluster mode: what the APPEND script is asked (RASK_*: route it to a
     * holder elsewhere, or anywhere), and what it answered (r_status 0:
     * failed; RAPPEND_*, RROUTE_*, the holder's generation, the cluster seq). */
    uint8_t ask;
    bool check_dup;               /* a caller id: a duplicate of it is not stored or sent */
    uint8_t r_status;
    uint8_t r_route;
    uint32_t r_gen;
    uint64_t r_seq;
    int32_t wait_ack_ms;          /* > 0 and delivered: answered on the ack or the deadline */
    uint64_t deadline_ms;         /* history thread: CLOCK_MONOTONIC ms */
    notify_reply *reply;
    size_t index;                 /* its result in reply->results */
    uint32_t json_len;
    char json[];                  /* the client JSON, exactly as pushed */
} history_item;

/* Open the store as its writer (a second daemon on the directory fails here,
 * named in err), set the id counter and committed_seq in shm from it, and
 * start the thread. Returns 0, or -1 with err. */
int history_open(history **out, shm_region *shm, const history_options *o, char *err,
                 size_t err_size);

/* The writer's store, for the gRPC thread to open its own read view of
 * (store_view) before any history_submit. NULL in cluster mode. */
struct store *history_store(history *h);

/* The cluster (cluster.h) in cluster mode, else NULL. */
struct cluster *history_cluster(history *h);

/* Cluster mode: hand a Broadcast to the history thread, which publishes it
 * to the other nodes and answers it (cluster_broadcast_start). */
void history_broadcast(history *h, struct cluster_broadcast *b);

/* A new item for json (copied). NULL: out of memory. */
history_item *history_item_new(const char *json, size_t len);

/* Hand items (linked by next, in seq order) over; the thread commits them
 * with the next group. */
void history_submit(history *h, history_item *first, history_item *last);

/* A caller id of user in an item submitted but not committed yet. */
bool history_pending_id(history *h, int64_t user, int64_t id);

/* Room for n more calls waiting for an ack (taken when true; the history gives
 * it back as each is answered). */
bool history_reserve_waiters(history *h, size_t n);
void history_unreserve_waiters(history *h, size_t n);

/* Answer every call waiting for an ack now (acked false): the server is
 * stopping and must not make the drain wait for acks. */
void history_release_waiters(history *h);

/* Commit and answer what was submitted, stop the thread, close the store.
 * NULL is a no-op. */
void history_close(history *h);

#endif
