/* directory.c — the shared-memory user directory (API in directory.h).
 *
 * Region layout, position independent (offsets only, no pointers), so every
 * process may map it at its own address:
 *
 *   struct directory   geometry, robust process-shared mutex, generation
 *                      counter, per-slot epochs and live counts
 *   table 0, table 1   open-addressing hash tables (linear probing,
 *                      backward-shift deletion, no tombstones) of dir_entry;
 *                      one is active, the other is scratch for rebuilds
 *
 * An entry is live when its epoch equals its slot's current epoch; any other
 * entry is stale and counts as absent. live[s] counts the live entries of slot
 * s, so the directory's size is a sum of atomics readable without the lock.
 *
 * Crash safety. Any process may be SIGKILLed between two instructions, possibly
 * while holding the lock; the next locker gets EOWNERDEAD and must be able to
 * repair whatever it finds. Writes are therefore ordered so that the table is
 * always repairable by one scan:
 *   - an entry's user is stored last when it is filled and first when it is
 *     emptied, so an entry with a user is always complete (at worst a second,
 *     identical copy of an entry that a backward shift was moving);
 *   - rewriting the holder of an occupied entry (not atomic: three fields) is
 *     preceded by an undo record in the header that a repair rolls back;
 *   - a rebuild (repair, or sweep of stale entries) writes only the inactive
 *     table and switches tables with one store, so a rebuild killed midway
 *     leaves the active table untouched and the next locker starts it over.
 * Counters (used, live[]) are recomputed by every rebuild, so they need no
 * such care. */
#include "shm/directory.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shm/hash.h"

#define DIRECTORY_MAGIC UINT64_C(0x57534e4449520001) /* "WSNDIR" 1 */
#define DIRECTORY_MAX_CAPACITY (UINT32_C(1) << 24)
#define HEADER_ALIGN 64u
#define NO_POS UINT32_MAX

/* Shared between processes, so only address-free (lock-free) atomics will do. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

typedef struct {
    /* 0 = empty. Atomic only so that a kill can never observe half of it. */
    _Atomic int64_t user;
    uint64_t generation;
    int32_t slot;
    uint32_t epoch;
} dir_entry;

struct directory {
    uint64_t magic;
    uint32_t capacity;
    uint32_t table_size;          /* power of two, >= 2 * capacity */
    uint64_t table_offset[2];     /* from the start of this header */
    pthread_mutex_t lock;

    /* Guarded by lock. */
    _Atomic uint32_t active;      /* which table is in use; atomic = one store */
    uint32_t used;                /* occupied entries (live or stale) in it */
    uint32_t undo_valid;          /* an in-place holder rewrite is under way */
    uint32_t undo_index;
    dir_holder undo_holder;       /* what that entry held before */

    /* Read without the lock; epoch[] and live[] are written under it. */
    _Atomic uint64_t next_generation;
    _Atomic uint32_t epoch[DIRECTORY_MAX_SLOTS];
    _Atomic uint32_t live[DIRECTORY_MAX_SLOTS];
};

/* ---- small helpers ---------------------------------------------------- */

#ifdef DIRECTORY_CRASH_POINTS
/* Test builds only: the test that compiles this file in defines the function
 * to SIGKILL itself at the n-th point, and so proves that every intermediate
 * state an update can leave behind is repaired. */
void directory_crash_point(void);
#define CRASH_POINT() directory_crash_point()
#else
#define CRASH_POINT() ((void)0)
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

static bool holder_live(const directory *d, const dir_holder *h)
{
    return slot_valid(h->slot) && h->generation != 0 && h->epoch == current_epoch(d, h->slot);
}

static void live_add(directory *d, int slot)
{
    atomic_fetch_add_explicit(&d->live[slot], 1, memory_order_relaxed);
}

static void live_sub(directory *d, int slot)
{
    atomic_fetch_sub_explicit(&d->live[slot], 1, memory_order_relaxed);
}

/* ---- the hash table ----------------------------------------------------- */

static dir_entry *table_at(directory *d, uint32_t which)
{
    return (dir_entry *)((unsigned char *)d + d->table_offset[which]);
}

static dir_entry *active_table(directory *d)
{
    return table_at(d, atomic_load_explicit(&d->active, memory_order_relaxed));
}

static int64_t entry_user(const dir_entry *e)
{
    return atomic_load_explicit(&e->user, memory_order_relaxed);
}

static dir_holder entry_holder(const dir_entry *e)
{
    return (dir_holder){ .slot = e->slot, .epoch = e->epoch, .generation = e->generation };
}

/* Not atomic: callers write only entries that are empty or covered by the
 * undo record (the crash points stand for a kill between the fields). */
