/* cluster_link.c — a worker's Redis connection (see cluster_link.h).
 *
 * States: DOWN (a retry timer is armed), CONNECTING (hiredis connects; AUTH,
 * SELECT and the SCRIPT LOADs are queued behind the connect, and the timer
 * is the connect's deadline), UP. A failed setup reply, the deadline, or a
 * disconnect bring it back to DOWN with a doubling back-off. hiredis calls
 * every pending reply callback with a NULL reply when the context goes, so
 * each request's callback runs exactly once whatever happens. */
#include "workers/cluster_link.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/handoff.h"
#include "src/common/clock.h"
#include "src/common/log.h"
#include "src/common/redis_scripts.h"
#include "src/common/redis_url.h"
#include "workers/client.h"
#include "workers/worker-t.h"
#include "workers/ws_session.h"

#define RETRY_MIN_MS 100u
#define RETRY_MAX_MS 1000u
#define ANNOUNCE_CHUNK 512u
#define DOWN_LOG_MS 30000u

typedef enum { LINK_DOWN = 0, LINK_CONNECTING, LINK_UP } link_state;

struct cluster_link {
    struct worker *w;
    redis_url url;
    char where[REDIS_URL_HOST_MAX + 16];
    char instance[32];
    char sha_claim[REDIS_SHA_HEX + 1];
    char sha_replay[REDIS_SHA_HEX + 1];
    char sha_announce[REDIS_SHA_HEX + 1];
    redisAsyncContext *ac;
    link_state state;
    int setup_pending;
    bool freeing;            /* inside our own redisAsyncFree */
    unsigned backoff_ms;
    struct event *timer_ev;  /* DOWN: the retry; CONNECTING: the deadline */
    bool ever_up;
    bool down_logged;
    uint32_t down_logged_at;
};

typedef enum { REQ_SETUP, REQ_CLAIM, REQ_REPLAY, REQ_ANNOUNCE } req_kind;

typedef struct {
    cluster_link *l;
    req_kind kind;
    union {
        cluster_claim_cb claim;
        cluster_replay_cb replay;
    } cb;
    void *arg;
    size_t n;                /* ANNOUNCE: the (user, generation) pairs that follow */
    struct { int64_t user; uint32_t gen; } pairs[];
} link_req;

static void link_connect(cluster_link *l);

static void set_state(cluster_link *l, link_state s)
{
    l->state = s;
    atomic_store_explicit(&l->w->stats->redis_up, s == LINK_UP ? 1u : 0u, memory_order_relaxed);
}

static void arm_timer(cluster_link *l, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000u, .tv_usec = (ms % 1000u) * 1000u};
    if (event_add(l->timer_ev, &tv) != 0)
        log_error("cluster link: cannot arm its timer");
}

/* To DOWN, and a retry after the back-off. */
static void link_down(cluster_link *l, const char *why, bool was_up)
{
    set_state(l, LINK_DOWN);
    l->ac = NULL;
    if (was_up) {
        l->backoff_ms = RETRY_MIN_MS;
        log_warn("cluster link: lost Redis at %s (%s): new connections get 503 until it is back",
                 l->where, why);
        l->down_logged = true;
        l->down_logged_at = l->w->loop.now;
    } else if (!l->down_logged || l->w->loop.now - l->down_logged_at >= DOWN_LOG_MS) {
        log_warn("cluster link: cannot reach Redis at %s (%s); retrying", l->where, why);
        l->down_logged = true;
        l->down_logged_at = l->w->loop.now;
    }
    arm_timer(l, l->backoff_ms);
    l->backoff_ms = l->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : l->backoff_ms * 2;
}

/* Drop the context ourselves (deadline, or a refused setup). */
static void link_free(cluster_link *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    if (ac == NULL)
        return;
    bool was_up = l->state == LINK_UP;
    /* Callbacks run inside the free: they must see the link down. */
    set_state(l, LINK_DOWN);
    l->freeing = true;
    redisAsyncFree(ac);
    l->freeing = false;
    link_down(l, why, was_up);
}

/* ---- announcing the sessions held here ------------------------------------ */

