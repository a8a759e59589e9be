/* shm/store.c — the notification history store on LMDB (API in store.h).
 *
 * Layout (version 2): three named databases, every integer big-endian in
 * keys so LMDB's default memcmp order is numeric order.
 *   notes  seq(8)          -> header(40) json  every entry, in acceptance order
 *   keys   user(8) 0       -> count(4)         history_size trimming
 *          user(8) 1 seq(8)-> (empty)          a user's history, oldest first
 *          user(8) 2 id(8) -> seq(8)           lookup by notification id
 *   meta   "version" "last_seq" "next_id" "map_size" "touch"
 * A user's three kinds of keys sit side by side in one tree, so an append
 * dirties one random leaf, not three (version 1 kept them in three trees:
 * three page writes per notification at every commit).
 * Header: u8 version, u8 state, u8 flags (bit 0 push), u8 0, u32 json_len,
 * u64 user, u64 id, u64 accepted_ns, u64 acked_ms.
 * notes is keyed by seq alone so appends go to its right edge (MDB_APPEND: full
 * pages) and the oldest entries, which sweeps and evictions delete, are whole
 * pages at its left edge; keyed by user, every eviction would thin pages all
 * over the tree and free none. A replay pays one lookup per entry instead.
 *
 * Invariants, kept inside every write transaction: an entry is in notes and
 * has its seq and id keys or none of them; the count key counts u's entries; every stored
 * seq is <= meta last_seq. Only the writer (flock on wsnotifyd.lock) writes,
 * so it may cache what it wrote (next_id).
 *
 * Space: the writer's bound is a hard one (LMDB's map never exceeds it).
 * Deleting needs fresh pages too (copy-on-write) and LMDB reuses the pages a
 * commit frees only two transactions later, so the writer evicts the oldest
 * entries before a batch when spare pages run low, keeps LMDB's map a reserve
 * below the bound that only deletions may borrow, and on MAP_FULL evicts,
 * commits a "touch" and retries.
 *
 * Every handle owns one read transaction (MDB_NOTLS, so it is tied to the
 * handle, not to a thread), renewed at the start of each read and reset before
 * returning: a reset transaction keeps its reader slot but pins no snapshot. */
#include "shm/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define STORE_VERSION 2u
#define NOTE_VERSION 1u
#define NOTE_HDR 40u
#define FLAG_PUSH 0x01u
#define LOCK_NAME "wsnotifyd.lock"
#define MAX_DBS 8
#define MAX_READERS 1024      /* every worker, the master's threads, and slack for dead ones */
#define WRITE_ATTEMPTS 32     /* evict-and-retry rounds before a full store is an error */
#define EVICT_MIN 64          /* entries deleted per eviction when the map is full */
#define EVICT_MAX 4096        /* bounds one eviction's dirty pages */
#define SWEEP_CHUNK 4096      /* entries per sweep transaction */
#define RESERVE_MIN_PAGES 32u
#define SPARE_MIN_PAGES 64u   /* evict before fewer pages than this (or 1/16 of the map) are spare */
#define SPARE_ROUNDS 8        /* evictions at most before one batch */

/* Internal failure codes, apart from LMDB's (-30800..-30780) and errno values. */
enum { E_SEQ = -1, E_CORRUPT = -2 };

struct store {
    MDB_env *env;
    MDB_dbi notes, keys, meta;
    MDB_txn *rtxn;            /* the handle's read transaction, reset between calls */
    int lock_fd;              /* writer: holds the flock; -1 for readers */
    bool writer;
    bool view;                /* store_view: shares another handle's environment */
    uint32_t history_size;
    uint64_t ttl_ns;
    uint64_t psize;
    uint64_t bound;           /* writer: the store stays within this many bytes */
    uint64_t limit;           /* writer: LMDB map size outside of emergencies */
    int64_t next_id;          /* writer: the committed next_id */
    int64_t pending_next_id;  /* writer: to commit with the next write */
    unsigned char *buf;       /* store_find's json copy, a mark's rewritten value */
    size_t buf_cap;
};

typedef struct {
    uint8_t state;
    uint8_t flags;
    uint32_t json_len;
    int64_t user;
    int64_t id;
    uint64_t accepted_ns;
    uint64_t acked_ms;
} note_hdr;

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        int r = vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        if (r < 0)
            err[0] = '\0';
    }
}