static void set_holder(dir_entry *e, const dir_holder *h)
{
    e->generation = h->generation;
    CRASH_POINT();
    e->slot = h->slot;
    CRASH_POINT();
    e->epoch = h->epoch;
}

static uint32_t home_of(uint32_t mask, int64_t user)
{
    return (uint32_t)mix64((uint64_t)user) & mask;
}

/* Where user is in t (*found), or the empty entry ending its probe run.
 * NO_POS only if t has no empty entry, which the load limit rules out. */
static uint32_t probe(const dir_entry *t, uint32_t size, int64_t user, bool *found)
{
    uint32_t mask = size - 1;
    uint32_t pos = home_of(mask, user);
    for (uint32_t n = 0; n < size; n++, pos = (pos + 1) & mask) {
        int64_t u = entry_user(&t[pos]);
        if (u == user || u == 0) {
            *found = u == user;
            return pos;
        }
    }
    *found = false;
    return NO_POS;
}

/* Fill an empty entry; the user goes last so a killed writer leaves it empty. */
static void fill_entry(dir_entry *e, int64_t user, const dir_holder *h)
{
    set_holder(e, h);
    order_stores();
    atomic_store_explicit(&e->user, user, memory_order_relaxed);
    order_stores();
}

/* Three stores cannot change a holder atomically, so log the old one first:
 * a repair puts it back, and the interrupted claim simply never happened. */
static void rewrite_holder(directory *d, dir_entry *t, uint32_t pos, const dir_holder *h)
{
    d->undo_holder = entry_holder(&t[pos]);
    d->undo_index = pos;
    order_stores();
    d->undo_valid = 1;
    order_stores();
    set_holder(&t[pos], h);
    order_stores();
    d->undo_valid = 0;
    order_stores();
}

/* Empty t[hole], then pull later entries of the run back so that every entry
 * stays reachable from its home without tombstones. Each move writes the copy
 * before clearing the original: a kill leaves a duplicate, never a loss. */
static void remove_entry(dir_entry *t, uint32_t size, uint32_t hole)
{
    uint32_t mask = size - 1;
    atomic_store_explicit(&t[hole].user, 0, memory_order_relaxed);
    order_stores();
    for (uint32_t j = (hole + 1) & mask;; j = (j + 1) & mask) {
        int64_t user = entry_user(&t[j]);
        if (user == 0)
            return;
        /* t[j] may move into the hole only if the hole is on its probe path,
         * i.e. its home is not strictly between the hole and j. */
        if (((j - home_of(mask, user)) & mask) >= ((j - hole) & mask)) {
            dir_holder h = entry_holder(&t[j]);
            fill_entry(&t[hole], user, &h);
            atomic_store_explicit(&t[j].user, 0, memory_order_relaxed);
            order_stores();
            hole = j;
        }
    }
}

/* Copy the live entries of the active table into the other one and switch.
 * Drops stale entries (the sweep) and, after a crash, the second copy a killed
 * move may have left; recounts used and live[] from what it kept. */
static void rebuild(directory *d)
{
    uint32_t from = atomic_load_explicit(&d->active, memory_order_relaxed);
    uint32_t to = from ^ 1;
    const dir_entry *src = table_at(d, from);
    dir_entry *dst = table_at(d, to);
    uint32_t size = d->table_size;
    uint32_t live[DIRECTORY_MAX_SLOTS] = { 0 };
    uint32_t used = 0;

    memset(dst, 0, (size_t)size * sizeof *dst);
    for (uint32_t i = 0; i < size; i++) {
        int64_t user = entry_user(&src[i]);
        dir_holder h = entry_holder(&src[i]);
        if (user <= 0 || !holder_live(d, &h))
            continue;
        bool found;
        uint32_t pos = probe(dst, size, user, &found);
        if (found) {
            /* Copies left by a killed move are identical; if they ever were
             * not, the newer connection is the better guess. */
            dir_holder kept = entry_holder(&dst[pos]);
            if (h.generation > kept.generation) {
                live[kept.slot]--;
                live[h.slot]++;
                set_holder(&dst[pos], &h);
            }
            continue;
        }
        /* Cannot happen: at most capacity users are live, half the table. */
        if (pos == NO_POS) {
            fprintf(stderr, "wsnotify: directory: rebuild overflow, dropping user %lld\n",
                    (long long)user);
            continue;
        }
        fill_entry(&dst[pos], user, &h);
        used++;
        live[h.slot]++;
    }
    order_stores();
    atomic_store_explicit(&d->active, to, memory_order_relaxed);
    order_stores();
    d->used = used;
    for (int s = 0; s < DIRECTORY_MAX_SLOTS; s++)
        atomic_store_explicit(&d->live[s], live[s], memory_order_relaxed);
}

