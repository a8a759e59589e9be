/* shm/store.h — the embedded notification history store (LMDB in --data-dir).
 *
 * One writer (the master, exactly one per directory, guarded by a flock on
 * DIR/wsnotifyd.lock) and any number of readers (workers) open the same
 * environment; each read sees one committed snapshot, so readers never see a
 * half-written batch. A store handle belongs to one process and is used by one
 * thread at a time; a process opens at most one handle per directory (an LMDB
 * rule) and must not use or close a handle inherited across fork (exec first).
 * No read snapshot stays open between calls, so idle readers never pin pages
 * the writer wants to reuse. The module never logs: failures come back as
 * -1 with one line in err (when the function takes one). */
#ifndef WSN_STORE_H
#define WSN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { STORE_STORED = 1, STORE_SENT = 2, STORE_ACKED = 3 };   /* states only move forward */

#define STORE_MAX_ID ((INT64_C(1) << 53) - 1)   /* ids are 1..2^53-1 (exact in JSON numbers) */
#define STORE_MIN_MAP_SIZE (UINT64_C(1) << 20)  /* smallest map_size accepted: 1 MiB */

typedef struct store store;

typedef struct {
    const char *dir;         /* existing directory */
    uint64_t map_size;       /* writer: bound on the store's total size, bytes (>= 1 MiB) */
    uint32_t history_size;   /* writer: entries kept per user, older trimmed on append; 0 = no limit */
    uint64_t ttl_ns;         /* entries older than this (accepted_ns) count as absent; 0 = never */
    bool durable;            /* writer: false = MDB_NOSYNC|MDB_NOMETASYNC (no --data-dir) */
    bool writer;             /* true: the master; false: a reader (worker), map size follows the writer */
} store_options;

/* Open the store in o->dir. A writer creates it if absent and fails with
 * "another wsnotifyd (pid N) is using DIR" while another writer holds the
 * directory; a reader fails when no writer ever created a store there. A writer
 * whose map_size is below what the existing data already spans opens anyway
 * with a bound just above that span (see store_get_usage). Returns 0 or -1. */
int store_open(store **out, const store_options *o, char *err, size_t err_size);
void store_close(store *s);   /* NULL ok; a store's views first */

/* Another handle on s's environment, for reads from another thread of the
 * same process (LMDB allows one environment per process; each handle has its
 * own read transaction). Close it before s. Returns 0 or -1. */
int store_view(store *s, store **out, char *err, size_t err_size);

typedef struct {
    int64_t user;            /* > 0 */
    int64_t id;              /* 1..STORE_MAX_ID, unique per user */
    uint64_t seq;            /* store-wide order, strictly increasing across appends */
    uint64_t accepted_ns;
    bool push;
    const void *json;
    uint32_t json_len;
} store_append;

typedef struct { int64_t user; int64_t id; uint8_t state; uint64_t at_ms; } store_mark;

typedef struct {
    uint64_t appended, duplicates, trimmed /* per-user history_size */,
        evicted_full /* map full */, marked /* marks that moved a state */;
} store_write_stats;

/* Writer only. One write transaction for the whole batch, committed (and
 * fsync'd when durable) before returning 0. appends[i] whose (user,id) already
 * exists are skipped and flagged dup[i]=true (dup may be NULL); marks move an
 * entry's state forward only (ACKED records at_ms; an unknown (user,id) is
 * ignored and flagged missing[i]=true, missing may be NULL). When the map is (nearly) full the oldest entries store-wide are
 * deleted in their own commits, before the batch or after a MAP_FULL abort,
 * and the batch retried a bounded number of times; a batch that cannot fit
 * even in an empty store is an error. st (may be NULL) is overwritten; on
 * failure only evicted_full may be non-zero (those evictions stay committed). */
int store_write(store *s, const store_append *appends, size_t n_appends, bool *dup,
                const store_mark *marks, size_t n_marks, bool *missing, store_write_stats *st,
                char *err, size_t err_size);

/* Writer only. Delete up to max entries whose accepted_ns + ttl <= now_ns,
 * oldest (by seq) first, stopping at the first one still alive. */
int store_sweep(store *s, uint64_t now_ns, size_t max, size_t *expired, char *err,
                size_t err_size);

typedef struct {
    int64_t user; int64_t id; uint64_t seq; uint64_t accepted_ns; uint64_t acked_ms;
    uint8_t state; bool push; const void *json; uint32_t json_len;
} store_entry;

/* 0 found (out filled; json valid until the next call on s), 1 absent
 * (unknown, trimmed, or expired at now_ns), -1 error. */
int store_find(store *s, int64_t user, int64_t id, uint64_t now_ns, store_entry *out);

typedef enum { STORE_REPLAY_AFTER, STORE_REPLAY_UNSENT } store_replay_mode;

/* e and e->json are valid only during the call; fn must not call into s.
 * Return 0 to go on, non-zero to stop. */
typedef int (*store_replay_fn)(void *ctx, const store_entry *e);

/* Calls fn for the user's entries in seq order, oldest first, skipping expired
 * ones and visiting none with seq > max_seq; all from one snapshot.
 * AFTER: the entries stored after the one with id after_id; after_id 0 = all,
 *        *recovered=true; after_id not in the history (unknown/trimmed/expired)
 *        = all, *recovered=false.
 * UNSENT: only entries with state STORED and push=true (*recovered untouched).
 * recovered may be NULL. Returns 0, the callback's non-zero value, or -1 on a
 * store error. */
int store_replay(store *s, int64_t user, store_replay_mode mode, int64_t after_id,
                 uint64_t max_seq, uint64_t now_ns, store_replay_fn fn, void *ctx,
                 bool *recovered);

/* Highest committed seq (0 when empty, or on a read error). */
uint64_t store_last_seq(store *s);

/* The persisted id counter: at least 1 + every id passed to store_set_next_id
 * and committed since (1 when never set; 0 on a read error). */
int64_t store_next_id(store *s);

/* Writer only: persist next_id in the next store_write's transaction if it is
 * larger than the stored value (a store_write with no appends or marks still
 * commits it). */
void store_set_next_id(store *s, int64_t next_id);

typedef struct {
    uint64_t map_size;     /* the bound the writer enforces (bytes) */
    uint64_t used_bytes;   /* pages holding live data and the metas, free pages excluded */
    uint64_t file_bytes;   /* high-water mark of the data file (never shrinks) */
    uint64_t entries;      /* notifications stored (expired ones not yet swept included) */
} store_usage;

/* Returns 0 or -1. */
int store_get_usage(store *s, store_usage *u);

/* Clear reader slots left by dead processes (mdb_reader_check); meant for the
 * writer, allowed on any handle. *cleared (may be NULL) gets their number. */
int store_check_readers(store *s, int *cleared);

#endif
