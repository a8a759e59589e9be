/* router.c — number, route and store notifications (see router.h).
 *
 * The order of a notification's steps is the history's hand-over (README
 * "History"): its seq is taken, then (after a full fence) its user is looked
 * up in the directory and the datagram queued, and only then is it handed to
 * the history. A connection that claimed its user before the lookup gets it
 * live; one that claimed after reads it from the store, because it waits for
 * committed_seq to reach the seq it read after its claim.
 *
 * Cluster mode (README "Cluster"): ids come from the cluster's leased blocks;
 * a notification for a user held on this node is pushed as above and then
 * stored (and routed nowhere); one for a user not here is stored and routed
 * by the history thread's APPEND script to the holder's node; one with a
 * caller id is checked for a duplicate by that script before it is sent
 * anywhere. Without Redis, what needs it is answered UNAVAILABLE.
 *
 * Queue-full policy: a worker that does not drain its queue (stuck, or
 * respawning) must neither slow the gRPC endpoint for everybody else nor lose
 * a notification silently. The router never waits for room: a full queue is
 * answered delivered=false at once, counted as dropped, and logged (at most
 * once a second per worker, with the number since the last line). */
#include "src/master/router.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/queue.h"
#include "shm/store.h"
#include "src/common/clock.h"
#include "src/common/log.h"
#include "src/common/redis_scripts.h"
#include "src/master/cluster.h"
#include "src/master/fanout.h"
#include "src/master/history.h"

/* One line per worker per second at most: a stuck worker must not flood the
 * log with a line per call. */
static void warn_dropped(router *r, int slot, int64_t id, int64_t user, int err)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    int64_t sec = (int64_t)now.tv_sec;
    atomic_fetch_add_explicit(&r->drop_quiet[slot], 1, memory_order_relaxed);
    int64_t last = atomic_load_explicit(&r->drop_logged_at[slot], memory_order_relaxed);
    if (last == sec || !atomic_compare_exchange_strong(&r->drop_logged_at[slot], &last, sec))
        return;
    uint64_t n = atomic_exchange_explicit(&r->drop_quiet[slot], 0, memory_order_relaxed);
    log_warn("notification %lld for UserID=%lld not delivered: the queue of worker %d is "
             "full (%s); %llu not delivered to it since the last such line",
             (long long)id, (long long)user, slot, strerror(err), (unsigned long long)n);
}


/* The RFC 3339 text of accepted_ns's second, formatted once per second
 * (the gRPC thread is the router's only caller). */
static const char *timestamp_of(router *r, uint64_t accepted_ns)
{
    int64_t second = (int64_t)(accepted_ns / 1000000000u);
    if (second != r->ts_second || r->ts_text[0] == '\0') {
        notify_format_timestamp(second, r->ts_text);
        r->ts_second = second;
    }
    return r->ts_text;
}

/* Queue json to the user's live holder. Returns the outcome. */
static notify_outcome push(router *r, const notify_request *req, int64_t id, uint64_t seq,
                           uint64_t accepted_ns, const char *json, size_t len)
{
    dir_holder holder;
    if (!directory_lookup(r->shm->dir, req->user_id, &holder) || holder.slot < 0 ||
        holder.slot >= r->slots)
        return NOTIFY_OFFLINE;
    queue_msg m = {
        .type = QMSG_NOTIFY,
        .user = req->user_id,
        .generation = holder.generation,
        .accepted_ns = accepted_ns,
        .id = id,
        .seq = seq,
        .payload = (const uint8_t *)json,
        .payload_len = (uint32_t)len,
    };
    if (queue_send(r->queue_out[holder.slot], &m) != 0) {
        warn_dropped(r, holder.slot, id, req->user_id, errno);
        return NOTIFY_DROPPED;
    }
    return NOTIFY_DELIVERED;
}

static void count_all(router *r, size_t n, notify_outcome outcome)
{
    for (size_t i = 0; i < n; i++)
        region_count_notification(r->shm, outcome);
}

