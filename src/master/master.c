/* master.c — the master process and its supervisor (modelled on nginx's
 * master/worker cycle).
 *
 * Why fork + exec: the master will run gRPC, which starts threads and opens
 * descriptors at grpc_init. A plain fork after that leaves the child with a copy
 * of gRPC's descriptors and locks in an undefined state. Every worker is
 * therefore a fresh exec of /proc/self/exe, handed only what it needs as
 * inherited descriptors named in the WSNOTIFY_WORKER environment variable: its
 * listening socket, the shared region (memfd), its queue's reading end and the
 * sending ends of all queues. Between fork and exec the child calls only
 * async-signal-safe functions.
 *
 * A worker that dies is reaped on SIGCHLD: its slot epoch is bumped (its users
 * vanish from the directory at once), its connection gauge reset, and it is
 * started again in the same slot, at once if it had run a while, else after a
 * doubling back-off (100 ms .. 10 s) so a worker that cannot start does not spin. */
#include "src/master/master.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/queue.h"
#include "shm/region.h"
#include "shm/store.h"
#include "src/common/redis_url.h"
#include "src/master/cluster.h"
#include "src/master/data_dir.h"
#include "src/master/grpc_endpoint.h"
#include "src/master/history.h"
#include "src/master/listener.h"
#include "src/common/log.h"
#include "src/master/reload.h"
#include "src/master/router.h"
#include "src/master/sd_service.h"
#include "src/common/secrets.h"
#include "shm/handoff.h"

#define MASTER_STOP_TIMEOUT 10        /* seconds before SIGKILL of workers that linger */
#define MASTER_BACKOFF_MIN_MS 100
#define MASTER_BACKOFF_MAX_MS 10000
#define MASTER_STABLE_SECONDS 5       /* a worker up this long resets the back-off */
#define MASTER_STOP_POLL_MS 10        /* how often a stop step checks on gRPC */

extern char **environ;

typedef struct master master;

typedef struct {
    master *owner;
    int index;
    pid_t pid;
    time_t started;
    unsigned backoff_ms;
    int listen_fd;
    queue_pair queue;
    struct event *respawn_ev;
} master_slot;

struct master {
    const wsn_config *cfg;
    char **argv;
    pid_t pid;
    shm_region shm;
    int slots;
    master_slot slot[REGION_MAX_SLOTS];
    struct event_base *base;
    struct event *signal_ev[4];
    struct event *kill_ev;
    struct event *stop_ev;            /* the steps of the stop */
    int stop_stage;
    long stop_waited_ms;
    bool grpc_left_running;           /* its thread did not finish: keep the region mapped */
    bool stopping;
    int running;
    int queue_out[REGION_MAX_SLOTS];  /* the router's view of the slot queues */
    queue_pair master_queue;          /* workers → master: SENT/ACKED marks */
    router router;
    history *history;                 /* the store's writer; NULL: --history-size 0 */
    char store_dir[DATA_DIR_MAX];     /* "" without history */
    bool store_temporary;             /* no --data-dir: removed at exit */
    grpc_endpoint *grpc;              /* started after the workers; NULL once stopped */
    sd_service systemd;               /* READY/STATUS/STOPPING/WATCHDOG under systemd */
};

static void master_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    }
    log_debug("open file limit: %llu", (unsigned long long)rl.rlim_cur);
}

/* The environment for a worker: ours plus WSNOTIFY_WORKER. Built before fork. */
static char **worker_environment(const char *entry)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 2, sizeof *envp);
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "WSNOTIFY_WORKER=", 16) != 0)
            envp[k++] = environ[i];
    envp[k++] = (char *)entry;
    envp[k] = NULL;
    return envp;
}

/* In the child between fork and exec: async-signal-safe calls only. Every
 * signal is blocked on entry (master_spawn): the master's libevent handlers
 * are still installed here, and one running in the child would write a
 * phantom signal into the master's own signal pipe. */
