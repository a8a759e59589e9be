/* handover.c — the history hand-over of a new session (see handover.h): the
 * per-worker table, the wait for committed_seq, the replay from the store
 * written as the client reads it, the items held back meanwhile, and the
 * filter that drops live datagrams the replay covered.
 *
 * Why it is exact. The master takes a notification's seq, then (after a full
 * fence) looks its user up and queues the datagram, and only then hands it to
 * the history, which commits it. A session claims its user, fences, and reads
 * S = accepted_seq. So a notification with seq > S was looked up after the
 * claim and comes live to this session; one with seq <= S is committed (or
 * failed) once committed_seq >= S, and its datagram, if it came here, was
 * queued before that: the replay (max_seq = S) has it, and the filter drops
 * the datagram, until the queue has been read empty once after the replay.
 *
 * Not waiting for it. `connected` goes out at once (unless last_id is not in
 * the store yet: it may be a notification still being committed), and the
 * replay runs in passes, each up to min(S, committed_seq) and after the last
 * seq written, so what is committed already is written while the rest of
 * S commits; live notifications stay held until the pass up to S is done.
 *
 * Lifetime. A hand-over is reached from its client (in_handover) through the
 * table's user map. A closing client only marks it dead (h->c = NULL); the
 * tick frees it, so code that wrote to the client and saw it close still
 * holds a valid hand-over and checks h->c before going on. */
#include "workers/handover.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "shm/queue.h"
#include "shm/store.h"
#include "src/common/clock.h"
#include "src/common/log.h"
#include "workers/client.h"
#include "workers/cluster_link.h"
#include "workers/handover-t.h"
#include "workers/marks.h"
#include "workers/worker-t.h"
#include "workers/ws_session.h"

/* The replay is written while the client's unsent output stays below this,
 * and goes on as the client reads (a history of 10000 notifications must not
 * trip the slow-reader limit of CONN_MAX_OUTPUT). */
#define HIGH_WATER (CONN_MAX_OUTPUT / 4)
/* Live items held during a replay, at most: past it the session gets 1013. */
#define HELD_MAX CONN_MAX_OUTPUT
#define STORE_RETRY_MS 1000u   /* a store that did not open is tried again after this */
#define HELD_MIN_CAP 4096u

/* ---- pure parts ---------------------------------------------------------- */

handover_verdict handover_decide(bool replayed, uint64_t max_seq, const handover_item *it)
{
    if (it->kind == HANDOVER_LIVE && it->seq != 0 && it->seq <= max_seq)
        return HANDOVER_DROP;
    return replayed ? HANDOVER_SEND : HANDOVER_HOLD;
}

/* A held item's header, copied in and out with memcpy (no alignment in buf). */
typedef struct {
    uint64_t seq;
    int64_t id;
    uint64_t accepted_ns;
    uint32_t len;
    uint8_t kind;
} held_header;

int handover_held_push(handover_held *q, const handover_item *it, size_t max)
{
    size_t need = sizeof(held_header) + it->len;
    if (handover_held_bytes(q) + need > max)
        return -1;
    /* Taken items are dropped from the front before the buffer grows, so a
     * FIFO fed while it drains stays within twice what it holds. */
    if (q->pos > 0 && (q->len + need > q->cap || q->pos >= q->len / 2)) {
        memmove(q->buf, q->buf + q->pos, q->len - q->pos);
        q->len -= q->pos;
        q->pos = 0;
    }
    if (q->len + need > q->cap) {
        size_t cap = q->cap ? q->cap : HELD_MIN_CAP;
        while (cap < q->len + need)
            cap *= 2;
        uint8_t *buf = realloc(q->buf, cap);
        if (buf == NULL)
            return -2;
        q->buf = buf;
        q->cap = cap;
    }
    held_header h = {.seq = it->seq, .id = it->id, .accepted_ns = it->accepted_ns,
                     .len = it->len, .kind = it->kind};
    memcpy(q->buf + q->len, &h, sizeof h);
    if (it->len > 0)
        memcpy(q->buf + q->len + sizeof h, it->data, it->len);
    q->len += need;
    return 0;
}

bool handover_held_peek(const handover_held *q, handover_item *it)
{
    if (q->pos >= q->len)
        return false;
    held_header h;
    memcpy(&h, q->buf + q->pos, sizeof h);
    *it = (handover_item){.kind = h.kind, .seq = h.seq, .id = h.id,
                          .accepted_ns = h.accepted_ns, .len = h.len,
                          .data = q->buf + q->pos + sizeof h};
    return true;
}