static int validate_all(const notify_request *reqs, size_t n, bool batch, char *err,
                        size_t err_size)
{
    char why[200];
    for (size_t i = 0; i < n; i++) {
        const char *bad = NULL;
        if (notify_validate(&reqs[i], why, sizeof why) != 0)
            bad = why;
        else if (reqs[i].wait_ack_ms < 0 || reqs[i].wait_ack_ms > NOTIFY_MAX_WAIT_ACK_MS)
            bad = "wait_ack_ms must be between 0 and 60000";
        else if (batch && reqs[i].wait_ack_ms != 0)
            bad = "wait_ack_ms must be 0 in SendNotifications";
        if (bad == NULL)
            continue;
        if (batch)
            snprintf(err, err_size, "notifications[%zu]: %s", i, bad);
        else
            snprintf(err, err_size, "%s", bad);
        return -1;
    }
    return 0;
}

/* A caller id still in the history: a retry, answered without storing or
 * pushing. 1: a committed one (result final), 2: one not committed yet (its
 * answer waits for that commit), 0: new, -1: the store failed. */
static int find_duplicate(router *r, const notify_request *req)
{
    if (req->id == 0 || r->history == NULL || r->cluster != NULL)
        return 0;
    if (history_pending_id(r->history, req->user_id, req->id))
        return 2;
    store_entry e;
    int rc = store_find(r->view, req->user_id, req->id, clock_realtime_ns(), &e);
    return rc == 0 ? 1 : rc == 1 ? 0 : -1;
}

/* One request, from its duplicate check to its push. Returns the item to
 * store (NULL when nothing is to be stored: a committed duplicate, or no
 * history), with *outcome; -1 in *failed when it could not be handled. */
static history_item *handle_one(router *r, const notify_request *req, notify_reply *reply,
                                size_t index, notify_outcome *outcome, bool *failed, char *err,
                                size_t err_size)
{
    notify_result *res = &reply->results[index];
    *res = (notify_result){0};
    *failed = false;
    int dup = find_duplicate(r, req);
    if (dup < 0) {
        snprintf(err, err_size, "cannot read the history");
        *failed = true;
        return NULL;
    }
    if (dup == 1) {
        res->notification_id = req->id;
        res->duplicate = true;
        *outcome = NOTIFY_DUPLICATE;
        atomic_fetch_add_explicit(&r->shm->hdr->history[HISTORY_DUPLICATES], 1,
                                  memory_order_relaxed);
        return NULL;
    }
    uint64_t accepted_ns = clock_realtime_ns();
    int64_t id = req->id;
    if (id == 0 && r->cluster != NULL && cluster_next_id(r->cluster, &id) != 0) {
        snprintf(err, err_size, "no notification id: Redis has been out of reach too long");
        *failed = true;
        *outcome = NOTIFY_UNAVAILABLE;
        return NULL;
    }
    if (id == 0)
        id = region_next_notification_id(r->shm);
    res->notification_id = id;
    size_t len = 0;
    char *json = notify_build_json(req, id, timestamp_of(r, accepted_ns), &len);
    history_item *item = NULL;
    if (json != NULL && r->history != NULL)
        item = history_item_new(json, len);
    if (json == NULL || (r->history != NULL && item == NULL)) {
        free(json);
        snprintf(err, err_size, "out of memory building the notification");
        *failed = true;
        return NULL;
    }
    uint64_t seq = 0;
    if (item != NULL) {
        item->user = req->user_id;
        item->id = id;
        item->accepted_ns = accepted_ns;
        item->push = req->send_push;
        item->dup_of_pending = dup == 2;
        item->wait_ack_ms = r->stores ? req->wait_ack_ms : 0;
        item->reply = reply;
        item->index = index;
        if (!item->dup_of_pending && r->stores) {
            seq = item->seq = atomic_fetch_add(&r->shm->hdr->accepted_seq, 1) + 1;
            /* Pairs with the fence a connection makes between its claim and its
             * read of accepted_seq: one of the two sees the other. */
            atomic_thread_fence(memory_order_seq_cst);
        }
    }
    if (dup == 2) {
        *outcome = NOTIFY_DUPLICATE;
    } else if (!req->send_push) {
        *outcome = NOTIFY_NOT_PUSHED;
    } else if (r->cluster != NULL && req->id != 0 && r->stores) {
        /* Sent only once the script has seen it is no duplicate. */
        *outcome = NOTIFY_OFFLINE;
        item->ask = RASK_ANY;
        item->check_dup = true;
    } else {
        *outcome = push(r, req, id, seq, accepted_ns, json, len);
        if (item != NULL && *outcome == NOTIFY_OFFLINE)
            item->ask = RASK_REMOTE;
    }
    res->delivered = *outcome == NOTIFY_DELIVERED;
    free(json);
    if (item != NULL)
        item->outcome = *outcome;
    return item;
}

