/* history.c — the history thread: group commits, marks, ack waiters, sweeps
 * (see history.h).
 *
 * Threads. The gRPC thread only appends to the pending list (history_submit,
 * under the mutex) and reads the pending-id set. Everything else belongs to the
 * history thread: the store's write transactions, the waiters, the replies.
 *
 * One round: take every pending item, read every mark the workers queued,
 * write both in one transaction (marks after appends, so an ack that beat its
 * notification's commit still lands when both share a round; one that comes a
 * round early is retried a few rounds), publish committed_seq, then answer.
 * While a round commits, the gRPC thread goes on pushing and queueing the
 * next group, so a commit's fsync is paid once per group, not per call. */
#include "src/master/history.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "shm/counters.h"
#include "shm/hash.h"
#include "shm/queue.h"
#include "shm/store.h"
#include "src/common/clock.h"
#include "src/common/log.h"
#include "src/common/redis_scripts.h"
#include "src/master/cluster.h"

#define MARK_DATAGRAMS_PER_ROUND 256 /* bounds one round's marks (each up to 10000) */
#define MARK_RETRIES 3               /* rounds an early mark waits for its notification */
#define EARLY_MAX 100000             /* marks kept for later at most (Redis down, say) */
#define MARKS_LINGER_MS 5            /* cluster mode: marks wait this long for company */
#define USAGE_MS 1000                /* store gauges refreshed this often */
#define READERS_MS 60000             /* dead readers' slots cleared this often */

/* (user, id) → something, open addressing, for the pending ids (counts) and
 * the waiters (items). Grows by doubling; deletion by backward shift. */
typedef struct {
    int64_t user;   /* 0 = empty */
    int64_t id;
    void *value;
    size_t count;
} key_entry;

typedef struct {
    key_entry *e;
    size_t mask;    /* size - 1; 0 when unallocated */
    size_t used;
} key_table;

/* A waiter's deadline in the timeout heap; stale once its waiter is gone. */
typedef struct {
    uint64_t deadline_ms;
    int64_t user;
    int64_t id;
} deadline;

/* Which worker's marks datagram a mark came in (the marks barrier). */
typedef struct {
    uint16_t slot;
    uint64_t number;
} mark_origin;

typedef struct {
    store_mark mark;
    mark_origin from;
    int retries;
} early_mark;

struct history {
    shm_region *shm;
    store *st;                    /* NULL in cluster mode */
    cluster *cl;                  /* cluster mode: the history is in Redis */
    bool stores;                  /* --history-size > 0 */
    const int *queue_out;         /* cluster mode: the slots' queues */
    int slots;
    int marks_fd;
    int wake_fd;                  /* eventfd: items were submitted, or stop */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;         /* guards the four below */
    history_item *first, *last;   /* submitted, not taken yet */
    key_table pending_ids;        /* ids of items not committed yet (counts) */
    struct cluster_broadcast *bcasts;  /* handed over, not published yet */
    bool stopping;
    bool release_waiters;
    _Atomic size_t reserved;      /* waiter places taken by the router */
    /* history thread only */
    key_table waiters;            /* (user, id) → history_item * waiting for its ack */
    deadline *heap;
    size_t heap_len, heap_cap;
    early_mark *early;            /* marks whose notification was not in the store yet */
    size_t early_len, early_cap;
    mark_origin *origin;          /* per mark of the round, parallel to its marks */
    size_t origin_cap;
    uint64_t marks_read[REGION_MAX_SLOTS];  /* the last marks datagram read, per slot */
    uint8_t *dgram;
    uint64_t last_usage_ms, last_readers_ms, last_sweep_ms;
};



/* ---- the (user, id) tables ---------------------------------------------- */

static size_t key_home(const key_table *t, int64_t user, int64_t id)
{
    return (size_t)mix64((uint64_t)user * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)id) & t->mask;
}

static key_entry *key_find(const key_table *t, int64_t user, int64_t id)
{
    if (t->e == NULL)
        return NULL;
    for (size_t i = key_home(t, user, id);; i = (i + 1) & t->mask) {
        key_entry *e = &t->e[i];
        if (e->user == 0)
            return NULL;
        if (e->user == user && e->id == id)
            return e;
    }
}

static int key_grow(key_table *t)
{
    size_t size = t->e != NULL ? (t->mask + 1) * 2 : 64;
    key_entry *e = calloc(size, sizeof *e);
    if (e == NULL)
        return -1;
    key_table bigger = {.e = e, .mask = size - 1, .used = t->used};
    for (size_t i = 0; t->e != NULL && i <= t->mask; i++) {
        if (t->e[i].user == 0)
            continue;
        size_t j = key_home(&bigger, t->e[i].user, t->e[i].id);
        while (e[j].user != 0)
            j = (j + 1) & bigger.mask;
        e[j] = t->e[i];
    }
    free(t->e);
    *t = bigger;
    return 0;
}

