/* cluster.c — the master's Redis side of cluster mode (see cluster.h).
 *
 * Connections. The history thread owns two blocking hiredis connections with
 * timeouts: cmd (the scripts, pipelined per round; the liveness key; id
 * leases; publishes) and sub (SUBSCRIBE to this instance's channel and the
 * broadcast channel, read when poll says it is readable). Either failing
 * drops both: the node is "down" until both are back, and reconnects with a
 * doubling back-off from CLUSTER_RETRY_MIN_MS to CLUSTER_RETRY_MAX_MS, so it
 * heals within about a second of Redis returning, without losing a
 * subscription (re-made on every connect) or a holder (the workers
 * re-announce theirs, workers/cluster_link.c).
 *
 * Messages on this instance's channel (space-separated decimals, from the
 * scripts of redis_scripts.c and from other nodes):
 *   N user gen id seq accepted_ns \n json   a notification for a session here
 *   E user gen instance(hex) gen2            a session of instance evicts ours
 *   R user gen                               the session we evicted is gone
 *   W user gen                               replay barrier of a session here
 *   A user id at_ms                          an ack for a call waiting here
 *   C id count                               another node's Broadcast count
 *   P ns                                     our own ping (pub/sub lag)
 * and on the broadcast channel: X instance(hex) id accepted_ns \n json. */
#include "src/master/cluster.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shm/queue.h"
#include "src/common/clock.h"
#include "src/common/config.h"
#include "src/common/log.h"
#include "src/common/redis_scripts.h"
#include "src/common/redis_sync.h"
#include "src/master/fanout.h"
#include "src/master/history.h"

#define APPEND_CHUNK 128     /* notifications per APPEND call */
#define MARK_CHUNK 1024      /* marks per MARK call */
#define RELEASE_CHUNK 1024   /* holders per RELEASE call */
#define RELEASES_MAX 200000  /* queued while down; past it the oldest go (re-announce repairs) */
#define EVICTED_MAX 10000
#define STATUS_TIMEOUT_MS 500
#define DOWN_LOG_MS 30000    /* "still cannot reach Redis" at most this often */
#define ANSWER_WAIT_MS 500   /* an eviction answer waits this long for marks at most */

typedef struct { int64_t user; uint32_t gen; } release_item;
typedef struct { int64_t user; uint64_t instance; uint32_t gen; } evicted_item;

struct cluster {
    cluster_options o;
    char node_id[CONFIG_NODE_ID_MAX];
    char instance[17];
    char channel[REDIS_NAME_MAX];
    char live_key[REDIS_NAME_MAX];
    char sha[RSCRIPT_COUNT][REDIS_SHA_HEX + 1];
    char where[REDIS_URL_HOST_MAX + 16];
    _Atomic bool up;
    /* history thread */
    redisContext *cmd;
    redisContext *sub;
    bool ever_up;
    uint64_t retry_at_ms;
    unsigned backoff_ms;
    uint64_t down_logged_ms;
    bool down_logged;
    uint64_t next_live_ms;
    release_item *rel;
    size_t rel_len, rel_cap;
    evicted_item *evd;
    size_t evd_len, evd_cap;
    /* Per slot: the marks datagram that must be applied before the queued
     * eviction answers go out (the SENT marks pending when they were queued). */
    uint64_t evd_needs[REGION_MAX_SLOTS];
    uint64_t evd_since_ms;    /* when the oldest queued answer was queued */
    cluster_broadcast *bcasts;
    /* the id blocks: any thread, under ids_lock */
    pthread_mutex_t ids_lock;
    int64_t id_next, id_end;
    int64_t spare_next, spare_end;
    bool ids_asked;
    /* the gRPC thread */
    redisContext *status_ctx;
};



/* ---- parsing the messages ------------------------------------------------ */

static bool next_dec(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    uint64_t v = 0;
    const char *start = s;
    while (s < end && *s >= '0' && *s <= '9' && s - start < 20)
        v = v * 10u + (uint64_t)(*s++ - '0');
    if (s == start || (s < end && *s != ' ' && *s != '\n'))
        return false;
    *p = s;
    *out = v;
    return true;
}

static bool next_hex(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    uint64_t v = 0;
    const char *start = s;
    for (; s < end && s - start < 16; s++) {
        char ch = *s;
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0)
            break;
        v = v << 4 | (uint64_t)d;
    }
    if (s == start || (s < end && *s != ' ' && *s != '\n'))
        return false;
    *p = s;
    *out = v;
    return true;
}

static void instance_name(uint64_t instance, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, instance);
}

/* ---- queues -------------------------------------------------------------- */

void cluster_release(cluster *c, int64_t user, uint32_t generation)
{
    if (c->rel_len == c->rel_cap) {
        if (c->rel_cap >= RELEASES_MAX) {
            /* The holder stays in Redis; a notification for it finds no
             * session here and releases it then, or the node's liveness
             * key lapses when it stops. */
            memmove(c->rel, c->rel + 1, (c->rel_len - 1) * sizeof *c->rel);
            c->rel_len--;
        } else {
            size_t cap = c->rel_cap ? 2 * c->rel_cap : 1024;
            release_item *r = realloc(c->rel, cap * sizeof *r);
            if (r == NULL) {
                log_error("cluster: out of memory queueing a holder release");
                return;
            }
            c->rel = r;
            c->rel_cap = cap;
        }
    }
    c->rel[c->rel_len++] = (release_item){.user = user, .gen = generation};
}

