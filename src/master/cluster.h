/* cluster.h — the master's side of cluster mode (README "Cluster"): its two
 * Redis connections (commands; and the subscriber of this node's channel and
 * of the broadcast channel), the node's liveness key, the id leases, the
 * history's appends and marks as the Lua scripts of redis_scripts.h, holders
 * released, evictions answered, notifications and signals from other nodes
 * handed to the workers' queues, broadcasts summed over the nodes.
 *
 * Threads. cluster_is_up and cluster_next_id may be called from any thread,
 * cluster_status from the gRPC thread only (it has a connection of its own);
 * everything else runs on the history thread, which drives the cluster
 * (history.c). Redis being down is a state, never an error that stops
 * anything: the history thread reconnects with back-off and the callers get
 * "unavailable" meanwhile. */
#ifndef WSN_CLUSTER_H
#define WSN_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"
#include "shm/store.h"
#include "src/common/redis_url.h"
#include "src/master/notify.h"

#define CLUSTER_BROADCAST_WAIT_MS 1000   /* other nodes' counts are awaited this long */
#define CLUSTER_RETRY_MIN_MS 100         /* reconnect back-off: doubling up to the max */
#define CLUSTER_RETRY_MAX_MS 1000
#define CLUSTER_TIMEOUT_MS 2000          /* a Redis call that takes longer drops the connection */

struct history_item;
typedef struct cluster cluster;

typedef struct {
    redis_url url;
    const char *node_id;           /* --node-id */
    shm_region *shm;
    int slots;
    const int *queue_out;          /* sender end of each slot's queue */
    uint32_t history_size;         /* 0: nothing stored, routing only */
    uint64_t ttl_ms;
    int wake_fd;                   /* eventfd the history thread polls: written when ids run low */
    void (*on_ack)(void *ctx, int64_t user, int64_t id);  /* an ack from another node */
    void *ctx;
} cluster_options;

/* A Broadcast on its way to the other nodes. */
typedef struct cluster_broadcast {
    struct cluster_broadcast *next;
    notify_broadcast_reply *reply;  /* recipients: this node's, then the sum */
    uint64_t accepted_ns;
    int expected;                   /* other nodes that received it */
    int answered;
    uint64_t deadline_ms;
    uint32_t json_len;
    char json[];
} cluster_broadcast;

/* Set up (no connection yet: the history thread connects). Returns 0, or -1
 * with err (out of memory). */
int cluster_open(cluster **out, const cluster_options *o, char *err, size_t err_size);

/* Remove this node's liveness key (other nodes stop routing here at once),
 * close the connections, answer pending broadcasts. NULL ok. */
void cluster_close(cluster *c);

/* "3f09c2…": this run of the node (16 hex digits), its name in Redis. */
const char *cluster_instance(const cluster *c);

/* Both connections are up (any thread). */
bool cluster_is_up(const cluster *c);

/* A cluster-unique id from the leased blocks (any thread). Returns 0, or -1
 * when none is left (Redis out of reach long enough to use up the spare). */
int cluster_next_id(cluster *c, int64_t *id);

/* GetNotificationStatus (the gRPC thread). 0 found, 1 not in the history,
 * -1 Redis out of reach. */
int cluster_status(cluster *c, int64_t user, int64_t id, notify_status *out);

/* ---- the history thread ---- */

/* The subscriber's socket to poll for reading, -1 while down. */
int cluster_fd(const cluster *c);

/* Reconnect when due, read what the subscriber got (readable), refresh the
 * liveness key, lease ids, time out broadcasts. Returns the milliseconds
 * until it wants to run again. */
int cluster_service(cluster *c, bool readable);

/* One round: the items' APPENDs (results into each item's r_* fields), the
 * marks (one RMARK_* per mark into mark_results), then — in a round that
 * took the marks (with_marks) — the holders released and the evictions
 * answered since, pipelined on the command connection in that order. An
 * eviction answer waits until marks_read (per slot: the last marks datagram
 * this round includes) covers every SENT mark that was pending when it was
 * queued. Returns 0, or -1 with err (every item and mark failed; the
 * connection is dropped when it broke). */
int cluster_round(cluster *c, struct history_item *items, const store_mark *marks,
                  size_t n_marks, uint8_t *mark_results, bool with_marks,
                  const uint64_t *marks_read, char *err, size_t err_size);

/* Eviction answers wait: the next round should take the marks. */
bool cluster_answers_waiting(const cluster *c);

/* Queued for the next round (dropped past a bound while Redis is down: the
 * holders are re-announced, evicted sessions are not waited for forever). */
void cluster_release(cluster *c, int64_t user, uint32_t generation);
void cluster_evicted(cluster *c, int64_t user, uint64_t instance, uint32_t generation);

/* Publish b to the other nodes; b->reply->done is called (and b freed) once
 * they all counted, or after CLUSTER_BROADCAST_WAIT_MS, or at once when
 * Redis is out of reach. */
void cluster_broadcast_start(cluster *c, cluster_broadcast *b);

#endif