static const char *describe(int rc)
{
    const char *what;
    if (rc == E_CORRUPT)
        what = "inconsistent store contents";
    else if (rc == E_SEQ)
        what = "seq not increasing";
    else
        what = mdb_strerror(rc);   /* LMDB codes and errno values alike */
    return what;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_u64(const void *q)
{
    const uint8_t *p = q;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint32_t get_u32(const void *q)
{
    const uint8_t *p = q;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum { KEY_COUNT = 0, KEY_SEQ = 1, KEY_ID = 2 };   /* the tag after a key's user */
#define KEY_LEN 17u

/* A seq or id key of keys: user(8) tag(1) value(8). */
static void key_make(uint8_t *k, uint64_t user, uint8_t tag, uint64_t value)
{
    put_u64(k, user);
    k[8] = tag;
    put_u64(k + 9, value);
}

static bool key_is(const MDB_val *kv, uint64_t user, uint8_t tag)
{
    const uint8_t *k = kv->mv_data;
    return kv->mv_size == KEY_LEN && get_u64(k) == user && k[8] == tag;
}

static void hdr_encode(uint8_t *p, const note_hdr *h)
{
    p[0] = NOTE_VERSION;
    p[1] = h->state;
    p[2] = h->flags;
    p[3] = 0;
    put_u32(p + 4, h->json_len);
    put_u64(p + 8, (uint64_t)h->user);
    put_u64(p + 16, (uint64_t)h->id);
    put_u64(p + 24, h->accepted_ns);
    put_u64(p + 32, h->acked_ms);
}

static int hdr_decode(const MDB_val *v, note_hdr *h)
{
    const uint8_t *p = v->mv_data;
    int rc = E_CORRUPT;
    if (v->mv_size < NOTE_HDR || p[0] != NOTE_VERSION)
        goto out;
    h->state = p[1];
    h->flags = p[2];
    h->json_len = get_u32(p + 4);
    h->user = (int64_t)get_u64(p + 8);
    h->id = (int64_t)get_u64(p + 16);
    h->accepted_ns = get_u64(p + 24);
    h->acked_ms = get_u64(p + 32);
    if ((uint64_t)h->json_len == v->mv_size - NOTE_HDR && h->state >= STORE_STORED &&
        h->state <= STORE_ACKED)
        rc = 0;
out:
    return rc;
}

static bool expired(const store *s, uint64_t accepted_ns, uint64_t now_ns)
{
    return s->ttl_ns != 0 && now_ns >= accepted_ns && now_ns - accepted_ns >= s->ttl_ns;
}

static void fill_entry(store_entry *e, uint64_t seq, const note_hdr *h, const void *json)
{
    e->user = h->user;
    e->id = h->id;
    e->seq = seq;
    e->accepted_ns = h->accepted_ns;
    e->acked_ms = h->acked_ms;
    e->state = h->state;
    e->push = (h->flags & FLAG_PUSH) != 0;
    e->json = json;
    e->json_len = h->json_len;
}

static int grow_buf(store *s, size_t need)
{
    int ret = 0;
    if (need <= s->buf_cap)
        goto out;
    size_t cap = s->buf_cap * 2 > need ? s->buf_cap * 2 : need;
    unsigned char *b = realloc(s->buf, cap);
    if (b == NULL) {
        ret = ENOMEM;
        goto out;
    }
    s->buf = b;
    s->buf_cap = cap;
out:
    return ret;
}

/* The value of a meta key as u64; absent = 0. */
static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    *out = 0;
    if (rc == MDB_NOTFOUND) {
        rc = 0;
    } else if (rc == 0) {
        if (v.mv_size == 8)
            *out = get_u64(v.mv_data);
        else
            rc = E_CORRUPT;
    }
    return rc;
}

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t value)
{
    uint8_t b[8];
    put_u64(b, value);
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof b, b};
    return mdb_put(txn, dbi, &k, &v, 0);
}

/* The entry at seq, checked to belong to user (user 0: anyone's). */
static int note_get(store *s, MDB_txn *txn, uint64_t seq, int64_t user, MDB_val *v,
                    note_hdr *h)
{
    uint8_t k[8];
    put_u64(k, seq);
    MDB_val kv = {sizeof k, k};
    int rc = mdb_get(txn, s->notes, &kv, v);
    if (rc == 0)
        rc = hdr_decode(v, h);
    if (rc == 0 && user != 0 && h->user != user)
        rc = E_CORRUPT;
    return rc;
}

/* The seq that (user, id) maps to. */
static int id_get(store *s, MDB_txn *txn, int64_t user, int64_t id, uint64_t *seq)
{
    uint8_t k[KEY_LEN];
    key_make(k, (uint64_t)user, KEY_ID, (uint64_t)id);
    MDB_val kv = {sizeof k, k}, v;
    int rc = mdb_get(txn, s->keys, &kv, &v);
    if (rc == 0 && v.mv_size != 8)
        rc = E_CORRUPT;
    if (rc == 0)
        *seq = get_u64(v.mv_data);
    return rc;
}

/* ---- read transaction ------------------------------------------------ */

/* Begin (*txn NULL) or renew (*txn reset) a read-only transaction. A failed
 * renew leaves *txn NULL. */
static int begin_ro(store *s, MDB_txn **txn)
{
    int rc = MDB_MAP_RESIZED;
    for (int attempt = 0; attempt < 3 && rc == MDB_MAP_RESIZED; attempt++) {
        if (*txn != NULL) {
            rc = mdb_txn_renew(*txn);
            if (rc != 0) {
                mdb_txn_abort(*txn);
                *txn = NULL;
            }
        } else {
            rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
            if (rc != 0)
                *txn = NULL;
        }
        if (rc == MDB_MAP_RESIZED && !s->writer) {
            /* The writer's data now reaches past our mapping: adopt its map
             * size (allowed: this process has no other transaction open). */
            int r = mdb_env_set_mapsize(s->env, 0);
            if (r != 0)
                rc = r;
        }
    }
    return rc;
}

static int read_begin(store *s)
{
    return begin_ro(s, &s->rtxn);
}

static void read_end(store *s)
{
    if (s->rtxn != NULL)
        mdb_txn_reset(s->rtxn);
}

/* ---- open / close ---------------------------------------------------- */

