/* worker-t.h — struct worker: all of a worker process's mutable state (one
 * per process, owned by worker_main). The protocol files read it through the
 * client they serve (client_worker); only worker.c runs the loop. */
#ifndef WSN_WORKER_T_H
#define WSN_WORKER_T_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/handoff.h"
#include "shm/region.h"
#include "src/common/config.h"
#include "src/common/secrets.h"
#include "workers/conn.h"
#include "src/common/password.h"
#include "src/common/users_file.h"
#include "workers/handover.h"
#include "workers/login_pool.h"
#include "workers/marks.h"
#include "workers/user_map.h"

struct event;
struct jwt_keys;
struct ssl_ctx_st;
struct store;

typedef struct worker {
    const wsn_config *cfg;
    worker_handoff h;
    uint32_t epoch;                    /* this slot's directory epoch at start */
    shm_region shm;
    region_slot *stats;                /* &shm.hdr->slot[slot] */
    secret_set secrets;                /* HS256; may be empty when jwt_keys verify */
    struct jwt_keys *jwt_keys;         /* --jwt-public-key-file; NULL: none; swapped on SIGHUP */
    struct ssl_ctx_st *tls_ctx;        /* for new connections; NULL: plain; swapped on SIGHUP */
    conn_loop loop;                    /* event base, scratch buffer, clock, closing/dead lists */
    struct event *accept_ev;
    struct event *queue_ev;
    struct event *tick_ev;
    struct event *heartbeat_ev;
    struct event *resume_accept_ev;
    struct event *signal_ev[3];        /* TERM, INT, HUP */
    user_map users;                    /* user_id → client, open WebSocket sessions only */
    conn_list handshaking;             /* HTTP stage, ordered by arrival: oldest first */
    conn_list open;                    /* WebSocket, ordered by last received byte: oldest first */
    uint8_t *qbuf;                     /* one queue datagram */
    size_t reconcile_pos;              /* where the slow directory pass goes on */
    size_t heartbeat_pos;              /* where the next second's pings start */
    uint64_t handshakes_dropped;       /* --max-handshakes: oldest closed for a newcomer */
    uint32_t handshakes_logged_at;
    bool stopping;
    bool stop_requested;               /* a stale directory epoch was met: stop and be respawned */
    uint32_t stop_started;
    /* The history (handover.h): set when WSNOTIFY_STORE names the store and
     * --history-size > 0; else sessions behave as without history. */
    bool history;
    struct store *store;               /* read-only; NULL while it cannot be opened */
    handover_table handovers;          /* sessions replaying their history */
    marks_batch marks;                 /* SENT/ACKED marks for the master */
    struct event *marks_ev;            /* flushes them once per loop iteration */
    struct cluster_link *link;         /* cluster mode: its own Redis connection; NULL: single node */
    /* The login endpoint (--users-file; http_login.h). */
    users_file users_db;               /* swapped on SIGHUP */
    char login_dummy_hash[PASSWORD_HASH_MAX]; /* checked for unknown emails */
    login_pool logins;                 /* the password-checking threads */
} worker;

#endif