static void exec_worker(master *m, const worker_handoff *h, char **envp)
{
    static const int caught[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++)
        if (sigaction(caught[i], &dfl, NULL) != 0)
            _exit(1);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != m->pid)
        _exit(1);
    /* TERM, INT and HUP wait (blocked, pending) until the worker has installed
     * its handlers; their default action would kill it before. */
    sigset_t early;
    sigemptyset(&early);
    sigaddset(&early, SIGTERM);
    sigaddset(&early, SIGINT);
    sigaddset(&early, SIGHUP);
    sigprocmask(SIG_SETMASK, &early, NULL);
    int keep[4] = {h->listen_fd, h->shm_fd, h->queue_fd, h->master_fd};
    for (int i = 0; i < 4; i++)
        if (fcntl(keep[i], F_SETFD, 0) != 0)
            _exit(1);
    for (int i = 0; i < h->slots; i++)
        if (fcntl(h->queue_out[i], F_SETFD, 0) != 0)
            _exit(1);
    execve("/proc/self/exe", m->argv, envp);
    _exit(127);
}

static int master_spawn(master *m, int s)
{
    master_slot *slot = &m->slot[s];
    worker_handoff h = {
        .slot = s,
        .slots = m->slots,
        .listen_fd = slot->listen_fd,
        .shm_fd = m->shm.fd,
        .queue_fd = slot->queue.worker_end,
        .master_fd = m->master_queue.sender_end,
    };
    for (int i = 0; i < m->slots; i++)
        h.queue_out[i] = m->slot[i].queue.sender_end;
    char entry[16 + 16 * (REGION_MAX_SLOTS + 8)];
    int n = snprintf(entry, sizeof entry, "WSNOTIFY_WORKER=");
    char **envp = NULL;
    if (n < 0 || handoff_format(&h, entry + n, sizeof entry - (size_t)n) != 0 ||
        (envp = worker_environment(entry)) == NULL) {
        log_error("cannot prepare worker %d", s);
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    int mrc = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (mrc != 0) {
        log_error("cannot block signals to fork worker %d: %s", s, strerror(mrc));
        free(envp);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        exec_worker(m, &h, envp);
    int fork_errno = errno;
    if ((mrc = pthread_sigmask(SIG_SETMASK, &old, NULL)) != 0)
        log_error("cannot restore the signal mask: %s", strerror(mrc));
    errno = fork_errno;
    free(envp);
    if (pid < 0) {
        log_error("fork of worker %d: %s", s, strerror(errno));
        return -1;
    }
    slot->pid = pid;
    slot->started = time(NULL);
    atomic_store(&m->shm.hdr->slot[s].pid, (int32_t)pid);
    m->running++;
    log_info("worker %d started, pid %ld", s, (long)pid);
    return 0;
}

static void master_schedule_respawn(master *m, int s)
{
    master_slot *slot = &m->slot[s];
    time_t lived = time(NULL) - slot->started;
    if (lived >= MASTER_STABLE_SECONDS)
        slot->backoff_ms = 0;
    else
        slot->backoff_ms = slot->backoff_ms == 0 ? MASTER_BACKOFF_MIN_MS
                           : slot->backoff_ms * 2 > MASTER_BACKOFF_MAX_MS ? MASTER_BACKOFF_MAX_MS
                                                                          : slot->backoff_ms * 2;
    struct timeval tv = {slot->backoff_ms / 1000, (slot->backoff_ms % 1000) * 1000};
    if (slot->backoff_ms > 0)
        log_warn("worker %d restarts in %u ms (it lived %ld s)", s, slot->backoff_ms,
                 (long)lived);
    if (event_add(slot->respawn_ev, &tv) != 0)
        log_error("cannot schedule the respawn of worker %d", s);
}

static void master_on_respawn(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    master_slot *slot = arg;
    master *m = slot->owner;
    if (m->stopping || slot->pid != 0)
        return;
    if (master_spawn(m, slot->index) != 0)
        master_schedule_respawn(m, slot->index);
}

static void log_exit(int s, pid_t pid, int status, bool expected)
{
    log_level level = expected ? LOG_INFO : LOG_ERROR;
    if (WIFEXITED(status))
        log_msg(level, "worker %d (pid %ld) exited with status %d", s, (long)pid,
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        log_msg(level, "worker %d (pid %ld) killed by signal %d (%s)", s, (long)pid,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
}

/* Cluster mode: a dead worker's users are released in Redis too, so other
 * nodes stop counting them as connected here (README "Cluster"). They go
 * to the history thread as RELEASE marks on the master's own queue; what
 * does not fit is released when a notification for it finds no session. */
typedef struct {
    master *m;
    uint8_t payload[QUEUE_MAX_MARKS * QUEUE_MARK_LEN];
    size_t count;
    size_t lost;
} dead_release;

static void dead_release_flush(dead_release *r)
{
    if (r->count == 0)
        return;
    queue_msg msg = {.type = QMSG_MARKS, .generation = REGION_MAX_SLOTS, .payload = r->payload,
                     .payload_len = (uint32_t)(r->count * QUEUE_MARK_LEN)};
    if (queue_send(r->m->master_queue.sender_end, &msg) != 0)
        r->lost += r->count;
    r->count = 0;
}

static void dead_release_one(void *ctx, int64_t user, uint32_t generation)
{
    dead_release *r = ctx;
    queue_mark mark = {.user = user, .id = generation, .state = QUEUE_MARK_RELEASE};
    queue_mark_encode(r->payload + r->count * QUEUE_MARK_LEN, &mark);
    if (++r->count == QUEUE_MAX_MARKS)
        dead_release_flush(r);
}

static void master_release_dead(master *m, int slot, uint32_t epoch)
{
    dead_release *r = malloc(sizeof *r);
    if (r == NULL) {
        log_warn("out of memory releasing worker %d's users in Redis", slot);
        return;
    }
    r->m = m;
    r->count = r->lost = 0;
    size_t n = directory_each_of_epoch(m->shm.dir, slot, epoch, dead_release_one, r);
    dead_release_flush(r);
    if (n > 0)
        log_info("cluster: releasing the %zu users of worker %d in Redis", n, slot);
    if (r->lost > 0)
        log_warn("cluster: %zu releases of worker %d's users did not fit the queue", r->lost,
                 slot);
    free(r);
}

static void master_reap(master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int s = -1;
        for (int i = 0; i < m->slots; i++)
            if (m->slot[i].pid == pid)
                s = i;
        if (s < 0)
            continue;
        m->slot[s].pid = 0;
        m->running--;
        region_slot *rs = &m->shm.hdr->slot[s];
        /* Its users vanish from the directory now; its sockets died with it. */
        uint32_t dead_epoch = directory_slot_epoch(m->shm.dir, s);
        directory_slot_bump(m->shm.dir, s);
        if (m->cfg->redis_url != NULL)
            master_release_dead(m, s, dead_epoch);
        atomic_store(&rs->pid, 0);
        atomic_store(&rs->ready, 0);
        atomic_store(&rs->connections, 0);
        log_exit(s, pid, status, m->stopping);
        if (!m->stopping) {
            atomic_fetch_add(&rs->restarts, 1);
            master_schedule_respawn(m, s);
        }
    }
    if (m->stopping && m->running == 0)
        event_base_loopbreak(m->base);
}

static void master_signal_workers(master *m, int sig)
{
    for (int i = 0; i < m->slots; i++)
        if (m->slot[i].pid > 0 && kill(m->slot[i].pid, sig) != 0 && errno != ESRCH)
            log_warn("kill worker %d: %s", i, strerror(errno));
}

static void master_on_kill_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    master *m = arg;
    log_warn("workers still running after %d s: killing them", MASTER_STOP_TIMEOUT);
    master_signal_workers(m, SIGKILL);
}

/* The stop runs as steps on a timer (master_on_stop_step), never inside the
 * signal callback and never blocking the loop: reaping, the watchdog and the
 * status keep running while gRPC drains. */
typedef enum {
    STOP_LAME_DUCK = 0,  /* health NOT_SERVING, new notifications UNAVAILABLE */
    STOP_DRAINING,       /* no new calls; in-flight ones finish */
    STOP_CANCELLED,      /* what was left is cancelled; waiting for the thread */
    STOP_WORKERS,        /* gRPC is gone: the workers close their clients */
} stop_stage;

static void stop_after(master *m, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (event_add(m->stop_ev, &tv) != 0)
        log_error("cannot arm the stop timer");
}

static void master_stop_workers(master *m)
{
    m->stop_stage = STOP_WORKERS;
    log_info("stopping %d workers", m->running);
    for (int i = 0; i < m->slots; i++)
        if (m->slot[i].respawn_ev != NULL && event_del(m->slot[i].respawn_ev) != 0)
            log_warn("cannot cancel a pending respawn");
    master_signal_workers(m, SIGTERM);
    struct timeval tv = {MASTER_STOP_TIMEOUT, 0};
    if (event_add(m->kill_ev, &tv) != 0)
        log_error("cannot arm the stop timeout");
    if (m->running == 0)
        event_base_loopbreak(m->base);
}

static void master_on_stop_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    master *m = arg;
    m->stop_waited_ms += MASTER_STOP_POLL_MS;
    switch (m->stop_stage) {
    case STOP_LAME_DUCK:
        grpc_endpoint_shutdown(m->grpc);
        m->stop_stage = STOP_DRAINING;
        m->stop_waited_ms = 0;
        break;
    case STOP_DRAINING:
        if (grpc_endpoint_active(m->grpc) > 0 &&
            m->stop_waited_ms < GRPC_ENDPOINT_DRAIN_SECONDS * 1000L)
            break;
        if (grpc_endpoint_active(m->grpc) > 0)
            log_warn("%ld gRPC calls still running after %d s: cancelling them",
                     grpc_endpoint_active(m->grpc), GRPC_ENDPOINT_DRAIN_SECONDS);
        grpc_endpoint_cancel_all(m->grpc);
        m->stop_stage = STOP_CANCELLED;
        m->stop_waited_ms = 0;
        break;
    case STOP_CANCELLED:
        if (!grpc_endpoint_finished(m->grpc)) {
            if (m->stop_waited_ms < GRPC_ENDPOINT_DRAIN_SECONDS * 1000L)
                break;
            /* Left running: the shared region it may touch stays mapped. */
            log_error("the gRPC thread did not finish; leaving it");
            m->grpc_left_running = true;
        } else {
            grpc_endpoint_destroy(m->grpc);
        }
        m->grpc = NULL;
        master_stop_workers(m);
        return;
    case STOP_WORKERS:
        return;
    }
    stop_after(m, MASTER_STOP_POLL_MS);
}

static void master_stop(master *m, int sig)
{
    if (m->stopping)
        return;
    m->stopping = true;
    sd_service_stopping(&m->systemd);
    if (m->grpc == NULL) {
        master_stop_workers(m);
        return;
    }
    /* gRPC first: its in-flight calls still reach live workers while they finish. */
    log_info("%s: stopping the gRPC endpoint", strsignal(sig));
    grpc_endpoint_lame_duck(m->grpc);
    history_release_waiters(m->history); /* the drain must not wait for acks */
    m->stop_stage = STOP_LAME_DUCK;
    m->stop_waited_ms = 0;
    stop_after(m, GRPC_ENDPOINT_LAME_DUCK_MS);
}

static void master_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    master *m = arg;
    switch (sig) {
    case SIGCHLD:
        master_reap(m);
        break;
    case SIGHUP:
        sd_service_reloading(&m->systemd);
        reload_master_check(m->cfg);
        log_info("SIGHUP: forwarding to workers");
        /* Bumped first, so a worker that reads it has been (or will be) signalled. */
        uint64_t generation = region_begin_reload(&m->shm);
        master_signal_workers(m, SIGHUP);
        sd_service_await_reload(&m->systemd, generation);
        break;
    default:
        master_stop(m, (int)sig);
        break;
    }
}

