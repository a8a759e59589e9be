/* redis_scripts.h — the cluster's data in Redis (README "Cluster"): key and
 * channel names, the Lua scripts that keep each step atomic, and the
 * messages nodes publish to each other. Master and workers share them.
 *
 * Keys (prefix wsn:): o:{user} the user's holder "INSTANCE|GENERATION";
 * live:{instance} a node's liveness (its --node-id, expires unless refreshed);
 * seq the history's order; id the id counter; h:{user} the history (sorted
 * set id → seq); d:{user} its entries (hash: {id} the JSON, {id}:m "seq
 * accepted_ms push sender", {id}:s "2" sent or "3 ACKED_MS" acked).
 * Channels: n:{instance} everything for one node; bc broadcasts. */
#ifndef WSN_REDIS_SCRIPTS_H
#define WSN_REDIS_SCRIPTS_H

#include <stddef.h>

typedef enum {
    RSCRIPT_APPEND = 0,  /* store + route a batch of notifications */
    RSCRIPT_MARK,        /* SENT/ACKED marks, acks published to their sender */
    RSCRIPT_RELEASE,     /* compare-and-delete holders */
    RSCRIPT_ANNOUNCE,    /* re-register held users after a reconnect */
    RSCRIPT_CLAIM,       /* a new connection becomes its user's holder */
    RSCRIPT_REPLAY,      /* one chunk of a user's history */
    RSCRIPT_STATUS,      /* one notification's state */
    RSCRIPT_IDS,         /* lease a block of ids */
    RSCRIPT_COUNT
} redis_script;

#define REDIS_SHA_HEX 40

/* The script's Lua source. */
const char *redis_script_source(redis_script s);

/* Its SHA-1 in hex, for EVALSHA (callers keep it: computed on each call). */
void redis_script_sha(redis_script s, char out[REDIS_SHA_HEX + 1]);

/* Per item of APPEND: fields after the 4 common arguments. */
#define RAPPEND_FIELDS 8
/* APPEND results, 4 integers per item: status, seq, route, generation. */
enum { RAPPEND_STORED = 1, RAPPEND_DUPLICATE = 2, RAPPEND_NOT_STORED = 3 };
enum {
    RROUTE_NONE = 0,     /* not asked, or nobody holds the user */
    RROUTE_SENT = 1,     /* published to the holder's node, which is subscribed */
    RROUTE_UNREACHABLE,  /* the holder's node is dead or not subscribed */
    RROUTE_LOCAL,        /* the holder is on this node (generation given) */
};
/* What APPEND is asked to route (its route argument). */
enum { RASK_NONE = 0, RASK_REMOTE = 1, RASK_ANY = 2 };

/* MARK results, one per mark. */
enum { RMARK_MISSING = 0, RMARK_MOVED = 1, RMARK_UNCHANGED = 2, RMARK_ACKED_HERE = 3 };

#define REDIS_LIVE_TTL_MS 3000      /* a node's liveness key lives this long unrefreshed */
#define REDIS_LIVE_REFRESH_MS 1000
#define REDIS_ID_BLOCK 10000        /* ids leased at once */

/* Names: out must hold REDIS_NAME_MAX. */
#define REDIS_NAME_MAX 96
void redis_node_channel(char *out, const char *instance);   /* wsn:n:{instance} */
void redis_live_key(char *out, const char *instance);       /* wsn:live:{instance} */
#define REDIS_BROADCAST_CHANNEL "wsn:bc"

#endif