void handover_held_pop(handover_held *q)
{
    if (q->pos >= q->len)
        return;
    held_header h;
    memcpy(&h, q->buf + q->pos, sizeof h);
    q->pos += sizeof h + h.len;
}

size_t handover_held_bytes(const handover_held *q) { return q->len - q->pos; }

void handover_held_free(handover_held *q)
{
    free(q->buf);
    *q = (handover_held){0};
}

/* ---- the table's lists --------------------------------------------------- */

static void list_push(handover **head, handover *h)
{
    h->prev = NULL;
    h->next = *head;
    if (*head != NULL)
        (*head)->prev = h;
    *head = h;
}

static void list_unlink(handover **head, handover *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        *head = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
}

static void destroy(handover *h)
{
    handover_held_free(&h->held);
    free(h->marks_wait);
    user_map_free(&h->ids);
    free(h);
}

/* A replay of never-sent notifications must not read SENT states older than
 * the claim: note which workers' marks are still on their way (this worker's
 * own are sent first). Returns 0, or -1 when out of memory. */
static int snapshot_marks(worker *w, handover *h)
{
    marks_flush(w);
    const region_header *hdr = w->shm.hdr;
    for (int s = 0; s < w->h.slots; s++) {
        uint64_t sent = region_marks_pending_upto(&hdr->slot[s]);
        if (atomic_load_explicit(&hdr->slot[s].marks_applied, memory_order_acquire) >= sent)
            continue;
        if (h->marks_wait == NULL &&
            (h->marks_wait = calloc((size_t)w->h.slots, sizeof h->marks_wait[0])) == NULL)
            return -1;
        h->marks_wait[h->n_marks_wait].slot = (uint16_t)s;
        h->marks_wait[h->n_marks_wait].number = sent;
        h->n_marks_wait++;
    }
    return 0;
}

/* Every mark noted by snapshot_marks is committed now. */
bool handover_marks_committed(const worker *w, handover *h)
{
    while (h->n_marks_wait > 0) {
        uint16_t k = (uint16_t)(h->n_marks_wait - 1);
        uint64_t applied = atomic_load_explicit(&w->shm.hdr->slot[h->marks_wait[k].slot].marks_applied,
                                                memory_order_acquire);
        if (applied < h->marks_wait[k].number)
            return false;
        h->n_marks_wait = k;
    }
    return true;
}

void handover_arm_tick(worker *w)
{
    handover_table *t = &w->handovers;
    struct timeval tv = {0, HANDOVER_TICK_MS * 1000};
    if (t->ticking || t->tick_ev == NULL)
        return;
    if (event_add(t->tick_ev, &tv) != 0) {
        log_error("cannot arm the replay timer");
        return;
    }
    t->ticking = true;
}

/* ---- the store ----------------------------------------------------------- */


/* The read-only handle, opened at start or, after a failure, again at most
 * once per STORE_RETRY_MS (a session that finds none gets 1013). */
static int ensure_store(worker *w)
{
    handover_table *t = &w->handovers;
    if (w->store != NULL)
        return 0;
    if (t->store_failed && w->loop.now - t->store_retry_at < STORE_RETRY_MS)
        return -1;
    const char *dir = getenv(HANDOFF_STORE_ENV);
    char err[256];
    store_options o = {
        .dir = dir,
        .ttl_ns = (uint64_t)w->cfg->history_ttl * 1000000000u,
        .writer = false,
    };
    if (store_open(&w->store, &o, err, sizeof err) == 0) {
        if (t->store_failed)
            log_info("history store %s open again", dir);
        t->store_failed = false;
        return 0;
    }
    w->store = NULL;
    log_error("cannot open the history store %s: %s (connections get 1013 until it opens)",
              dir, err);
    t->store_failed = true;
    t->store_retry_at = w->loop.now;
    return -1;
}

/* ---- one session's steps -------------------------------------------------- */

void handover_fail(handover *h, const char *why)
{
    log_error("UserID=%lld: %s: closing with 1013", (long long)h->user, why);
    ws_session_close(h->c, WS_CLOSE_TRY_AGAIN, "history unavailable, try again");
}

/* Room to write more: the client's unsent output, and the loop's (other
 * replays and slow clients), are low enough. */
bool handover_output_full(const worker *w, const client *c)
{
    return c->io.out_len >= HIGH_WATER ||
           (w->loop.out_limit != 0 && w->loop.out_total >= w->loop.out_limit / 2);
}

uint64_t handover_committed(const worker *w)
{
    return atomic_load_explicit(&w->shm.hdr->committed_seq, memory_order_acquire);
}

/* The store has not committed up to S within HANDOVER_WAIT_MS of the claim:
 * it is stuck (a commit takes milliseconds). Returns true when it gave up. */
