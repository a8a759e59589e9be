/* directory.h — the shared-memory user directory: user_id → the connection
 * holding that user (worker slot, slot epoch, connection generation).
 *
 * It lives in one MAP_SHARED region written by the master and every worker.
 * Lookups, counts and slot bumps take no lock: a stopped or dead process can
 * never stall them, and they never return a torn or half-written holder.
 * Claims and releases serialise on a robust, process-shared mutex: a process
 * killed while holding it leaves EOWNERDEAD, and the next locker rebuilds the
 * table from its entries before going on.
 *
 * Entries of a worker slot whose epoch has since been bumped (the worker died)
 * count as absent: a crash purges that worker's users in O(1). Such stale
 * entries are reclaimed lazily. Capacity is fixed at creation.
 *
 * Widths. A holder is packed into one 64-bit word, so generations are 32 bits
 * (they wrap after 2^32 connections, skipping 0: a (user, generation) pair
 * need only be unique among one user's live connections) and epochs 24 bits
 * (1..2^24-1, wrapping after 2^24-1 bumps of one slot, skipping 0). */
#ifndef WSN_DIRECTORY_H
#define WSN_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIRECTORY_MAX_SLOTS 256

typedef struct directory directory;

typedef struct {
    int32_t slot;         /* worker slot 0..DIRECTORY_MAX_SLOTS-1, -1 = none */
    uint32_t epoch;       /* the slot's epoch when the entry was written */
    uint32_t generation;  /* unique per live connection of a user, never 0 */
} dir_holder;

typedef enum {
    DIR_OK = 0,
    DIR_FULL,             /* capacity users already present (or invalid arguments) */
    DIR_STALE,            /* me->epoch is not the slot's current epoch: a dead incarnation */
} dir_status;

/* Bytes needed for a directory of this capacity (1..2^24). */
size_t directory_size(uint32_t capacity);

/* Format mem (directory_size bytes, zeroed, shared mapping). Returns 0 or -1. */
int directory_init(void *mem, uint32_t capacity);

/* The directory stored at mem, as formatted by directory_init in any process. */
directory *directory_attach(void *mem);

/* The slot's current epoch; entries written with an older one are absent. */
uint32_t directory_slot_epoch(const directory *d, int slot);

/* Invalidate every entry of this slot at once (its worker died), and drop
 * them from directory_count at once. Lock-free: never waits for a lock
 * holder. Returns the new epoch. */
uint32_t directory_slot_bump(directory *d, int slot);

/* A fresh connection generation (unique among the last 2^32 - 1 drawn by all
 * processes, increasing until it wraps, never 0). */
uint32_t directory_next_generation(directory *d);

/* Make `me` the holder of user. *prev receives the holder it replaced
 * (prev->slot == -1 when there was none, or it was stale). A user already
 * present never makes the directory full. DIR_STALE (nothing stored) when
 * me->epoch is not its slot's current epoch. */
dir_status directory_claim(directory *d, int64_t user, const dir_holder *me, dir_holder *prev);

/* Remove user only if its holder is still `generation`. Returns true if removed. */
bool directory_release(directory *d, int64_t user, uint32_t generation);

/* Current live holder of user. Returns true and fills *out if present.
 * Lock-free (see directory.c for the bound on its retries). */
bool directory_lookup(const directory *d, int64_t user, dir_holder *out);

/* Calls fn for every entry still in the table that slot wrote under epoch
 * (a dead incarnation's users, right after its bump), without a lock and
 * best effort: one a concurrent rebuild drops is missed. Returns how many. */
size_t directory_each_of_epoch(const directory *d, int slot, uint32_t epoch,
                               void (*fn)(void *ctx, int64_t user, uint32_t generation),
                               void *ctx);

/* Number of live entries (stale ones excluded). Lock-free. */
uint32_t directory_count(const directory *d);
uint32_t directory_capacity(const directory *d);

#endif
