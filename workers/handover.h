/* handover.h — the history hand-over of a new WebSocket session (DESIGN
 * "hand-over", README "History"): after its directory claim a session reads
 * S = accepted_seq, sends `connected`, replays its history up to S from the
 * store (resume after last_id, or the never-sent ones) as the seqs up to S
 * are committed (without blocking the loop: a few milliseconds at most), then
 * the live notifications that arrived meanwhile, in order; live ones with
 * seq <= S were in the replay and are dropped. Every notification thus
 * reaches the session exactly once, in order, none skipped.
 *
 * Memory: an idle session carries one flag (client.in_handover); the state of
 * a hand-over lives in the worker's table (handover_table) from the claim
 * until the replay is written and the worker's queue has been read empty once
 * (no datagram it covered can still come), usually right away. The table and
 * the store handle belong to struct worker; only its loop touches them. */
#ifndef WSN_HANDOVER_H
#define WSN_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers/user_map.h"

#define HANDOVER_TICK_MS 1           /* re-check of waiting and paused hand-overs */
#define HANDOVER_WAIT_MS 10000u      /* committed_seq must reach S within this: else 1013 */

struct worker;
struct client;
struct event;
typedef struct handover handover;   /* one session's hand-over (handover.c) */

typedef struct {
    user_map by_user;        /* user → its session's hand-over */
    handover *busy;          /* waiting, replaying, releasing, or dead (freed by the tick) */
    handover *filtering;     /* replayed: kept until the queue has been read empty */
    struct event *tick_ev;   /* every HANDOVER_TICK_MS while busy is not empty */
    bool ticking;
    bool store_failed;       /* the last store_open failed (at store_retry_at) */
    uint32_t store_retry_at;
} handover_table;

/* What may reach a session during its hand-over, in arrival order. */
typedef enum {
    HANDOVER_LIVE = 1,       /* a NOTIFY datagram */
    HANDOVER_ROUTED,         /* cluster mode: a ROUTED datagram (seq: the cluster's) */
    HANDOVER_BROADCAST,      /* a BROADCAST datagram */
    HANDOVER_REPLY,          /* the answer to a client message (pong, error) */
} handover_kind;

typedef struct {
    uint8_t kind;            /* handover_kind */
    uint64_t seq;            /* LIVE: its history seq, 0 = not stored */
    int64_t id;
    uint64_t accepted_ns;
    const uint8_t *data;     /* the text frame's payload */
    uint32_t len;
} handover_item;

typedef enum {
    HANDOVER_SEND,           /* write it now */
    HANDOVER_HOLD,           /* keep it until the replay is written */
    HANDOVER_DROP,           /* the replay covers it */
} handover_verdict;

/* Pure: what to do with it when the replay up to max_seq is (replayed) or is
 * not yet written. A stored live notification (seq != 0) with seq <= max_seq
 * was read from the store, or was left out of the replay on purpose (sent
 * already, or before last_id); everything else goes after the replay. */
handover_verdict handover_decide(bool replayed, uint64_t max_seq, const handover_item *it);

/* The items held back during a replay: a FIFO of copies in one buffer. */
typedef struct {
    uint8_t *buf;
    size_t len;              /* bytes used, from 0 */
    size_t pos;              /* the oldest item not yet taken */
    size_t cap;
} handover_held;

/* Copy it in at the end. Returns 0; -1 when the held bytes (headers
 * included) would exceed max; -2 when memory ran out. */
int handover_held_push(handover_held *q, const handover_item *it, size_t max);
/* The oldest item (data points into q until the next push or free); false when empty. */
bool handover_held_peek(const handover_held *q, handover_item *it);
void handover_held_pop(handover_held *q);
size_t handover_held_bytes(const handover_held *q);
void handover_held_free(handover_held *q);

/* The worker's side of the history, after its event base exists: when
 * WSNOTIFY_STORE is set and --history-size > 0, open the store read-only (a
 * failure is logged and retried when a session needs it), the marks batch and
 * its flush event, the tick. Returns 0, or -1 (out of memory, no events). */
int handover_init(struct worker *w);

/* Every hand-over, the store, the marks (flushed first) and the events. */
void handover_free(struct worker *w);

/* The worker has history: sessions go through a hand-over. */
bool handover_enabled(const struct worker *w);

/* Start the hand-over of c, just claimed and upgraded (the 101 written).
 * last_id: the client's resume position, -1 for none. email: for the
 * `connected` message. It may complete at once, or close c (1013 when the
 * store is unavailable, or out of memory). */
void handover_start(struct client *c, const char *email, int64_t last_id);

/* Something for c (in_handover set) arrived: true when the hand-over took it
 * (held, or dropped as covered), false when the caller writes it now. May
 * close c with 1013 when too much is held. */
bool handover_take(struct client *c, const handover_item *it);

/* c is closing: its hand-over ends (freed by the next tick). */
void handover_forget(struct client *c);

/* The worker's queue was read until empty: the replayed sessions need no
 * more filtering (every datagram their replay covered has been read; in
 * cluster mode also once their barrier came, see handover_cluster.c). */
void handover_queue_drained(struct worker *w);

/* The worker's 1-second tick: filtering sessions whose wait is over end. */
void handover_sweep(struct worker *w);

/* Cluster mode: a QMSG_SIGNAL (queue_signal kind) for (user, generation). */
void handover_signal(struct worker *w, int64_t user, uint32_t generation, int kind);

#endif