void cluster_evicted(cluster *c, int64_t user, uint64_t instance, uint32_t generation)
{
    if (c->evd_len == c->evd_cap) {
        if (c->evd_cap >= EVICTED_MAX)
            return; /* the evicting session stops waiting after its timeout */
        size_t cap = c->evd_cap ? 2 * c->evd_cap : 64;
        evicted_item *e = realloc(c->evd, cap * sizeof *e);
        if (e == NULL)
            return;
        c->evd = e;
        c->evd_cap = cap;
    }
    if (c->evd_len == 0)
        c->evd_since_ms = clock_monotonic_ms();
    c->evd[c->evd_len++] = (evicted_item){.user = user, .instance = instance, .gen = generation};
}

/* ---- connection state ---------------------------------------------------- */

static void set_up(cluster *c, bool up)
{
    atomic_store(&c->up, up);
    atomic_store_explicit(&c->o.shm->hdr->redis_up, up ? 1u : 0u, memory_order_relaxed);
}

static void drop(cluster *c, const char *reason)
{
    char why[256];
    snprintf(why, sizeof why, "%s", reason); /* it may point into a context freed here */
    bool was_up = atomic_load(&c->up);
    redis_sync_free(c->cmd);
    redis_sync_free(c->sub);
    c->cmd = c->sub = NULL;
    set_up(c, false);
    c->backoff_ms = CLUSTER_RETRY_MIN_MS;
    c->retry_at_ms = clock_monotonic_ms() + c->backoff_ms;
    if (was_up) {
        log_warn("cluster: lost Redis at %s (%s): notifications that need it get UNAVAILABLE "
                 "and new WebSocket connections 503 until it is back",
                 c->where, why);
        c->down_logged = true;
        c->down_logged_ms = clock_monotonic_ms();
    }
}

/* One command on cmd whose reply is checked and dropped. */
static int command(cluster *c, int argc, const char **argv, const size_t *lens, long long *out)
{
    redisReply *r = redisCommandArgv(c->cmd, argc, argv, lens);
    char err[256];
    bool ok = redis_sync_reply_ok(c->cmd, r, err, sizeof err);
    if (ok && out != NULL)
        *out = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    if (r != NULL)
        freeReplyObject(r);
    if (!ok) {
        char why[300];
        snprintf(why, sizeof why, "%s: %s", argv[0], err);
        drop(c, why);
        return -1;
    }
    return 0;
}

static int refresh_live(cluster *c)
{
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", REDIS_LIVE_TTL_MS);
    const char *argv[5] = {"SET", c->live_key, c->node_id, "PX", ttl};
    size_t lens[5] = {3, strlen(c->live_key), strlen(c->node_id), 2, strlen(ttl)};
    if (command(c, 5, argv, lens, NULL) != 0)
        return -1;
    char ping[32];
    snprintf(ping, sizeof ping, "P %" PRIu64, clock_realtime_ns());
    const char *pargv[3] = {"PUBLISH", c->channel, ping};
    size_t plens[3] = {7, strlen(c->channel), strlen(ping)};
    return command(c, 3, pargv, plens, NULL);
}

/* Lease blocks until there is a current and a spare one. */
static int lease_ids(cluster *c)
{
    for (;;) {
        pthread_mutex_lock(&c->ids_lock);
        bool need = c->spare_next == c->spare_end || c->id_next == c->id_end;
        c->ids_asked = false;
        pthread_mutex_unlock(&c->ids_lock);
        if (!need)
            return 0;
        char count[16], floor[24];
        snprintf(count, sizeof count, "%d", REDIS_ID_BLOCK);
        /* The time base in microseconds, as on a single node. */
        snprintf(floor, sizeof floor, "%" PRIu64, clock_realtime_ns() / 1000u);
        const char *argv[5] = {"EVALSHA", c->sha[RSCRIPT_IDS], "0", count, floor};
        size_t lens[5] = {7, REDIS_SHA_HEX, 1, strlen(count), strlen(floor)};
        long long first = 0;
        if (command(c, 5, argv, lens, &first) != 0)
            return -1;
        if (first <= 0) {
            drop(c, "the id lease returned nothing");
            return -1;
        }
        pthread_mutex_lock(&c->ids_lock);
        if (c->id_next == c->id_end) {
            c->id_next = first;
            c->id_end = first + REDIS_ID_BLOCK;
        } else {
            c->spare_next = first;
            c->spare_end = first + REDIS_ID_BLOCK;
        }
        pthread_mutex_unlock(&c->ids_lock);
    }
}