static int master_open_resources(master *m, char *err, size_t err_size)
{
    const wsn_config *cfg = m->cfg;
    if (region_create(&m->shm, m->slots, cfg->max_connections) != 0) {
        snprintf(err, err_size, "cannot create shared memory for %u connections: %s",
                 cfg->max_connections, strerror(errno));
        return -1;
    }
    if (listener_check_free(cfg->bind, cfg->port, err, err_size) != 0)
        return -1;
    if (queue_pair_create(&m->master_queue) != 0) {
        snprintf(err, err_size, "cannot create the master's queue: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < m->slots; i++) {
        master_slot *slot = &m->slot[i];
        slot->owner = m;
        slot->index = i;
        slot->listen_fd = listener_open(cfg->bind, cfg->port, true, err, err_size);
        if (slot->listen_fd < 0)
            return -1;
        if (queue_pair_create(&slot->queue) != 0) {
            snprintf(err, err_size, "cannot create the queue of worker %d: %s", i,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int master_setup_events(master *m)
{
    static const int signals[4] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
    m->base = event_base_new();
    if (m->base == NULL)
        return -1;
    for (int i = 0; i < 4; i++) {
        m->signal_ev[i] = evsignal_new(m->base, signals[i], master_on_signal, m);
        if (m->signal_ev[i] == NULL || event_add(m->signal_ev[i], NULL) != 0)
            return -1;
    }
    m->kill_ev = evtimer_new(m->base, master_on_kill_timeout, m);
    m->stop_ev = evtimer_new(m->base, master_on_stop_step, m);
    if (m->kill_ev == NULL || m->stop_ev == NULL)
        return -1;
    for (int i = 0; i < m->slots; i++) {
        m->slot[i].respawn_ev = evtimer_new(m->base, master_on_respawn, &m->slot[i]);
        if (m->slot[i].respawn_ev == NULL)
            return -1;
    }
    return 0;
}

static void master_teardown(master *m)
{
    for (int i = 0; i < m->slots; i++) {
        master_slot *slot = &m->slot[i];
        if (slot->respawn_ev != NULL)
            event_free(slot->respawn_ev);
        if (slot->listen_fd > 0)
            close(slot->listen_fd);
        if (slot->queue.worker_end > 0)
            close(slot->queue.worker_end);
        if (slot->queue.sender_end > 0)
            close(slot->queue.sender_end);
    }
    for (int i = 0; i < 4; i++)
        if (m->signal_ev[i] != NULL)
            event_free(m->signal_ev[i]);
    if (m->master_queue.worker_end > 0)
        close(m->master_queue.worker_end);
    if (m->master_queue.sender_end > 0)
        close(m->master_queue.sender_end);
    if (m->kill_ev != NULL)
        event_free(m->kill_ev);
    if (m->stop_ev != NULL)
        event_free(m->stop_ev);
    sd_service_close(&m->systemd);
    if (m->base != NULL)
        event_base_free(m->base);
    if (m->shm.hdr != NULL && !m->grpc_left_running)
        region_detach(&m->shm);
}

/* After the workers exist: gRPC's threads start here (workers are exec'd, so
 * later respawns stay safe). The router sends to every slot's queue. */
/* Cluster mode: the history thread (history.c) with Redis instead of the
 * store, even without --history-size (it routes between the nodes). */
static int master_open_cluster(master *m, char *err, size_t err_size)
{
    const wsn_config *cfg = m->cfg;
    redis_url url;
    if (redis_url_parse(cfg->redis_url, &url, err, err_size) != 0)
        return -1;
    history_options o = {
        .redis_url = &url,
        .node_id = cfg->node_id,
        .slots = m->slots,
        .queue_out = m->queue_out,
        .history_size = cfg->history_size,
        .ttl_ns = (uint64_t)cfg->history_ttl * 1000000000u,
        .marks_fd = m->master_queue.worker_end,
    };
    if (history_open(&m->history, &m->shm, &o, err, err_size) != 0)
        return -1;
    if (setenv(HANDOFF_INSTANCE_ENV, cluster_instance(history_cluster(m->history)), 1) != 0) {
        snprintf(err, err_size, "setenv: %s", strerror(errno));
        return -1;
    }
    char where[REDIS_URL_HOST_MAX + 16];
    redis_url_describe(&url, where, sizeof where);
    log_info("cluster: node %s (instance %s) on Redis at %s; history: %u per user for %u s",
             cfg->node_id, cluster_instance(history_cluster(m->history)), where,
             cfg->history_size, cfg->history_ttl);
    return 0;
}

/* Before the workers (they open the store as readers) and before any thread:
 * the store's directory goes to the workers in the environment. */
static int master_open_history(master *m, char *err, size_t err_size)
{
    const wsn_config *cfg = m->cfg;
    for (int i = 0; i < m->slots; i++)
        m->queue_out[i] = m->slot[i].queue.sender_end;
    if (cfg->redis_url != NULL)
        return master_open_cluster(m, err, err_size);
    if (cfg->history_size == 0)
        return 0;
    if (data_dir_prepare(cfg->data_dir, m->store_dir, err, err_size) != 0)
        return -1;
    m->store_temporary = cfg->data_dir == NULL;
    history_options o = {
        .dir = m->store_dir,
        .durable = cfg->data_dir != NULL,
        .history_size = cfg->history_size,
        .ttl_ns = (uint64_t)cfg->history_ttl * 1000000000u,
        .map_size = (uint64_t)cfg->data_max_size << 20,
        .marks_fd = m->master_queue.worker_end,
    };
    if (history_open(&m->history, &m->shm, &o, err, err_size) != 0)
        return -1;
    if (setenv(HANDOFF_STORE_ENV, m->store_dir, 1) != 0) {
        snprintf(err, err_size, "setenv: %s", strerror(errno));
        return -1;
    }
    log_info("history: %u per user for %u s in %s%s", cfg->history_size, cfg->history_ttl,
             m->store_dir, m->store_temporary ? " (temporary: removed at exit)" : "");
    return 0;
}

static void master_close_history(master *m)
{
    store_close(m->router.view);
    m->router.view = NULL;
    history_close(m->history);
    m->history = NULL;
    if (m->store_temporary && m->store_dir[0] != '\0')
        data_dir_remove(m->store_dir);
}

static int master_start_grpc(master *m, char *err, size_t err_size)
{
    m->router = (router){.shm = &m->shm, .slots = m->slots, .queue_out = m->queue_out,
                         .history = m->history,
                         .cluster = m->history != NULL ? history_cluster(m->history) : NULL,
                         .stores = m->cfg->history_size > 0,
                         .ttl_ns = (uint64_t)m->cfg->history_ttl * 1000000000u};
    if (m->history != NULL && history_store(m->history) != NULL &&
        store_view(history_store(m->history), &m->router.view, err, err_size) != 0)
        return -1;
    m->grpc = grpc_endpoint_start(m->cfg->grpc_bind, m->cfg->grpc_port, &m->router, err,
                                  err_size);
    if (m->grpc == NULL)
        return -1;
    log_info("gRPC listening on %s:%u", m->cfg->grpc_bind,
             (unsigned)grpc_endpoint_port(m->grpc));
    return 0;
}

int master_main(const wsn_config *cfg, char **argv)
{
    static master m; /* large (slot table); zeroed; the process's one master context */
    memset(&m, 0, sizeof m);
    m.cfg = cfg;
    m.argv = argv;
    m.pid = getpid();
    m.slots = cfg->workers;
    log_setup("master", cfg->log_level);

    char err[512];
    /* Secrets, keys, TLS and gRPC files: a bad setup fails before forking. */
    if (reload_master_start(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyd: %s\n", err);
        return 1;
    }
    sd_service_open(&m.systemd); /* before any fork or thread: it edits the environment */
    master_raise_nofile();
    int status = 1;
    if (master_open_resources(&m, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyd: --port %u: %s\n", (unsigned)cfg->port, err);
        goto out;
    }
    /* Fail before forking if the gRPC port is taken (gRPC binds it only later). */
    if (listener_check_free(cfg->grpc_bind, cfg->grpc_port, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyd: --grpc-port %u: %s\n", (unsigned)cfg->grpc_port, err);
        goto out;
    }
    if (master_setup_events(&m) != 0) {
        log_error("cannot set up the event loop");
        goto out;
    }
    if (master_open_history(&m, err, sizeof err) != 0) {
        if (cfg->redis_url != NULL)
            fprintf(stderr, "wsnotifyd: --redis: %s\n", err);
        else
            fprintf(stderr, "wsnotifyd: --data-dir %s: %s\n",
                    cfg->data_dir != NULL ? cfg->data_dir : "(temporary)", err);
        goto out;
    }
    if (sd_service_start(&m.systemd, m.base, &m.shm, m.slots) != 0)
        log_warn("systemd notification incomplete (see above); serving anyway");
    for (int i = 0; i < m.slots; i++)
        if (master_spawn(&m, i) != 0)
            master_schedule_respawn(&m, i);
    log_info("listening on %s:%u (HTTP/WebSocket) with %d workers, directory capacity %u",
             cfg->bind, (unsigned)cfg->port, m.slots, cfg->max_connections);
    if (master_start_grpc(&m, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyd: --grpc-port %u: %s\n", (unsigned)cfg->grpc_port, err);
        goto out;
    }
    sd_service_watch_grpc(&m.systemd, grpc_endpoint_beat(m.grpc));
    /* The gRPC port is listening now; READY=1 follows once every worker accepts. */
    if (sd_service_await_ready(&m.systemd) != 0)
        log_warn("systemd will not be told that the service is ready");
    if (event_base_dispatch(m.base) < 0) {
        log_error("event loop failed");
        goto out;
    }
    status = 0;
    log_info("stopped");
out:
    if (!grpc_endpoint_stop(m.grpc))
        m.grpc_left_running = true;
    m.grpc = NULL;
    if (m.running > 0) {
        master_signal_workers(&m, SIGKILL);
        while (waitpid(-1, NULL, 0) > 0)
            ;
    }
    /* After the workers: their last marks are read in the final round. */
    if (!m.grpc_left_running)
        master_close_history(&m);
    master_teardown(&m);
    return status;
}
