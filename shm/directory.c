/* directory.c — the shared-memory user directory (API in directory.h).
 *
 * Region layout, position independent (offsets only, no pointers), so every
 * process may map it at its own address:
 *
 *   struct directory   geometry, table switch and rebuild sequence, robust
 *                      process-shared mutex, generation counter, per-slot
 *                      epochs and epoch-tagged live counts
 *   table 0, table 1   open-addressing hash tables (linear probing) of 16-byte
 *                      entries: user, and the holder packed into one word;
 *                      one is active, the other is scratch for rebuilds
 *
 * Who may wait for whom. Writers (claim, release, rebuild, repair) serialise
 * on the robust mutex, so a stopped writer still stalls other writers. Readers
 * (lookup, count) and directory_slot_bump take no lock at all, so it cannot
 * stall the master's lookups or its reaping. Readers therefore see writers
 * mid-update, and the design makes every state they can see a correct answer:
 *   - every step of an update is one atomic store (a holder is one word:
 *     generation 32 | slot 8 | epoch 24 bits), so nothing is ever torn and no
 *     undo record is needed;
 *   - within one table's life an entry's user only goes 0 → U → -U → U …
 *     (-U is U's tombstone; deletion never moves entries, and only U itself
 *     may reuse its tombstone). So a reader probing for U cannot miss an entry
 *     that stays present, and a holder read at U's position is always one
 *     written for U (reusing other users' tombstones would break that: a
 *     reader could pair U with another user's holder);
 *   - U or -U occurs at most once per table, at the first of {U, -U, empty}
 *     on U's probe run: a reader stops there, a writer updates it there;
 *   - an entry is filled holder first, user last (release), and a reader
 *     re-reads the user after the holder: it never returns the holder of a
 *     re-claim whose writer has not published it (and may die before it);
 *   - a rebuild (repair, sweep of tombstones and stale entries at 3/4
 *     physical load: one O(table) rebuild per table/4 new users at most, or
 *     the epoch-wrap sweep) writes only the inactive table and switches
 *     tables with one store. rebuild_seq is odd while a rebuild
 *     runs; a reader that sees it advance by 2 or more during its scan may
 *     have scanned a table that has since become a rebuild target, and
 *     retries. A stopped or killed rebuild never touched the active table, so
 *     readers are unaffected by it.
 * Crash safety for writers: after EOWNERDEAD the next locker rebuilds, which
 * copies exactly the live entries (a half-done insert is an empty entry with
 * a holder, or a tombstone with U's new holder: both absent) and recounts
 * used and live[]; every step of it can be interrupted and redone.
 *
 * Counts. live[s] is (epoch tag << 32 | count) of the live entries of slot s,
 * written only under the mutex; a tag other than the slot's current epoch
 * reads as 0. So a bump (one CAS on the epoch) zeroes the slot's count at
 * once without the lock, instead of resetting it under a timed lock or
 * flagging a recount: directory_count is right the moment the bump returns,
 * even while a stopped writer holds the mutex. A claim that checked its epoch
 * just before a bump completes with the old tag, which still reads as 0.
 *
 * Epochs are 24 bits and compared for equality, so after 2^24-1 bumps of a
 * slot an old entry would look live again. A bump to 2^23 or a wrap to 1 sets
 * sweep_due, and the next locker rebuilds, dropping every entry and tag of an
 * older epoch: old entries are gone provided some process takes the lock
 * within 2^23 bumps of the slot (any claim or release does). */
#include "shm/directory.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shm/hash.h"

#define DIRECTORY_MAGIC UINT64_C(0x57534e4449520002) /* "WSNDIR" 2 */
#define DIRECTORY_MAX_CAPACITY (UINT32_C(1) << 24)
#define HEADER_ALIGN 64u
#define NO_POS UINT32_MAX