static int subscribe(cluster *c, char *err, size_t err_size)
{
    const char *argv[3] = {"SUBSCRIBE", c->channel, REDIS_BROADCAST_CHANNEL};
    size_t lens[3] = {9, strlen(c->channel), strlen(REDIS_BROADCAST_CHANNEL)};
    if (redisAppendCommandArgv(c->sub, 3, argv, lens) != REDIS_OK) {
        snprintf(err, err_size, "SUBSCRIBE: %s", c->sub->errstr);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c->sub, (void **)&r) != REDIS_OK || r == NULL ||
            r->type != REDIS_REPLY_ARRAY) {
            snprintf(err, err_size, "SUBSCRIBE: %s",
                     r == NULL ? c->sub->errstr : "unexpected reply");
            if (r != NULL)
                freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

static void try_connect(cluster *c, uint64_t now)
{
    char err[300];
    c->cmd = redis_sync_connect(&c->o.url, CLUSTER_TIMEOUT_MS, true, err, sizeof err);
    if (c->cmd != NULL)
        c->sub = redis_sync_connect(&c->o.url, CLUSTER_TIMEOUT_MS, false, err, sizeof err);
    if (c->cmd == NULL || c->sub == NULL || subscribe(c, err, sizeof err) != 0) {
        redis_sync_free(c->cmd);
        redis_sync_free(c->sub);
        c->cmd = c->sub = NULL;
        if (!c->down_logged || now - c->down_logged_ms >= DOWN_LOG_MS) {
            log_warn("cluster: cannot reach Redis at %s (%s); retrying every %u ms at most",
                     c->where, err, CLUSTER_RETRY_MAX_MS);
            c->down_logged = true;
            c->down_logged_ms = now;
        }
        c->backoff_ms = c->backoff_ms * 2 > CLUSTER_RETRY_MAX_MS ? CLUSTER_RETRY_MAX_MS
                                                                 : c->backoff_ms * 2;
        c->retry_at_ms = now + c->backoff_ms;
        return;
    }
    set_up(c, true);
    if (refresh_live(c) != 0 || lease_ids(c) != 0)
        return; /* dropped again, logged */
    c->next_live_ms = now + REDIS_LIVE_REFRESH_MS;
    c->down_logged = false;
    if (c->ever_up)
        atomic_fetch_add_explicit(&c->o.shm->hdr->redis_reconnects, 1, memory_order_relaxed);
    log_info("cluster: %s Redis at %s as node %s (instance %s)",
             c->ever_up ? "reconnected to" : "connected to", c->where, c->node_id, c->instance);
    c->ever_up = true;
}

/* ---- broadcasts ---------------------------------------------------------- */

static void broadcast_finish(cluster *c, cluster_broadcast *b, bool timed_out)
{
    cluster_broadcast **pp = &c->bcasts;
    while (*pp != NULL && *pp != b)
        pp = &(*pp)->next;
    if (*pp == b)
        *pp = b->next;
    if (timed_out)
        log_warn("broadcast %lld: %d of %d other nodes counted their connections within %d ms",
                 (long long)b->reply->id, b->answered, b->expected, CLUSTER_BROADCAST_WAIT_MS);
    b->reply->done(b->reply);
    free(b);
}

void cluster_broadcast_start(cluster *c, cluster_broadcast *b)
{
    b->next = NULL;
    if (!atomic_load(&c->up)) {
        b->reply->status = ROUTE_UNAVAILABLE;
        snprintf(b->reply->details, sizeof b->reply->details,
                 "reached this node's connections only: Redis is out of reach");
        b->reply->done(b->reply);
        free(b);
        return;
    }
    char head[96];
    int hl = snprintf(head, sizeof head, "X %s %lld %" PRIu64 "\n", c->instance,
                      (long long)b->reply->id, b->accepted_ns);
    size_t len = (size_t)hl + b->json_len;
    char *msg = malloc(len);
    long long receivers = 0;
    int rc = -1;
    if (msg != NULL) {
        memcpy(msg, head, (size_t)hl);
        memcpy(msg + hl, b->json, b->json_len);
        const char *argv[3] = {"PUBLISH", REDIS_BROADCAST_CHANNEL, msg};
        size_t lens[3] = {7, strlen(REDIS_BROADCAST_CHANNEL), len};
        rc = command(c, 3, argv, lens, &receivers);
        free(msg);
    }
    if (rc != 0) {
        b->reply->status = ROUTE_UNAVAILABLE;
        snprintf(b->reply->details, sizeof b->reply->details,
                 "reached this node's connections only: %s",
                 msg == NULL ? "out of memory" : "Redis is out of reach");
        b->reply->done(b->reply);
        free(b);
        return;
    }
    /* Our own subscriber is one of the receivers. */
    b->expected = (int)(receivers > 0 ? receivers - 1 : 0);
    b->answered = 0;
    b->deadline_ms = clock_monotonic_ms() + CLUSTER_BROADCAST_WAIT_MS;
    b->next = c->bcasts;
    c->bcasts = b;
    if (b->expected == 0)
        broadcast_finish(c, b, false);
}

static void broadcast_counted(cluster *c, int64_t id, int64_t count)
{
    for (cluster_broadcast *b = c->bcasts; b != NULL; b = b->next) {
        if (b->reply->id != id)
            continue;
        b->reply->recipients += count;
        if (++b->answered >= b->expected)
            broadcast_finish(c, b, false);
        return;
    }
}

/* Another node's broadcast: to our workers, then our count to its sender. */
static void broadcast_received(cluster *c, const char *p, const char *end)
{
    uint64_t instance, id, accepted_ns;
    if (!next_hex(&p, end, &instance) || !next_dec(&p, end, &id) ||
        !next_dec(&p, end, &accepted_ns) || p >= end || *p != '\n') {
        log_warn("cluster: dropping a malformed broadcast message");
        return;
    }
    char from[17];
    instance_name(instance, from);
    if (strcmp(from, c->instance) == 0)
        return; /* ours: its sender delivered it here already */
    p++;
    queue_msg m = {.type = QMSG_BROADCAST, .accepted_ns = accepted_ns, .id = (int64_t)id,
                   .payload = (const uint8_t *)p, .payload_len = (uint32_t)(end - p)};
    if (m.payload_len == 0 || m.payload_len > QUEUE_MAX_PAYLOAD)
        return;
    int64_t n = fanout_to_workers(c->o.shm, c->o.slots, c->o.queue_out, &m, NULL, NULL);
    char channel[REDIS_NAME_MAX], reply[64];
    redis_node_channel(channel, from);
    snprintf(reply, sizeof reply, "C %" PRIu64 " %lld", id, (long long)n);
    const char *argv[3] = {"PUBLISH", channel, reply};
    size_t lens[3] = {7, strlen(channel), strlen(reply)};
    (void)command(c, 3, argv, lens, NULL);
}

/* ---- messages on this node's channel -------------------------------------- */

/* The slot holding (user, gen) here, or -1. */
static int holder_slot(cluster *c, int64_t user, uint32_t gen)
{
    dir_holder h;
    if (!directory_lookup(c->o.shm->dir, user, &h) || h.generation != gen || h.slot < 0 ||
        h.slot >= c->o.slots)
        return -1;
    return h.slot;
}

static void routed_received(cluster *c, const char *p, const char *end)
{
    uint64_t user, gen, id, seq, accepted_ns;
    if (!next_dec(&p, end, &user) || !next_dec(&p, end, &gen) || !next_dec(&p, end, &id) ||
        !next_dec(&p, end, &seq) || !next_dec(&p, end, &accepted_ns) || p >= end ||
        *p != '\n' || user == 0 || user > INT64_MAX || gen > UINT32_MAX) {
        log_warn("cluster: dropping a malformed notification message");
        return;
    }
    p++;
    int slot = holder_slot(c, (int64_t)user, (uint32_t)gen);
    if (slot < 0) {
        /* Gone from here: Redis still names it as the holder (its release
         * may be on the way, or was lost): release it now. */
        log_debug("cluster: notification %" PRIu64 " for UserID=%" PRIu64 " (gen %" PRIu64
                  "): no such session here any more",
                  id, user, gen);
        cluster_release(c, (int64_t)user, (uint32_t)gen);
        return;
    }
    queue_msg m = {.type = QMSG_ROUTED, .user = (int64_t)user, .generation = gen,
                   .accepted_ns = accepted_ns, .id = (int64_t)id, .seq = seq,
                   .payload = (const uint8_t *)p, .payload_len = (uint32_t)(end - p)};
    if (queue_send(c->o.queue_out[slot], &m) != 0) {
        log_warn("cluster: notification %" PRIu64 " for UserID=%" PRIu64
                 " not delivered: the queue of worker %d is full (%s); it stays in the history",
                 id, user, slot, strerror(errno));
        return;
    }
    atomic_fetch_add_explicit(&c->o.shm->hdr->cluster_received, 1, memory_order_relaxed);
}

static void evict_received(cluster *c, const char *p, const char *end)
{
    uint64_t user, gen, instance, new_gen;
    if (!next_dec(&p, end, &user) || !next_dec(&p, end, &gen) || !next_hex(&p, end, &instance) ||
        !next_dec(&p, end, &new_gen) || user == 0 || user > INT64_MAX || gen > UINT32_MAX ||
        new_gen > UINT32_MAX) {
        log_warn("cluster: dropping a malformed eviction message");
        return;
    }
    int slot = holder_slot(c, (int64_t)user, (uint32_t)gen);
    if (slot >= 0) {
        queue_msg m = {.type = QMSG_EVICT, .user = (int64_t)user, .generation = gen,
                       .id = (int64_t)new_gen, .seq = instance};
        if (queue_send(c->o.queue_out[slot], &m) == 0)
            return; /* the worker answers once the session is gone */
        /* Its worker will see the session displaced in its next pass. */
        (void)directory_release(c->o.shm->dir, (int64_t)user, (uint32_t)gen);
        atomic_store_explicit(&c->o.shm->hdr->slot[slot].reconcile_requested, 1,
                              memory_order_release);
        log_warn("cluster: cannot queue the eviction of UserID=%" PRIu64 " to worker %d (%s)",
                 user, slot, strerror(errno));
    }
    /* The session is gone, but its last SENT marks may not be applied yet
     * (its worker may not have sent them): the answer waits for them. */
    for (int s = 0; s < c->o.slots; s++) {
        uint64_t upto = region_marks_pending_upto(&c->o.shm->hdr->slot[s]);
        if (upto > c->evd_needs[s])
            c->evd_needs[s] = upto;
    }
    cluster_evicted(c, (int64_t)user, instance, (uint32_t)new_gen);
}

static void signal_received(cluster *c, const char *p, const char *end, queue_signal kind)
{
    uint64_t user, gen;
    if (!next_dec(&p, end, &user) || !next_dec(&p, end, &gen) || user == 0 ||
        user > INT64_MAX || gen > UINT32_MAX)
        return;
    int slot = holder_slot(c, (int64_t)user, (uint32_t)gen);
    if (slot < 0)
        return;
    queue_msg m = {.type = QMSG_SIGNAL, .user = (int64_t)user, .generation = gen, .seq = kind};
    if (queue_send(c->o.queue_out[slot], &m) != 0)
        log_warn("cluster: cannot queue a signal for UserID=%" PRIu64 " to worker %d (%s): "
                 "its connection goes on after a timeout",
                 user, slot, strerror(errno));
}

static void message_received(cluster *c, const char *channel, const char *p, size_t len)
{
    const char *end = p + len;
    if (len < 2 || p[1] != ' ')
        return;
    if (strcmp(channel, REDIS_BROADCAST_CHANNEL) == 0) {
        if (p[0] == 'X')
            broadcast_received(c, p + 2, end);
        return;
    }
    uint64_t a, b, d;
    const char *q = p + 2;
    switch (p[0]) {
    case 'N': routed_received(c, q, end); break;
    case 'E': evict_received(c, q, end); break;
    case 'R': signal_received(c, q, end, QSIGNAL_RELEASED); break;
    case 'W': signal_received(c, q, end, QSIGNAL_BARRIER); break;
    case 'A':
        if (next_dec(&q, end, &a) && next_dec(&q, end, &b) && next_dec(&q, end, &d) &&
            a <= INT64_MAX && b <= INT64_MAX)
            c->o.on_ack(c->o.ctx, (int64_t)a, (int64_t)b);
        break;
    case 'C':
        if (next_dec(&q, end, &a) && next_dec(&q, end, &b) && a <= INT64_MAX && b <= INT64_MAX)
            broadcast_counted(c, (int64_t)a, (int64_t)b);
        break;
    case 'P':
        if (next_dec(&q, end, &a)) {
            uint64_t now = clock_realtime_ns();
            atomic_store_explicit(&c->o.shm->hdr->pubsub_lag_ns, now > a ? now - a : 0,
                                  memory_order_relaxed);
        }
        break;
    default:
        log_debug("cluster: ignoring a message of kind %c", p[0]);
        break;
    }
}

static void read_subscriber(cluster *c)
{
    if (redisBufferRead(c->sub) != REDIS_OK) {
        drop(c, c->sub->errstr[0] ? c->sub->errstr : "the subscriber connection closed");
        return;
    }
    for (;;) {
        redisReply *r = NULL;
        if (redisGetReplyFromReader(c->sub, (void **)&r) != REDIS_OK) {
            drop(c, "a malformed reply on the subscriber connection");
            return;
        }
        if (r == NULL)
            return;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "message") == 0 &&
            r->element[1]->type == REDIS_REPLY_STRING &&
            r->element[2]->type == REDIS_REPLY_STRING)
            message_received(c, r->element[1]->str, r->element[2]->str, r->element[2]->len);
        freeReplyObject(r);
        if (c->sub == NULL)
            return; /* a reply to it dropped the connection */
    }
}