/* The entry of (user, id), created empty (value NULL, count 0) if absent.
 * NULL: out of memory. */
static key_entry *key_get(key_table *t, int64_t user, int64_t id)
{
    key_entry *e = key_find(t, user, id);
    if (e != NULL)
        return e;
    if ((t->e == NULL || (t->used + 1) * 2 > t->mask + 1) && key_grow(t) != 0)
        return NULL;
    size_t i = key_home(t, user, id);
    while (t->e[i].user != 0)
        i = (i + 1) & t->mask;
    t->e[i] = (key_entry){.user = user, .id = id};
    t->used++;
    return &t->e[i];
}

static void key_delete(key_table *t, key_entry *hole_entry)
{
    size_t hole = (size_t)(hole_entry - t->e);
    for (size_t j = (hole + 1) & t->mask; t->e[j].user != 0; j = (j + 1) & t->mask) {
        size_t home = key_home(t, t->e[j].user, t->e[j].id);
        /* j may fill the hole unless its home lies cyclically in (hole, j]. */
        bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            t->e[hole] = t->e[j];
            hole = j;
        }
    }
    t->e[hole] = (key_entry){0};
    t->used--;
}

/* ---- answering ------------------------------------------------------------- */

static void count(history *h, history_counter c, uint64_t n)
{
    if (n > 0)
        atomic_fetch_add_explicit(&h->shm->hdr->history[c], n, memory_order_relaxed);
}

/* The item's result is final: count its outcome, give back its waiter place,
 * and answer its call once every item of the call is final. */
static void resolve(history *h, history_item *item, bool acked, notify_outcome outcome)
{
    notify_reply *reply = item->reply;
    notify_result *res = &reply->results[item->index];
    res->acked = acked;
    res->duplicate = outcome == NOTIFY_DUPLICATE;
    if (res->duplicate)
        res->delivered = false;
    region_count_notification(h->shm, outcome);
    if (item->wait_ack_ms > 0) {
        atomic_fetch_sub(&h->reserved, 1);
        atomic_store_explicit(&h->shm->hdr->ack_waiters, atomic_load(&h->reserved),
                              memory_order_relaxed);
    }
    free(item);
    if (--reply->pending == 0)
        reply->done(reply);
}

static void heap_push(history *h, deadline d)
{
    if (h->heap_len == h->heap_cap) {
        size_t cap = h->heap_cap ? 2 * h->heap_cap : 256;
        deadline *grown = realloc(h->heap, cap * sizeof *grown);
        if (grown == NULL)
            return; /* the waiter is answered at stop at the latest */
        h->heap = grown;
        h->heap_cap = cap;
    }
    size_t i = h->heap_len++;
    while (i > 0 && h->heap[(i - 1) / 2].deadline_ms > d.deadline_ms) {
        h->heap[i] = h->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->heap[i] = d;
}

static deadline heap_pop(history *h)
{
    deadline top = h->heap[0];
    deadline last = h->heap[--h->heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->heap_len)
            break;
        if (c + 1 < h->heap_len && h->heap[c + 1].deadline_ms < h->heap[c].deadline_ms)
            c++;
        if (h->heap[c].deadline_ms >= last.deadline_ms)
            break;
        h->heap[i] = h->heap[c];
        i = c;
    }
    if (h->heap_len > 0)
        h->heap[i] = last;
    return top;
}

static void wait_for_ack(history *h, history_item *item)
{
    key_entry *e = h->release_waiters ? NULL : key_get(&h->waiters, item->user, item->id);
    if (e == NULL || e->value != NULL) {
        resolve(h, item, false, item->outcome);
        return;
    }
    e->value = item;
    uint64_t when = clock_monotonic_ms() + (uint64_t)item->wait_ack_ms;
    heap_push(h, (deadline){.deadline_ms = when, .user = item->user, .id = item->id});
}

static void end_wait(history *h, int64_t user, int64_t id, bool acked)
{
    key_entry *e = key_find(&h->waiters, user, id);
    if (e == NULL || e->value == NULL)
        return;
    history_item *item = e->value;
    key_delete(&h->waiters, e);
    resolve(h, item, acked, item->outcome);
}