static int lock_dir(store *s, const char *dir, char *err, size_t err_size)
{
    int ret = -1;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", dir, LOCK_NAME);
    if (n < 0 || (size_t)n >= sizeof path) {
        set_err(err, err_size, "data directory path too long: %s", dir);
        goto out;
    }
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        set_err(err, err_size, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            char b[32];
            ssize_t r = pread(s->lock_fd, b, sizeof b - 1, 0);
            long pid = 0;
            if (r > 0) {
                b[r] = '\0';
                pid = strtol(b, NULL, 10);
            }
            if (pid > 0)
                set_err(err, err_size, "another wsnotifyd (pid %ld) is using %s", pid, dir);
            else   /* it has not written its pid yet */
                set_err(err, err_size, "another wsnotifyd is using %s", dir);
        } else {
            set_err(err, err_size, "cannot lock %s: %s", path, strerror(e));
        }
        goto out;
    }
    char b[32];
    n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, b, (size_t)n, 0) != (ssize_t)n) {
        set_err(err, err_size, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    ret = 0;
out:
    return ret;
}

static uint64_t round_up(uint64_t v, uint64_t unit)
{
    return (v + unit - 1) / unit * unit;
}

/* Room kept above LMDB's map for deleting from a full store. */
static uint64_t reserve_for(uint64_t bound, uint64_t psize)
{
    uint64_t r = bound / 64 / psize * psize;
    return r > RESERVE_MIN_PAGES * psize ? r : RESERVE_MIN_PAGES * psize;
}

static int open_dbis(store *s, const char *dir, char *err, size_t err_size)
{
    int ret = -1;
    MDB_txn *txn = NULL;
    unsigned flags = s->writer ? MDB_CREATE : 0;
    int rc = s->writer ? mdb_txn_begin(s->env, NULL, 0, &txn) : begin_ro(s, &txn);
    if (rc != 0) {
        txn = NULL;
        goto fail;
    }
    /* meta first: another layout's store is refused by its version before
     * the databases of this one are looked for (or created). */
    const char *names[] = {"meta", "notes", "keys"};
    MDB_dbi *dbis[] = {&s->meta, &s->notes, &s->keys};
    uint64_t version = 0, next_id;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
        if (rc == MDB_NOTFOUND) {
            set_err(err, err_size, "%s holds no wsnotifyd store (the writer creates it)", dir);
            goto out;
        }
        if (rc != 0)
            goto fail;
        if (i > 0)
            continue;
        rc = meta_get(txn, s->meta, "version", &version);
        if (rc != 0)
            goto fail;
        if (version == 0 && s->writer) {
            version = STORE_VERSION;
            rc = meta_put(txn, s->meta, "version", version);
            if (rc != 0)
                goto fail;
        }
        if (version != STORE_VERSION) {
            set_err(err, err_size, "%s holds a store of version %" PRIu64 ", expected %u", dir,
                    version, STORE_VERSION);
            goto out;
        }
    }
    if (s->writer) {
        rc = meta_put(txn, s->meta, "map_size", s->bound);
        if (rc == 0)
            rc = meta_get(txn, s->meta, "next_id", &next_id);
        if (rc != 0)
            goto fail;
        s->next_id = next_id > 0 && next_id <= (uint64_t)INT64_MAX ? (int64_t)next_id : 1;
    }
    rc = mdb_txn_commit(txn);   /* also for a read-only txn: keeps the dbi handles */
    txn = NULL;
    if (rc != 0)
        goto fail;
    ret = 0;
    goto out;
fail:
    set_err(err, err_size, "cannot open store in %s: %s", dir, describe(rc));
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return ret;
}

/* The writer's map. LMDB itself never maps less than the file already spans,
 * so a store opened with a smaller map_size still opens; its bound becomes
 * that span plus the reserve. */
static int writer_map(store *s, const store_options *o, char *err, size_t err_size)
{
    int ret = -1;
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0)
        rc = mdb_env_stat(s->env, &st);
    if (rc != 0) {
        set_err(err, err_size, "cannot read store geometry in %s: %s", o->dir, describe(rc));
        goto out;
    }
    s->psize = st.ms_psize;
    uint64_t req = round_up(o->map_size, s->psize);
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * s->psize;
    uint64_t reserve = reserve_for(req > used ? req : used, s->psize);
    s->bound = used + reserve > req ? used + reserve : req;
    s->limit = s->bound - reserve;
    if ((uint64_t)info.me_mapsize != s->limit) {
        rc = mdb_env_set_mapsize(s->env, (size_t)s->limit);
        if (rc != 0) {
            set_err(err, err_size, "cannot set map size of %s: %s", o->dir, describe(rc));
            goto out;
        }
    }
    ret = 0;
out:
    return ret;
}

int store_open(store **out, const store_options *o, char *err, size_t err_size)
{
    int ret = -1;
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(err, err_size, "out of memory");
        goto out;
    }
    s->lock_fd = -1;
    s->writer = o->writer;
    s->history_size = o->history_size;
    s->ttl_ns = o->ttl_ns;
    s->next_id = 1;
    if (o->dir == NULL || o->dir[0] == '\0') {
        set_err(err, err_size, "no data directory given");
        goto out;
    }
    long page = sysconf(_SC_PAGESIZE);
    s->psize = page > 0 ? (uint64_t)page : 4096;
    if (s->writer) {
        if (o->map_size < STORE_MIN_MAP_SIZE || o->map_size > (uint64_t)SIZE_MAX / 2) {
            set_err(err, err_size, "store map size %" PRIu64 " out of range (at least %" PRIu64 ")",
                    o->map_size, STORE_MIN_MAP_SIZE);
            goto out;
        }
        /* Before LMDB opens anything: a second writer must not touch the env. */
        if (lock_dir(s, o->dir, err, err_size) != 0)
            goto out;
    }
    s->buf_cap = 32 * 1024;
    s->buf = malloc(s->buf_cap);
    if (s->buf == NULL) {
        set_err(err, err_size, "out of memory");
        goto out;
    }
    int rc = mdb_env_create(&s->env);
    if (rc != 0) {
        s->env = NULL;
        goto fail;
    }
    rc = mdb_env_set_maxdbs(s->env, MAX_DBS);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(s->env, MAX_READERS);
    if (rc == 0 && s->writer) {
        uint64_t req = round_up(o->map_size, s->psize);
        rc = mdb_env_set_mapsize(s->env, (size_t)(req - reserve_for(req, s->psize)));
    }
    if (rc != 0)
        goto fail;
    unsigned flags = MDB_NOTLS;
    if (!s->writer)
        flags |= MDB_RDONLY;
    else if (!o->durable)
        flags |= MDB_NOSYNC | MDB_NOMETASYNC;
    rc = mdb_env_open(s->env, o->dir, flags, 0600);
    if (rc != 0)
        goto fail;
    /* LMDB 0.9.24 opens the data file without O_CLOEXEC; exec'd workers must
     * not inherit it. */
    int fd, fl;
    rc = mdb_env_get_fd(s->env, &fd);
    if (rc == 0 && ((fl = fcntl(fd, F_GETFD)) < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0))
        rc = errno;
    if (rc != 0)
        goto fail;
    if (s->writer) {
        if (writer_map(s, o, err, err_size) != 0)
            goto out;
        /* Slots of readers that died since the last run would pin old pages. */
        rc = mdb_reader_check(s->env, NULL);
        if (rc != 0)
            goto fail;
    }
    if (open_dbis(s, o->dir, err, err_size) != 0)
        goto out;
    rc = read_begin(s);
    if (rc != 0)
        goto fail;
    read_end(s);
    *out = s;
    s = NULL;
    ret = 0;
    goto out;
