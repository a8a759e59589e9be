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
    NOTIFY_OUTCOMES
} notify_outcome;

#define COUNTERS_LATENCY_BOUNDS 11                            /* finite histogram bounds */
#define COUNTERS_LATENCY_BUCKETS (COUNTERS_LATENCY_BOUNDS + 1) /* + everything above them */
#define COUNTERS_AUTH_REASONS 16   /* room for every auth_result (checked in counters.c) */

#endif