/* ---- the history thread's entry points ------------------------------------ */

int cluster_fd(const cluster *c) { return c->sub != NULL ? c->sub->fd : -1; }

int cluster_service(cluster *c, bool readable)
{
    uint64_t now = clock_monotonic_ms();
    if (!atomic_load(&c->up) && now >= c->retry_at_ms)
        try_connect(c, now);
    if (atomic_load(&c->up) && readable)
        read_subscriber(c);
    now = clock_monotonic_ms();
    if (atomic_load(&c->up) && now >= c->next_live_ms) {
        c->next_live_ms = now + REDIS_LIVE_REFRESH_MS;
        (void)refresh_live(c);
    }
    if (atomic_load(&c->up)) {
        pthread_mutex_lock(&c->ids_lock);
        bool asked = c->ids_asked;
        pthread_mutex_unlock(&c->ids_lock);
        if (asked)
            (void)lease_ids(c);
    }
    uint64_t next = now + 1000;
    for (cluster_broadcast *b = c->bcasts, *n; b != NULL; b = n) {
        n = b->next;
        if (b->deadline_ms <= now)
            broadcast_finish(c, b, true);
        else if (b->deadline_ms < next)
            next = b->deadline_ms;
    }
    if (atomic_load(&c->up) && c->next_live_ms < next)
        next = c->next_live_ms;
    if (!atomic_load(&c->up) && c->retry_at_ms < next)
        next = c->retry_at_ms;
    return next > now ? (int)(next - now) : 0;
}

