/* sd_service.c — when the master tells systemd what state it is in.
 *
 * READY=1 means "clients can connect now", so it waits for both ports: the
 * gRPC port is bound before sd_service_await_ready is called, and every worker
 * raises its slot's `ready` flag in shared memory once its accept event is
 * armed; a short timer polls the flags (workers are separate processes, and a
 * timer is simpler than another channel back to the master).
 *
 * After SIGHUP, READY=1 likewise means "done": the master starts a reload
 * generation in shared memory before forwarding the signal, each worker stores
 * the generation it has applied in its slot, and a timer waits until every
 * running, accepting worker has caught up, bounded so that one stuck worker
 * cannot keep systemd in "reloading" (a worker that dies meanwhile is no longer
 * waited for; its replacement loads everything afresh and acknowledges). */
#include "src/master/sd_service.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "src/common/log.h"

static struct timeval ms_to_timeval(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* "3 connections, 4/4 workers accepting" */
static void format_status(const sd_service *s, char *out, size_t size)
{
    long long conns = (long long)region_total_connections(s->shm);
    snprintf(out, size, "%lld connection%s, %d/%d workers accepting", conns,
             conns == 1 ? "" : "s", region_ready_workers(s->shm), s->slots);
}

static bool all_workers_ready(const sd_service *s)
{
    return region_ready_workers(s->shm) == s->slots;
}

static void on_ready_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sd_service *s = arg;
    if (s->ready || s->stopping || !all_workers_ready(s))
        return;
    if (event_del(s->ready_ev) != 0)
        log_warn("cannot stop the readiness timer");
    s->ready = true;
    format_status(s, s->status, sizeof s->status);
    log_info("ready: %s", s->status);
    sd_notifier_sendf(&s->sd, "READY=1\nSTATUS=%s", s->status);
}

static void on_status_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sd_service *s = arg;
    if (s->stopping || s->reload_generation != 0)
        return; /* STATUS=reloading stays until READY=1 */
    char now[sizeof s->status];
    format_status(s, now, sizeof now);
    if (strcmp(now, s->status) == 0)
        return;
    memcpy(s->status, now, sizeof now);
    sd_notifier_sendf(&s->sd, "STATUS=%s", s->status);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sd_service *s = arg;
    if (s->grpc_beat != NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        uint64_t beat = atomic_load_explicit(s->grpc_beat, memory_order_relaxed);
        if (now > beat && now - beat > SD_SERVICE_GRPC_STALL_MS) {
            if (!s->grpc_stalled)
                log_error("the gRPC thread has not run for %llu ms: no WATCHDOG=1 until it "
                          "does (systemd will restart the service)",
                          (unsigned long long)(now - beat));
            s->grpc_stalled = true;
            return;
        }
        if (s->grpc_stalled)
            log_warn("the gRPC thread runs again");
        s->grpc_stalled = false;
    }
    sd_notifier_send(&s->sd, "WATCHDOG=1");
}

void sd_service_watch_grpc(sd_service *s, const _Atomic uint64_t *beat)
{
    s->grpc_beat = beat;
}

/* "worker 1 (pid 42), worker 3 (pid 44)": those still to acknowledge the reload.
 * Returns how many. */
static int list_reload_pending(const sd_service *s, char *out, size_t size)
{
    int n = 0;
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < s->slots; i++) {
        if (!region_reload_pending(s->shm, i, s->reload_generation))
            continue;
        long pid = (long)atomic_load(&s->shm->hdr->slot[i].pid);
        int w = snprintf(out + len, size - len, "%sworker %d (pid %ld)", n ? ", " : "", i, pid);
        if (w < 0 || (size_t)w >= size - len)
            len = size - 1; /* no room: the rest are counted, not named */
        else
            len += (size_t)w;
        n++;
    }
    return n;
}

static void stop_reload_wait(sd_service *s)
{
    s->reload_generation = 0;
    if ((s->reload_poll_ev != NULL && event_del(s->reload_poll_ev) != 0) ||
        (s->reload_timeout_ev != NULL && event_del(s->reload_timeout_ev) != 0))
        log_warn("cannot stop the reload timers");
}

static void finish_reload(sd_service *s)
{
    stop_reload_wait(s);
    format_status(s, s->status, sizeof s->status);
    sd_notifier_sendf(&s->sd, "READY=1\nSTATUS=%s", s->status);
}

static void on_reload_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sd_service *s = arg;
    if (s->reload_generation == 0 || s->stopping)
        return;
    for (int i = 0; i < s->slots; i++)
        if (region_reload_pending(s->shm, i, s->reload_generation))
            return;
    log_info("reload: every worker has reloaded");
    finish_reload(s);
}