fail:
    set_err(err, err_size, "cannot open store in %s: %s", o->dir, describe(rc));
out:
    store_close(s);
    return ret;
}

int store_view(store *s, store **out, char *err, size_t err_size)
{
    *out = NULL;
    store *v = calloc(1, sizeof *v);
    if (v != NULL) {
        v->buf_cap = 32 * 1024;
        v->buf = malloc(v->buf_cap);
    }
    if (v == NULL || v->buf == NULL) {
        free(v);
        set_err(err, err_size, "out of memory");
        return -1;
    }
    v->env = s->env;
    v->view = true;
    v->notes = s->notes;
    v->keys = s->keys;
    v->meta = s->meta;
    v->lock_fd = -1;
    v->history_size = s->history_size;
    v->ttl_ns = s->ttl_ns;
    v->psize = s->psize;
    v->next_id = s->next_id;
    int rc = read_begin(v);
    if (rc != 0) {
        set_err(err, err_size, "cannot read the store: %s", describe(rc));
        store_close(v);
        return -1;
    }
    read_end(v);
    *out = v;
    return 0;
}

void store_close(store *s)
{
    if (s != NULL) {
        if (s->rtxn != NULL)
            mdb_txn_abort(s->rtxn);
        if (s->env != NULL && !s->view)
            mdb_env_close(s->env);
        if (s->lock_fd >= 0)
            close(s->lock_fd);   /* releases the flock */
        free(s->buf);
        free(s);
    }
}

static uint64_t db_pages(const MDB_stat *st)
{
    return (uint64_t)st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages;
}

/* Pages holding live data in the handle's read snapshot: the two metas, the
 * main db and ours (the free list's own pages aside). entries may be NULL. */
static int live_pages(store *s, uint64_t *pages, uint64_t *entries)
{
    MDB_stat st;
    int rc = mdb_env_stat(s->env, &st);
    *pages = 0;
    if (rc != 0)
        goto out;
    uint64_t n = 2 + db_pages(&st);
    rc = read_begin(s);
    if (rc != 0)
        goto out;
    MDB_dbi dbis[] = {s->notes, s->keys, s->meta};
    for (size_t i = 0; i < sizeof dbis / sizeof dbis[0] && rc == 0; i++) {
        rc = mdb_stat(s->rtxn, dbis[i], &st);
        if (rc == 0)
            n += db_pages(&st);
        if (rc == 0 && entries != NULL && dbis[i] == s->notes)
            *entries = st.ms_entries;
    }
    read_end(s);
    if (rc == 0)
        *pages = n;
out:
    return rc;
}

/* ---- writing --------------------------------------------------------- */

static int count_get(store *s, MDB_txn *txn, int64_t user, uint32_t *count)
{
    uint8_t k[9];
    put_u64(k, (uint64_t)user);
    k[8] = KEY_COUNT;
    MDB_val kv = {sizeof k, k}, v;
    int rc = mdb_get(txn, s->keys, &kv, &v);
    *count = 0;
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc == 0 && v.mv_size != 4)
        rc = E_CORRUPT;
    else if (rc == 0)
        *count = get_u32(v.mv_data);
    return rc;
}