/* Holder word: generation 32 bits | slot 8 bits | epoch 24 bits. */
#define EPOCH_BITS 24
#define EPOCH_MASK ((UINT32_C(1) << EPOCH_BITS) - 1)
#define EPOCH_MAX EPOCH_MASK
#define EPOCH_SWEEP (UINT32_C(1) << (EPOCH_BITS - 1))
#define SLOT_MASK UINT32_C(0xff)

/* Scans a lookup may redo because rebuilds completed under it. Each retry
 * needs a whole rebuild (O(table), at most one per table/4 inserts, or one
 * per dead lock holder) to complete during one O(probe run) scan, so 64 in a
 * row cannot happen; if they ever did, the lookup reports absent (the
 * notification counts as offline) rather than wait on writers. */
#define LOOKUP_ATTEMPTS 64

_Static_assert(DIRECTORY_MAX_SLOTS - 1 <= SLOT_MASK, "a slot must fit the holder word");
/* Shared between processes, so only address-free (lock-free) atomics will do. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

typedef struct {
    /* 0 = empty (since the table was last rebuilt), U > 0 = present,
     * -U = U's tombstone. */
    _Atomic int64_t user;
    /* Packed dir_holder; 0 = none (generations are never 0). */
    _Atomic uint64_t holder;
} dir_entry;

_Static_assert(sizeof(dir_entry) == 16, "entries are two words");

struct directory {
    /* Written once by directory_init. */
    uint64_t magic;
    uint32_t capacity;
    uint32_t table_size;          /* power of two, >= 2 * capacity */
    uint64_t table_offset[2];     /* from the start of this header */

    /* Read by every lookup, written only by rebuilds: a line of their own. */
    _Alignas(64) _Atomic uint32_t active;  /* which table is in use */
    _Atomic uint64_t rebuild_seq; /* odd while a rebuild writes the inactive table */

    _Alignas(64) pthread_mutex_t lock;
    uint32_t used;                /* guarded by lock: non-empty entries (U or -U) */
    _Atomic uint32_t sweep_due;   /* set by a bump past an epoch boundary */
    _Atomic uint32_t next_generation;

    /* Lock-free: epoch[] is written by bumps, live[] under lock. */
    _Atomic uint32_t epoch[DIRECTORY_MAX_SLOTS];
    _Atomic uint64_t live[DIRECTORY_MAX_SLOTS];
};

/* ---- small helpers ---------------------------------------------------- */

#ifdef DIRECTORY_CRASH_POINTS
/* Test builds only: the test that compiles this file in defines the function
 * to SIGKILL (or SIGSTOP) itself at the n-th point, and so proves that every
 * intermediate state an update can leave behind is repaired, and readable.
 * Read points are where a test pauses a lookup to run writers under it. */
void directory_crash_point(void);
void directory_read_point(void);
#define CRASH_POINT() directory_crash_point()
#define READ_POINT() directory_read_point()
#else
#define CRASH_POINT() ((void)0)
#define READ_POINT() ((void)0)
#endif

/* A process can die between any two instructions, and its successor sees
 * exactly the stores that ran before that point. Only the compiler could
 * reorder them; a signal fence forbids that and costs nothing at run time. */
static void order_stores(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    CRASH_POINT();
}

static _Noreturn void die(const char *what, int rc)
{
    fprintf(stderr, "wsnotify: directory: %s: %s; aborting\n", what, strerror(rc));
    abort();
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static size_t page_size(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)page : 4096;
}

static size_t header_bytes(void)
{
    return round_up(sizeof(struct directory), HEADER_ALIGN);
}

static uint32_t table_size_for(uint32_t capacity)
{
    uint32_t size = 1;
    while (size < 2 * capacity)
        size <<= 1;
    return size;
}

static bool slot_valid(int slot)
{
    return slot >= 0 && slot < DIRECTORY_MAX_SLOTS;
}

static uint32_t current_epoch(const directory *d, int slot)
{
    return atomic_load_explicit(&d->epoch[slot], memory_order_acquire);
}

