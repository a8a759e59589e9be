/* sd_service.h — the master's side of the conversation with systemd
 * (Type=notify): READY=1 once every worker accepts and the gRPC port is bound,
 * STATUS= with connection and worker counts, RELOADING=1/READY=1 around
 * SIGHUP (READY=1 once every worker has reloaded), STOPPING=1, and WATCHDOG=1
 * from the master's own event loop, so a hung master stops petting and
 * systemd restarts it. All of it is a no-op when the daemon does not run
 * under systemd (no NOTIFY_SOCKET). */
#ifndef WSN_SD_SERVICE_H
#define WSN_SD_SERVICE_H

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "shm/region.h"
#include "src/master/sd_notify.h"

#define SD_SERVICE_READY_POLL_MS 20    /* how often readiness is checked at start */
#define SD_SERVICE_STATUS_POLL_MS 1000 /* STATUS= is re-sent when the counts changed */
#define SD_SERVICE_RELOAD_POLL_MS 10   /* how often the workers' reload acks are checked */
/* READY=1 after a reload at the latest (a warning names the slow workers), so
 * systemd never hangs in "reloading" on a stuck worker. */
#define SD_SERVICE_RELOAD_TIMEOUT_MS 5000
#define SD_SERVICE_GRPC_STALL_MS 10000 /* no gRPC turn this long: no WATCHDOG=1 */

typedef struct {
    sd_notifier sd;
    const shm_region *shm;
    int slots;
    struct event *ready_ev;
    struct event *status_ev;
    struct event *watchdog_ev;
    struct event *reload_poll_ev;
    struct event *reload_timeout_ev;
    uint64_t reload_generation; /* awaited from every worker; 0 = no reload pending */
    const _Atomic uint64_t *grpc_beat; /* the gRPC thread's last turn (ms); NULL: not watched */
    bool grpc_stalled;     /* said so in the log */
    bool ready;            /* READY=1 sent */
    bool stopping;         /* STOPPING=1 sent: no READY=1 after it */
    char status[160];      /* the last STATUS= sent */
} sd_service;

/* Take NOTIFY_SOCKET and the watchdog settings out of the environment (so the
 * workers never inherit them). Call first, before any thread or worker starts. */
void sd_service_open(sd_service *s);

/* Arm the watchdog and status timers on base. Returns 0, or -1 (logged). */
int sd_service_start(sd_service *s, struct event_base *base, const shm_region *shm, int slots);

/* The gRPC port is bound and listening: from now on READY=1 is sent as soon as
 * every worker slot reports it is accepting. Returns 0, or -1 (logged). */
int sd_service_await_ready(sd_service *s);

/* Around the master's SIGHUP handling: RELOADING=1 before the files are
 * checked; then, once generation was started (region_begin_reload) and the
 * signal forwarded, READY=1 as soon as every running, accepting worker has
 * acknowledged generation, or after SD_SERVICE_RELOAD_TIMEOUT_MS. Another
 * SIGHUP meanwhile moves the wait on to the newer generation. */
void sd_service_reloading(sd_service *s);
void sd_service_await_reload(sd_service *s, uint64_t generation);

/* WATCHDOG=1 only while the gRPC thread's beat (CLOCK_MONOTONIC ms, see
 * grpc_endpoint_beat) is younger than SD_SERVICE_GRPC_STALL_MS: a wedged gRPC
 * thread gets the service restarted just like a hung main loop. */
void sd_service_watch_grpc(sd_service *s, const _Atomic uint64_t *beat);

/* On SIGTERM/SIGINT, before anything is stopped (also ends the gRPC watch). */
void sd_service_stopping(sd_service *s);

/* Free the timers and close the socket. Safe on a zeroed or opened s. */
void sd_service_close(sd_service *s);

#endif