static int count_put(store *s, MDB_txn *txn, int64_t user, uint32_t count)
{
    uint8_t k[9], b[4];
    put_u64(k, (uint64_t)user);
    k[8] = KEY_COUNT;
    put_u32(b, count);
    MDB_val kv = {sizeof k, k}, v = {sizeof b, b};
    int rc;
    if (count == 0) {
        rc = mdb_del(txn, s->keys, &kv, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    } else {
        rc = mdb_put(txn, s->keys, &kv, &v, 0);
    }
    return rc;
}

/* Remove one entry: its note, its seq and id keys, one from its user's count. */
static int delete_entry(store *s, MDB_txn *txn, uint64_t seq, int64_t user, int64_t id)
{
    uint8_t k[KEY_LEN];
    put_u64(k, seq);
    MDB_val kv = {8, k};
    int rc = mdb_del(txn, s->notes, &kv, NULL);
    if (rc != 0)
        goto out;
    key_make(k, (uint64_t)user, KEY_SEQ, seq);
    kv.mv_size = KEY_LEN;
    rc = mdb_del(txn, s->keys, &kv, NULL);
    if (rc != 0)
        goto out;
    key_make(k, (uint64_t)user, KEY_ID, (uint64_t)id);
    rc = mdb_del(txn, s->keys, &kv, NULL);
    if (rc != 0)
        goto out;
    uint32_t count;
    rc = count_get(s, txn, user, &count);
    if (rc == 0)
        rc = count_put(s, txn, user, count > 0 ? count - 1 : 0);
out:
    if (rc == MDB_NOTFOUND)
        rc = E_CORRUPT;
    return rc;
}

/* Delete the user's oldest entry. */
static int trim_one(store *s, MDB_txn *txn, int64_t user)
{
    MDB_cursor *cur = NULL;
    uint8_t k[KEY_LEN];
    key_make(k, (uint64_t)user, KEY_SEQ, 0);
    MDB_val kv = {sizeof k, k}, v;
    int rc = mdb_cursor_open(txn, s->keys, &cur);
    if (rc != 0) {
        cur = NULL;
        goto out;
    }
    rc = mdb_cursor_get(cur, &kv, &v, MDB_SET_RANGE);
    if (rc == 0 && !key_is(&kv, (uint64_t)user, KEY_SEQ))
        rc = E_CORRUPT;   /* the count said the user has entries */
    if (rc != 0)
        goto out;
    uint64_t seq = get_u64((const uint8_t *)kv.mv_data + 9);
    mdb_cursor_close(cur);
    cur = NULL;
    note_hdr h;
    rc = note_get(s, txn, seq, user, &v, &h);
    if (rc == 0)
        rc = delete_entry(s, txn, seq, user, h.id);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        rc = E_CORRUPT;
    return rc;
}

static int append_one(store *s, MDB_txn *txn, const store_append *a, bool *dup,
                      store_write_stats *st)
{
    uint8_t k[KEY_LEN], sv[8];
    key_make(k, (uint64_t)a->user, KEY_ID, (uint64_t)a->id);
    put_u64(sv, a->seq);
    MDB_val kv = {sizeof k, k}, v = {sizeof sv, sv};
    int rc = mdb_put(txn, s->keys, &kv, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        *dup = true;
        st->duplicates++;
        rc = 0;
        goto out;
    }
    if (rc != 0)
        goto out;

    MDB_val skv = {sizeof sv, sv}, nv = {NOTE_HDR + (size_t)a->json_len, NULL};
    rc = mdb_put(txn, s->notes, &skv, &nv, MDB_APPEND | MDB_RESERVE);   /* seq above all */
    if (rc == MDB_KEYEXIST)
        rc = E_CORRUPT;
    if (rc != 0)
        goto out;
    note_hdr h = {.state = STORE_STORED, .flags = a->push ? FLAG_PUSH : 0,
                  .json_len = a->json_len, .user = a->user, .id = a->id,
                  .accepted_ns = a->accepted_ns};
    hdr_encode(nv.mv_data, &h);
    if (a->json_len > 0)
        memcpy((uint8_t *)nv.mv_data + NOTE_HDR, a->json, a->json_len);

    key_make(k, (uint64_t)a->user, KEY_SEQ, a->seq);
    MDB_val empty = {0, NULL};
    rc = mdb_put(txn, s->keys, &kv, &empty, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        rc = E_CORRUPT;
    if (rc != 0)
        goto out;

    uint32_t count;
    rc = count_get(s, txn, a->user, &count);
    if (rc != 0)
        goto out;
    count = count < UINT32_MAX ? count + 1 : count;
    rc = count_put(s, txn, a->user, count);
    while (rc == 0 && s->history_size != 0 && count > s->history_size) {
        rc = trim_one(s, txn, a->user);
        count--;
        st->trimmed++;
    }
    if (rc == 0)
        st->appended++;
out:
    return rc;
}

static int mark_one(store *s, MDB_txn *txn, const store_mark *m, bool *missing,
                    store_write_stats *st)
{
    uint64_t seq = 0;
    *missing = false;
    int rc = id_get(s, txn, m->user, m->id, &seq);
    if (rc == MDB_NOTFOUND) {
        *missing = true;
        rc = 0;   /* unknown, trimmed or evicted (or not stored yet): nothing to mark */
        goto out;
    }
    MDB_val v;
    note_hdr h;
    if (rc == 0)
        rc = note_get(s, txn, seq, m->user, &v, &h);
    if (rc != 0 || m->state <= h.state)
        goto out;
    rc = grow_buf(s, v.mv_size);
    if (rc != 0)
        goto out;
    memcpy(s->buf, v.mv_data, v.mv_size);
    h.state = m->state;
    if (m->state == STORE_ACKED)
        h.acked_ms = m->at_ms;
    hdr_encode(s->buf, &h);
    uint8_t k[8];
    put_u64(k, seq);
    MDB_val kv = {sizeof k, k}, nv = {v.mv_size, s->buf};
    rc = mdb_put(txn, s->notes, &kv, &nv, 0);
    if (rc == 0)
        st->marked++;
out:
    if (rc == MDB_NOTFOUND)
        rc = E_CORRUPT;
    return rc;
}

/* One attempt at the batch in one transaction. Fills err only for E_SEQ. */
static int write_batch(store *s, const store_append *a, size_t na, bool *dup,
                       const store_mark *m, size_t nm, bool *missing, store_write_stats *st,
                       char *err, size_t err_size)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    uint64_t last_seq, next_id;
    rc = meta_get(txn, s->meta, "last_seq", &last_seq);
    if (rc == 0)
        rc = meta_get(txn, s->meta, "next_id", &next_id);
    if (rc != 0)
        goto out;
    if (na > 0 && a[0].seq <= last_seq) {
        set_err(err, err_size, "seq %" PRIu64 " is not above the last stored seq %" PRIu64,
                a[0].seq, last_seq);
        rc = E_SEQ;
        goto out;
    }
    uint64_t top = last_seq;
    for (size_t i = 0; i < na && rc == 0; i++) {
        bool is_dup = false;
        rc = append_one(s, txn, &a[i], &is_dup, st);
        if (dup != NULL)
            dup[i] = is_dup;
        if (rc == 0 && !is_dup)
            top = a[i].seq;
    }
    for (size_t i = 0; i < nm && rc == 0; i++) {
        bool absent = false;
        rc = mark_one(s, txn, &m[i], &absent, st);
        if (missing != NULL)
            missing[i] = absent;
    }
    if (rc == 0 && top != last_seq)
        rc = meta_put(txn, s->meta, "last_seq", top);
    bool id_moved = (uint64_t)s->pending_next_id > next_id;
    if (rc == 0 && id_moved)
        rc = meta_put(txn, s->meta, "next_id", (uint64_t)s->pending_next_id);
    if (rc != 0)
        goto out;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc == 0 && id_moved)
        s->next_id = s->pending_next_id;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return rc;
}

