/* worker.c — a worker process's event loop: accepting clients on its slot's
 * listening socket, reading its slot queue, the 1-second deadline sweep
 * (handshake and close timeouts, silent clients), heartbeat pings, and the
 * graceful stop on SIGTERM (every client gets close 1001). */
#include "workers/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "shm/queue.h"
#include "src/common/log.h"
#include "workers/client.h"
#include "workers/cluster_link.h"
#include "workers/marks.h"
#include "workers/conn.h"
#include "workers/handover.h"
#include "workers/http_login.h"
#include "workers/http_serve.h"
#include "workers/worker_reload.h"
#include "workers/ws_session.h"

#define WORKER_SCRATCH (WS_MAX_MESSAGE + WS_MAX_FRAME_HEADER + 1024)
#define WORKER_ACCEPTS_PER_EVENT 64
#define WORKER_QUEUE_READS_PER_EVENT 256
#define WORKER_STOP_GRACE 3u   /* seconds for clients to take their 1001 */
#define WORKER_RECONCILE_ROUND 30  /* seconds for the slow pass to see every session */
#define WORKER_RECONCILE_MIN 256   /* sessions checked per tick at least */
#define WORKER_PING_CHUNK 256      /* sessions collected per step of a heartbeat slice */

static void worker_pause_accept(worker *w)
{
    /* Out of descriptors: stop accepting for a moment instead of spinning. */
    struct timeval tv = {0, 100 * 1000};
    if (event_del(w->accept_ev) != 0 || event_add(w->resume_accept_ev, &tv) != 0)
        log_error("cannot pause accepting");
}

static void worker_on_resume_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    if (!w->stopping && event_add(w->accept_ev, NULL) != 0)
        log_error("cannot resume accepting");
}

/* --max-handshakes: unauthenticated connections (each holding at most an
 * 8 KiB request head, plus OpenSSL's handshake state under TLS) are bounded
 * per worker. A new one pushes out the oldest, so a slow sender holding many
 * cannot lock newcomers out. One line a second at most, with the count. */
static void drop_oldest_handshake(worker *w)
{
    conn *oldest = w->handshaking.head;
    if (oldest == NULL)
        return;
    w->handshakes_dropped++;
    if (w->loop.now - w->handshakes_logged_at >= 1000u || w->handshakes_dropped == 1) {
        log_warn("%u connections still in their handshake (--max-handshakes): closing the "
                 "oldest (%llu so far)",
                 w->cfg->max_handshakes, (unsigned long long)w->handshakes_dropped);
        w->handshakes_logged_at = w->loop.now;
    }
    conn_abort(oldest, "too many handshakes");
}

static void worker_on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    conn_loop_clock(&w->loop);
    for (int i = 0; i < WORKER_ACCEPTS_PER_EVENT; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("accept: %s; pausing accepts for 100 ms", strerror(errno));
                worker_pause_accept(w);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                       errno != ECONNABORTED) {
                log_warn("accept: %s", strerror(errno));
            }
            break;
        }
        int one = 1;
        if (setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            log_debug("TCP_NODELAY: %s", strerror(errno));
        if (w->handshaking.count >= w->cfg->max_handshakes)
            drop_oldest_handshake(w);
        http_serve_accept(w, cfd);
    }
    conn_reap(&w->loop);
}

static void worker_on_queue(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    conn_loop_clock(&w->loop);
    for (int i = 0; i < WORKER_QUEUE_READS_PER_EVENT; i++) {
        ssize_t n = recv(fd, w->qbuf, QUEUE_MAX_DATAGRAM, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                handover_queue_drained(w); /* nothing a replay covered can still come */
            else if (errno != EINTR)
                log_error("queue read: %s", strerror(errno));
            break;
        }
        queue_msg m;
        if ((size_t)n > QUEUE_MAX_DATAGRAM || queue_msg_decode(w->qbuf, (size_t)n, &m) != 0) {
            log_warn("dropping a corrupt queue datagram (%zd bytes)", n);
            continue;
        }
        switch (m.type) {
        case QMSG_EVICT:
            ws_session_evict(w, m.user, m.generation);
            /* From another node: answer once the session's marks are out. */
            if (m.seq != 0)
                marks_put(w, m.user, m.id, QUEUE_MARK_EVICTED, m.seq);
            break;
        case QMSG_NOTIFY:
        case QMSG_ROUTED:
            ws_session_deliver(w, &m);
            break;
        case QMSG_SIGNAL:
            handover_signal(w, m.user, (uint32_t)m.generation, (int)m.seq);
            break;
        case QMSG_BROADCAST:
            ws_session_broadcast(w, &m);
            break;
        default:
            log_warn("dropping a queue datagram of type %u: not for a worker", m.type);
            break;
        }
    }
    conn_reap(&w->loop);
}

static void worker_stop(worker *w);

/* Milliseconds since a loop.now stamp; unsigned wrap-around keeps it right. */
static uint32_t elapsed_ms(const worker *w, uint32_t since) { return w->loop.now - since; }

