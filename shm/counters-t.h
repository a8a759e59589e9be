/* counters-t.h — the shapes of the shared counters that region_slot and
 * region_header hold: the notification outcomes and the latency buckets. Their
 * labels and the helpers that feed them are in counters.h. */
#ifndef WSN_COUNTERS_T_H
#define WSN_COUNTERS_T_H

/* Outcomes of SendNotification, counted by the master's router. */
typedef enum {
    NOTIFY_DELIVERED = 0,   /* queued to a live holder */
    NOTIFY_OFFLINE,         /* user not connected */
    NOTIFY_DROPPED,         /* holder's queue full or gone */
    NOTIFY_INVALID,         /* INVALID_ARGUMENT, undecodable requests included */
    NOTIFY_NOT_PUSHED,      /* send_push false */
    NOTIFY_UNAVAILABLE,     /* refused with UNAVAILABLE: the server is stopping */
    NOTIFY_INTERNAL,        /* INTERNAL: the server could not handle it */
    NOTIFY_DUPLICATE,       /* a retry of a caller id still in the history: not sent again */
    NOTIFY_EXHAUSTED,       /* RESOURCE_EXHAUSTED: too many calls waiting for an ack */
    NOTIFY_UNAUTHENTICATED, /* UNAUTHENTICATED: no accepted bearer token (one per call) */
    NOTIFY_OUTCOMES
} notify_outcome;

/* What happened to the history, counted by the master (region_header.history). */
typedef enum {
    HISTORY_STORED = 0,     /* notifications committed to the store */
    HISTORY_DUPLICATES,     /* retries of a caller id still in the history */
    HISTORY_TRIMMED,        /* dropped past --history-size */
    HISTORY_EXPIRED,        /* dropped past --history-ttl */
    HISTORY_EVICTED,        /* dropped, oldest first, because the store was full */
    HISTORY_COMMIT_FAILED,  /* batches the store could not commit */
    HISTORY_COUNTERS
} history_counter;

#define COUNTERS_LATENCY_BOUNDS 11                            /* finite histogram bounds */
#define COUNTERS_LATENCY_BUCKETS (COUNTERS_LATENCY_BOUNDS + 1) /* + everything above them */
#define COUNTERS_AUTH_REASONS 16   /* room for every auth_result (checked in counters.c) */

#endif