typedef enum { PEND_APPEND, PEND_MARK, PEND_RELEASE, PEND_EVICTED } pend_kind;

typedef struct {
    pend_kind kind;
    size_t first;   /* index into the items, marks, releases or evicted replies */
    size_t count;
} pending_reply;

/* A number, or a holder "INSTANCE|GEN" (16 + 1 + 10 characters). */
#define ARG_NUM_MAX 32

typedef struct {
    const char **argv;
    size_t *lens;
    char (*num)[ARG_NUM_MAX];
    size_t cap;       /* argv slots */
    size_t num_cap;
} argbuf;

static int argbuf_room(argbuf *a, size_t args, size_t nums)
{
    if (args > a->cap) {
        const char **v = realloc(a->argv, args * sizeof *v);
        size_t *l = v != NULL ? realloc(a->lens, args * sizeof *l) : NULL;
        if (v != NULL)
            a->argv = v;
        if (l == NULL)
            return -1;
        a->lens = l;
        a->cap = args;
    }
    if (nums > a->num_cap) {
        char(*n)[ARG_NUM_MAX] = realloc(a->num, nums * sizeof *n);
        if (n == NULL)
            return -1;
        a->num = n;
        a->num_cap = nums;
    }
    return 0;
}

static void arg(argbuf *a, size_t *k, const char *s, size_t len)
{
    a->argv[*k] = s;
    a->lens[*k] = len;
    (*k)++;
}

static void arg_num(argbuf *a, size_t *k, size_t *nk, uint64_t v)
{
    int n = snprintf(a->num[*nk], sizeof a->num[0], "%" PRIu64, v);
    arg(a, k, a->num[*nk], (size_t)n);
    (*nk)++;
}

static void arg_str(argbuf *a, size_t *k, const char *s) { arg(a, k, s, strlen(s)); }