static void expire_waiters(history *h, uint64_t now)
{
    while (h->heap_len > 0 && h->heap[0].deadline_ms <= now) {
        deadline d = heap_pop(h);
        end_wait(h, d.user, d.id, false);
    }
}

static void release_all_waiters(history *h)
{
    while (h->heap_len > 0) {
        deadline d = heap_pop(h);
        end_wait(h, d.user, d.id, false);
    }
}

/* ---- one round ----------------------------------------------------------------- */

/* Every mark datagram queued now, then the early ones from earlier rounds. */
/* Room for n marks in out and in h->origin. */
static int marks_room(history *h, store_mark **out, size_t *cap, size_t n)
{
    if (n <= *cap && n <= h->origin_cap)
        return 0;
    size_t c = *cap > h->origin_cap ? *cap : h->origin_cap;
    if (c == 0)
        c = 1024;
    while (c < n)
        c *= 2;
    store_mark *m = realloc(*out, c * sizeof *m);
    if (m == NULL)
        return -1;
    *out = m;
    *cap = c;
    mark_origin *o = realloc(h->origin, c * sizeof *o);
    if (o == NULL)
        return -1;
    h->origin = o;
    h->origin_cap = c;
    return 0;
}

static int read_marks(history *h, store_mark **out, size_t *n, size_t *cap)
{
    *n = 0;
    if (marks_room(h, out, cap, h->early_len) != 0)
        return -1;
    for (size_t i = 0; i < h->early_len; i++) {
        h->origin[*n] = h->early[i].from;
        (*out)[(*n)++] = h->early[i].mark;
    }
    for (int d = 0; d < MARK_DATAGRAMS_PER_ROUND; d++) {
        ssize_t got = recv(h->marks_fd, h->dgram, QUEUE_MAX_DATAGRAM, MSG_DONTWAIT | MSG_TRUNC);
        if (got < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_error("history: reading the marks queue: %s", strerror(errno));
            break;
        }
        queue_msg m;
        if ((size_t)got > QUEUE_MAX_DATAGRAM || queue_msg_decode(h->dgram, (size_t)got, &m) != 0 ||
            m.type != QMSG_MARKS) {
            log_warn("history: dropping a corrupt marks datagram (%zd bytes)", got);
            continue;
        }
        size_t k = m.payload_len / QUEUE_MARK_LEN;
        if (marks_room(h, out, cap, *n + k) != 0)
            return -1;
        mark_origin from = {.slot = m.generation < REGION_MAX_SLOTS ? (uint16_t)m.generation : 0,
                            .number = m.generation < REGION_MAX_SLOTS ? m.seq : 0};
        if (from.number > h->marks_read[from.slot])
            h->marks_read[from.slot] = from.number;
        for (size_t i = 0; i < k; i++) {
            queue_mark qm;
            queue_mark_decode(m.payload + i * QUEUE_MARK_LEN, &qm);
            if (qm.state == QUEUE_MARK_RELEASE || qm.state == QUEUE_MARK_EVICTED) {
                /* Cluster mode only: holders and evictions, after this
                 * round's marks (cluster_round keeps that order). */
                if (h->cl != NULL && qm.state == QUEUE_MARK_RELEASE)
                    cluster_release(h->cl, qm.user, (uint32_t)qm.id);
                else if (h->cl != NULL)
                    cluster_evicted(h->cl, qm.user, qm.at_ms, (uint32_t)qm.id);
                continue;
            }
            h->origin[*n] = from;
            (*out)[(*n)++] = (store_mark){.user = qm.user, .id = qm.id, .state = qm.state,
                                          .at_ms = qm.at_ms};
        }
    }
    return 0;
}

/* Marks that found no notification: kept for a few rounds (the notification
 * may be in the next group), then dropped. */
static void keep_early(history *h, const store_mark *marks, const bool *missing, size_t n,
                       size_t previous_early, bool tried)
{
    early_mark *kept = h->early;
    size_t retried = previous_early;
    size_t len = 0;
    early_mark *fresh = NULL;
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += missing[i];
    if (need > 0 && (fresh = malloc(need * sizeof *fresh)) == NULL)
        need = 0;
    for (size_t i = 0; i < n && need > 0; i++) {
        if (!missing[i])
            continue;
        int retries = i < retried ? kept[i].retries + tried : tried;
        if (retries > MARK_RETRIES || len >= EARLY_MAX)
            continue;
        fresh[len++] = (early_mark){.mark = marks[i], .from = h->origin[i], .retries = retries};
    }
    free(kept);
    h->early = fresh;
    h->early_len = len;
    h->early_cap = need;
}

