/* handover-t.h — one session's hand-over (handover.h), shared by the two
 * files that drive it: handover.c (the table, the held items, the store of a
 * single node) and handover_cluster.c (the claim and the replay from Redis in
 * cluster mode). Nothing else includes it. */
#ifndef WSN_HANDOVER_T_H
#define WSN_HANDOVER_T_H

#include <stdbool.h>
#include <stdint.h>

#include "workers/handover.h"
#include "workers/user_map.h"

struct client;
struct worker;

typedef enum {
    ST_FINDING = 0,   /* where does last_id's replay start? `connected` not written yet */
    ST_CLAIMING,      /* cluster: the CLAIM is out; nothing written yet */
    ST_WAITING,       /* cluster: claimed; waiting for this node's commits, marks, a release */
    ST_REPLAYING,     /* `connected` written; the history goes out in passes and chunks */
    ST_RELEASING,     /* the replay is written; the held items go out */
    ST_FILTERING,     /* done; live datagrams the replay covered are still dropped */
    ST_DEAD,          /* its client closed; freed by the next tick (once no request is out) */
} handover_state;

struct handover {
    handover *prev;
    handover *next;
    struct client *c;     /* NULL once dead */
    int64_t user;
    uint64_t max_seq;     /* S: accepted_seq read right after the claim (cluster: the
                           * replay's snapshot, in the cluster's seqs) */
    uint64_t floor_seq;   /* entries up to this seq are written (or before last_id) */
    uint64_t done_upto;   /* a replay pass up to this seq is complete */
    int64_t last_id;      /* the client's resume position, -1: none (never-sent replay) */
    int64_t after_id;     /* where the next chunk's AFTER read starts */
    uint32_t started;     /* loop.now at the claim */
    uint8_t state;
    bool paused;          /* a pass stopped where the client's output was full */
    handover_held held;
    /* Never-sent replay only: marks datagrams of other slots queued before
     * the claim and not yet committed (slot, number), SENT marks among them. */
    struct { uint16_t slot; uint64_t number; } *marks_wait;
    uint16_t n_marks_wait;
    /* Cluster mode (handover_cluster.c). */
    bool inflight;        /* a CLAIM or REPLAY is out: freed only once it is answered */
    bool snapshot_taken;  /* the first REPLAY chunk came back: max_seq is set */
    bool await_release;   /* never-sent replay after an eviction elsewhere: its marks first */
    bool barrier_seen;    /* every routed notification older than the replay has arrived */
    uint32_t generation;
    uint64_t local_seq;   /* this node's accepted_seq after the claim: committed first */
    uint32_t claimed_at;  /* loop.now of the CLAIM's answer */
    uint32_t replayed_at; /* loop.now when the replay was written */
    user_map ids;         /* ids the replay wrote (values: non-NULL) */
    char email[];         /* for `connected` */
};

/* handover.c's steps that handover_cluster.c uses too. */
void handover_fail(handover *h, const char *why);
bool handover_output_full(const struct worker *w, const struct client *c);
uint64_t handover_committed(const struct worker *w);
bool handover_marks_committed(const struct worker *w, handover *h);
void handover_advance(struct worker *w, handover *h);
void handover_arm_tick(struct worker *w);

/* handover_cluster.c: the first step of a session's hand-over (the CLAIM). */
void handover_cluster_start(struct worker *w, handover *h);
/* Take h through CLAIMING, WAITING and REPLAYING as far as it can go now;
 * true once the replay is written (h is RELEASING). */
bool handover_cluster_step(struct worker *w, handover *h);
/* What to do with an item arriving for h, cluster rules: held until the
 * replay is written and released, then dropped when covered. */
handover_verdict handover_cluster_verdict(const handover *h, const handover_item *it);
/* The written replay covers it: a routed one with a seq up to the snapshot,
 * or one of this node's whose id the replay wrote. */
bool handover_cluster_covered(const handover *h, const handover_item *it);
/* Filtering may end: the barrier came, or will not (no replay, or its wait is over). */
bool handover_cluster_filter_done(const struct worker *w, const handover *h);

#endif