static void on_announce(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    link_req *q = priv;
    redisReply *r = reply;
    worker *w = q->l->w;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == q->n) {
        for (size_t i = 0; i < q->n; i++) {
            if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer != 0)
                continue;
            log_info("UserID=%lld has a newer connection on another node (its eviction was "
                     "lost while Redis was out of reach)",
                     (long long)q->pairs[i].user);
            ws_session_evict(w, q->pairs[i].user, q->pairs[i].gen);
        }
    } else if (r != NULL) {
        log_warn("cluster link: re-announcing sessions: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    free(q);
    conn_reap(&w->loop);
}

static void announce_chunk(cluster_link *l, void **batch, size_t n)
{
    link_req *q = malloc(sizeof *q + n * sizeof q->pairs[0]);
    const char **argv = malloc((4 + 2 * n) * sizeof *argv);
    size_t *lens = malloc((4 + 2 * n) * sizeof *lens);
    char (*num)[24] = malloc(2 * n * sizeof *num);
    if (q == NULL || argv == NULL || lens == NULL || num == NULL) {
        log_error("cluster link: out of memory re-announcing %zu sessions", n);
        free(q);
        goto out;
    }
    *q = (link_req){.l = l, .kind = REQ_ANNOUNCE, .n = n};
    size_t k = 0;
    argv[k] = "EVALSHA", lens[k++] = 7;
    argv[k] = l->sha_announce, lens[k++] = REDIS_SHA_HEX;
    argv[k] = "0", lens[k++] = 1;
    argv[k] = l->instance, lens[k++] = strlen(l->instance);
    for (size_t i = 0; i < n; i++) {
        const client *c = batch[i];
        q->pairs[i].user = c->user_id;
        q->pairs[i].gen = c->generation;
        int a = snprintf(num[2 * i], sizeof num[0], "%lld", (long long)c->user_id);
        int b = snprintf(num[2 * i + 1], sizeof num[0], "%u", c->generation);
        argv[k] = num[2 * i], lens[k++] = (size_t)a;
        argv[k] = num[2 * i + 1], lens[k++] = (size_t)b;
    }
    if (redisAsyncCommandArgv(l->ac, on_announce, q, (int)k, argv, lens) != REDIS_OK) {
        log_warn("cluster link: cannot re-announce %zu sessions", n);
        free(q);
    }
out:
    free(argv);
    free(lens);
    free(num);
}

/* Every session held here, again: after a Redis restart (or a lost
 * eviction) Redis learns its holders back, and one a newer connection
 * elsewhere replaced is closed. */
static void announce_all(cluster_link *l)
{
    worker *w = l->w;
    void *batch[ANNOUNCE_CHUNK];
    size_t pos = 0, total = 0;
    do {
        size_t n = user_map_scan(&w->users, &pos, ANNOUNCE_CHUNK, batch);
        if (n == 0)
            break;
        announce_chunk(l, batch, n);
        total += n;
    } while (pos != 0);
    if (total > 0)
        log_info("cluster link: re-announced %zu sessions", total);
}

/* ---- connecting -------------------------------------------------------------- */

static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
    link_req *q = priv;
    cluster_link *l = q->l;
    free(q);
    redisReply *r = reply;
    if (r == NULL || ac != l->ac || l->state != LINK_CONNECTING)
        return; /* the context is going: its disconnect or our free says why */
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("cluster link: Redis at %s refused the setup: %s", l->where, r->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (--l->setup_pending > 0)
        return;
    if (event_del(l->timer_ev) != 0)
        log_warn("cluster link: cannot stop its timer");
    set_state(l, LINK_UP);
    l->backoff_ms = RETRY_MIN_MS;
    l->down_logged = false;
    log_info("cluster link: %s Redis at %s", l->ever_up ? "reconnected to" : "connected to",
             l->where);
    l->ever_up = true;
    announce_all(l);
}

static int send_setup(cluster_link *l, int argc, const char **argv, const size_t *lens)
{
    link_req *q = malloc(sizeof *q);
    if (q == NULL)
        return -1;
    *q = (link_req){.l = l, .kind = REQ_SETUP};
    if (redisAsyncCommandArgv(l->ac, on_setup, q, argc, argv, lens) != REDIS_OK) {
        free(q);
        return -1;
    }
    l->setup_pending++;
    return 0;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    cluster_link *l = ac->data;
    if (status == REDIS_OK || ac != l->ac)
        return;
    /* hiredis frees the context after this callback. */
    link_down(l, ac->errstr[0] ? ac->errstr : "connect failed", false);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    cluster_link *l = ac->data;
    (void)status;
    if (l->freeing || ac != l->ac)
        return;
    if (event_del(l->timer_ev) != 0)
        log_warn("cluster link: cannot stop its timer");
    link_down(l, ac->errstr[0] ? ac->errstr : "connection closed", l->state == LINK_UP);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cluster_link *l = arg;
    conn_loop_clock(&l->w->loop);
    if (l->state == LINK_CONNECTING)
        link_free(l, "no answer within the connect deadline");
    else if (l->state == LINK_DOWN)
        link_connect(l);
    conn_reap(&l->w->loop);
}

static void link_connect(cluster_link *l)
{
    redisAsyncContext *ac = l->url.unix_socket ? redisAsyncConnectUnix(l->url.path)
                                               : redisAsyncConnect(l->url.host, l->url.port);
    if (ac == NULL || ac->err) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        link_down(l, why, false);
        return;
    }
    ac->data = l;
    if (redisLibeventAttach(ac, l->w->loop.base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK) {
        redisAsyncFree(ac);
        link_down(l, "cannot attach to the event loop", false);
        return;
    }
    l->ac = ac;
    set_state(l, LINK_CONNECTING);
    l->setup_pending = 0;
    int rc = 0;
    if (l->url.password[0] != '\0') {
        if (l->url.user[0] != '\0')
            rc |= send_setup(l, 3, (const char *[]){"AUTH", l->url.user, l->url.password},
                             (size_t[]){4, strlen(l->url.user), strlen(l->url.password)});
        else
            rc |= send_setup(l, 2, (const char *[]){"AUTH", l->url.password},
                             (size_t[]){4, strlen(l->url.password)});
    }
    if (l->url.db > 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", l->url.db);
        rc |= send_setup(l, 2, (const char *[]){"SELECT", db}, (size_t[]){6, strlen(db)});
    }
    const redis_script scripts[3] = {RSCRIPT_CLAIM, RSCRIPT_REPLAY, RSCRIPT_ANNOUNCE};
    for (int i = 0; i < 3; i++) {
        const char *src = redis_script_source(scripts[i]);
        rc |= send_setup(l, 3, (const char *[]){"SCRIPT", "LOAD", src},
                         (size_t[]){6, 4, strlen(src)});
    }
    if (rc != 0) {
        link_free(l, "out of memory");
        return;
    }
    arm_timer(l, CLUSTER_LINK_CONNECT_MS);
}

/* ---- the requests -------------------------------------------------------- */

static void on_claim(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    link_req *q = priv;
    worker *w = q->l->w;
    redisReply *r = reply;
    cluster_claim_result res = {0};
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[2]->type == REDIS_REPLY_INTEGER &&
        r->element[3]->type == REDIS_REPLY_INTEGER) {
        res.ok = true;
        res.seq = (uint64_t)r->element[0]->integer;
        res.evicted_elsewhere = r->element[2]->integer > 0;
        res.superseded = r->element[3]->integer != 0;
    } else if (r != NULL) {
        log_error("cluster link: CLAIM: %s",
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    q->cb.claim(w, q->arg, &res);
    free(q);
    conn_reap(&w->loop);
}

int cluster_link_claim(worker *w, int64_t user, uint32_t generation, cluster_claim_cb cb,
                       void *arg)
{
    cluster_link *l = w->link;
    if (l == NULL || l->state != LINK_UP)
        return -1;
    link_req *q = malloc(sizeof *q);
    if (q == NULL)
        return -1;
    *q = (link_req){.l = l, .kind = REQ_CLAIM, .cb.claim = cb, .arg = arg};
    char gen[16], u[24];
    snprintf(gen, sizeof gen, "%u", generation);
    snprintf(u, sizeof u, "%lld", (long long)user);
    const char *argv[6] = {"EVALSHA", l->sha_claim, "0", l->instance, gen, u};
    size_t lens[6] = {7, REDIS_SHA_HEX, 1, strlen(l->instance), strlen(gen), strlen(u)};
    if (redisAsyncCommandArgv(l->ac, on_claim, q, 6, argv, lens) != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

static bool int_reply(const redisReply *r) { return r->type == REDIS_REPLY_INTEGER; }

static void on_replay(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    link_req *q = priv;
    worker *w = q->l->w;
    redisReply *r = reply;
    cluster_replay_result res = {0};
    cluster_replay_entry *entries = NULL;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 4 &&
        (r->elements - 4) % 3 == 0 && int_reply(r->element[0]) && int_reply(r->element[1]) &&
        int_reply(r->element[2]) && int_reply(r->element[3])) {
        size_t n = (r->elements - 4) / 3;
        entries = n > 0 ? malloc(n * sizeof *entries) : NULL;
        res.ok = n == 0 || entries != NULL;
        for (size_t i = 0; res.ok && i < n; i++) {
            redisReply **e = r->element + 4 + 3 * i;
            if (e[0]->type != REDIS_REPLY_STRING || !int_reply(e[1]) ||
                e[2]->type != REDIS_REPLY_STRING) {
                res.ok = false;
                break;
            }
            entries[i] = (cluster_replay_entry){.id = strtoll(e[0]->str, NULL, 10),
                                                .seq = (uint64_t)e[1]->integer,
                                                .json = e[2]->str, .len = e[2]->len};
        }
        res.snapshot = (uint64_t)r->element[0]->integer;
        res.recovered = (int)r->element[1]->integer;
        res.more = r->element[2]->integer != 0;
        res.last_seq = (uint64_t)r->element[3]->integer;
        res.n = res.ok ? n : 0;
        res.entries = entries;
    } else if (r != NULL) {
        log_error("cluster link: REPLAY: %s",
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    q->cb.replay(w, q->arg, &res);
    free(entries);
    free(q);
    conn_reap(&w->loop);
}


int cluster_link_replay(worker *w, const cluster_replay_args *a, cluster_replay_cb cb, void *arg)
{
    cluster_link *l = w->link;
    if (l == NULL || l->state != LINK_UP)
        return -1;
    link_req *q = malloc(sizeof *q);
    if (q == NULL)
        return -1;
    *q = (link_req){.l = l, .kind = REQ_REPLAY, .cb.replay = cb, .arg = arg};
    char user[24], after_id[24], after_seq[24], upto[24], limit[16], now[24], ttl[24], gen[16],
        bytes[16];
    snprintf(user, sizeof user, "%lld", (long long)a->user);
    snprintf(after_id, sizeof after_id, "%lld", (long long)a->after_id);
    snprintf(after_seq, sizeof after_seq, "%" PRIu64, a->after_seq);
    if (a->upto == 0)
        upto[0] = '\0';
    else
        snprintf(upto, sizeof upto, "%" PRIu64, a->upto);
    snprintf(limit, sizeof limit, "%u", CLUSTER_REPLAY_ENTRIES);
    snprintf(now, sizeof now, "%" PRIu64, clock_realtime_ms());
    snprintf(ttl, sizeof ttl, "%" PRIu64, (uint64_t)w->cfg->history_ttl * 1000u);
    snprintf(gen, sizeof gen, "%u", a->generation);
    snprintf(bytes, sizeof bytes, "%u", CLUSTER_REPLAY_BYTES);
    const char *mode = a->mode == CLUSTER_REPLAY_AFTER ? "A" : "U";
    const char *argv[14] = {"EVALSHA", l->sha_replay, "0", user, mode, after_id, after_seq,
                            upto, limit, now, ttl, l->instance, gen, bytes};
    size_t lens[14];
    for (int i = 0; i < 14; i++)
        lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(l->ac, on_replay, q, 14, argv, lens) != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

/* ---- life ------------------------------------------------------------------ */

bool cluster_link_enabled(const worker *w) { return w->link != NULL; }

bool cluster_link_up(const worker *w) { return w->link != NULL && w->link->state == LINK_UP; }

int cluster_link_start(worker *w)
{
    if (w->cfg->redis_url == NULL)
        return 0;
    cluster_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -1;
    l->w = w;
    char err[300];
    if (redis_url_parse(w->cfg->redis_url, &l->url, err, sizeof err) != 0) {
        log_error("--redis: %s", err);
        free(l);
        return -1;
    }
    const char *instance = getenv(HANDOFF_INSTANCE_ENV);
    if (instance == NULL || instance[0] == '\0' || strlen(instance) >= sizeof l->instance) {
        log_error("cluster link: no instance name from the master (%s)", HANDOFF_INSTANCE_ENV);
        free(l);
        return -1;
    }
    snprintf(l->instance, sizeof l->instance, "%s", instance);
    redis_url_describe(&l->url, l->where, sizeof l->where);
    redis_script_sha(RSCRIPT_CLAIM, l->sha_claim);
    redis_script_sha(RSCRIPT_REPLAY, l->sha_replay);
    redis_script_sha(RSCRIPT_ANNOUNCE, l->sha_announce);
    l->backoff_ms = RETRY_MIN_MS;
    l->timer_ev = evtimer_new(w->loop.base, on_timer, l);
    if (l->timer_ev == NULL) {
        free(l);
        return -1;
    }
    w->link = l;
    link_connect(l);
    return 0;
}

void cluster_link_stop(worker *w)
{
    cluster_link *l = w->link;
    if (l == NULL)
        return;
    set_state(l, LINK_DOWN);
    if (l->ac != NULL) {
        l->freeing = true;
        redisAsyncFree(l->ac); /* pending callbacks run now, with no reply */
        l->ac = NULL;
    }
    event_free(l->timer_ev);
    w->link = NULL;
    free(l);
}