static int queue_append(cluster *c, argbuf *a, history_item **need, size_t first, size_t n)
{
    /* EVALSHA sha 0 instance size ttl now, then the items' fields. */
    if (argbuf_room(a, 7 + RAPPEND_FIELDS * n, 3 + 4 * n) != 0)
        return -1;
    size_t k = 0, nk = 0;
    arg_str(a, &k, "EVALSHA");
    arg(a, &k, c->sha[RSCRIPT_APPEND], REDIS_SHA_HEX);
    arg_str(a, &k, "0");
    arg_str(a, &k, c->instance);
    arg_num(a, &k, &nk, c->o.history_size);
    arg_num(a, &k, &nk, c->o.ttl_ms);
    arg_num(a, &k, &nk, clock_realtime_ns() / 1000000u);
    for (size_t i = first; i < first + n; i++) {
        history_item *it = need[i];
        arg_num(a, &k, &nk, (uint64_t)it->user);
        arg_num(a, &k, &nk, (uint64_t)it->id);
        arg_str(a, &k, it->check_dup ? "1" : "0");
        arg_num(a, &k, &nk, it->accepted_ns);
        arg_num(a, &k, &nk, it->accepted_ns / 1000000u);
        arg_str(a, &k, it->push ? "1" : "0");
        arg_str(a, &k, it->ask == RASK_ANY ? "2" : it->ask == RASK_REMOTE ? "1" : "0");
        arg(a, &k, it->json, it->json_len);
    }
    return redisAppendCommandArgv(c->cmd, (int)k, a->argv, a->lens) == REDIS_OK ? 0 : -1;
}

static int queue_marks(cluster *c, argbuf *a, const store_mark *marks, size_t first, size_t n)
{
    if (argbuf_room(a, 4 + 4 * n, 3 * n) != 0)
        return -1;
    size_t k = 0, nk = 0;
    arg_str(a, &k, "EVALSHA");
    arg(a, &k, c->sha[RSCRIPT_MARK], REDIS_SHA_HEX);
    arg_str(a, &k, "0");
    arg_str(a, &k, c->instance);
    for (size_t i = first; i < first + n; i++) {
        arg_num(a, &k, &nk, (uint64_t)marks[i].user);
        arg_num(a, &k, &nk, (uint64_t)marks[i].id);
        arg_str(a, &k, marks[i].state == STORE_ACKED ? "3" : "2");
        arg_num(a, &k, &nk, marks[i].at_ms);
    }
    return redisAppendCommandArgv(c->cmd, (int)k, a->argv, a->lens) == REDIS_OK ? 0 : -1;
}

static int queue_releases(cluster *c, argbuf *a, size_t first, size_t n)
{
    if (argbuf_room(a, 3 + 2 * n, 2 * n) != 0)
        return -1;
    size_t k = 0, nk = 0;
    arg_str(a, &k, "EVALSHA");
    arg(a, &k, c->sha[RSCRIPT_RELEASE], REDIS_SHA_HEX);
    arg_str(a, &k, "0");
    for (size_t i = first; i < first + n; i++) {
        arg_num(a, &k, &nk, (uint64_t)c->rel[i].user);
        int len = snprintf(a->num[nk], sizeof a->num[0], "%s|%u", c->instance, c->rel[i].gen);
        arg(a, &k, a->num[nk++], (size_t)len);
    }
    return redisAppendCommandArgv(c->cmd, (int)k, a->argv, a->lens) == REDIS_OK ? 0 : -1;
}

static int queue_evicted(cluster *c, size_t i)
{
    char name[17], channel[REDIS_NAME_MAX], msg[64];
    instance_name(c->evd[i].instance, name);
    redis_node_channel(channel, name);
    snprintf(msg, sizeof msg, "R %lld %u", (long long)c->evd[i].user, c->evd[i].gen);
    const char *argv[3] = {"PUBLISH", channel, msg};
    size_t lens[3] = {7, strlen(channel), strlen(msg)};
    return redisAppendCommandArgv(c->cmd, 3, argv, lens) == REDIS_OK ? 0 : -1;
}

/* One reply of the pipeline into the items or marks. Returns 0, or -1 when
 * it is not what the script returns (its part failed). */
static int take_reply(const pending_reply *p, const redisReply *r, history_item **need,
                      uint8_t *mark_results)
{
    if (p->kind == PEND_APPEND) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 * p->count)
            return -1;
        for (size_t i = 0; i < p->count; i++) {
            redisReply **e = r->element + 4 * i;
            for (int j = 0; j < 4; j++)
                if (e[j]->type != REDIS_REPLY_INTEGER)
                    return -1;
            history_item *it = need[p->first + i];
            it->r_status = (uint8_t)e[0]->integer;
            it->r_seq = (uint64_t)e[1]->integer;
            it->r_route = (uint8_t)e[2]->integer;
            it->r_gen = (uint32_t)e[3]->integer;
        }
        return 0;
    }
    if (p->kind == PEND_MARK) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != p->count)
            return -1;
        for (size_t i = 0; i < p->count; i++)
            mark_results[p->first + i] = r->element[i]->type == REDIS_REPLY_INTEGER
                                             ? (uint8_t)r->element[i]->integer
                                             : RMARK_MISSING;
        return 0;
    }
    return r->type == REDIS_REPLY_INTEGER ? 0 : -1;
}

bool cluster_answers_waiting(const cluster *c) { return c->evd_len > 0; }

/* The SENT marks the queued eviction answers wait for are in this round (or
 * waited for long enough: a batch its worker could not queue never comes). */
static bool answers_due(const cluster *c, const uint64_t *marks_read)
{
    if (clock_monotonic_ms() - c->evd_since_ms >= ANSWER_WAIT_MS)
        return true;
    for (int s = 0; s < c->o.slots; s++)
        if (marks_read[s] < c->evd_needs[s])
            return false;
    return true;
}