static uint64_t pack(const dir_holder *h)
{
    return (uint64_t)h->generation << 32 | ((uint64_t)h->slot & SLOT_MASK) << EPOCH_BITS |
           (h->epoch & EPOCH_MASK);
}

/* Any word unpacks to an in-range slot, so even garbage read from a table
 * that a rebuild is rewriting indexes epoch[] safely. */
static dir_holder unpack(uint64_t w)
{
    return (dir_holder){ .slot = (int32_t)((w >> EPOCH_BITS) & SLOT_MASK),
                         .epoch = (uint32_t)w & EPOCH_MASK,
                         .generation = (uint32_t)(w >> 32) };
}

static bool holder_live(const directory *d, const dir_holder *h)
{
    return h->generation != 0 && h->epoch == current_epoch(d, h->slot);
}

/* ---- live counts, tagged with the epoch they count ----------------------- */

static uint64_t tagged(uint32_t epoch, uint32_t n)
{
    return (uint64_t)epoch << 32 | n;
}

static uint32_t live_of(const directory *d, int slot)
{
    /* Tag before epoch: a bump in between then reads as 0, its true count. */
    uint64_t v = atomic_load_explicit(&d->live[slot], memory_order_acquire);
    return (uint32_t)(v >> 32) == current_epoch(d, slot) ? (uint32_t)v : 0;
}

/* Under the lock. A count tagged with another epoch counts nothing any more,
 * so the first entry of a new epoch starts it again at 1. */
static void live_add(directory *d, int slot, uint32_t epoch)
{
    uint64_t v = atomic_load_explicit(&d->live[slot], memory_order_relaxed);
    uint32_t n = (uint32_t)(v >> 32) == epoch ? (uint32_t)v + 1 : 1;
    atomic_store_explicit(&d->live[slot], tagged(epoch, n), memory_order_release);
}

static void live_sub(directory *d, int slot, uint32_t epoch)
{
    uint64_t v = atomic_load_explicit(&d->live[slot], memory_order_relaxed);
    if ((uint32_t)(v >> 32) == epoch && (uint32_t)v > 0)
        atomic_store_explicit(&d->live[slot], v - 1, memory_order_release);
}

/* ---- the hash table ----------------------------------------------------- */

typedef enum { AT_EMPTY, AT_USER, AT_TOMBSTONE } probe_hit;

static dir_entry *table_at(const directory *d, uint32_t which)
{
    return (dir_entry *)((unsigned char *)d + d->table_offset[which & 1]);
}

static dir_entry *active_table(const directory *d)
{
    return table_at(d, atomic_load_explicit(&d->active, memory_order_relaxed));
}

static int64_t entry_user(const dir_entry *e)
{
    return atomic_load_explicit(&e->user, memory_order_relaxed);
}

static uint64_t entry_word(const dir_entry *e)
{
    return atomic_load_explicit(&e->holder, memory_order_relaxed);
}

static uint32_t home_of(uint32_t mask, int64_t user)
{
    return (uint32_t)mix64((uint64_t)user) & mask;
}

/* Writers only: where user is (AT_USER), its tombstone (AT_TOMBSTONE), or
 * the empty entry ending its probe run (AT_EMPTY); NO_POS only if t has no
 * empty entry, which the load limit rules out. Other users' tombstones are
 * passed over like other users. */
static uint32_t probe(const dir_entry *t, uint32_t size, int64_t user, probe_hit *hit)
{
    uint32_t mask = size - 1;
    uint32_t pos = home_of(mask, user);
    for (uint32_t n = 0; n < size; n++, pos = (pos + 1) & mask) {
        int64_t u = entry_user(&t[pos]);
        if (u == user || u == -user || u == 0) {
            *hit = u == user ? AT_USER : u == 0 ? AT_EMPTY : AT_TOMBSTONE;
            return pos;
        }
    }
    *hit = AT_EMPTY;
    return NO_POS;
}