/* Sessions whose EVICT was lost: all of them at once when someone asked
 * (ws_session_send_evict), else a slice per tick so every session is
 * checked against the directory within WORKER_RECONCILE_ROUND seconds. */
static void reconcile(worker *w)
{
    bool asked = atomic_exchange_explicit(&w->stats->reconcile_requested, 0,
                                          memory_order_acq_rel) != 0;
    size_t slice = w->users.count / WORKER_RECONCILE_ROUND + 1;
    if (slice < WORKER_RECONCILE_MIN)
        slice = WORKER_RECONCILE_MIN;
    ws_session_reconcile(w, &w->reconcile_pos, asked ? w->users.count : slice);
}

/* Deadlines, checked once a second from the head of each ordered list. */
static void worker_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    conn_loop_clock(&w->loop);
    conn *c;
    while ((c = w->handshaking.head) != NULL &&
           elapsed_ms(w, c->since) >= HTTP_SERVE_HANDSHAKE_TIMEOUT * 1000u) {
        http_serve_timeout(client_of(c));
        if (c->list == &w->handshaking) /* not moved on: make sure it leaves */
            conn_abort(c, "handshake timeout");
    }
    conn_sweep_closing(&w->loop);
    reconcile(w);
    handover_sweep(w);
    uint32_t silent = 2 * w->cfg->heartbeat;
    while ((c = w->open.head) != NULL && elapsed_ms(w, c->since) >= silent * 1000u) {
        log_info("closing UserID=%lld: silent for %u s", (long long)client_of(c)->user_id, silent);
        ws_session_close(client_of(c), WS_CLOSE_POLICY, "heartbeat timeout");
        if (c->list == &w->open)
            conn_abort(c, "heartbeat timeout");
    }
    conn_reap(&w->loop);
    if (w->stop_requested && !w->stopping) {
        log_error("stopping: this worker's directory epoch is stale");
        worker_stop(w);
    }
    if (w->stopping && w->open.count + w->loop.closing.count + w->handshaking.count == 0)
        event_base_loopbreak(w->loop.base);
    else if (w->stopping && elapsed_ms(w, w->stop_started) >= WORKER_STOP_GRACE * 1000u)
        event_base_loopbreak(w->loop.base);
}

/* Every second, the next slice of the sessions (in user-map order) gets its
 * ping, so no tick writes to all of them at once (a sweep of 100 000 pings
 * would hold every notification behind it). A pass takes half the interval:
 * the map changes under the saved position (a deletion shifts an entry back
 * over it, a growth rehashes), so a pass can miss a session, and the next
 * pass, at most half an interval later, catches it: a ping at least every
 * --heartbeat seconds (README "Connection rules"). */
static void worker_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    conn_loop_clock(&w->loop);
    unsigned half = w->cfg->heartbeat / 2 > 0 ? w->cfg->heartbeat / 2 : 1;
    size_t slice = w->users.count / half + 1;
    if (slice > w->users.count)
        slice = w->users.count; /* everyone, once */
    void *batch[WORKER_PING_CHUNK];
    for (size_t done = 0; done < slice;) {
        size_t want = slice - done < WORKER_PING_CHUNK ? slice - done : WORKER_PING_CHUNK;
        /* Collected first: a failed write closes its session, changing the map. */
        size_t n = user_map_scan(&w->users, &w->heartbeat_pos, want, batch);
        if (n == 0 && w->heartbeat_pos == 0)
            n = user_map_scan(&w->users, &w->heartbeat_pos, want, batch); /* wrapped */
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            client *c = batch[i];
            if (c->io.state == CONN_OPEN)
                ws_session_send(c, WS_OP_PING, NULL, 0);
        }
        done += n;
    }
    conn_reap(&w->loop);
}

static void worker_stop(worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    w->stop_started = w->loop.now;
    atomic_store(&w->stats->ready, 0);
    if (event_del(w->accept_ev) != 0 || event_del(w->resume_accept_ev) != 0)
        log_warn("cannot stop accepting");
    size_t n = w->open.count;
    conn *c;
    while ((c = w->open.head) != NULL) {
        ws_session_close(client_of(c), WS_CLOSE_GOING_AWAY, "server shutting down");
        if (c->list == &w->open)
            conn_abort(c, "shutdown");
    }
    while ((c = w->handshaking.head) != NULL)
        conn_abort(c, "shutdown");
    conn_reap(&w->loop);
    log_info("stopping: closed %zu connections with 1001", n);
    if (w->loop.closing.count == 0)
        event_base_loopbreak(w->loop.base);
}

static void worker_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    conn_loop_clock(&w->loop);
    if (sig == SIGHUP) {
        worker_reload(w);
        return;
    }
    worker_stop(w);
}

