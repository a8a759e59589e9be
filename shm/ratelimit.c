/* ratelimit.c — the rate limiters of ratelimit.h: the sliding-window
 * arithmetic, the shared per-user table, and the per-connection counter.
 *
 * Table word (64 bits), all zero = empty:
 *
 *     63      44 43      24 23      12 11       0
 *     | tag:20   | minute:20 | prev:12  | cur:12   |
 *
 * `minute` is CLOCK_MONOTONIC minutes modulo 2^20 (about two years, so only a
 * word untouched for exactly that long could be misread); `prev` counts that
 * minute's predecessor, `cur` the minute itself. Every update is one CAS of
 * one word, computed from the word it replaces. */
#include "shm/ratelimit.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>

#include "shm/hash.h"
#include "src/common/config.h"

#define RATELIMIT_MAGIC UINT64_C(0x57534e524c4d0001) /* "WSNRLM" 1 */
#define WAYS 2u
#define MIN_SETS 1024u
#define HEADER_ALIGN 64u

#define TAG_BITS 20u
#define MINUTE_BITS 20u
#define COUNT_BITS 12u
#define TAG_SHIFT (MINUTE_BITS + 2 * COUNT_BITS)
#define MINUTE_SHIFT (2 * COUNT_BITS)
#define MINUTE_MASK ((UINT32_C(1) << MINUTE_BITS) - 1)
#define COUNT_MAX ((UINT32_C(1) << COUNT_BITS) - 1)

_Static_assert(TAG_BITS + MINUTE_BITS + 2 * COUNT_BITS == 64, "a table word is 64 bits");
_Static_assert(RATELIMIT_MAX_CONNECTS < COUNT_MAX, "counts must go past the largest limit");
_Static_assert(RATELIMIT_MAX_MESSAGES < UINT16_MAX, "counts must go past the largest limit");
/* --max-connects-per-minute and --max-messages-per-second accept exactly these. */
_Static_assert(RATELIMIT_MAX_CONNECTS == CONFIG_MAX_CONNECTS_PER_MINUTE, "flag range");
_Static_assert(RATELIMIT_MAX_MESSAGES == CONFIG_MAX_MESSAGES_PER_SECOND, "flag range");
/* Shared between processes, so only address-free (lock-free) atomics will do. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

struct ratelimit {
    uint64_t magic;
    uint32_t sets;        /* power of two */
    uint32_t reserved;
};

typedef struct {
    uint32_t tag;
    uint32_t minute;
    uint32_t prev;
    uint32_t cur;
} rl_state;

/* ---- window arithmetic ------------------------------------------------ */

bool ratelimit_window_allows(uint32_t prev, uint32_t cur, uint32_t elapsed, uint32_t window,
                             uint32_t limit)
{
    if (limit == 0)
        return true;
    if (elapsed > window)
        elapsed = window;
    /* floor(prev * what is left of the window) + cur + 1 <= limit */
    uint64_t carried = (uint64_t)prev * (window - elapsed) / window;
    return carried + cur + 1 <= limit;
}

uint32_t ratelimit_window_wait(uint32_t prev, uint32_t cur, uint32_t elapsed, uint32_t window,
                               uint32_t limit)
{
    if (ratelimit_window_allows(prev, cur, elapsed, window, limit))
        return 0;
    if (elapsed > window)
        elapsed = window;
    uint32_t rest = window - elapsed;
    if (cur + 1 <= limit) {
        /* Still in this window, once floor(prev * left / window) <= limit - cur - 1,
         * i.e. prev * left < (limit - cur) * window. prev > 0 here, or the event
         * would have been allowed. */
        uint64_t left = ((uint64_t)(limit - cur) * window - 1) / prev;
        return rest - (uint32_t)left;
    }
    /* In the next window, once floor(cur * left / window) <= limit - 1: cur is
     * then the previous count and nothing is current. */
    uint64_t left = ((uint64_t)limit * window - 1) / cur;
    return rest + window - (uint32_t)left;
}