/* Without Redis a call goes ahead only when nothing is to be stored and
 * every user is held here. */
static bool cluster_available(router *r, const notify_request *reqs, size_t n)
{
    if (cluster_is_up(r->cluster))
        return true;
    if (r->stores)
        return false;
    for (size_t i = 0; i < n; i++) {
        dir_holder h;
        if (!reqs[i].send_push || !directory_lookup(r->shm->dir, reqs[i].user_id, &h))
            return false;
    }
    return true;
}

route_status router_submit(router *r, const notify_request *reqs, size_t n, bool batch,
                           notify_reply *reply, char *err, size_t err_size)
{
    if (n == 0 || n > NOTIFY_MAX_BATCH) {
        snprintf(err, err_size, "notifications: between 1 and %u requests", NOTIFY_MAX_BATCH);
        region_count_notification(r->shm, NOTIFY_INVALID);
        return ROUTE_INVALID;
    }
    if (validate_all(reqs, n, batch, err, err_size) != 0) {
        count_all(r, n, NOTIFY_INVALID);
        return ROUTE_INVALID;
    }
    /* Room for the calls that will wait for an ack, before anything is sent:
     * each item gives its place back when answered. */
    size_t waiting = 0;
    for (size_t i = 0; i < n; i++)
        waiting += r->stores && reqs[i].wait_ack_ms > 0;
    if (waiting > 0 && !history_reserve_waiters(r->history, waiting)) {
        snprintf(err, err_size, "%u calls are already waiting for an ack", HISTORY_MAX_WAITERS);
        count_all(r, n, NOTIFY_EXHAUSTED);
        return ROUTE_EXHAUSTED;
    }
    if (r->cluster != NULL && !cluster_available(r, reqs, n)) {
        snprintf(err, err_size, "Redis is out of reach: the notification can be neither "
                                "stored nor routed to another node; retry");
        count_all(r, n, NOTIFY_UNAVAILABLE);
        if (waiting > 0)
            history_unreserve_waiters(r->history, waiting);
        return ROUTE_UNAVAILABLE;
    }
    history_item *first = NULL, *last = NULL;
    size_t items = 0;
    size_t done = 0;
    bool failed = false;
    notify_outcome last_outcome = NOTIFY_INTERNAL;
    for (; done < n && !failed; done++) {
        notify_outcome outcome = NOTIFY_INTERNAL;
        history_item *item = handle_one(r, &reqs[done], reply, done, &outcome, &failed, err,
                                        err_size);
        last_outcome = outcome;
        if (failed)
            break;
        if (item == NULL) {
            region_count_notification(r->shm, outcome);
            if (waiting > 0 && reqs[done].wait_ack_ms > 0)
                history_unreserve_waiters(r->history, 1);
            continue;
        }
        if (last != NULL)
            last->next = item;
        else
            first = item;
        last = item;
        items++;
    }
    route_status fail_status = ROUTE_INTERNAL;
    if (failed) {
        /* The requests not handled fail with the call; those handled are
         * stored all the same (they may have been pushed). */
        notify_outcome why = last_outcome == NOTIFY_UNAVAILABLE ? NOTIFY_UNAVAILABLE
                                                                : NOTIFY_INTERNAL;
        fail_status = why == NOTIFY_UNAVAILABLE ? ROUTE_UNAVAILABLE : ROUTE_INTERNAL;
        log_error("notification: %s", err);
        count_all(r, n - done, why);
        for (size_t i = done; waiting > 0 && i < n; i++)
            if (reqs[i].wait_ack_ms > 0)
                history_unreserve_waiters(r->history, 1);
    }
    if (items == 0)
        return failed ? fail_status : ROUTE_OK;
    reply->pending = items;
    reply->status = failed ? fail_status : ROUTE_OK;
    if (failed)
        snprintf(reply->details, sizeof reply->details, "%s", err);
    history_submit(r->history, first, last);
    return ROUTE_DEFERRED;
}

