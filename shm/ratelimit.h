/* ratelimit.h — rate limits: the per-user connection-attempt limiter that
 * lives in the shared region (every worker counts into the same windows, so a
 * user's limit holds whichever worker each attempt lands on), and the
 * per-connection message limiter a worker keeps in struct conn.
 *
 * Both use the same sliding-window approximation: counts are kept for fixed
 * windows, and an event at a fraction f into the current window sees
 *
 *     estimate = floor(previous window's count * (1 - f)) + current window's count
 *
 * and is allowed when estimate + 1 <= limit. A burst is cut off at exactly
 * `limit`, and a steady rate just under the limit always passes. Unlike a
 * plain fixed window, a client cannot get `limit` at the end of one window and
 * `limit` more at the start of the next (the previous window's events still
 * weigh, fading out over the current one). It assumes the previous window's
 * events were spread evenly: with all of them at its very end, up to nearly
 * 2 * limit can fit in one window length at worst.
 *
 * The shared limiter counts every attempt, allowed or refused, so a client
 * retrying faster than the limit stays refused until it slows down.
 *
 * Shared table: fixed size (from --max-connections), 2-way set-associative,
 * one 64-bit word per user (20-bit user tag, 20-bit minute number, two 12-bit
 * counts) updated with compare-and-swap: lock-free, so a process killed at any
 * instant leaves each word either before or after its update and nothing to
 * repair. It is lossy on purpose: when both ways of a set are in use by other
 * users, the staler one is evicted (its user's count restarts: more lenient,
 * never stricter). Two users share a count only if they agree on set and tag,
 * about one pair in 2^37 at the default size. */
#ifndef WSN_RATELIMIT_H
#define WSN_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_CONNECT_WINDOW_MS 60000u  /* per-user connection attempts: a minute */
#define RATELIMIT_MESSAGE_WINDOW_MS 1000u   /* per-connection messages: a second */
#define RATELIMIT_MAX_CONNECTS 1000u        /* largest per-minute limit the table can count */
#define RATELIMIT_MAX_MESSAGES 10000u       /* largest per-second limit a connection counts */

typedef struct ratelimit ratelimit;

typedef struct {
    bool allowed;
    uint32_t attempts;        /* the estimate, this attempt included */
    uint32_t retry_after_ms;  /* refused: how long until an attempt would be allowed */
} ratelimit_verdict;

/* Bytes for a table sized for this directory capacity (1..2^24). 0 if invalid. */
size_t ratelimit_size(uint32_t capacity);

/* Format mem (ratelimit_size bytes, zeroed, shared mapping). Returns 0 or -1. */
int ratelimit_init(void *mem, uint32_t capacity);

/* The limiter stored at mem, formatted by ratelimit_init in any process. */
ratelimit *ratelimit_attach(void *mem);

/* Count one attempt by user at now_ms (ratelimit_clock_ms) against `limit`
 * attempts per minute; limit 0 allows everything and counts nothing. */
ratelimit_verdict ratelimit_hit(ratelimit *rl, int64_t user, uint32_t limit, uint64_t now_ms);

/* Milliseconds of CLOCK_MONOTONIC: the same clock in every process. */
uint64_t ratelimit_clock_ms(void);

/* The window arithmetic, shared by both limiters: `prev` and `cur` counts,
 * `elapsed` ms into the current window of `window` ms. Allows: may one more
 * event happen now? Wait: ms until it may, with no events in between. */
bool ratelimit_window_allows(uint32_t prev, uint32_t cur, uint32_t elapsed, uint32_t window,
                             uint32_t limit);
uint32_t ratelimit_window_wait(uint32_t prev, uint32_t cur, uint32_t elapsed, uint32_t window,
                               uint32_t limit);

/* Per-connection limiter, 8 bytes, in the owner's wrapping millisecond clock.
 * All zero is a valid fresh state. */
typedef struct {
    uint32_t start;   /* the current window began here */
    uint16_t prev;
    uint16_t cur;
} ratelimit_local;

/* Count one event at now; false when it exceeds `limit` per `window` ms
 * (limit 0: always true). */
bool ratelimit_local_hit(ratelimit_local *s, uint32_t limit, uint32_t window, uint32_t now);

#endif