/* Fill an empty entry (or U's own tombstone). The holder goes first and the
 * user is published with release, so a reader that sees U sees its holder,
 * and a writer killed in between leaves the entry absent. */
static void fill_entry(dir_entry *e, int64_t user, uint64_t word)
{
    atomic_store_explicit(&e->holder, word, memory_order_release);
    order_stores();
    atomic_store_explicit(&e->user, user, memory_order_release);
    order_stores();
}

/* Copy the live entries of the active table into the other one and switch.
 * Drops tombstones and stale entries; recounts used and live[] from what it
 * kept, tagged with the epochs it judged liveness by. */
static void rebuild(directory *d)
{
    uint32_t from = atomic_load_explicit(&d->active, memory_order_relaxed) & 1;
    uint32_t to = from ^ 1;
    const dir_entry *src = table_at(d, from);
    dir_entry *dst = table_at(d, to);
    uint32_t size = d->table_size;
    uint32_t epoch[DIRECTORY_MAX_SLOTS];
    uint32_t live[DIRECTORY_MAX_SLOTS] = { 0 };
    uint32_t used = 0;

    /* One snapshot of the epochs: an entry bumped stale during the copy is
     * kept, but counted under its old tag, which reads as 0. */
    for (int s = 0; s < DIRECTORY_MAX_SLOTS; s++)
        epoch[s] = current_epoch(d, s);

    /* Odd from here on; after a rebuild killed while odd, a distinct odd
     * value, so that readers of its source see the counter move by 2. */
    uint64_t seq = atomic_load_explicit(&d->rebuild_seq, memory_order_relaxed);
    atomic_store_explicit(&d->rebuild_seq, seq + 1 + (seq & 1), memory_order_relaxed);
    /* A reader that sees any store below then sees the counter moved. */
    atomic_thread_fence(memory_order_release);
    order_stores();

    for (uint32_t i = 0; i < size; i++) {
        atomic_store_explicit(&dst[i].user, 0, memory_order_relaxed);
        atomic_store_explicit(&dst[i].holder, 0, memory_order_relaxed);
    }
    order_stores();
    for (uint32_t i = 0; i < size; i++) {
        int64_t user = entry_user(&src[i]);
        uint64_t word = entry_word(&src[i]);
        dir_holder h = unpack(word);
        if (user <= 0 || h.generation == 0 || h.epoch != epoch[h.slot])
            continue;
        probe_hit hit;
        uint32_t pos = probe(dst, size, user, &hit);
        /* Neither can happen: a user occurs once per table, and at most
         * capacity users (half the table) are live. */
        if (hit != AT_EMPTY || pos == NO_POS) {
            fprintf(stderr, "wsnotify: directory: rebuild: cannot place user %lld, dropped\n",
                    (long long)user);
            continue;
        }
        fill_entry(&dst[pos], user, word);
        used++;
        live[h.slot]++;
    }
    atomic_store_explicit(&d->active, to, memory_order_release);
    order_stores();
    atomic_store_explicit(&d->rebuild_seq,
                          atomic_load_explicit(&d->rebuild_seq, memory_order_relaxed) + 1,
                          memory_order_release);
    order_stores();
    d->used = used;
    for (int s = 0; s < DIRECTORY_MAX_SLOTS; s++)
        atomic_store_explicit(&d->live[s], tagged(epoch[s], live[s]), memory_order_release);
    order_stores();
}

/* The previous lock holder died mid-operation. Every state it can have left
 * is one atomic store short of before or after, so one rebuild repairs it (and
 * redoes a rebuild it was killed in). The rebuild can itself be interrupted. */
static void recover(directory *d)
{
    rebuild(d);
    fprintf(stderr,
            "wsnotify: directory: a process died holding the directory lock; "
            "table rebuilt with %u live entries\n",
            directory_count(d));
}

/* ---- locking -------------------------------------------------------------- */