/* The marks barrier: a worker's marks datagram counts as applied once every
 * mark it held is committed, or dropped after its retries. */
static void publish_marks(history *h)
{
    uint64_t pending[REGION_MAX_SLOTS];
    memset(pending, 0xff, sizeof pending);
    for (size_t i = 0; i < h->early_len; i++) {
        mark_origin o = h->early[i].from;
        if (o.number != 0 && o.number < pending[o.slot])
            pending[o.slot] = o.number;
    }
    for (int s = 0; s < REGION_MAX_SLOTS; s++) {
        uint64_t upto = h->marks_read[s];
        if (pending[s] != UINT64_MAX && pending[s] - 1 < upto)
            upto = pending[s] - 1;
        _Atomic uint64_t *applied = &h->shm->hdr->slot[s].marks_applied;
        if (upto > atomic_load_explicit(applied, memory_order_relaxed))
            atomic_store_explicit(applied, upto, memory_order_release);
    }
}

static void observe_commit(history *h, uint64_t ns)
{
    region_header *hdr = h->shm->hdr;
    atomic_fetch_add_explicit(&hdr->commit_bucket[counters_latency_bucket(ns)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&hdr->commit_sum_ns, ns, memory_order_relaxed);
}

static void refresh_usage(history *h, uint64_t now)
{
    if (now - h->last_usage_ms < USAGE_MS)
        return;
    h->last_usage_ms = now;
    store_usage u;
    if (store_get_usage(h->st, &u) == 0) {
        atomic_store_explicit(&h->shm->hdr->store_bytes, u.used_bytes, memory_order_relaxed);
        atomic_store_explicit(&h->shm->hdr->store_entries, u.entries, memory_order_relaxed);
    }
}

static void periodic(history *h, uint64_t now)
{
    refresh_usage(h, now);
    if (now - h->last_sweep_ms >= HISTORY_SWEEP_MS) {
        h->last_sweep_ms = now;
        size_t expired = 0;
        char err[256];
        if (store_sweep(h->st, clock_realtime_ns(), 100000, &expired, err, sizeof err) != 0)
            log_error("history: sweeping expired notifications: %s", err);
        count(h, HISTORY_EXPIRED, expired);
    }
    if (now - h->last_readers_ms >= READERS_MS) {
        h->last_readers_ms = now;
        int cleared = 0;
        if (store_check_readers(h->st, &cleared) == 0 && cleared > 0)
            log_info("history: cleared %d reader slots of dead processes", cleared);
    }
}

static void forget_pending(history *h, const history_item *first)
{
    pthread_mutex_lock(&h->lock);
    for (const history_item *it = first; it != NULL; it = it->next) {
        key_entry *e = key_find(&h->pending_ids, it->user, it->id);
        if (e != NULL && --e->count == 0)
            key_delete(&h->pending_ids, e);
    }
    pthread_mutex_unlock(&h->lock);
}

/* Commit one group (items and marks), then answer. Returns how many items. */
static size_t round_once(history *h, history_item *first, store_append **appends,
                         size_t *appends_cap, store_mark **marks, size_t *marks_cap)
{
    size_t n_items = 0, n_app = 0;
    for (history_item *it = first; it != NULL; it = it->next)
        n_items++;
    if (n_items > *appends_cap) {
        store_append *grown = realloc(*appends, n_items * sizeof *grown);
        if (grown != NULL) {
            *appends = grown;
            *appends_cap = n_items;
        }
    }
    bool no_room = n_items > *appends_cap;
    uint64_t top_seq = 0;
    for (history_item *it = first; it != NULL && !no_room; it = it->next) {
        if (it->seq > top_seq)
            top_seq = it->seq;
        if (it->dup_of_pending)
            continue;
        (*appends)[n_app++] = (store_append){.user = it->user, .id = it->id, .seq = it->seq,
                                             .accepted_ns = it->accepted_ns, .push = it->push,
                                             .json = it->json, .json_len = it->json_len};
    }
    size_t previous_early = h->early_len;
    size_t n_marks = 0;
    if (read_marks(h, marks, &n_marks, marks_cap) != 0)
        n_marks = 0;
    bool *missing = n_marks > 0 ? calloc(n_marks, sizeof *missing) : NULL;
    bool *dup = n_app > 0 ? calloc(n_app, sizeof *dup) : NULL;
    store_set_next_id(h->st, atomic_load(&h->shm->hdr->next_notification_id));
    store_write_stats st = {0};
    char err[256] = "out of memory";
    int rc = -1;
    uint64_t t0 = clock_realtime_ns();
    if (!no_room && (n_marks == 0 || missing != NULL) && (n_app == 0 || dup != NULL))
        rc = store_write(h->st, *appends, n_app, dup, *marks, n_marks, missing, &st, err,
                         sizeof err);
    if (n_app > 0 || n_marks > 0)
        observe_commit(h, clock_realtime_ns() - t0);
    /* Published even when the commit failed: those seqs will never be stored,
     * and a connection waiting for them must not wait for ever. */
    if (top_seq > atomic_load(&h->shm->hdr->committed_seq))
        atomic_store(&h->shm->hdr->committed_seq, top_seq);
    if (rc != 0) {
        log_error("history: commit of %zu notifications failed: %s", n_app, err);
        count(h, HISTORY_COMMIT_FAILED, 1);
    }
    count(h, HISTORY_STORED, st.appended);
    count(h, HISTORY_TRIMMED, st.trimmed);
    count(h, HISTORY_EVICTED, st.evicted_full);
    if (st.evicted_full > 0)
        log_warn("history: the store is full (--data-max-size): %llu oldest notifications "
                 "dropped", (unsigned long long)st.evicted_full);
    forget_pending(h, first);
    size_t k = 0;
    for (history_item *it = first, *next; it != NULL; it = next) {
        next = it->next;
        if (rc != 0) {
            it->reply->status = ROUTE_INTERNAL;
            snprintf(it->reply->details, sizeof it->reply->details,
                     "the notification could not be stored");
            resolve(h, it, false, NOTIFY_INTERNAL);
            continue;
        }
        if (it->dup_of_pending) {
            store_entry e;
            if (store_find(h->st, it->user, it->id, clock_realtime_ns(), &e) == 0) {
                count(h, HISTORY_DUPLICATES, 1);
                resolve(h, it, false, NOTIFY_DUPLICATE);
            } else {
                it->reply->status = ROUTE_INTERNAL;
                snprintf(it->reply->details, sizeof it->reply->details,
                         "the first call with this id failed: retry");
                resolve(h, it, false, NOTIFY_INTERNAL);
            }
            continue;
        }
        bool was_dup = dup[k++];
        if (was_dup) {
            count(h, HISTORY_DUPLICATES, 1);
            resolve(h, it, false, NOTIFY_DUPLICATE);
        } else if (it->wait_ack_ms > 0 && it->outcome == NOTIFY_DELIVERED) {
            wait_for_ack(h, it);
        } else {
            resolve(h, it, false, it->outcome);
        }
    }
    for (size_t i = 0; rc == 0 && i < n_marks; i++)
        if ((*marks)[i].state == STORE_ACKED && !missing[i])
            end_wait(h, (*marks)[i].user, (*marks)[i].id, true);
    if (missing != NULL) {
        /* A failed commit applied nothing: every mark waits for the next one. */
        for (size_t i = 0; rc != 0 && i < n_marks; i++)
            missing[i] = true;
        keep_early(h, *marks, missing, n_marks, previous_early, true);
    }
    publish_marks(h);
    free(missing);
    free(dup);
    return n_items;
}


/* ---- a round in cluster mode --------------------------------------------------- */

/* A notification the APPEND script found held on this node (a caller id's,
 * checked before it is sent): queued now, with its cluster seq. */
static notify_outcome push_routed(history *h, const history_item *it, const int *queue_out,
                                  int slots)
{
    dir_holder holder;
    if (!directory_lookup(h->shm->dir, it->user, &holder) || holder.generation != it->r_gen ||
        holder.slot < 0 || holder.slot >= slots)
        return NOTIFY_OFFLINE;
    queue_msg m = {.type = QMSG_ROUTED, .user = it->user, .generation = holder.generation,
                   .accepted_ns = it->accepted_ns, .id = it->id, .seq = it->r_seq,
                   .payload = (const uint8_t *)it->json, .payload_len = it->json_len};
    if (queue_send(queue_out[holder.slot], &m) != 0) {
        log_warn("notification %lld for UserID=%lld not delivered: the queue of worker %d is "
                 "full (%s)",
                 (long long)it->id, (long long)it->user, holder.slot, strerror(errno));
        return NOTIFY_DROPPED;
    }
    return NOTIFY_DELIVERED;
}

static notify_outcome routed_outcome(history *h, const history_item *it)
{
    switch (it->r_route) {
    case RROUTE_SENT:
        return NOTIFY_DELIVERED;
    case RROUTE_LOCAL:
        return push_routed(h, it, h->queue_out, h->slots);
    default:
        /* Nobody else holds the user: what the local push found stands
         * (a caller id's provisional outcome is OFFLINE). */
        return it->outcome;
    }
}

static size_t round_cluster(history *h, history_item *first, store_mark **marks,
                            size_t *marks_cap, bool take_marks)
{
    size_t n_items = 0;
    uint64_t top_seq = 0;
    for (history_item *it = first; it != NULL; it = it->next) {
        n_items++;
        if (it->seq > top_seq)
            top_seq = it->seq;
    }
    size_t previous_early = h->early_len;
    size_t n_marks = 0;
    if (take_marks && read_marks(h, marks, &n_marks, marks_cap) != 0)
        n_marks = 0;
    uint8_t *results = n_marks > 0 ? malloc(n_marks) : NULL;
    bool *missing = n_marks > 0 ? calloc(n_marks, sizeof *missing) : NULL;
    char err[300] = "out of memory";
    int rc = -1;
    uint64_t t0 = clock_realtime_ns();
    if (n_marks == 0 || (results != NULL && missing != NULL))
        rc = cluster_round(h->cl, first, *marks, n_marks, results, take_marks, h->marks_read, err,
                           sizeof err);
    else
        for (history_item *it = first; it != NULL; it = it->next)
            it->r_status = 0;
    if (rc == 0 && (n_items > 0 || n_marks > 0))
        observe_commit(h, clock_realtime_ns() - t0);
    /* As on a single node: a connection waiting for these seqs goes on. */
    if (top_seq > atomic_load(&h->shm->hdr->committed_seq))
        atomic_store(&h->shm->hdr->committed_seq, top_seq);
    size_t stored = 0, failed = 0;
    for (history_item *it = first, *next; it != NULL; it = next) {
        next = it->next;
        if (it->r_status == 0) {
            failed++;
            it->reply->status = ROUTE_UNAVAILABLE;
            snprintf(it->reply->details, sizeof it->reply->details,
                     "the notification could not be stored or routed (%s): retry", err);
            resolve(h, it, false, NOTIFY_UNAVAILABLE);
            continue;
        }
        if (it->r_status == RAPPEND_DUPLICATE) {
            count(h, HISTORY_DUPLICATES, 1);
            resolve(h, it, false, NOTIFY_DUPLICATE);
            continue;
        }
        stored += it->r_status == RAPPEND_STORED;
        it->outcome = routed_outcome(h, it);
        it->reply->results[it->index].delivered = it->outcome == NOTIFY_DELIVERED;
        if (it->wait_ack_ms > 0 && it->outcome == NOTIFY_DELIVERED && h->stores)
            wait_for_ack(h, it);
        else
            resolve(h, it, false, it->outcome);
    }
    count(h, HISTORY_STORED, stored);
    if (failed > 0) {
        log_error("history: %zu notifications answered UNAVAILABLE: %s", failed, err);
        count(h, HISTORY_COMMIT_FAILED, 1);
    }
    for (size_t i = 0; results != NULL && i < n_marks; i++) {
        if (rc == 0 && results[i] == RMARK_ACKED_HERE)
            end_wait(h, (*marks)[i].user, (*marks)[i].id, true);
        missing[i] = rc != 0 || results[i] == RMARK_MISSING;
    }
    if (missing != NULL)
        keep_early(h, *marks, missing, n_marks, previous_early, rc == 0);
    if (take_marks)
        publish_marks(h);
    free(results);
    free(missing);
    return n_items;
}

static void on_cluster_ack(void *arg, int64_t user, int64_t id)
{
    end_wait(arg, user, id, true);
}

/* One round of whichever backend this history has (in cluster mode with
 * the marks only when take_marks). */
static void round_any(history *h, history_item *first, store_append **appends,
                      size_t *appends_cap, store_mark **marks, size_t *marks_cap,
                      bool take_marks)
{
    if (h->cl != NULL)
        round_cluster(h, first, marks, marks_cap, take_marks);
    else
        round_once(h, first, appends, appends_cap, marks, marks_cap);
}

/* Broadcasts handed over by the gRPC thread, published in order. */
static void start_broadcasts(history *h)
{
    pthread_mutex_lock(&h->lock);
    struct cluster_broadcast *b = h->bcasts;
    h->bcasts = NULL;
    pthread_mutex_unlock(&h->lock);
    while (b != NULL) {
        struct cluster_broadcast *next = b->next;
        cluster_broadcast_start(h->cl, b);
        b = next;
    }
}

static void *history_main(void *arg)
{
    history *h = arg;
    /* A name for top -H, perf and bench-profile.sh; without one it is only unnamed. */
    (void)pthread_setname_np(pthread_self(), "wsn-history");
    store_append *appends = NULL;
    size_t appends_cap = 0;
    store_mark *marks = NULL;
    size_t marks_cap = 0;
    int cluster_wait = 0;
    bool readable = false;
    uint64_t marks_round_ms = 0;
    for (;;) {
        if (h->cl != NULL)
            cluster_wait = cluster_service(h->cl, readable);
        uint64_t now = clock_monotonic_ms();
        int timeout = 1000;
        if (h->heap_len > 0)
            timeout = h->heap[0].deadline_ms <= now ? 0
                      : h->heap[0].deadline_ms - now < 1000 ? (int)(h->heap[0].deadline_ms - now)
                                                              : 1000;
        if (h->cl != NULL && cluster_wait < timeout)
            timeout = cluster_wait;
        /* Cluster mode: marks (SENT ones, mostly: one per notification
         * written) cost a script call per round; they are taken at most
         * every MARKS_LINGER_MS, so a call carries many. */
        bool linger = h->cl != NULL && now - marks_round_ms < MARKS_LINGER_MS &&
                      !cluster_answers_waiting(h->cl);
        if (linger && (int)(marks_round_ms + MARKS_LINGER_MS - now) < timeout)
            timeout = (int)(marks_round_ms + MARKS_LINGER_MS - now);
        struct pollfd fds[3] = {{.fd = h->wake_fd, .events = POLLIN},
                                {.fd = linger ? -1 : h->marks_fd, .events = POLLIN},
                                {.fd = h->cl != NULL ? cluster_fd(h->cl) : -1, .events = POLLIN}};
        if (poll(fds, 3, timeout) < 0 && errno != EINTR)
            log_error("history: poll: %s", strerror(errno));
        readable = fds[2].fd >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR));
        uint64_t ticks;
        if (fds[0].revents & POLLIN)
            (void)!read(h->wake_fd, &ticks, sizeof ticks);
        pthread_mutex_lock(&h->lock);
        bool stopping = h->stopping;
        history_item *first = h->first;
        h->first = h->last = NULL;
        bool release = h->release_waiters;
        pthread_mutex_unlock(&h->lock);
        if (release && !h->release_waiters) {
            h->release_waiters = true;
            release_all_waiters(h);
        }
        bool take_marks = !linger && ((fds[1].revents & POLLIN) || h->early_len > 0);
        if (h->cl == NULL && first != NULL)
            take_marks = true; /* a single node's marks share the group's commit */
        if (first != NULL || take_marks) {
            round_any(h, first, &appends, &appends_cap, &marks, &marks_cap, take_marks);
            if (take_marks)
                marks_round_ms = clock_monotonic_ms();
        }
        if (h->cl != NULL)
            start_broadcasts(h);
        now = clock_monotonic_ms();
        expire_waiters(h, now);
        if (h->st != NULL)
            periodic(h, now);
        if (stopping && first == NULL) {
            /* Marks still queued get one last round, then every waiter its answer. */
            round_any(h, NULL, &appends, &appends_cap, &marks, &marks_cap, true);
            release_all_waiters(h);
            break;
        }
    }
    free(appends);
    free(marks);
    return NULL;
}