static bool wait_expired(worker *w, handover *h, uint64_t done)
{
    if (w->loop.now - h->started < HANDOVER_WAIT_MS)
        return false;
    char why[160];
    snprintf(why, sizeof why,
             "the history did not commit up to seq %llu within %u s (committed: %llu)",
             (unsigned long long)h->max_seq, HANDOVER_WAIT_MS / 1000u, (unsigned long long)done);
    handover_fail(h, why);
    return true;
}

/* FINDING → REPLAYING: where the replay starts, and `connected`. Returns
 * true when the replay may begin. recovered: SPEC "true when last_id is 0
 * or is in the user's history". An id not found while seqs up to S are still
 * committing may be one of them (the client saw it live and came back at
 * once): it is looked for again once they are. Found, the replay starts
 * after its seq even if it is trimmed before a pass reads it (the store
 * would then return everything). */
static bool begin(worker *w, handover *h)
{
    int recovered = -1;
    h->after_id = 0;
    h->floor_seq = 0;
    if (h->last_id == 0) {
        recovered = 1;
    } else if (h->last_id > 0) {
        uint64_t done = handover_committed(w);
        store_entry e;
        int rc = store_find(w->store, h->user, h->last_id, clock_realtime_ns(), &e);
        if (rc < 0) {
            handover_fail(h, "cannot read the history");
            return false;
        }
        if (rc == 1 && done < h->max_seq) {
            (void)wait_expired(w, h, done);
            return false;
        }
        recovered = rc == 0;
        if (rc == 0) {
            h->after_id = h->last_id;
            h->floor_seq = e.seq;
        }
    }
    h->state = ST_REPLAYING;
    return ws_session_send_connected(h->c, h->email, recovered) == 0 && h->c != NULL;
}

enum { REPLAY_CLOSED = 1, REPLAY_PAUSED = 2 };

typedef struct {
    worker *w;
    handover *h;
    uint64_t written;
} replay_ctx;

static int on_entry(void *arg, const store_entry *e)
{
    replay_ctx *x = arg;
    handover *h = x->h;
    /* Written by an earlier chunk, or not after last_id: a chunk's read
     * restarts from the whole history when its start was trimmed meanwhile. */
    if (e->seq <= h->floor_seq)
        return 0;
    if (ws_session_write_notification(h->c, e->json, e->json_len, e->id, e->seq, 0) != 0)
        return REPLAY_CLOSED;
    x->written++;
    h->floor_seq = e->seq;
    h->after_id = e->id;
    return handover_output_full(x->w, h->c) ? REPLAY_PAUSED : 0;
}

/* REPLAYING → RELEASING once every entry up to S is written. A pass reads
 * up to what is committed (one snapshot per chunk, a chunk ending where the
 * client's output is full); a new pass starts as committed_seq moves on.
 * Returns true when the replay is complete. */
static bool replay(worker *w, handover *h)
{
    if (handover_output_full(w, h->c))
        return false;
    uint64_t done = handover_committed(w);
    if (h->last_id < 0 && !handover_marks_committed(w, h)) {
        (void)wait_expired(w, h, done);
        return false;
    }
    uint64_t upto = done < h->max_seq ? done : h->max_seq;
    if (h->paused || upto > h->done_upto) {
        replay_ctx x = {.w = w, .h = h};
        store_replay_mode mode = h->last_id >= 0 ? STORE_REPLAY_AFTER : STORE_REPLAY_UNSENT;
        int rc = store_replay(w->store, h->user, mode, h->after_id, upto, clock_realtime_ns(),
                              on_entry, &x, NULL);
        if (x.written > 0)
            atomic_fetch_add_explicit(&w->stats->replayed, x.written, memory_order_relaxed);
        if (rc == REPLAY_CLOSED || h->c == NULL)
            return false;
        h->paused = rc == REPLAY_PAUSED;
        if (h->paused)
            return false;
        if (rc != 0) {
            handover_fail(h, "cannot read the history");
            return false;
        }
        h->done_upto = upto;
    }
    if (h->done_upto < h->max_seq) {
        (void)wait_expired(w, h, done);
        return false;
    }
    h->state = ST_RELEASING;
    return true;
}

static int write_item(client *c, const handover_item *it)
{
    if (it->kind == HANDOVER_REPLY)
        return ws_session_send_text(c, it->data, it->len);
    uint64_t seq = it->kind == HANDOVER_LIVE || it->kind == HANDOVER_ROUTED ? it->seq : 0;
    return ws_session_write_notification(c, it->data, it->len, it->id, seq, it->accepted_ns);
}