/* Delete up to max of the oldest entries (only expired ones when ttl_only),
 * in one committed transaction. */
static int purge_txn(store *s, size_t max, bool ttl_only, uint64_t now_ns, size_t *done)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    size_t n = 0;
    *done = 0;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = mdb_cursor_open(txn, s->notes, &cur);
    if (rc != 0)
        cur = NULL;
    while (rc == 0 && n < max) {
        MDB_val k, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        note_hdr h;
        if (rc == 0)
            rc = k.mv_size == 8 ? hdr_decode(&v, &h) : E_CORRUPT;
        if (rc != 0 || (ttl_only && !expired(s, h.accepted_ns, now_ns)))
            break;
        rc = delete_entry(s, txn, get_u64(k.mv_data), h.user, h.id);
        if (rc == 0)
            n++;
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (rc != 0 || n == 0)
        goto out;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc == 0)
        *done = n;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return rc;
}

/* A minimal commit: LMDB reuses the pages freed by transaction N only from
 * N+2 on, so after deleting, this makes them available to the next write. */
static int touch_txn(store *s)
{
    MDB_txn *txn = NULL;
    uint64_t n;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = meta_get(txn, s->meta, "touch", &n);
    if (rc == 0)
        rc = meta_put(txn, s->meta, "touch", n + 1);
    if (rc != 0)
        goto out;
    rc = mdb_txn_commit(txn);
    txn = NULL;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return rc;
}

/* purge_txn (or touch_txn when want is 0), halving the count while the map
 * is too full to delete that many, and borrowing the reserve when not even
 * one entry can be deleted. */
static int reclaim(store *s, size_t want, bool ttl_only, uint64_t now_ns, size_t *done,
                   char *err, size_t err_size)
{
    int ret = -1;
    bool grown = false;
    size_t k = want;
    int rc;
    *done = 0;
    for (;;) {
        rc = want == 0 ? touch_txn(s) : purge_txn(s, k, ttl_only, now_ns, done);
        if (rc != MDB_MAP_FULL)
            break;
        if (k > 1) {
            k /= 2;
            continue;
        }
        if (grown) {
            set_err(err, err_size,
                    "store full: no room left even to delete entries (map size %" PRIu64 ")",
                    s->bound);
            goto out;
        }
        rc = mdb_env_set_mapsize(s->env, (size_t)s->bound);
        if (rc != 0)
            break;
        grown = true;
        k = want;
    }
    if (rc != 0) {
        set_err(err, err_size, "cannot delete old entries: %s", describe(rc));
        goto out;
    }
    ret = 0;
out:
    if (grown) {
        /* LMDB keeps the map at least as large as what the file now spans. */
        rc = mdb_env_set_mapsize(s->env, (size_t)s->limit);
        if (rc != 0 && ret == 0) {
            set_err(err, err_size, "cannot restore the map size: %s", describe(rc));
            ret = -1;
        }
    }
    return ret;
}

static size_t evict_chunk(store *s)
{
    size_t chunk = EVICT_MIN;
    MDB_stat st;
    if (read_begin(s) == 0) {
        if (mdb_stat(s->rtxn, s->notes, &st) == 0 && st.ms_entries / 16 > chunk)
            chunk = st.ms_entries / 16 < EVICT_MAX ? st.ms_entries / 16 : EVICT_MAX;
        read_end(s);
    }
    return chunk;
}

/* A rough upper bound on the pages a batch dirties: with many users every
 * append touches its own leaf of keys (or two, at a split); notes grow at one edge. */
static uint64_t batch_pages(const store *s, const store_append *a, size_t na, size_t nm)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < na; i++)
        bytes += (uint64_t)a[i].json_len + NOTE_HDR + 16;
    return bytes / s->psize + 3 * (uint64_t)na + 2 * (uint64_t)nm + 16;
}

/* Evict ahead of a full map: deleting needs copy-on-write pages of its own and
 * LMDB reuses freed pages only two commits later, so waiting for MAP_FULL
 * would leave an eviction too few. Spare pages = map - live pages; the tail
 * never used counts as spare without looking further. */
static int make_room(store *s, uint64_t need, uint64_t *evicted, char *err, size_t err_size)
{
    int ret = -1;
    for (int round = 0; round < SPARE_ROUNDS; round++) {
        MDB_envinfo info;
        uint64_t used, entries = 0;
        int rc = mdb_env_info(s->env, &info);
        if (rc != 0) {
            set_err(err, err_size, "cannot read store geometry: %s", describe(rc));
            goto out;
        }
        uint64_t map_pages = (uint64_t)info.me_mapsize / s->psize;
        uint64_t want = map_pages / 16 > SPARE_MIN_PAGES ? map_pages / 16 : SPARE_MIN_PAGES;
        if (want < 4 * need)
            want = 4 * need;
        if (want > map_pages / 2)
            want = map_pages / 2;
        if ((uint64_t)info.me_last_pgno + 1 + want <= map_pages)
            break;
        rc = live_pages(s, &used, &entries);
        if (rc != 0) {
            set_err(err, err_size, "cannot read store usage: %s", describe(rc));
            goto out;
        }
        uint64_t spare = map_pages > used ? map_pages - used : 0;
        if (spare >= want || entries == 0)
            break;
        /* An evicted entry may dirty a leaf of notes and one of keys, and their
         * branch pages: no more than the spare pages allow. */
        uint64_t k = entries / 16;
        k = k < EVICT_MIN ? EVICT_MIN : k > EVICT_MAX ? EVICT_MAX : k;
        if (k > spare / 8)
            k = spare / 8 > 16 ? spare / 8 : 16;
        size_t n;
        if (reclaim(s, (size_t)k, false, 0, &n, err, err_size) != 0)
            goto out;
        *evicted += n;
        if (n == 0)
            break;
    }
    ret = 0;
out:
    return ret;
}