static int worker_setup_events(worker *w)
{
    static const int signals[3] = {SIGTERM, SIGINT, SIGHUP};
    struct timeval second = {1, 0};
    struct timeval heartbeat = {1, 0}; /* a slice of the sessions each second */
    w->loop.base = event_base_new();
    if (w->loop.base == NULL)
        return -1;
    w->accept_ev = event_new(w->loop.base, w->h.listen_fd, EV_READ | EV_PERSIST, worker_on_accept, w);
    w->resume_accept_ev = evtimer_new(w->loop.base, worker_on_resume_accept, w);
    w->queue_ev = event_new(w->loop.base, w->h.queue_fd, EV_READ | EV_PERSIST, worker_on_queue, w);
    w->tick_ev = event_new(w->loop.base, -1, EV_PERSIST, worker_on_tick, w);
    w->heartbeat_ev = event_new(w->loop.base, -1, EV_PERSIST, worker_on_heartbeat, w);
    if (!w->accept_ev || !w->resume_accept_ev || !w->queue_ev || !w->tick_ev || !w->heartbeat_ev)
        return -1;
    for (int i = 0; i < 3; i++) {
        w->signal_ev[i] = evsignal_new(w->loop.base, signals[i], worker_on_signal, w);
        if (w->signal_ev[i] == NULL || event_add(w->signal_ev[i], NULL) != 0)
            return -1;
    }
    if (event_add(w->accept_ev, NULL) != 0 || event_add(w->queue_ev, NULL) != 0 ||
        event_add(w->tick_ev, &second) != 0 || event_add(w->heartbeat_ev, &heartbeat) != 0)
        return -1;
    return 0;
}

static void worker_teardown(worker *w)
{
    conn *c;
    conn_list *lists[] = {&w->open, &w->handshaking, &w->loop.closing};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        while ((c = lists[i]->head) != NULL)
            conn_abort(c, "exit");
    }
    conn_reap(&w->loop);
    cluster_link_stop(w); /* its pending answers reach their hand-overs, still there */
    handover_free(w); /* after the sessions (they leave their hand-overs), before the base */
    login_pool_stop(&w->logins); /* after the clients: their jobs are orphans by now */
    struct event *evs[] = {w->accept_ev, w->resume_accept_ev, w->queue_ev, w->tick_ev,
                           w->heartbeat_ev, w->signal_ev[0], w->signal_ev[1], w->signal_ev[2]};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i] != NULL)
            event_free(evs[i]);
    if (w->loop.base != NULL)
        event_base_free(w->loop.base);
    user_map_free(&w->users);
    worker_free_reloadables(w);
    free(w->loop.scratch);
    free(w->qbuf);
    region_detach(&w->shm);
}

int worker_main(const wsn_config *cfg, const char *handoff_spec)
{
    worker w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    user_map_init(&w.users);
    w.shm.fd = -1;
    if (handoff_parse(handoff_spec, &w.h) != 0) {
        fprintf(stderr, "wsnotifyd: worker: bad WSNOTIFY_WORKER value\n");
        return 1;
    }
    char role[32];
    snprintf(role, sizeof role, "worker %d", w.h.slot);
    log_setup(role, cfg->log_level);
    /* Never outlive the master: it owns the port. TERM lets clients get 1001. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        log_warn("PR_SET_PDEATHSIG: %s", strerror(errno));
    int status = 1;
    if (region_attach(&w.shm, w.h.shm_fd) != 0) {
        log_error("cannot map the shared region: %s", strerror(errno));
        goto out;
    }
    w.stats = &w.shm.hdr->slot[w.h.slot];
    w.epoch = directory_slot_epoch(w.shm.dir, w.h.slot);
    if (worker_load_reloadables(&w) != 0)
        goto out;
    w.loop.scratch_size = WORKER_SCRATCH;
    w.loop.out_limit = (size_t)cfg->max_pending_output << 20;
    w.loop.scratch = malloc(w.loop.scratch_size);
    w.qbuf = malloc(QUEUE_MAX_DATAGRAM);
    if (w.loop.scratch == NULL || w.qbuf == NULL || worker_setup_events(&w) != 0 ||
        handover_init(&w) != 0 || cluster_link_start(&w) != 0 ||
        (cfg->users_file != NULL &&
         login_pool_start(&w.logins, w.loop.base, http_login_done, &w) != 0)) {
        log_error("cannot set up the event loop");
        goto out;
    }
    /* The master started us with these blocked; the handlers are in place now. */
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);
    if (sigprocmask(SIG_UNBLOCK, &handled, NULL) != 0) {
        log_error("sigprocmask: %s", strerror(errno));
        goto out;
    }
    conn_loop_clock(&w.loop);
    atomic_store(&w.stats->ready, 1);
    log_debug("accepting (epoch %u)", w.epoch);
    if (event_base_dispatch(w.loop.base) < 0) {
        log_error("event loop failed");
        goto out;
    }
    status = 0;
out:
    if (w.stats != NULL)
        atomic_store(&w.stats->ready, 0);
    worker_teardown(&w);
    return status;
}