route_status router_send(router *r, const notify_request *req, notify_result *res, char *err,
                         size_t err_size)
{
    notify_reply reply = {.count = 1, .results = res};
    return router_submit(r, req, 1, false, &reply, err, err_size);
}

static void warn_broadcast_dropped(void *ctx, int slot, int err)
{
    const notify_broadcast_reply *reply = ((void **)ctx)[1];
    warn_dropped(((void **)ctx)[0], slot, reply->id, 0, err);
}

route_status router_broadcast(router *r, const notify_request *req,
                              notify_broadcast_reply *reply, char *err, size_t err_size)
{
    notify_request checked = *req;
    checked.user_id = 1; /* a broadcast has no user: checked as anyone's */
    reply->id = 0;
    reply->recipients = 0;
    reply->status = ROUTE_OK;
    reply->details[0] = '\0';
    if (notify_validate(&checked, err, err_size) != 0)
        return ROUTE_INVALID;
    if (r->cluster != NULL && !cluster_is_up(r->cluster)) {
        snprintf(err, err_size, "Redis is out of reach: the broadcast cannot reach the other "
                                "nodes; retry");
        return ROUTE_UNAVAILABLE;
    }
    uint64_t accepted_ns = clock_realtime_ns();
    if (r->cluster == NULL)
        reply->id = region_next_notification_id(r->shm);
    else if (cluster_next_id(r->cluster, &reply->id) != 0) {
        snprintf(err, err_size, "no notification id: Redis has been out of reach too long");
        return ROUTE_UNAVAILABLE;
    }
    size_t len = 0;
    char *json = notify_build_json(req, reply->id, timestamp_of(r, accepted_ns), &len);
    struct cluster_broadcast *b =
        json != NULL && r->cluster != NULL ? malloc(sizeof *b + len) : NULL;
    if (json == NULL || (r->cluster != NULL && b == NULL)) {
        free(json);
        snprintf(err, err_size, "out of memory building the notification");
        return ROUTE_INTERNAL;
    }
    queue_msg m = {
        .type = QMSG_BROADCAST,
        .accepted_ns = accepted_ns,
        .id = reply->id,
        .payload = (const uint8_t *)json,
        .payload_len = (uint32_t)len,
    };
    void *ctx[2] = {r, reply};
    reply->recipients = fanout_to_workers(r->shm, r->slots, r->queue_out, &m,
                                          warn_broadcast_dropped, ctx);
    if (b == NULL) {
        free(json);
        return ROUTE_OK;
    }
    *b = (struct cluster_broadcast){.reply = reply, .accepted_ns = accepted_ns,
                                    .json_len = (uint32_t)len};
    memcpy(b->json, json, len);
    free(json);
    history_broadcast(r->history, b);
    return ROUTE_DEFERRED;
}

int router_status(router *r, int64_t user, int64_t id, notify_status *out)
{
    if (!r->stores || user <= 0 || id <= 0)
        return 1;
    if (r->cluster != NULL) {
        int rc = cluster_status(r->cluster, user, id, out);
        return rc < 0 ? 2 : rc;
    }
    store_entry e;
    int rc = store_find(r->view, user, id, clock_realtime_ns(), &e);
    if (rc != 0)
        return rc;
    out->state = e.state;
    notify_format_timestamp((int64_t)(e.accepted_ns / 1000000000u), out->timestamp);
    out->acked_at[0] = '\0';
    if (e.state == STORE_ACKED)
        notify_format_timestamp_ms(e.acked_ms, out->acked_at);
    return 0;
}