static int check_batch(const store *s, const store_append *a, size_t na, const store_mark *m,
                       size_t nm, char *err, size_t err_size)
{
    int ret = -1;
    for (size_t i = 0; i < na; i++) {
        if (a[i].user <= 0 || a[i].id <= 0 || a[i].id > STORE_MAX_ID ||
            (a[i].json == NULL && a[i].json_len > 0)) {
            set_err(err, err_size, "append %zu: invalid user %" PRId64 " or id %" PRId64, i,
                    a[i].user, a[i].id);
            goto out;
        }
        if (i > 0 && a[i].seq <= a[i - 1].seq) {
            set_err(err, err_size, "append %zu: seq %" PRIu64 " is not above %" PRIu64, i,
                    a[i].seq, a[i - 1].seq);
            goto out;
        }
        /* Half the map: past that, no amount of eviction makes it fit. */
        if ((uint64_t)a[i].json_len + NOTE_HDR > s->limit / 2) {
            set_err(err, err_size,
                    "append %zu: %" PRIu32 " bytes do not fit in a store of %" PRIu64 " bytes", i,
                    a[i].json_len, s->bound);
            goto out;
        }
    }
    for (size_t i = 0; i < nm; i++) {
        if (m[i].user <= 0 || m[i].id <= 0 || m[i].state < STORE_STORED ||
            m[i].state > STORE_ACKED) {
            set_err(err, err_size, "mark %zu: invalid user, id or state", i);
            goto out;
        }
    }
    ret = 0;
out:
    return ret;
}

int store_write(store *s, const store_append *appends, size_t n_appends, bool *dup,
                const store_mark *marks, size_t n_marks, bool *missing, store_write_stats *st,
                char *err, size_t err_size)
{
    int ret = -1;
    store_write_stats done = {0};
    uint64_t evicted = 0;
    bool touched_empty = false;
    if (!s->writer) {
        set_err(err, err_size, "store opened read-only");
        goto out;
    }
    if (check_batch(s, appends, n_appends, marks, n_marks, err, err_size) != 0)
        goto out;
    if (n_appends == 0 && n_marks == 0 && s->pending_next_id <= s->next_id) {
        ret = 0;
        goto out;
    }
    if (n_appends > 0 &&
        make_room(s, batch_pages(s, appends, n_appends, n_marks), &evicted, err, err_size) != 0)
        goto out;
    for (int attempt = 1;; attempt++) {
        memset(&done, 0, sizeof done);
        int rc = write_batch(s, appends, n_appends, dup, marks, n_marks, missing, &done, err,
                             err_size);
        if (rc == 0)
            break;
        if (rc != MDB_MAP_FULL) {
            if (rc != E_SEQ)
                set_err(err, err_size, "cannot write to the store: %s", describe(rc));
            goto out;
        }
        if (attempt == WRITE_ATTEMPTS) {
            set_err(err, err_size, "store full: batch does not fit after %d evictions",
                    attempt - 1);
            goto out;
        }
        size_t n, unused;
        if (reclaim(s, evict_chunk(s), false, 0, &n, err, err_size) != 0)
            goto out;
        evicted += n;
        if (n == 0 && touched_empty) {
            set_err(err, err_size,
                    "batch of %zu appends does not fit in a store of %" PRIu64 " bytes",
                    n_appends, s->bound);
            goto out;
        }
        touched_empty = n == 0;
        /* Make what was just freed (or freed before) usable by the retry. */
        if (reclaim(s, 0, false, 0, &unused, err, err_size) != 0)
            goto out;
    }
    ret = 0;
out:
    if (ret != 0) {
        memset(&done, 0, sizeof done);
        for (size_t i = 0; dup != NULL && i < n_appends; i++)
            dup[i] = false;
        for (size_t i = 0; missing != NULL && i < n_marks; i++)
            missing[i] = false;
    }
    done.evicted_full = evicted;
    if (st != NULL)
        *st = done;
    return ret;
}

int store_sweep(store *s, uint64_t now_ns, size_t max, size_t *expired_out, char *err,
                size_t err_size)
{
    int ret = -1;
    size_t total = 0;
    if (!s->writer) {
        set_err(err, err_size, "store opened read-only");
        goto out;
    }
    while (s->ttl_ns != 0 && total < max) {
        size_t want = max - total < SWEEP_CHUNK ? max - total : SWEEP_CHUNK, n;
        if (reclaim(s, want, true, now_ns, &n, err, err_size) != 0)
            goto out;
        total += n;
        if (n < want)
            break;
    }
    ret = 0;
out:
    if (expired_out != NULL)
        *expired_out = total;
    return ret;
}

void store_set_next_id(store *s, int64_t next_id)
{
    if (next_id > s->pending_next_id)
        s->pending_next_id = next_id;
}

/* ---- reading --------------------------------------------------------- */

