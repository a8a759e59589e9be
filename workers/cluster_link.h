/* cluster_link.h — a worker's own Redis connection in cluster mode (README
 * "Cluster"): hiredis's asynchronous client on the worker's event loop, for
 * the two steps of a new session that need an answer back (CLAIM: it becomes
 * its user's holder everywhere; REPLAY: its history, in chunks) and for
 * re-announcing every session it holds after each (re)connect, so an emptied
 * or restarted Redis learns them again. It reconnects by itself with a
 * doubling back-off (100 ms .. 1 s); while it is down new upgrades get 503.
 *
 * Results are handed to the callback as plain structs, valid during the call;
 * a failed call (link lost, Redis error) comes back with ok == false. Every
 * callback is called exactly once, also when the link stops. */
#ifndef WSN_CLUSTER_LINK_H
#define WSN_CLUSTER_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
typedef struct cluster_link cluster_link;

#define CLUSTER_LINK_CONNECT_MS 2000   /* a connect (and its setup) that takes longer is retried */
#define CLUSTER_REPLAY_ENTRIES 64      /* entries a REPLAY chunk scans at most */
#define CLUSTER_REPLAY_BYTES (64 * 1024) /* ... and the JSON bytes it returns, about */

typedef struct {
    bool ok;
    bool superseded;         /* a newer connection of this node holds the user already */
    uint64_t seq;            /* the history's seq at the claim */
    bool evicted_elsewhere;  /* the previous holder was on another live node, which was told */
} cluster_claim_result;

typedef struct {
    int64_t id;
    uint64_t seq;
    const char *json;
    size_t len;
} cluster_replay_entry;

typedef struct {
    bool ok;
    uint64_t snapshot;       /* S: the chunks cover seqs up to it */
    int recovered;           /* first chunk of a resume: 1 / 0; else -1 */
    bool more;
    uint64_t last_seq;       /* the next chunk starts after it */
    size_t n;
    const cluster_replay_entry *entries;
} cluster_replay_result;

typedef enum { CLUSTER_REPLAY_AFTER, CLUSTER_REPLAY_UNSENT } cluster_replay_mode;

typedef struct {
    int64_t user;
    uint32_t generation;
    cluster_replay_mode mode;
    int64_t after_id;        /* first chunk of AFTER: the client's last_id (0: from the start) */
    uint64_t after_seq;      /* later chunks */
    uint64_t upto;           /* later chunks: the snapshot; 0 = first chunk */
} cluster_replay_args;

typedef void (*cluster_claim_cb)(struct worker *w, void *arg, const cluster_claim_result *r);
typedef void (*cluster_replay_cb)(struct worker *w, void *arg, const cluster_replay_result *r);

/* With --redis: parse the URL (the master has checked it), start
 * connecting. Returns 0, or -1 (out of memory). Without: 0, no link. */
int cluster_link_start(struct worker *w);

/* Close the connection; pending callbacks are called (ok false). */
void cluster_link_stop(struct worker *w);

/* Cluster mode. */
bool cluster_link_enabled(const struct worker *w);

/* Connected and set up: claims can be made. */
bool cluster_link_up(const struct worker *w);

/* Returns 0 (cb will be called), or -1 (not sent, cb not called). */
int cluster_link_claim(struct worker *w, int64_t user, uint32_t generation, cluster_claim_cb cb,
                       void *arg);
int cluster_link_replay(struct worker *w, const cluster_replay_args *a, cluster_replay_cb cb,
                        void *arg);

#endif
