/* worker.h — one worker process: a single-threaded libevent loop accepting
 * WebSocket clients on its slot's listening socket, reading its slot queue,
 * and running the heartbeat and handshake deadlines. All of the worker's
 * mutable state lives in struct worker. */
#ifndef WSN_WORKER_H
#define WSN_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"
#include "src/config.h"
#include "src/secrets.h"
#include "workers/user_map.h"

struct event_base;
struct event;
struct ssl_ctx_st;
typedef struct conn conn;

typedef struct {
    conn *head;
    conn *tail;
    size_t count;
} conn_list;

/* Descriptors and identity handed from the master (environment WSNOTIFY_WORKER). */
typedef struct {
    int slot;
    int slots;
    int listen_fd;
    int shm_fd;
    int queue_fd;                      /* this slot's worker end */
    int queue_out[REGION_MAX_SLOTS];   /* every slot's sender end */
} worker_handoff;

typedef struct worker {
    const wsn_config *cfg;
    worker_handoff h;
    uint32_t epoch;                    /* this slot's directory epoch at start */
    shm_region shm;
    region_slot *stats;                /* &shm.hdr->slot[slot] */
    secret_set secrets;
    struct ssl_ctx_st *tls_ctx;        /* for new connections; NULL: plain; swapped on SIGHUP */
    struct event_base *base;
    struct event *accept_ev;
    struct event *queue_ev;
    struct event *tick_ev;
    struct event *heartbeat_ev;
    struct event *resume_accept_ev;
    struct event *signal_ev[3];        /* TERM, INT, HUP */
    user_map users;                    /* user_id → conn, open connections only */
    conn_list handshaking;             /* ordered by arrival: oldest first */
    conn_list open;                    /* ordered by last received byte: oldest first */
    conn_list closing;                 /* ordered by close start: oldest first */
    conn_list dead;                    /* aborted during this event, freed by conn_reap */
    uint8_t *scratch;                  /* socket reads, shared by all connections */
    size_t scratch_size;
    uint8_t *qbuf;                     /* one queue datagram */
    uint32_t now;                      /* monotonic milliseconds (wrapping), refreshed per event */
    bool stopping;
    uint32_t stop_started;
} worker;

/* Parse the handoff string the master puts in WSNOTIFY_WORKER. Returns 0 or -1. */
int worker_handoff_parse(const char *spec, worker_handoff *h);

/* Format it (for the master). Returns 0, or -1 if it does not fit. */
int worker_handoff_format(const worker_handoff *h, char *out, size_t out_size);

/* Run the worker until SIGTERM/SIGINT has been served. Returns the exit status. */
int worker_main(const wsn_config *cfg, const char *handoff_spec);

/* Refresh w->now from CLOCK_MONOTONIC_COARSE. */
void worker_clock(worker *w);

/* Send a queue message to a slot (eviction). Returns 0 or -1 (logged). */
int worker_send_evict(worker *w, int slot, int64_t user, uint64_t generation);

#endif