/* RELEASING → FILTERING once every held item is written. */
static bool release(worker *w, handover *h)
{
    handover_item it;
    while (handover_held_peek(&h->held, &it)) {
        if (handover_output_full(w, h->c))
            return false;
        if (w->link != NULL && handover_cluster_covered(h, &it)) {
            handover_held_pop(&h->held); /* its replay wrote it */
            continue;
        }
        int rc = write_item(h->c, &it);
        handover_held_pop(&h->held);
        if (rc != 0 || h->c == NULL)
            return false;
    }
    handover_held_free(&h->held);
    h->state = ST_FILTERING;
    h->replayed_at = w->loop.now;
    list_unlink(&w->handovers.busy, h);
    list_push(&w->handovers.filtering, h);
    return true;
}

/* Which queued datagrams predate the replay's wait is not knowable, but an
 * empty queue proves every one of them was read and handled. Never called
 * while worker_on_queue is between a read and its handling. */
static bool queue_empty(const worker *w)
{
    uint8_t byte;
    ssize_t n = recv(w->h.queue_fd, &byte, sizeof byte, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Take h as far as it can go now. h may be freed when it returns. */
void handover_advance(worker *w, handover *h)
{
    if (w->link != NULL) {
        if (h->state < ST_RELEASING && !handover_cluster_step(w, h))
            return;
    } else {
        if (h->state == ST_FINDING && !begin(w, h))
            return;
        if (h->c == NULL || (h->state == ST_REPLAYING && !replay(w, h)))
            return;
    }
    if (h->c == NULL || (h->state == ST_RELEASING && !release(w, h)))
        return;
    if (h->state == ST_FILTERING && queue_empty(w))
        handover_queue_drained(w);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    handover_table *t = &w->handovers;
    conn_loop_clock(&w->loop);
    /* handover_advance() only moves h itself to another list or frees it (and the
     * filtering list), never the next busy one. */
    for (handover *h = t->busy, *next; h != NULL; h = next) {
        next = h->next;
        if (h->state == ST_DEAD) {
            if (h->inflight)
                continue; /* its answer comes back to it */
            list_unlink(&t->busy, h);
            destroy(h);
            continue;
        }
        handover_advance(w, h);
    }
    if (t->busy == NULL && t->ticking) {
        if (event_del(t->tick_ev) != 0)
            log_warn("cannot stop the replay timer");
        t->ticking = false;
    }
    conn_reap(&w->loop);
}

/* ---- the session's interface --------------------------------------------- */

bool handover_enabled(const worker *w) { return w->history || w->link != NULL; }

void handover_start(client *c, const char *email, int64_t last_id)
{
    worker *w = client_worker(c);
    handover_table *t = &w->handovers;
    if (w->link == NULL && ensure_store(w) != 0) {
        log_info("closing UserID=%lld with 1013: the history store is not open",
                 (long long)c->user_id);
        ws_session_close(c, WS_CLOSE_TRY_AGAIN, "history unavailable, try again");
        return;
    }
    size_t elen = strlen(email);
    handover *h = calloc(1, sizeof *h + elen + 1);
    if (h == NULL) {
        conn_abort(&c->io, "out of memory starting a replay");
        return;
    }
    memcpy(h->email, email, elen + 1);
    h->c = c;
    h->user = c->user_id;
    h->last_id = last_id;
    h->started = w->loop.now;
    /* The claim (http_serve) is done: with the master's fence between a
     * seq's increment and its lookup, either that lookup sees the claim (it
     * comes live: seq > S) or this load sees the seq (it is replayed). */
    atomic_thread_fence(memory_order_seq_cst);
    h->max_seq = atomic_load(&w->shm.hdr->accepted_seq);
    h->local_seq = h->max_seq;
    h->generation = c->generation;
    user_map_init(&h->ids);
    if (w->link != NULL)
        h->state = ST_CLAIMING; /* max_seq becomes the replay's snapshot */
    if (last_id < 0 && w->history && snapshot_marks(w, h) != 0) {
        destroy(h);
        conn_abort(&c->io, "out of memory starting a replay");
        return;
    }
    if (user_map_put(&t->by_user, h->user, h) != 0) {
        free(h);
        conn_abort(&c->io, "out of memory starting a replay");
        return;
    }
    c->in_handover = true;
    list_push(&t->busy, h);
    if (w->link != NULL)
        handover_cluster_start(w, h);
    else
        handover_advance(w, h);
    if (t->busy != NULL)
        handover_arm_tick(w);
}

static handover *find(const worker *w, const client *c)
{
    handover *h = user_map_get(&w->handovers.by_user, c->user_id);
    return h != NULL && h->c == c ? h : NULL;
}

bool handover_take(client *c, const handover_item *it)
{
    worker *w = client_worker(c);
    handover *h = find(w, c);
    if (h == NULL)
        return false;
    handover_verdict v = w->link != NULL ? handover_cluster_verdict(h, it)
                                         : handover_decide(h->state >= ST_FILTERING, h->max_seq, it);
    switch (v) {
    case HANDOVER_SEND:
        return false;
    case HANDOVER_DROP:
        log_debug("UserID=%lld: notification %lld (seq %llu) is in its replay",
                  (long long)h->user, (long long)it->id, (unsigned long long)it->seq);
        return true;
    case HANDOVER_HOLD:
    default:
        break;
    }
    int rc = handover_held_push(&h->held, it, HELD_MAX);
    if (rc == -2) {
        conn_abort(&c->io, "out of memory holding a notification during a replay");
    } else if (rc != 0) {
        log_warn("UserID=%lld: over %u bytes arrived during its replay: closing with 1013",
                 (long long)h->user, HELD_MAX);
        ws_session_close(c, WS_CLOSE_TRY_AGAIN, "too much to replay, try again");
    }
    return true;
}

void handover_forget(client *c)
{
    if (!c->in_handover)
        return;
    worker *w = client_worker(c);
    handover_table *t = &w->handovers;
    handover *h = find(w, c);
    c->in_handover = false;
    if (h == NULL)
        return;
    user_map_remove(&t->by_user, h->user, h);
    h->c = NULL;
    if (h->state == ST_FILTERING) {
        list_unlink(&t->filtering, h);
        list_push(&t->busy, h);
    }
    h->state = ST_DEAD;
    handover_arm_tick(w);
}

void handover_queue_drained(worker *w)
{
    handover_table *t = &w->handovers;
    for (handover *h = t->filtering, *next; h != NULL; h = next) {
        next = h->next;
        if (w->link != NULL && !handover_cluster_filter_done(w, h))
            continue; /* routed notifications the replay covered may still come */
        list_unlink(&t->filtering, h);
        user_map_remove(&t->by_user, h->user, h);
        h->c->in_handover = false;
        destroy(h);
    }
}

void handover_sweep(worker *w)
{
    if (w->handovers.filtering != NULL && queue_empty(w))
        handover_queue_drained(w);
}

void handover_signal(worker *w, int64_t user, uint32_t generation, int kind)
{
    handover *h = user_map_get(&w->handovers.by_user, user);
    if (h == NULL || h->c == NULL || h->generation != generation)
        return;
    if (kind == QSIGNAL_RELEASED)
        h->await_release = false;
    else
        h->barrier_seen = true;
    if (h->state < ST_FILTERING)
        handover_advance(w, h);
}

/* ---- the worker's side --------------------------------------------------- */

int handover_init(worker *w)
{
    handover_table *t = &w->handovers;
    const char *dir = getenv(HANDOFF_STORE_ENV);
    user_map_init(&t->by_user);
    bool cluster = w->cfg->redis_url != NULL;
    /* Cluster mode: the history is in Redis (handover_cluster.c), and marks
     * carry the sessions' releases too, so they are always on. */
    w->history = w->cfg->history_size > 0 && (cluster || (dir != NULL && dir[0] != '\0'));
    if (!w->history && !cluster)
        return 0;
    t->tick_ev = event_new(w->loop.base, -1, EV_PERSIST, on_tick, w);
    w->marks_ev = evtimer_new(w->loop.base, marks_on_flush, w);
    if (t->tick_ev == NULL || w->marks_ev == NULL || marks_init(&w->marks) != 0)
        return -1;
    /* A failure here is retried by the first session that needs the store. */
    if (!cluster)
        (void)ensure_store(w);
    return 0;
}

void handover_free(worker *w)
{
    handover_table *t = &w->handovers;
    handover *lists[2] = {t->busy, t->filtering};
    for (int i = 0; i < 2; i++) {
        for (handover *h = lists[i], *next; h != NULL; h = next) {
            next = h->next;
            if (h->c != NULL)
                h->c->in_handover = false;
            destroy(h);
        }
    }
    t->busy = t->filtering = NULL;
    user_map_free(&t->by_user);
    if (t->tick_ev != NULL)
        event_free(t->tick_ev);
    t->tick_ev = NULL;
    marks_flush(w);
    marks_free(&w->marks);
    if (w->marks_ev != NULL)
        event_free(w->marks_ev);
    w->marks_ev = NULL;
    store_close(w->store);
    w->store = NULL;
}