/* ---- shared table ----------------------------------------------------- */

static size_t header_bytes(void)
{
    return (sizeof(struct ratelimit) + HEADER_ALIGN - 1) / HEADER_ALIGN * HEADER_ALIGN;
}

static uint32_t sets_for(uint32_t capacity)
{
    /* At least two table words per directory entry. */
    uint32_t sets = MIN_SETS;
    while ((uint64_t)sets * WAYS < 2 * (uint64_t)capacity)
        sets <<= 1;
    return sets;
}

static _Atomic uint64_t *table_of(ratelimit *rl)
{
    return (_Atomic uint64_t *)(void *)((char *)rl + header_bytes());
}

size_t ratelimit_size(uint32_t capacity)
{
    if (capacity == 0 || capacity > (UINT32_C(1) << 24))
        return 0;
    return header_bytes() + (size_t)sets_for(capacity) * WAYS * sizeof(uint64_t);
}

int ratelimit_init(void *mem, uint32_t capacity)
{
    if (mem == NULL || ratelimit_size(capacity) == 0) {
        errno = EINVAL;
        return -1;
    }
    struct ratelimit *rl = mem;
    rl->sets = sets_for(capacity);
    rl->magic = RATELIMIT_MAGIC;
    /* The table itself is the zeroed memory: every word empty. */
    return 0;
}

ratelimit *ratelimit_attach(void *mem)
{
    struct ratelimit *rl = mem;
    return rl != NULL && rl->magic == RATELIMIT_MAGIC ? rl : NULL;
}

uint64_t ratelimit_clock_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0 &&
        clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static rl_state word_decode(uint64_t w)
{
    return (rl_state){
        .tag = (uint32_t)(w >> TAG_SHIFT),
        .minute = (uint32_t)(w >> MINUTE_SHIFT) & MINUTE_MASK,
        .prev = (uint32_t)(w >> COUNT_BITS) & COUNT_MAX,
        .cur = (uint32_t)w & COUNT_MAX,
    };
}

static uint64_t word_encode(rl_state s)
{
    return (uint64_t)s.tag << TAG_SHIFT | (uint64_t)(s.minute & MINUTE_MASK) << MINUTE_SHIFT |
           (uint64_t)s.prev << COUNT_BITS | s.cur;
}

typedef enum { AGE_CURRENT, AGE_PREVIOUS, AGE_EXPIRED, AGE_AHEAD } rl_age;

/* Where a word's minute stands relative to ours. AHEAD: another process read
 * the clock a moment later and already moved the word into the next minute. */
static rl_age word_age(uint32_t word_minute, uint32_t minute)
{
    uint32_t behind = (minute - word_minute) & MINUTE_MASK;
    if (behind == 0)
        return AGE_CURRENT;
    if (behind == 1)
        return AGE_PREVIOUS;
    if (behind > MINUTE_MASK - 2)
        return AGE_AHEAD;
    return AGE_EXPIRED;
}

/* The word's counts seen from (minute, *elapsed): rolled forward into our
 * minute, or, if the word is already ahead, taken as of the start of its minute. */
static rl_state word_roll(rl_state s, uint32_t minute, uint32_t *elapsed)
{
    switch (word_age(s.minute, minute)) {
    case AGE_CURRENT:
        break;
    case AGE_PREVIOUS:
        s.prev = s.cur;
        s.cur = 0;
        s.minute = minute;
        break;
    case AGE_AHEAD:
        *elapsed = 0;
        break;
    case AGE_EXPIRED:
        s.prev = 0;
        s.cur = 0;
        s.minute = minute;
        break;
    }
    return s;
}