int store_find(store *s, int64_t user, int64_t id, uint64_t now_ns, store_entry *out)
{
    int ret = 1;
    if (user <= 0 || id <= 0)
        goto done;   /* no such entry can exist */
    ret = -1;
    if (read_begin(s) != 0)
        goto out;
    uint64_t seq = 0;
    MDB_val v;
    note_hdr h;
    int rc = id_get(s, s->rtxn, user, id, &seq);
    if (rc == 0)
        rc = note_get(s, s->rtxn, seq, user, &v, &h);
    if (rc == 0 && expired(s, h.accepted_ns, now_ns))
        rc = MDB_NOTFOUND;
    /* Copied out so no snapshot stays pinned until the next call. */
    if (rc == 0)
        rc = grow_buf(s, h.json_len);
    if (rc == 0) {
        memcpy(s->buf, (const uint8_t *)v.mv_data + NOTE_HDR, h.json_len);
        fill_entry(out, seq, &h, s->buf);
        ret = 0;
    } else if (rc == MDB_NOTFOUND) {
        ret = 1;
    }
out:
    read_end(s);
done:
    return ret;
}

/* Where AFTER starts: the seq of after_id's entry if it is in the history. */
static int replay_start(store *s, int64_t user, int64_t after_id, uint64_t now_ns,
                        uint64_t *start, bool *recovered)
{
    uint64_t seq = 0;
    MDB_val v;
    note_hdr h;
    *start = 0;
    *recovered = false;
    int rc = id_get(s, s->rtxn, user, after_id, &seq);
    if (rc == 0)
        rc = note_get(s, s->rtxn, seq, user, &v, &h);
    if (rc == 0 && !expired(s, h.accepted_ns, now_ns)) {
        *start = seq;
        *recovered = true;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    return rc;
}

int store_replay(store *s, int64_t user, store_replay_mode mode, int64_t after_id,
                 uint64_t max_seq, uint64_t now_ns, store_replay_fn fn, void *ctx,
                 bool *recovered)
{
    int ret = -1;
    MDB_cursor *cur = NULL;
    if (read_begin(s) != 0)
        goto out;
    uint64_t start = 0;
    if (mode == STORE_REPLAY_AFTER) {
        bool rec = true;
        if (after_id != 0 && replay_start(s, user, after_id, now_ns, &start, &rec) != 0)
            goto out;
        if (recovered != NULL)
            *recovered = rec;
    }
    if (user <= 0 || start >= max_seq) {
        ret = 0;   /* nothing can follow */
        goto out;
    }
    if (mdb_cursor_open(s->rtxn, s->keys, &cur) != 0) {
        cur = NULL;
        goto out;
    }
    uint8_t k[KEY_LEN];
    key_make(k, (uint64_t)user, KEY_SEQ, start + 1);
    MDB_val kv = {sizeof k, k}, v;
    int rc = mdb_cursor_get(cur, &kv, &v, MDB_SET_RANGE);
    int stop = 0;
    while (rc == 0 && stop == 0) {
        if (!key_is(&kv, (uint64_t)user, KEY_SEQ))
            break;
        uint64_t seq = get_u64((const uint8_t *)kv.mv_data + 9);
        if (seq > max_seq)
            break;
        MDB_val nv;
        note_hdr h;
        if (note_get(s, s->rtxn, seq, user, &nv, &h) != 0)
            goto out;
        bool skip = expired(s, h.accepted_ns, now_ns) ||
                    (mode == STORE_REPLAY_UNSENT &&
                     (h.state != STORE_STORED || !(h.flags & FLAG_PUSH)));
        if (!skip) {
            store_entry e;
            fill_entry(&e, seq, &h, (const uint8_t *)nv.mv_data + NOTE_HDR);
            stop = fn(ctx, &e);
        }
        if (stop == 0)
            rc = mdb_cursor_get(cur, &kv, &v, MDB_NEXT);
    }
    if (stop != 0)
        ret = stop;
    else if (rc == 0 || rc == MDB_NOTFOUND)
        ret = 0;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    read_end(s);
    return ret;
}

static uint64_t read_meta(store *s, const char *name, uint64_t fallback)
{
    uint64_t v = fallback;
    if (read_begin(s) == 0) {
        if (meta_get(s->rtxn, s->meta, name, &v) != 0)
            v = fallback;
        read_end(s);
    }
    return v;
}

uint64_t store_last_seq(store *s)
{
    return read_meta(s, "last_seq", 0);
}

int64_t store_next_id(store *s)
{
    uint64_t v = read_meta(s, "next_id", UINT64_MAX);
    if (v == UINT64_MAX || v > (uint64_t)INT64_MAX)
        v = 0;
    else if (v == 0)
        v = 1;
    return (int64_t)v;
}

int store_get_usage(store *s, store_usage *u)
{
    int ret = -1;
    memset(u, 0, sizeof *u);
    MDB_envinfo info;
    MDB_stat st;
    uint64_t pages, bound = s->bound;
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0)
        rc = mdb_env_stat(s->env, &st);
    if (rc == 0)
        rc = live_pages(s, &pages, &u->entries);
    if (rc == 0 && !s->writer) {
        rc = read_begin(s);
        if (rc == 0)
            rc = meta_get(s->rtxn, s->meta, "map_size", &bound);
        read_end(s);
    }
    if (rc != 0)
        goto out;
    u->map_size = bound != 0 ? bound : (uint64_t)info.me_mapsize;
    u->used_bytes = pages * st.ms_psize;
    u->file_bytes = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    ret = 0;
out:
    return ret;
}

int store_check_readers(store *s, int *cleared)
{
    int dead = 0;
    int rc = mdb_reader_check(s->env, &dead);
    if (cleared != NULL)
        *cleared = dead;
    return rc == 0 ? 0 : -1;
}
