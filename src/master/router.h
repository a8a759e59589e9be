/* router.h — a notification's path from the gRPC endpoint to a worker:
 * validate the request, number and timestamp it, build the client JSON once,
 * find the user's holder in the directory, queue one datagram to that slot,
 * and hand it to the history (history.h) to be committed before the answer.
 * Also Broadcast (every worker, not stored) and GetNotificationStatus (read
 * from the store). Called from the master's gRPC thread; it touches the shared
 * region (atomics, the lock-free directory lookup), the queue sockets, the
 * history's hand-over and its own read view of the store. */
#ifndef WSN_ROUTER_H
#define WSN_ROUTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"
#include "src/master/notify.h"

struct history;
struct store;
struct cluster;

typedef struct {
    shm_region *shm;
    int slots;
    const int *queue_out;     /* sender end of each slot's queue */
    struct history *history;  /* NULL: --history-size 0 on a single node (nothing stored) */
    struct cluster *cluster;  /* cluster mode (README "Cluster"); NULL: a single node */
    bool stores;              /* --history-size > 0 */
    struct store *view;       /* the gRPC thread's read view of the store (with history) */
    uint64_t ttl_ns;          /* --history-ttl */
    /* Per slot: the second of the last "queue full" line, and calls since. */
    _Atomic int64_t drop_logged_at[REGION_MAX_SLOTS];
    _Atomic uint64_t drop_quiet[REGION_MAX_SLOTS];
    int64_t ts_second;        /* the second ts_text says (the gRPC thread's cache) */
    char ts_text[21];
} router;

/* SendNotification (n = 1) and SendNotifications (batch): every request is
 * checked first and the first invalid one rejects the call ("notifications[3]:
 * title is required" in a batch), nothing sent. Then each is numbered, pushed
 * to the worker holding its user, and stored. Without history the results are
 * final on return (ROUTE_OK). With history the call is answered through
 * reply->done once committed (and acked or timed out, for wait_ack_ms):
 * ROUTE_DEFERRED, or ROUTE_OK when nothing needed the store (every request a
 * duplicate). Every request is counted in exactly one outcome. */
route_status router_submit(router *r, const notify_request *reqs, size_t n, bool batch,
                           notify_reply *reply, char *err, size_t err_size);

/* router_submit of one request without history (for the tests and tools). */
route_status router_send(router *r, const notify_request *req, notify_result *res, char *err,
                         size_t err_size);

/* Broadcast: checked like a notification (no user), numbered, queued to every
 * worker, not stored. reply->recipients: the open connections of the workers
 * it was queued to. ROUTE_OK with reply filled, or (cluster mode)
 * ROUTE_DEFERRED: reply->done is called once the other nodes have counted. */
route_status router_broadcast(router *r, const notify_request *req,
                              notify_broadcast_reply *reply, char *err, size_t err_size);

/* GetNotificationStatus. Returns 0 (found), 1 (not in the user's history), -1
 * (the store failed), 2 (cluster mode: Redis out of reach). */
int router_status(router *r, int64_t user, int64_t id, notify_status *out);

#endif