/* ENOTRECOVERABLE (or any other error) would mean a holder released an
 * EOWNERDEAD mutex without making it consistent, which this file never does.
 * Going on without the lock would corrupt the table for every process, so
 * stop here; the supervisor respawns a dead worker. */
static void dir_lock(directory *d)
{
    int rc = pthread_mutex_lock(&d->lock);
    if (rc == EOWNERDEAD) {
        recover(d);
        rc = pthread_mutex_consistent(&d->lock);
        if (rc != 0)
            die("pthread_mutex_consistent", rc);
    } else if (rc != 0) {
        die("pthread_mutex_lock", rc);
    }
    CRASH_POINT();
    /* Cleared first: a kill during the sweep leaves EOWNERDEAD, whose repair
     * is the same rebuild. Loaded first: no write to a shared line per lock. */
    if (atomic_load_explicit(&d->sweep_due, memory_order_relaxed) != 0 &&
        atomic_exchange_explicit(&d->sweep_due, 0, memory_order_acq_rel) != 0)
        rebuild(d);
}

static void dir_unlock(directory *d)
{
    CRASH_POINT();
    int rc = pthread_mutex_unlock(&d->lock);
    if (rc != 0)
        die("pthread_mutex_unlock", rc);
}

/* ---- setup ---------------------------------------------------------------- */

size_t directory_size(uint32_t capacity)
{
    if (capacity == 0 || capacity > DIRECTORY_MAX_CAPACITY)
        return 0;
    size_t tables = 2 * (size_t)table_size_for(capacity) * sizeof(dir_entry);
    return round_up(header_bytes() + tables, page_size());
}

static int init_lock(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0)
        return -1;
    int rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(lock, &attr);
    int rc_destroy = pthread_mutexattr_destroy(&attr);
    return rc == 0 && rc_destroy == 0 ? 0 : -1;
}

int directory_init(void *mem, uint32_t capacity)
{
    if (mem == NULL || (uintptr_t)mem % HEADER_ALIGN != 0 || directory_size(capacity) == 0)
        return -1;
    directory *d = mem;
    memset(d, 0, sizeof *d);
    d->capacity = capacity;
    d->table_size = table_size_for(capacity);
    d->table_offset[0] = header_bytes();
    d->table_offset[1] = header_bytes() + (size_t)d->table_size * sizeof(dir_entry);
    if (init_lock(&d->lock) != 0)
        return -1;
    atomic_init(&d->active, 0);
    atomic_init(&d->rebuild_seq, 0);
    atomic_init(&d->sweep_due, 0);
    atomic_init(&d->next_generation, 1);
    /* Epochs start at 1 so that a zero-initialised holder never looks live. */
    for (int s = 0; s < DIRECTORY_MAX_SLOTS; s++) {
        atomic_init(&d->epoch[s], 1);
        atomic_init(&d->live[s], tagged(1, 0));
    }
    /* The tables are the caller's zeroed memory: empty as they are, and left
     * untouched so that a large directory costs no RAM until it fills.
     * Magic last: a region caught half-formatted is rejected by attach. */
    atomic_thread_fence(memory_order_release);
    d->magic = DIRECTORY_MAGIC;
    return 0;
}

directory *directory_attach(void *mem)
{
    if (mem == NULL || (uintptr_t)mem % HEADER_ALIGN != 0)
        return NULL;
    directory *d = mem;
    uint64_t magic = d->magic;
    atomic_thread_fence(memory_order_acquire); /* pairs with directory_init */
    if (magic != DIRECTORY_MAGIC || directory_size(d->capacity) == 0 ||
        d->table_size != table_size_for(d->capacity) || d->table_offset[0] != header_bytes())
        return NULL;
    return d;
}

uint32_t directory_capacity(const directory *d)
{
    return d->capacity;
}

/* ---- operations ------------------------------------------------------------ */

uint32_t directory_slot_epoch(const directory *d, int slot)
{
    return slot_valid(slot) ? current_epoch(d, slot) : 0;
}