int cluster_round(cluster *c, history_item *items, const store_mark *marks, size_t n_marks,
                  uint8_t *mark_results, bool with_marks, const uint64_t *marks_read, char *err,
                  size_t err_size)
{
    size_t n_items = 0;
    for (history_item *it = items; it != NULL; it = it->next) {
        it->r_status = 0;
        it->r_route = RROUTE_NONE;
        it->r_seq = 0;
        it->r_gen = 0;
        n_items++;
    }
    for (size_t i = 0; i < n_marks; i++)
        mark_results[i] = RMARK_MISSING;
    for (history_item *it = items; it != NULL; it = it->next)
        if (c->o.history_size == 0 && it->ask == RASK_NONE)
            it->r_status = RAPPEND_NOT_STORED; /* a local push, nothing to store */
    if (!atomic_load(&c->up)) {
        snprintf(err, err_size, "Redis at %s is out of reach", c->where);
        return -1;
    }
    history_item **need = n_items > 0 ? malloc(n_items * sizeof *need) : NULL;
    size_t n_need = 0;
    size_t chunks = (n_items + APPEND_CHUNK - 1) / APPEND_CHUNK + (n_marks + MARK_CHUNK - 1) / MARK_CHUNK +
                    (c->rel_len + RELEASE_CHUNK - 1) / RELEASE_CHUNK + c->evd_len;
    pending_reply *pend = chunks > 0 ? malloc(chunks * sizeof *pend) : NULL;
    if ((n_items > 0 && need == NULL) || (chunks > 0 && pend == NULL)) {
        free(need);
        free(pend);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    for (history_item *it = items; it != NULL; it = it->next)
        if (c->o.history_size > 0 || it->ask != RASK_NONE)
            need[n_need++] = it;
    argbuf a = {0};
    size_t np = 0;
    int rc = 0;
    size_t rel_sent = with_marks ? c->rel_len : 0;
    size_t evd_sent = with_marks && answers_due(c, marks_read) ? c->evd_len : 0;
    for (size_t i = 0; rc == 0 && i < n_need; i += APPEND_CHUNK) {
        size_t n = n_need - i < APPEND_CHUNK ? n_need - i : APPEND_CHUNK;
        rc = queue_append(c, &a, need, i, n);
        pend[np++] = (pending_reply){PEND_APPEND, i, n};
    }
    for (size_t i = 0; rc == 0 && i < n_marks; i += MARK_CHUNK) {
        size_t n = n_marks - i < MARK_CHUNK ? n_marks - i : MARK_CHUNK;
        rc = queue_marks(c, &a, marks, i, n);
        pend[np++] = (pending_reply){PEND_MARK, i, n};
    }
    for (size_t i = 0; rc == 0 && i < rel_sent; i += RELEASE_CHUNK) {
        size_t n = rel_sent - i < RELEASE_CHUNK ? rel_sent - i : RELEASE_CHUNK;
        rc = queue_releases(c, &a, i, n);
        pend[np++] = (pending_reply){PEND_RELEASE, i, n};
    }
    for (size_t i = 0; rc == 0 && i < evd_sent; i++) {
        rc = queue_evicted(c, i);
        pend[np++] = (pending_reply){PEND_EVICTED, i, 1};
    }
    free(a.argv);
    free(a.lens);
    free(a.num);
    if (rc != 0) {
        /* Nothing was sent yet (hiredis only buffers): drop and start over. */
        drop(c, "out of memory building a pipeline");
        free(need);
        free(pend);
        snprintf(err, err_size, "out of memory building the Redis calls");
        return -1;
    }
    bool broken = false, failed_script = false;
    char why[256] = "";
    for (size_t i = 0; i < np && !broken; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c->cmd, (void **)&r) != REDIS_OK || r == NULL) {
            snprintf(why, sizeof why, "%s", c->cmd->errstr[0] ? c->cmd->errstr : "no reply");
            broken = true;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(why, sizeof why, "%.*s", (int)r->len, r->str);
            failed_script = true;
            if (strncmp(r->str, "NOSCRIPT", 8) == 0)
                broken = true; /* flushed scripts: reconnecting loads them again */
        } else if (take_reply(&pend[i], r, need, mark_results) != 0) {
            snprintf(why, sizeof why, "an unexpected reply to a script");
            failed_script = true;
        }
        freeReplyObject(r);
    }
    if (!broken && !failed_script && rel_sent > 0) {
        memmove(c->rel, c->rel + rel_sent, (c->rel_len - rel_sent) * sizeof *c->rel);
        c->rel_len -= rel_sent;
    }
    if (!broken && !failed_script && evd_sent > 0) {
        memmove(c->evd, c->evd + evd_sent, (c->evd_len - evd_sent) * sizeof *c->evd);
        c->evd_len -= evd_sent;
    }
    size_t forwarded = 0;
    for (size_t i = 0; i < n_need; i++)
        forwarded += need[i]->r_route == RROUTE_SENT;
    if (forwarded > 0)
        atomic_fetch_add_explicit(&c->o.shm->hdr->cluster_forwarded, forwarded,
                                  memory_order_relaxed);
    free(need);
    free(pend);
    if (failed_script)
        log_error("cluster: a Redis script failed: %s", why);
    if (broken)
        drop(c, why);
    if (broken || failed_script)
        snprintf(err, err_size, "Redis: %s", why);
    return 0;
}