static void on_reload_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sd_service *s = arg;
    if (s->reload_generation == 0 || s->stopping)
        return;
    char slow[REGION_MAX_SLOTS * 40];
    if (list_reload_pending(s, slow, sizeof slow) > 0)
        log_warn("reload: %s not done after %d ms; telling systemd READY=1 anyway", slow,
                 SD_SERVICE_RELOAD_TIMEOUT_MS);
    finish_reload(s);
}

void sd_service_open(sd_service *s)
{
    memset(s, 0, sizeof *s);
    sd_notifier_open(&s->sd);
}

static struct event *add_timer(struct event_base *base, event_callback_fn cb, void *arg,
                               struct timeval tv)
{
    struct event *ev = event_new(base, -1, EV_PERSIST, cb, arg);
    if (ev == NULL)
        return NULL;
    if (event_add(ev, &tv) != 0) {
        event_free(ev);
        return NULL;
    }
    return ev;
}

int sd_service_start(sd_service *s, struct event_base *base, const shm_region *shm, int slots)
{
    s->shm = shm;
    s->slots = slots;
    if (!sd_notifier_enabled(&s->sd))
        return 0;
    /* Systemd wants a ping within WATCHDOG_USEC; every half of it leaves slack. */
    uint64_t wd = sd_notifier_watchdog_usec(&s->sd) / 2;
    if (wd > 0) {
        struct timeval tv = {(time_t)(wd / 1000000), (suseconds_t)(wd % 1000000)};
        s->watchdog_ev = add_timer(base, on_watchdog, s, tv);
        if (s->watchdog_ev == NULL) {
            log_error("cannot arm the systemd watchdog timer");
            return -1;
        }
        log_info("systemd watchdog: WATCHDOG=1 every %" PRIu64 " ms", wd / 1000);
    }
    s->status_ev = add_timer(base, on_status_poll, s, ms_to_timeval(SD_SERVICE_STATUS_POLL_MS));
    s->ready_ev = event_new(base, -1, EV_PERSIST, on_ready_poll, s);
    s->reload_poll_ev = event_new(base, -1, EV_PERSIST, on_reload_poll, s);
    s->reload_timeout_ev = evtimer_new(base, on_reload_timeout, s);
    if (s->status_ev == NULL || s->ready_ev == NULL || s->reload_poll_ev == NULL ||
        s->reload_timeout_ev == NULL) {
        log_error("cannot arm the systemd status timers");
        return -1;
    }
    return 0;
}

int sd_service_await_ready(sd_service *s)
{
    if (s->ready_ev == NULL)
        return 0;
    struct timeval tv = ms_to_timeval(SD_SERVICE_READY_POLL_MS);
    if (event_add(s->ready_ev, &tv) != 0) {
        log_error("cannot arm the readiness timer");
        return -1;
    }
    return 0;
}

/* MONOTONIC_USEC lets systemd >= 253 tell this reload from an older one. */
void sd_service_reloading(sd_service *s)
{
    if (!s->ready || s->stopping)
        return;
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        sd_notifier_send(&s->sd, "RELOADING=1\nSTATUS=reloading");
        return;
    }
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    sd_notifier_sendf(&s->sd, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading", usec);
}

void sd_service_await_reload(sd_service *s, uint64_t generation)
{
    if (!s->ready || s->stopping)
        return;
    s->reload_generation = generation;
    struct timeval every = ms_to_timeval(SD_SERVICE_RELOAD_POLL_MS);
    struct timeval limit = ms_to_timeval(SD_SERVICE_RELOAD_TIMEOUT_MS);
    /* Re-adding the pending timeout restarts it: each SIGHUP gets its bound. */
    if (s->reload_poll_ev == NULL || s->reload_timeout_ev == NULL ||
        event_add(s->reload_poll_ev, &every) != 0 ||
        event_add(s->reload_timeout_ev, &limit) != 0) {
        log_error("cannot arm the reload timers: telling systemd READY=1 now");
        finish_reload(s);
    }
}

void sd_service_stopping(sd_service *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->grpc_beat = NULL; /* the endpoint is about to go */
    if (s->ready_ev != NULL && event_del(s->ready_ev) != 0)
        log_warn("cannot stop the readiness timer");
    stop_reload_wait(s);
    snprintf(s->status, sizeof s->status, "stopping");
    sd_notifier_send(&s->sd, "STOPPING=1\nSTATUS=stopping");
}

void sd_service_close(sd_service *s)
{
    struct event **evs[] = {&s->ready_ev, &s->status_ev, &s->watchdog_ev, &s->reload_poll_ev,
                            &s->reload_timeout_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (*evs[i] != NULL) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
    sd_notifier_close(&s->sd);
}