/* No lock: the new epoch makes the slot's entries and its live[] tag stale
 * in one store. A CAS only so that concurrent bumps of one slot both count. */
uint32_t directory_slot_bump(directory *d, int slot)
{
    if (!slot_valid(slot))
        return 0;
    uint32_t old = current_epoch(d, slot), epoch;
    do {
        epoch = old >= EPOCH_MAX ? 1 : old + 1; /* 0 never live */
        /* Flag first, so a kill cannot lose it; sweeping just before the
         * bump drops the older half of the epochs all the same. */
        if (epoch == EPOCH_SWEEP || epoch == 1) {
            atomic_store_explicit(&d->sweep_due, 1, memory_order_release);
            order_stores();
        }
    } while (!atomic_compare_exchange_weak_explicit(&d->epoch[slot], &old, epoch,
                                                    memory_order_acq_rel, memory_order_acquire));
    order_stores();
    return epoch;
}

uint32_t directory_next_generation(directory *d)
{
    uint32_t g;
    do /* 0 means "no holder": skip it when the counter wraps */
        g = atomic_fetch_add_explicit(&d->next_generation, 1, memory_order_relaxed);
    while (g == 0);
    return g;
}

uint32_t directory_count(const directory *d)
{
    uint32_t total = 0;
    for (int s = 0; s < DIRECTORY_MAX_SLOTS; s++)
        total += live_of(d, s);
    return total;
}

static bool needs_sweep(const directory *d)
{
    /* Keep the physical load (entries and tombstones) at or below 3/4 (live
     * entries alone are at most 1/2), so probe runs stay short and an empty
     * entry always ends them. */
    return ((uint64_t)d->used + 1) * 4 > (uint64_t)d->table_size * 3;
}

static dir_status claim_locked(directory *d, int64_t user, const dir_holder *me, dir_holder *prev)
{
    /* A holder stamped with another epoch comes from an incarnation already
     * declared dead (or one not born yet, whose entry a later bump would make
     * live without counting it): refuse it, as such. */
    if (me->epoch != current_epoch(d, me->slot))
        return DIR_STALE;

    uint64_t word = pack(me);
    dir_entry *t = active_table(d);
    probe_hit hit;
    uint32_t pos = probe(t, d->table_size, user, &hit);
    if (hit == AT_USER) {
        dir_holder old = unpack(entry_word(&t[pos]));
        bool was_live = holder_live(d, &old);
        /* A stale entry is an absent user, and must not push past capacity. */
        if (!was_live && directory_count(d) >= d->capacity)
            return DIR_FULL;
        atomic_store_explicit(&t[pos].holder, word, memory_order_release);
        order_stores();
        if (was_live) {
            live_sub(d, old.slot, old.epoch);
            *prev = old;
        }
        live_add(d, me->slot, me->epoch);
        return DIR_OK;
    }

    if (directory_count(d) >= d->capacity)
        return DIR_FULL;
    if (hit == AT_TOMBSTONE) {
        /* U's own entry: no new physical load, no sweep needed. */
        fill_entry(&t[pos], user, word);
        live_add(d, me->slot, me->epoch);
        return DIR_OK;
    }
    if (pos == NO_POS || needs_sweep(d)) {
        rebuild(d);
        t = active_table(d);
        pos = probe(t, d->table_size, user, &hit);
        if (pos == NO_POS || hit != AT_EMPTY) /* impossible: the rebuild left >= half empty */
            return DIR_FULL;
    }
    fill_entry(&t[pos], user, word);
    d->used++;
    live_add(d, me->slot, me->epoch);
    return DIR_OK;
}

/* Invalid arguments (user <= 0, generation 0, slot out of range) are refused
 * like a full directory: nothing is stored and nobody is displaced. */