/* ---- the gRPC thread's side ---------------------------------------------------- */

history_item *history_item_new(const char *json, size_t len)
{
    history_item *it = calloc(1, sizeof *it + len + 1);
    if (it == NULL)
        return NULL;
    memcpy(it->json, json, len);
    it->json_len = (uint32_t)len;
    return it;
}

void history_submit(history *h, history_item *first, history_item *last)
{
    pthread_mutex_lock(&h->lock);
    for (history_item *it = first; it != NULL; it = it->next) {
        key_entry *e = key_get(&h->pending_ids, it->user, it->id);
        if (e != NULL)
            e->count++;
    }
    if (h->last != NULL)
        h->last->next = first;
    else
        h->first = first;
    h->last = last;
    pthread_mutex_unlock(&h->lock);
    uint64_t one = 1;
    if (write(h->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
        log_error("history: cannot wake the history thread: %s", strerror(errno));
}

bool history_pending_id(history *h, int64_t user, int64_t id)
{
    pthread_mutex_lock(&h->lock);
    bool found = key_find(&h->pending_ids, user, id) != NULL;
    pthread_mutex_unlock(&h->lock);
    return found;
}

bool history_reserve_waiters(history *h, size_t n)
{
    size_t cur = atomic_load(&h->reserved);
    do {
        if (cur + n > HISTORY_MAX_WAITERS)
            return false;
    } while (!atomic_compare_exchange_weak(&h->reserved, &cur, cur + n));
    atomic_store_explicit(&h->shm->hdr->ack_waiters, cur + n, memory_order_relaxed);
    return true;
}

void history_unreserve_waiters(history *h, size_t n)
{
    size_t left = atomic_fetch_sub(&h->reserved, n) - n;
    atomic_store_explicit(&h->shm->hdr->ack_waiters, left, memory_order_relaxed);
}

void history_release_waiters(history *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    h->release_waiters = true;
    pthread_mutex_unlock(&h->lock);
    uint64_t one = 1;
    if (write(h->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
        log_error("history: cannot wake the history thread: %s", strerror(errno));
}

store *history_store(history *h) { return h->st; }

cluster *history_cluster(history *h) { return h->cl; }

void history_broadcast(history *h, struct cluster_broadcast *b)
{
    pthread_mutex_lock(&h->lock);
    b->next = NULL;
    struct cluster_broadcast **tail = &h->bcasts;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = b;
    pthread_mutex_unlock(&h->lock);
    uint64_t one = 1;
    if (write(h->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
        log_error("history: cannot wake the history thread: %s", strerror(errno));
}

int history_open(history **out, shm_region *shm, const history_options *o, char *err,
                 size_t err_size)
{
    *out = NULL;
    history *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    h->shm = shm;
    h->marks_fd = o->marks_fd;
    h->wake_fd = -1;
    atomic_init(&h->reserved, 0);
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        snprintf(err, err_size, "cannot create a mutex");
        free(h);
        return -1;
    }
    h->stores = o->history_size > 0;
    h->queue_out = o->queue_out;
    h->slots = o->slots;
    h->dgram = malloc(QUEUE_MAX_DATAGRAM);
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->dgram == NULL || h->wake_fd < 0) {
        snprintf(err, err_size, "cannot set up the history thread: %s", strerror(errno));
        goto fail;
    }
    if (o->redis_url != NULL) {
        cluster_options co = {.url = *o->redis_url, .node_id = o->node_id, .shm = shm,
                              .slots = o->slots, .queue_out = o->queue_out,
                              .history_size = o->history_size,
                              .ttl_ms = o->ttl_ns / 1000000u, .wake_fd = h->wake_fd,
                              .on_ack = on_cluster_ack, .ctx = h};
        if (cluster_open(&h->cl, &co, err, err_size) != 0)
            goto fail;
        atomic_store(&shm->hdr->accepted_seq, 0);
        atomic_store(&shm->hdr->committed_seq, 0);
        goto start;
    }
    store_options so = {.dir = o->dir, .map_size = o->map_size,
                        .history_size = o->history_size, .ttl_ns = o->ttl_ns,
                        .durable = o->durable, .writer = true};
    if (store_open(&h->st, &so, err, err_size) != 0)
        goto fail;
    /* Ids go on above every id this directory ever handed out, and from the
     * time base, so a store younger than the clock does not pull them back. */
    int64_t stored_next = store_next_id(h->st);
    int64_t cur = atomic_load(&shm->hdr->next_notification_id);
    if (stored_next > cur)
        atomic_store(&shm->hdr->next_notification_id, stored_next);
    uint64_t last_seq = store_last_seq(h->st);
    atomic_store(&shm->hdr->accepted_seq, last_seq);
    atomic_store(&shm->hdr->committed_seq, last_seq);
start:
    /* Signals stay with the master's loop. */
    sigset_t all, old;
    sigfillset(&all);
    int mrc = pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&h->thread, NULL, history_main, h);
    if (mrc == 0)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, err_size, "cannot start the history thread: %s", strerror(rc));
        goto fail;
    }
    h->started = true;
    *out = h;
    return 0;
fail:
    store_close(h->st);
    cluster_close(h->cl);
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    free(h->dgram);
    pthread_mutex_destroy(&h->lock);
    free(h);
    return -1;
}

void history_close(history *h)
{
    if (h == NULL)
        return;
    if (h->started) {
        pthread_mutex_lock(&h->lock);
        h->stopping = true;
        pthread_mutex_unlock(&h->lock);
        uint64_t one = 1;
        if (write(h->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
            log_error("history: cannot wake the history thread: %s", strerror(errno));
        int rc = pthread_join(h->thread, NULL);
        if (rc != 0)
            log_error("history: join: %s", strerror(rc));
    }
    store_close(h->st);
    cluster_close(h->cl);
    close(h->wake_fd);
    free(h->dgram);
    free(h->pending_ids.e);
    free(h->waiters.e);
    free(h->heap);
    free(h->early);
    free(h->origin);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