/* ---- any thread ---------------------------------------------------------------- */

bool cluster_is_up(const cluster *c) { return atomic_load(&((cluster *)c)->up); }

const char *cluster_instance(const cluster *c) { return c->instance; }

int cluster_next_id(cluster *c, int64_t *id)
{
    bool wake = false;
    pthread_mutex_lock(&c->ids_lock);
    if (c->id_next == c->id_end && c->spare_next != c->spare_end) {
        c->id_next = c->spare_next;
        c->id_end = c->spare_end;
        c->spare_next = c->spare_end = 0;
    }
    int rc = -1;
    if (c->id_next != c->id_end) {
        *id = c->id_next++;
        rc = 0;
    }
    if (c->spare_next == c->spare_end && !c->ids_asked) {
        c->ids_asked = true;
        wake = true;
    }
    pthread_mutex_unlock(&c->ids_lock);
    if (wake) {
        uint64_t one = 1;
        if (write(c->o.wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
            log_error("cluster: cannot wake the history thread: %s", strerror(errno));
    }
    return rc;
}

int cluster_status(cluster *c, int64_t user, int64_t id, notify_status *out)
{
    if (!atomic_load(&c->up))
        return -1;
    char err[300];
    if (c->status_ctx == NULL &&
        (c->status_ctx = redis_sync_connect(&c->o.url, STATUS_TIMEOUT_MS, false, err,
                                            sizeof err)) == NULL) {
        log_warn("cluster: status lookup: %s", err);
        return -1;
    }
    char u[24], i[24], now[24], ttl[24];
    snprintf(u, sizeof u, "%lld", (long long)user);
    snprintf(i, sizeof i, "%lld", (long long)id);
    snprintf(now, sizeof now, "%" PRIu64, clock_realtime_ns() / 1000000u);
    snprintf(ttl, sizeof ttl, "%" PRIu64, c->o.ttl_ms);
    /* EVAL with the source: this connection may meet a Redis that has not
     * seen the scripts yet (just restarted). */
    const char *src = redis_script_source(RSCRIPT_STATUS);
    const char *argv[7] = {"EVAL", src, "0", u, i, now, ttl};
    size_t lens[7] = {4, strlen(src), 1, strlen(u), strlen(i), strlen(now), strlen(ttl)};
    redisReply *r = redisCommandArgv(c->status_ctx, 7, argv, lens);
    if (!redis_sync_reply_ok(c->status_ctx, r, err, sizeof err) || r->type != REDIS_REPLY_ARRAY ||
        (r->elements != 0 && r->elements != 3)) {
        log_warn("cluster: status lookup: %s", r != NULL && r->type != REDIS_REPLY_ERROR
                                                   ? "unexpected reply"
                                                   : err);
        if (r != NULL)
            freeReplyObject(r);
        redis_sync_free(c->status_ctx);
        c->status_ctx = NULL;
        return -1;
    }
    int rc = 1;
    if (r->elements == 3 && r->element[0]->type == REDIS_REPLY_INTEGER &&
        r->element[1]->type == REDIS_REPLY_STRING && r->element[2]->type == REDIS_REPLY_STRING) {
        uint64_t acc = strtoull(r->element[1]->str, NULL, 10);
        uint64_t at = strtoull(r->element[2]->str, NULL, 10);
        out->state = (uint8_t)r->element[0]->integer;
        notify_format_timestamp((int64_t)(acc / 1000u), out->timestamp);
        out->acked_at[0] = '\0';
        if (out->state == STORE_ACKED)
            notify_format_timestamp_ms(at, out->acked_at);
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

/* ---- life ------------------------------------------------------------------------ */

int cluster_open(cluster **out, const cluster_options *o, char *err, size_t err_size)
{
    *out = NULL;
    cluster *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    c->o = *o;
    snprintf(c->node_id, sizeof c->node_id, "%s", o->node_id);
    uint64_t instance = 0;
    if (RAND_bytes((unsigned char *)&instance, sizeof instance) != 1) {
        snprintf(err, err_size, "no random bytes for the instance name");
        free(c);
        return -1;
    }
    instance_name(instance, c->instance);
    redis_node_channel(c->channel, c->instance);
    redis_live_key(c->live_key, c->instance);
    for (int s = 0; s < RSCRIPT_COUNT; s++)
        redis_script_sha((redis_script)s, c->sha[s]);
    redis_url_describe(&o->url, c->where, sizeof c->where);
    atomic_init(&c->up, false);
    atomic_store(&o->shm->hdr->redis_up, 0);
    c->backoff_ms = CLUSTER_RETRY_MIN_MS;
    if (pthread_mutex_init(&c->ids_lock, NULL) != 0) {
        snprintf(err, err_size, "cannot create a mutex");
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void cluster_close(cluster *c)
{
    if (c == NULL)
        return;
    while (c->bcasts != NULL)
        broadcast_finish(c, c->bcasts, false);
    if (c->cmd != NULL && atomic_load(&c->up)) {
        /* Other nodes stop routing here now instead of in REDIS_LIVE_TTL_MS. */
        const char *argv[2] = {"DEL", c->live_key};
        size_t lens[2] = {3, strlen(c->live_key)};
        (void)command(c, 2, argv, lens, NULL);
    }
    redis_sync_free(c->cmd);
    redis_sync_free(c->sub);
    redis_sync_free(c->status_ctx);
    set_up(c, false);
    free(c->rel);
    free(c->evd);
    pthread_mutex_destroy(&c->ids_lock);
    free(c);
}