dir_status directory_claim(directory *d, int64_t user, const dir_holder *me, dir_holder *prev)
{
    dir_holder replaced = { .slot = -1, .epoch = 0, .generation = 0 };
    dir_status status = DIR_FULL;
    if (user > 0 && me != NULL && me->generation != 0 && slot_valid(me->slot)) {
        dir_lock(d);
        status = claim_locked(d, user, me, &replaced);
        dir_unlock(d);
    }
    if (prev != NULL)
        *prev = replaced;
    return status;
}

bool directory_release(directory *d, int64_t user, uint32_t generation)
{
    if (user <= 0 || generation == 0)
        return false;
    dir_lock(d);
    dir_entry *t = active_table(d);
    probe_hit hit;
    uint32_t pos = probe(t, d->table_size, user, &hit);
    dir_holder old = { .slot = -1, .epoch = 0, .generation = 0 };
    if (hit == AT_USER)
        old = unpack(entry_word(&t[pos]));
    bool removed = hit == AT_USER && old.generation == generation;
    if (removed) {
        bool was_live = holder_live(d, &old);
        /* A tombstone, not a backward shift: nothing moves under readers. */
        atomic_store_explicit(&t[pos].user, -user, memory_order_release);
        order_stores();
        if (was_live) /* a stale entry stopped counting when its slot was bumped */
            live_sub(d, old.slot, old.epoch);
    }
    dir_unlock(d);
    return removed;
}

/* No lock (see the top comment). Linearisable: found means user held that
 * holder at some moment of the call, absent that it was absent at one. */
size_t directory_each_of_epoch(const directory *d, int slot, uint32_t epoch,
                               void (*fn)(void *ctx, int64_t user, uint32_t generation),
                               void *ctx)
{
    if (!slot_valid(slot))
        return 0;
    const dir_entry *t = active_table(d);
    size_t n = 0;
    for (uint32_t pos = 0; pos < d->table_size; pos++) {
        int64_t u = atomic_load_explicit(&t[pos].user, memory_order_acquire);
        if (u <= 0)
            continue;
        dir_holder h = unpack(atomic_load_explicit(&t[pos].holder, memory_order_acquire));
        if (h.slot != slot || h.epoch != epoch || h.generation == 0 ||
            atomic_load_explicit(&t[pos].user, memory_order_relaxed) != u)
            continue;
        fn(ctx, u, h.generation);
        n++;
    }
    return n;
}

bool directory_lookup(const directory *d, int64_t user, dir_holder *out)
{
    if (user <= 0)
        return false;
    uint32_t mask = d->table_size - 1;
    for (int attempt = 0; attempt < LOOKUP_ATTEMPTS; attempt++) {
        uint64_t seq = atomic_load_explicit(&d->rebuild_seq, memory_order_acquire);
        const dir_entry *t = table_at(d, atomic_load_explicit(&d->active, memory_order_acquire));
        uint64_t word = 0;
        bool found = false;
        uint32_t pos = home_of(mask, user);
        for (uint32_t n = 0; n <= mask; n++, pos = (pos + 1) & mask) {
            int64_t u = atomic_load_explicit(&t[pos].user, memory_order_acquire);
            READ_POINT();
            if (u == user) {
                word = atomic_load_explicit(&t[pos].holder, memory_order_acquire);
                READ_POINT();
                /* Still U after the holder was read: the holder is one it had
                 * while present, not one of a re-claim not yet published. */
                found = atomic_load_explicit(&t[pos].user, memory_order_relaxed) == user;
                break;
            }
            if (u == 0 || u == -user)
                break;
        }
        /* Pairs with rebuild's release fence: if anything scanned came from a
         * rebuild that started after seq was read, the counter shows it. */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&d->rebuild_seq, memory_order_relaxed) - seq >= 2)
            continue;
        if (!found)
            return false;
        dir_holder h = unpack(word);
        if (!holder_live(d, &h))
            return false;
        if (out != NULL)
            *out = h;
        return true;
    }
    return false;
}
