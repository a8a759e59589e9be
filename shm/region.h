/* region.h — the one shared-memory region of a wsnotifyd instance: per-slot
 * worker state and counters, server-wide counters, the user directory, the
 * per-user connection rate limiter and the per-email login rate limiter.
 * Created by the master (memfd), inherited by every worker as a descriptor, so
 * it survives worker respawns and dies with the last process holding it. */
#ifndef WSN_REGION_H
#define WSN_REGION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/counters-t.h"
#include "shm/directory.h"
#include "shm/ratelimit.h"

#define REGION_MAX_SLOTS DIRECTORY_MAX_SLOTS
#define REGION_LOGIN_CAPACITY 65536u  /* emails the login limiter tracks at once (1 MiB) */
#define REGION_AUTH_REASONS COUNTERS_AUTH_REASONS
#define REGION_LATENCY_BUCKETS COUNTERS_LATENCY_BUCKETS

/* Written by one worker (its own slot) and the master (on the worker's death).
 * Counters are monotonic and survive a respawn; gauges are reset by the master. */
typedef struct {
    _Atomic int32_t pid;            /* current worker process, 0 = none */
    _Atomic uint32_t ready;         /* worker's loop is accepting */
    _Atomic int64_t connections;    /* gauge: open WebSocket connections */
    _Atomic uint64_t accepted;      /* WebSocket upgrades completed */
    _Atomic uint64_t evictions;     /* older connections closed with 4000 */
    _Atomic uint64_t frames_in;
    _Atomic uint64_t frames_out;
    _Atomic uint64_t queue_dropped; /* datagrams for connections no longer here */
    _Atomic uint64_t restarts;      /* times this slot's worker was respawned */
    /* 401s indexed by auth_result, and the delivery
     * latency histogram as per-bucket (not cumulative) counts, the last bucket
     * being everything over the largest bound. */
    _Atomic uint64_t auth_failures[REGION_AUTH_REASONS];
    _Atomic uint64_t latency_bucket[REGION_LATENCY_BUCKETS];
    _Atomic uint64_t latency_sum_ns;
    _Atomic uint64_t reload_ack;    /* the reload generation this worker has applied */
    /* Set by anyone whose EVICT for this slot could not be queued: the slot's
     * worker then checks every connection it holds against the directory. */
    _Atomic uint32_t reconcile_requested;
    _Atomic uint64_t replayed;      /* stored notifications sent again on (re)connect */
    _Atomic uint64_t acks;          /* acks received from clients */
    _Atomic uint64_t marks_lost;    /* SENT/ACKED reports the master's queue could not take */
    /* The marks barrier (README "History"): the worker numbers its marks
     * datagrams, the master says up to which one every mark is committed
     * (marks_applied), so a replay of never-sent notifications can wait until
     * no SENT mark is still on its way. marks_sent is the last number queued,
     * times two, plus one from before a notification is written until its
     * SENT mark is queued (region_marks_pending_upto reads it). */
    _Atomic uint64_t marks_sent;
    _Atomic uint64_t marks_applied;
    _Atomic uint32_t redis_up;      /* cluster mode: the worker's own Redis link is up */
    char pad[64];
} region_slot;

typedef struct {
    uint32_t magic;
    uint32_t slots;
    uint64_t size;
    uint64_t directory_offset;
    uint64_t ratelimit_offset;              /* per-user connect limiter, after the directory */
    uint64_t login_ratelimit_offset;        /* per-email login limiter, after that */
    _Atomic int64_t next_notification_id;   /* server-assigned ids, from a time base */
    _Atomic uint64_t notifications[NOTIFY_OUTCOMES];
    _Atomic uint64_t reload_generation;     /* bumped by the master per SIGHUP it forwards */
    /* The history's hand-over (README "History"): the last seq handed out, and
     * the seq up to which every notification is committed (or failed). */
    _Atomic uint64_t accepted_seq;
    _Atomic uint64_t committed_seq;
    _Atomic uint64_t history[HISTORY_COUNTERS];       /* counters-t.h, by history_counter */
    _Atomic uint64_t store_bytes;                     /* gauges of the store */
    _Atomic uint64_t store_entries;
    _Atomic uint64_t ack_waiters;                     /* gauge: calls waiting for an ack */
    _Atomic uint64_t commit_bucket[COUNTERS_LATENCY_BUCKETS]; /* commit latency histogram */
    _Atomic uint64_t commit_sum_ns;
    /* Cluster mode (README "Cluster"), written by the master's history thread. */
    _Atomic uint32_t redis_up;                        /* its connections to Redis are up */
    _Atomic uint64_t redis_reconnects;                /* connections regained after a loss */
    _Atomic uint64_t pubsub_lag_ns;                   /* its last ping's trip through pub/sub */
    _Atomic uint64_t cluster_forwarded;               /* notifications handed to another node */
    _Atomic uint64_t cluster_received;                /* from other nodes, queued to a worker */
    region_slot slot[REGION_MAX_SLOTS];
} region_header;

typedef struct {
    region_header *hdr;
    directory *dir;
    ratelimit *rl;
    ratelimit *login_rl;
    size_t size;
    int fd;
} shm_region;

/* Create a memfd-backed region (close-on-exec fd). Returns 0 or -1 with errno. */
int region_create(shm_region *r, int slots, uint32_t capacity);

/* Map a region created by region_create in another process. Returns 0 or -1. */
int region_attach(shm_region *r, int fd);

void region_detach(shm_region *r);

/* Server-wide open WebSocket connections (sum of slot gauges). */
int64_t region_total_connections(const shm_region *r);

/* The next server-assigned notification id. */
int64_t region_next_notification_id(shm_region *r);

void region_count_notification(shm_region *r, notify_outcome outcome);

/* The marks datagram of the slot that holds every SENT mark of what it has
 * written so far (the next one while some wait in its batch). */
uint64_t region_marks_pending_upto(const region_slot *s);

/* Slots whose worker is running and accepting. */
int region_ready_workers(const shm_region *r);

/* The SIGHUP handshake: the master starts a reload generation before it
 * forwards the signal; a worker reads the generation before it re-reads its
 * files and acknowledges it once done (and at start, where it loads them
 * afresh), so the master can tell when every worker has reloaded. */
uint64_t region_begin_reload(shm_region *r);
uint64_t region_reload_generation(const shm_region *r);
void region_ack_reload(region_slot *slot, uint64_t generation);

/* The slot's worker is running and accepting but has not acknowledged
 * generation yet. */
bool region_reload_pending(const shm_region *r, int slot, uint64_t generation);

#endif
