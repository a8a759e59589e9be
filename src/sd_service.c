/* sd_service.c — when the master tells systemd what state it is in.
 *
 * READY=1 means "clients can connect now", so it waits for both ports: the
 * gRPC port is bound before sd_service_await_ready is called, and every worker
 * raises its slot's `ready` flag in shared memory once its accept event is
 * armed; a short timer polls the flags (workers are separate processes, and a
 * timer is simpler than another channel back to the master). */
#include "src/sd_service.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "src/log.h"

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
    if (s->stopping)
        return;
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
    sd_notifier_send(&s->sd, "WATCHDOG=1");
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
    if (s->status_ev == NULL || s->ready_ev == NULL) {
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

void sd_service_reloaded(sd_service *s)
{
    if (!s->ready || s->stopping)
        return;
    format_status(s, s->status, sizeof s->status);
    sd_notifier_sendf(&s->sd, "READY=1\nSTATUS=%s", s->status);
}

void sd_service_stopping(sd_service *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    if (s->ready_ev != NULL && event_del(s->ready_ev) != 0)
        log_warn("cannot stop the readiness timer");
    snprintf(s->status, sizeof s->status, "stopping");
    sd_notifier_send(&s->sd, "STOPPING=1\nSTATUS=stopping");
}

void sd_service_close(sd_service *s)
{
    struct event **evs[] = {&s->ready_ev, &s->status_ev, &s->watchdog_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (*evs[i] != NULL) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
    sd_notifier_close(&s->sd);
}