/* How much a word still weighs in the current limits: 0 = free to reuse. */
static uint32_t word_weight(uint64_t w, uint32_t minute)
{
    rl_state s = word_decode(w);
    switch (word_age(s.minute, minute)) {
    case AGE_CURRENT:
    case AGE_AHEAD:
        return 2 * (s.prev + s.cur) + 1;   /* +1: in use now, beats any previous-minute word */
    case AGE_PREVIOUS:
        return s.cur != 0;
    case AGE_EXPIRED:
        break;
    }
    return 0;
}

/* The way holding tag, else the one to evict (decided from the snapshot only,
 * so processes racing to insert the same user pick the same word). */
static unsigned choose_way(const uint64_t *snap, uint32_t tag, uint32_t minute, bool *found)
{
    for (unsigned i = 0; i < WAYS; i++) {
        if (word_decode(snap[i]).tag == tag) {
            *found = true;
            return i;
        }
    }
    *found = false;
    unsigned victim = 0;
    for (unsigned i = 1; i < WAYS; i++)
        if (word_weight(snap[i], minute) < word_weight(snap[victim], minute))
            victim = i;
    return victim;
}

ratelimit_verdict ratelimit_hit(ratelimit *rl, int64_t user, uint32_t limit, uint64_t now_ms)
{
    ratelimit_verdict v = {.allowed = true, .attempts = 0, .retry_after_ms = 0};
    if (limit == 0)
        return v;
    uint64_t h = mix64((uint64_t)user);
    _Atomic uint64_t *set = table_of(rl) + (h & (rl->sets - 1)) * WAYS;
    uint32_t tag = (uint32_t)(h >> TAG_SHIFT);
    uint32_t minute = (uint32_t)(now_ms / RATELIMIT_CONNECT_WINDOW_MS) & MINUTE_MASK;
    for (;;) {
        uint64_t snap[WAYS];
        for (unsigned i = 0; i < WAYS; i++)
            snap[i] = atomic_load_explicit(&set[i], memory_order_acquire);
        bool found = false;
        unsigned way = choose_way(snap, tag, minute, &found);
        uint32_t elapsed = (uint32_t)(now_ms % RATELIMIT_CONNECT_WINDOW_MS);
        rl_state s = found ? word_roll(word_decode(snap[way]), minute, &elapsed)
                           : (rl_state){.tag = tag, .minute = minute, .prev = 0, .cur = 0};
        v.allowed = ratelimit_window_allows(s.prev, s.cur, elapsed,
                                            RATELIMIT_CONNECT_WINDOW_MS, limit);
        if (s.cur < COUNT_MAX)
            s.cur++;
        if (!atomic_compare_exchange_weak_explicit(&set[way], &snap[way], word_encode(s),
                                                   memory_order_acq_rel, memory_order_acquire))
            continue;
        v.attempts = (uint32_t)((uint64_t)s.prev * (RATELIMIT_CONNECT_WINDOW_MS - elapsed) /
                                RATELIMIT_CONNECT_WINDOW_MS) +
                     s.cur;
        if (!v.allowed)
            v.retry_after_ms = ratelimit_window_wait(s.prev, s.cur, elapsed,
                                                     RATELIMIT_CONNECT_WINDOW_MS, limit);
        return v;
    }
}

/* ---- per-connection counter ------------------------------------------ */

bool ratelimit_local_hit(ratelimit_local *s, uint32_t limit, uint32_t window, uint32_t now)
{
    if (limit == 0)
        return true;
    uint32_t elapsed = now - s->start;   /* wrapping clock: unsigned difference */
    if ((s->prev == 0 && s->cur == 0) || elapsed >= 2 * window) {
        s->start = now;
        s->prev = 0;
        s->cur = 0;
        elapsed = 0;
    } else if (elapsed >= window) {
        s->start += window;   /* keep windows aligned to the first one */
        s->prev = s->cur;
        s->cur = 0;
        elapsed -= window;
    }
    bool allowed = ratelimit_window_allows(s->prev, s->cur, elapsed, window, limit);
    if (s->cur < UINT16_MAX)
        s->cur++;
    return allowed;
}