/* The previous lock holder died mid-operation: roll back an unfinished holder
 * rewrite, then rebuild, which also fixes anything a half-done insert, remove
 * or rebuild left behind. Every step can itself be interrupted and redone. */
static void recover(directory *d)
{
    if (d->undo_valid) {
        if (d->undo_index < d->table_size)
            set_holder(&active_table(d)[d->undo_index], &d->undo_holder);
        order_stores();
        d->undo_valid = 0;
        order_stores();
    }
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
    atomic_init(&d->next_generation, 1);
    /* Epochs start at 1 so that a zero-initialised holder never looks live. */
    for (int s = 0; s < DIRECTORY_MAX_SLOTS; s++) {
        atomic_init(&d->epoch[s], 1);
        atomic_init(&d->live[s], 0);
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

/* Under the lock, so that a claim that has just checked the epoch cannot add
 * to live[] after it was zeroed. */
uint32_t directory_slot_bump(directory *d, int slot)
{
    if (!slot_valid(slot))
        return 0;
    dir_lock(d);
    uint32_t epoch = current_epoch(d, slot) + 1;
    if (epoch == 0) /* wrapped after 2^32 crashes: keep 0 never live */
        epoch = 1;
    atomic_store_explicit(&d->epoch[slot], epoch, memory_order_release);
    order_stores(); /* a kill here leaves live[] stale: the repair recounts */
    atomic_store_explicit(&d->live[slot], 0, memory_order_relaxed);
    dir_unlock(d);
    return epoch;
}

uint64_t directory_next_generation(directory *d)
{
    return atomic_fetch_add_explicit(&d->next_generation, 1, memory_order_relaxed);
}

uint32_t directory_count(directory *d)
{
    uint32_t total = 0;
    for (int s = 0; s < DIRECTORY_MAX_SLOTS; s++)
        total += atomic_load_explicit(&d->live[s], memory_order_relaxed);
    return total;
}

static bool needs_sweep(const directory *d)
{
    /* Keep the physical load at or below 3/4 (live entries alone are at most
     * 1/2), so probe runs stay short and an empty entry always exists. */
    return ((uint64_t)d->used + 1) * 4 > (uint64_t)d->table_size * 3;
}

static dir_status claim_locked(directory *d, int64_t user, const dir_holder *me, dir_holder *prev)
{
    /* A holder stamped with another epoch comes from an incarnation already
     * declared dead (or one not born yet, whose entry a later bump would make
     * live without counting it): refuse it. */
    if (me->epoch != current_epoch(d, me->slot))
        return DIR_FULL;

    dir_entry *t = active_table(d);
    bool found;
    uint32_t pos = probe(t, d->table_size, user, &found);
    if (found) {
        dir_holder old = entry_holder(&t[pos]);
        bool was_live = holder_live(d, &old);
        /* A stale entry is an absent user, and must not push past capacity. */
        if (!was_live && directory_count(d) >= d->capacity)
            return DIR_FULL;
        rewrite_holder(d, t, pos, me);
        if (was_live) {
            live_sub(d, old.slot);
            *prev = old;
        }
        live_add(d, me->slot);
        return DIR_OK;
    }

    if (directory_count(d) >= d->capacity)
        return DIR_FULL;
    if (pos == NO_POS || needs_sweep(d)) {
        rebuild(d);
        t = active_table(d);
        pos = probe(t, d->table_size, user, &found);
        if (pos == NO_POS) /* impossible: the rebuild left >= half empty */
            return DIR_FULL;
    }
    fill_entry(&t[pos], user, me);
    d->used++;
    live_add(d, me->slot);
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

bool directory_release(directory *d, int64_t user, uint64_t generation)
{
    if (user <= 0 || generation == 0)
        return false;
    dir_lock(d);
    dir_entry *t = active_table(d);
    bool found;
    uint32_t pos = probe(t, d->table_size, user, &found);
    bool removed = found && t[pos].generation == generation;
    if (removed) {
        dir_holder old = entry_holder(&t[pos]);
        /* A stale entry was uncounted when its slot was bumped. */
        if (holder_live(d, &old))
            live_sub(d, old.slot);
        remove_entry(t, d->table_size, pos);
        d->used--;
    }
    dir_unlock(d);
    return removed;
}

bool directory_lookup(directory *d, int64_t user, dir_holder *out)
{
    if (user <= 0)
        return false;
    dir_lock(d);
    dir_entry *t = active_table(d);
    bool found;
    uint32_t pos = probe(t, d->table_size, user, &found);
    dir_holder h = { .slot = -1, .epoch = 0, .generation = 0 };
    if (found)
        h = entry_holder(&t[pos]);
    bool live = found && holder_live(d, &h);
    dir_unlock(d);
    if (live && out != NULL)
        *out = h;
    return live;
}
