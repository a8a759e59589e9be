/* tests/unit/shm/test_store.c — the LMDB history store (shm/store.c): append
 * and find, duplicates, replay modes and bounds, marks, per-user trimming,
 * TTL and sweeps, eviction when the map is full, persistence, the writer lock,
 * readers in other processes (snapshots, map growth), and writers SIGKILLed
 * mid-commit leaving every batch all-or-nothing.
 *
 * Each test works in its own mkdtemp directory under $TMPDIR (or /tmp) and
 * removes it. LMDB forbids using an environment across fork, so every test
 * that forks does so before either side opens the store, and a process never
 * opens the same directory twice at once (a second writer is refused before
 * LMDB is touched, which is what makes that one case safe). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "shm/store.h"
#include "tests/check_main.h"

#define MIB (UINT64_C(1) << 20)

/* ---- helpers ------------------------------------------------------------ */

static void make_dir(char *path, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    int n = snprintf(path, size, "%s/wsn-store-XXXXXX", tmp);
    ck_assert(n > 0 && (size_t)n < size);
    ck_assert_ptr_nonnull(mkdtemp(path));
}

static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char f[4096];
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        ck_assert_int_eq(unlink(f), 0);
    }
    closedir(d);
    ck_assert_int_eq(rmdir(path), 0);
}

static store_options opts(const char *dir, uint64_t map_size, uint32_t history, uint64_t ttl,
                          bool durable, bool writer)
{
    store_options o = {.dir = dir, .map_size = map_size, .history_size = history,
                       .ttl_ns = ttl, .durable = durable, .writer = writer};
    return o;
}

static store *open_ok(const store_options *o)
{
    char err[256] = "";
    store *s = NULL;
    int rc = store_open(&s, o, err, sizeof err);
    ck_assert_msg(rc == 0, "store_open: %s", err);
    ck_assert_ptr_nonnull(s);
    return s;
}

static store *writer(const char *dir, uint32_t history, uint64_t ttl)
{
    store_options o = opts(dir, 64 * MIB, history, ttl, false, true);
    return open_ok(&o);
}

/* JSON that names its seq, padded to len bytes (len >= 32). */
static uint32_t make_json(char *buf, size_t len, uint64_t seq)
{
    int n = snprintf(buf, len, "{\"seq\":%" PRIu64 ",\"pad\":\"", seq);
    size_t i = (size_t)n;
    while (i + 2 < len - 1)
        buf[i++] = 'x';
    buf[i++] = '"';
    buf[i++] = '}';
    buf[i] = '\0';
    return (uint32_t)i;
}

static store_append app(int64_t user, int64_t id, uint64_t seq, uint64_t accepted, bool push,
                        const char *json)
{
    store_append a = {.user = user, .id = id, .seq = seq, .accepted_ns = accepted, .push = push,
                      .json = json, .json_len = (uint32_t)strlen(json)};
    return a;
}

static void write_ok(store *s, const store_append *a, size_t n, bool *dup, const store_mark *m,
                     size_t nm, store_write_stats *st)
{
    char err[256] = "";
    int rc = store_write(s, a, n, dup, m, nm, NULL, st, err, sizeof err);
    ck_assert_msg(rc == 0, "store_write: %s", err);
}

static void put1(store *s, int64_t user, int64_t id, uint64_t seq, uint64_t accepted, bool push)
{
    char json[64];
    snprintf(json, sizeof json, "{\"id\":%" PRId64 "}", id);
    store_append a = app(user, id, seq, accepted, push, json);
    write_ok(s, &a, 1, NULL, NULL, 0, NULL);
}

typedef struct {
    int n;
    int stop_after;     /* stop (returning 42) after this many; 0 = never */
    int64_t ids[4096];
    uint64_t seqs[4096];
} collect;

static int collect_fn(void *ctx, const store_entry *e)
{
    collect *c = ctx;
    if (c->n < 4096) {
        c->ids[c->n] = e->id;
        c->seqs[c->n] = e->seq;
    }
    c->n++;
    return c->stop_after != 0 && c->n >= c->stop_after ? 42 : 0;
}

static void send_byte(int fd, char c)
{
    ssize_t r;
    do
        r = write(fd, &c, 1);
    while (r < 0 && errno == EINTR);
}

/* Wait (bounded) for one byte; returns it, or -1 on timeout or EOF. */
static int wait_byte(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    char c;
    if (r <= 0 || read(fd, &c, 1) != 1)
        return -1;
    return (unsigned char)c;
}

static int child_status(pid_t pid)
{
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    ck_assert_int_eq(r, pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* In forked children: no check framework, just an exit status naming the line. */
#define CHILD_CHECK(cond)                                                         \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "child check failed at line %d: %s\n", __LINE__, #cond); \
            _exit(1);                                                             \
        }                                                                         \
    } while (0)

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(test_put_find)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 100, 0);
    const char *j1 = "{\"type\":\"notification\",\"body\":\"hello\"}";
    store_append a[2] = {app(7, 1001, 1, 5000, true, j1), app(8, 1001, 2, 6000, false, "{}")};
    store_write_stats st;
    write_ok(s, a, 2, NULL, NULL, 0, &st);
    ck_assert_uint_eq(st.appended, 2);
    ck_assert_uint_eq(st.duplicates, 0);

    store_entry e;
    ck_assert_int_eq(store_find(s, 7, 1001, 0, &e), 0);
    ck_assert_int_eq(e.user, 7);
    ck_assert_int_eq(e.id, 1001);
    ck_assert_uint_eq(e.seq, 1);
    ck_assert_uint_eq(e.accepted_ns, 5000);
    ck_assert_uint_eq(e.state, STORE_STORED);
    ck_assert(e.push);
    ck_assert_uint_eq(e.acked_ms, 0);
    ck_assert_uint_eq(e.json_len, strlen(j1));
    ck_assert_mem_eq(e.json, j1, strlen(j1));
    ck_assert_int_eq(store_find(s, 8, 1001, 0, &e), 0);
    ck_assert(!e.push);
    ck_assert_uint_eq(e.seq, 2);
    ck_assert_mem_eq(e.json, "{}", 2);
    ck_assert_int_eq(store_find(s, 7, 1002, 0, &e), 1);
    ck_assert_int_eq(store_find(s, 9, 1001, 0, &e), 1);
    ck_assert_int_eq(store_find(s, 0, 1001, 0, &e), 1);
    ck_assert_uint_eq(store_last_seq(s), 2);

    store_usage u;
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.entries, 2);
    ck_assert_uint_ge(u.map_size, 64 * MIB);
    ck_assert_uint_gt(u.used_bytes, 0);
    ck_assert_uint_le(u.used_bytes, u.file_bytes);
    store_close(s);
    store_close(NULL);
    remove_dir(dir);
}
END_TEST

START_TEST(test_duplicates)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 100, 0);
    store_append a[3] = {app(1, 1, 1, 1, true, "{\"first\":1}"), app(1, 2, 2, 2, true, "{}"),
                         app(1, 1, 3, 3, true, "{\"second\":1}")};
    bool dup[3] = {true, true, false};
    store_write_stats st;
    write_ok(s, a, 3, dup, NULL, 0, &st);
    ck_assert(!dup[0] && !dup[1] && dup[2]);
    ck_assert_uint_eq(st.appended, 2);
    ck_assert_uint_eq(st.duplicates, 1);

    store_append b[2] = {app(1, 2, 4, 4, true, "{\"again\":1}"), app(2, 2, 5, 5, true, "{}")};
    bool dup2[2];
    write_ok(s, b, 2, dup2, NULL, 0, &st);
    ck_assert(dup2[0] && !dup2[1]);
    ck_assert_uint_eq(st.appended, 1);
    ck_assert_uint_eq(st.duplicates, 1);

    store_entry e;
    ck_assert_int_eq(store_find(s, 1, 1, 0, &e), 0);
    ck_assert_uint_eq(e.json_len, strlen("{\"first\":1}"));
    ck_assert_mem_eq(e.json, "{\"first\":1}", e.json_len);
    ck_assert_uint_eq(e.seq, 1);
    ck_assert_int_eq(store_find(s, 1, 2, 0, &e), 0);
    ck_assert_uint_eq(e.seq, 2);
    collect c = {0};
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, &c, NULL), 0);
    ck_assert_int_eq(c.n, 2);
    store_usage u;
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.entries, 3);
    /* last_seq follows what was stored, not the skipped duplicate */
    ck_assert_uint_eq(store_last_seq(s), 5);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_replay_after)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 100, 0);
    uint64_t seq = 0;
    for (int i = 0; i < 10; i++) {
        seq++;
        put1(s, 1, 11 + i, seq, seq, true);   /* user 1: ids 11..20 at odd seqs */
        seq++;
        put1(s, 2, 11 + i, seq, seq, true);   /* user 2 interleaved */
    }
    collect c = {0};
    bool rec = false;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert(rec);
    ck_assert_int_eq(c.n, 10);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(c.ids[i], 11 + i);
        ck_assert_uint_eq(c.seqs[i], (uint64_t)(2 * i + 1));
    }

    memset(&c, 0, sizeof c);
    rec = false;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 15, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert(rec);
    ck_assert_int_eq(c.n, 5);
    ck_assert_int_eq(c.ids[0], 16);
    ck_assert_int_eq(c.ids[4], 20);

    memset(&c, 0, sizeof c);
    rec = true;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 999, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert(!rec);
    ck_assert_int_eq(c.n, 10);

    /* after the newest: nothing, but recovered */
    memset(&c, 0, sizeof c);
    rec = false;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 20, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert(rec);
    ck_assert_int_eq(c.n, 0);

    /* max_seq: id 17 has seq 13; nothing past it */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 0, 13, 0, collect_fn, &c, &rec), 0);
    ck_assert_int_eq(c.n, 7);
    ck_assert_int_eq(c.ids[6], 17);
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 15, 14, 0, collect_fn, &c, &rec), 0);
    ck_assert_int_eq(c.n, 2);
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 0, 0, 0, collect_fn, &c, &rec), 0);
    ck_assert_int_eq(c.n, 0);

    /* the callback stops it and its value comes back */
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, &c, NULL), 42);
    ck_assert_int_eq(c.n, 3);

    /* user 2's ids are its own: 15 is in user 2's history too */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 2, STORE_REPLAY_AFTER, 15, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert(rec);
    ck_assert_int_eq(c.n, 5);
    ck_assert_uint_eq(c.seqs[0], 12);

    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 3, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert_int_eq(c.n, 0);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_replay_unsent)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 100, 0);
    put1(s, 1, 1, 1, 1, true);    /* stays STORED, push: replayed */
    put1(s, 1, 2, 2, 2, false);   /* push=false: not replayed */
    put1(s, 1, 3, 3, 3, true);    /* SENT */
    put1(s, 1, 4, 4, 4, true);    /* ACKED */
    put1(s, 1, 5, 5, 5, true);    /* STORED, push */
    put1(s, 2, 6, 6, 6, true);    /* another user */
    store_mark m[2] = {{1, 3, STORE_SENT, 0}, {1, 4, STORE_ACKED, 99}};
    write_ok(s, NULL, 0, NULL, m, 2, NULL);
    collect c = {0};
    bool rec = true;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_UNSENT, 0, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert(rec);   /* untouched */
    ck_assert_int_eq(c.n, 2);
    ck_assert_int_eq(c.ids[0], 1);
    ck_assert_int_eq(c.ids[1], 5);
    rec = false;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_UNSENT, 0, 4, 0, collect_fn, &c, &rec), 0);
    ck_assert(!rec);
    ck_assert_int_eq(c.n, 1);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_marks_forward)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 100, 0);
    put1(s, 1, 1, 1, 1, true);
    put1(s, 1, 2, 2, 2, true);
    store_write_stats st;
    store_entry e;

    store_mark m = {1, 1, STORE_SENT, 0};
    write_ok(s, NULL, 0, NULL, &m, 1, &st);
    ck_assert_uint_eq(st.marked, 1);
    ck_assert_int_eq(store_find(s, 1, 1, 0, &e), 0);
    ck_assert_uint_eq(e.state, STORE_SENT);
    ck_assert_uint_eq(e.acked_ms, 0);

    m = (store_mark){1, 1, STORE_ACKED, 777};
    write_ok(s, NULL, 0, NULL, &m, 1, &st);
    ck_assert_uint_eq(st.marked, 1);
    m = (store_mark){1, 1, STORE_SENT, 0};   /* backwards: ignored */
    write_ok(s, NULL, 0, NULL, &m, 1, &st);
    ck_assert_uint_eq(st.marked, 0);
    m = (store_mark){1, 1, STORE_ACKED, 888};   /* same state: ignored, acked_ms kept */
    write_ok(s, NULL, 0, NULL, &m, 1, &st);
    ck_assert_uint_eq(st.marked, 0);
    ck_assert_int_eq(store_find(s, 1, 1, 0, &e), 0);
    ck_assert_uint_eq(e.state, STORE_ACKED);
    ck_assert_uint_eq(e.acked_ms, 777);
    ck_assert_mem_eq(e.json, "{\"id\":1}", e.json_len);

    /* STORED straight to ACKED; an unknown (user,id) is ignored */
    store_mark ms[3] = {{1, 2, STORE_ACKED, 55}, {9, 9, STORE_SENT, 0}, {1, 3, STORE_ACKED, 1}};
    write_ok(s, NULL, 0, NULL, ms, 3, &st);
    ck_assert_uint_eq(st.marked, 1);
    ck_assert_int_eq(store_find(s, 1, 2, 0, &e), 0);
    ck_assert_uint_eq(e.state, STORE_ACKED);
    ck_assert_uint_eq(e.acked_ms, 55);

    /* marks see the same batch's appends */
    store_append a = app(1, 3, 3, 3, true, "{\"x\":3}");
    m = (store_mark){1, 3, STORE_SENT, 0};
    write_ok(s, &a, 1, NULL, &m, 1, &st);
    ck_assert_uint_eq(st.appended, 1);
    ck_assert_uint_eq(st.marked, 1);
    ck_assert_int_eq(store_find(s, 1, 3, 0, &e), 0);
    ck_assert_uint_eq(e.state, STORE_SENT);
    ck_assert_mem_eq(e.json, "{\"x\":3}", e.json_len);

    char err[128];
    m = (store_mark){1, 1, 4, 0};
    ck_assert_int_eq(store_write(s, NULL, 0, NULL, &m, 1, NULL, NULL, err, sizeof err), -1);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_trim)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 5, 0);
    uint64_t seq = 0;
    store_write_stats st, total = {0};
    for (int i = 0; i < 3; i++) {
        seq++;
        put1(s, 2, 201 + i, seq, seq, true);
    }
    for (int i = 0; i < 8; i++) {
        char json[32];
        snprintf(json, sizeof json, "{\"n\":%d}", i);
        seq++;
        store_append a = app(1, 101 + i, seq, seq, true, json);
        write_ok(s, &a, 1, NULL, NULL, 0, &st);
        total.trimmed += st.trimmed;
    }
    ck_assert_uint_eq(total.trimmed, 3);
    store_entry e;
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(store_find(s, 1, 101 + i, 0, &e), i < 3 ? 1 : 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(store_find(s, 2, 201 + i, 0, &e), 0);
    collect c = {0};
    bool rec = true;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 102, UINT64_MAX, 0, collect_fn, &c, &rec), 0);
    ck_assert(!rec);   /* trimmed: replay all that is left */
    ck_assert_int_eq(c.n, 5);
    ck_assert_int_eq(c.ids[0], 104);
    store_usage u;
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.entries, 8);

    /* a batch longer than the history keeps only the newest */
    store_append b[7];
    for (int i = 0; i < 7; i++) {
        seq++;
        b[i] = app(3, 301 + i, seq, seq, true, "{}");
    }
    write_ok(s, b, 7, NULL, NULL, 0, &st);
    ck_assert_uint_eq(st.appended, 7);
    ck_assert_uint_eq(st.trimmed, 2);
    ck_assert_int_eq(store_find(s, 3, 302, 0, &e), 1);
    ck_assert_int_eq(store_find(s, 3, 303, 0, &e), 0);
    store_close(s);

    /* a smaller history_size on reopen trims on the user's next append */
    store_options o = opts(dir, 64 * MIB, 2, 0, false, true);
    s = open_ok(&o);
    seq++;
    put1(s, 1, 200, seq, seq, true);
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, &c, NULL), 0);
    ck_assert_int_eq(c.n, 2);
    ck_assert_int_eq(c.ids[0], 108);
    ck_assert_int_eq(c.ids[1], 200);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_neighbour_users)
{
    /* A user's count, seq and id keys share one tree with its neighbours':
     * replays, lookups and trims must stay inside one user's keys, whatever
     * the ids (as large as STORE_MAX_ID, or equal to another key's seq). */
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 4, 0);
    const int64_t users[] = {1, 2, 3, INT64_MAX - 1, INT64_MAX};
    const int64_t ids[] = {1, 2, 3, STORE_MAX_ID, STORE_MAX_ID - 1, 7};
    enum { NU = sizeof users / sizeof users[0], NI = sizeof ids / sizeof ids[0] };
    uint64_t seq = 0;
    for (int i = 0; i < NI; i++)          /* interleaved: seqs alternate between users */
        for (int u = 0; u < NU; u++) {
            seq++;
            put1(s, users[u], ids[i], seq, seq, true);
        }
    for (int u = 0; u < NU; u++) {
        collect c = {0};
        ck_assert_int_eq(store_replay(s, users[u], STORE_REPLAY_AFTER, 0, UINT64_MAX, 0,
                                      collect_fn, &c, NULL), 0);
        ck_assert_int_eq(c.n, 4);          /* history 4: the two oldest trimmed */
        for (int k = 0; k < 4; k++) {
            ck_assert_int_eq(c.ids[k], ids[k + 2]);
            ck_assert_uint_eq(c.seqs[k], (uint64_t)((k + 2) * NU + u + 1));
        }
        store_entry e;
        ck_assert_int_eq(store_find(s, users[u], 1, 0, &e), 1);
        ck_assert_int_eq(store_find(s, users[u], STORE_MAX_ID, 0, &e), 0);
        ck_assert_int_eq(e.user, users[u]);
        ck_assert_uint_eq(e.seq, (uint64_t)(3 * NU + u + 1));
        memset(&c, 0, sizeof c);
        ck_assert_int_eq(store_replay(s, users[u], STORE_REPLAY_AFTER, STORE_MAX_ID,
                                      UINT64_MAX, 0, collect_fn, &c, NULL), 0);
        ck_assert_int_eq(c.n, 2);
        ck_assert_int_eq(c.ids[0], STORE_MAX_ID - 1);
    }
    collect none = {0};
    ck_assert_int_eq(store_replay(s, 4, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn,
                                  &none, NULL), 0);
    ck_assert_int_eq(none.n, 0);           /* a user between the others has nothing */
    store_usage us;
    ck_assert_int_eq(store_get_usage(s, &us), 0);
    ck_assert_uint_eq(us.entries, 4 * NU);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_ttl_and_sweep)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 100, 1000);
    uint64_t seq = 0;
    for (int i = 1; i <= 10; i++) {
        put1(s, 1, i, ++seq, (uint64_t)i * 100, true);        /* accepted 100..1000 */
        put1(s, 2, 100 + i, ++seq, (uint64_t)i * 100 + 50, true);   /* seqs interleave */
    }
    store_entry e;
    /* at 1250, entries accepted at <= 250 are gone */
    ck_assert_int_eq(store_find(s, 1, 2, 1250, &e), 1);
    ck_assert_int_eq(store_find(s, 1, 3, 1250, &e), 0);
    ck_assert_int_eq(store_find(s, 2, 102, 1250, &e), 1);   /* 250 + 1000 <= 1250 */
    ck_assert_int_eq(store_find(s, 2, 103, 1250, &e), 0);
    ck_assert_int_eq(store_find(s, 1, 2, 0, &e), 0);        /* clock before acceptance */
    collect c = {0};
    bool rec = true;
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_AFTER, 1, UINT64_MAX, 1250, collect_fn, &c, &rec), 0);
    ck_assert(!rec);   /* id 1 expired: everything still alive */
    ck_assert_int_eq(c.n, 8);
    ck_assert_int_eq(c.ids[0], 3);
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 1, STORE_REPLAY_UNSENT, 0, UINT64_MAX, 1250, collect_fn, &c, NULL), 0);
    ck_assert_int_eq(c.n, 8);

    /* at 1660, accepted <= 660 expired: 100..600 of user 1, 150..650 of user 2 */
    size_t n = 99;
    char err[256];
    ck_assert_int_eq(store_sweep(s, 1660, 3, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 3);   /* bounded, oldest first: seqs 1, 2, 3 */
    store_usage u;
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.entries, 17);
    ck_assert_int_eq(store_find(s, 1, 2, 0, &e), 1);      /* seq 3 deleted */
    ck_assert_int_eq(store_find(s, 2, 102, 0, &e), 0);    /* seq 4 kept */
    ck_assert_int_eq(store_sweep(s, 1660, 100, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 9);
    ck_assert_int_eq(store_sweep(s, 1660, 100, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.entries, 8);
    ck_assert_int_eq(store_find(s, 1, 7, 0, &e), 0);
    ck_assert_int_eq(store_find(s, 1, 6, 0, &e), 1);
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(store_replay(s, 2, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, &c, NULL), 0);
    ck_assert_int_eq(c.n, 4);
    ck_assert_int_eq(c.ids[0], 107);
    ck_assert_int_eq(store_sweep(s, UINT64_MAX, SIZE_MAX, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 8);
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.entries, 0);
    ck_assert_uint_eq(store_last_seq(s), 20);
    store_close(s);

    /* ttl 0: nothing expires, sweeps do nothing */
    s = writer(dir, 100, 0);
    put1(s, 1, 50, 21, 1, true);
    ck_assert_int_eq(store_find(s, 1, 50, UINT64_MAX, &e), 0);
    ck_assert_int_eq(store_sweep(s, UINT64_MAX, 10, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 0);
    store_close(s);
    remove_dir(dir);
}
END_TEST

/* Appends far beyond a small map: the oldest go, the newest stay, the file
 * stays within map_size and the counts add up. */
static void run_map_full(int users, uint32_t json_size, int batches, int per_batch)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store_options o = opts(dir, MIB, 100000, 0, false, true);
    store *s = open_ok(&o);
    char *json = malloc((size_t)per_batch * (json_size + 1));   /* one buffer per append */
    ck_assert_ptr_nonnull(json);
    store_append *a = calloc((size_t)per_batch, sizeof *a);
    ck_assert_ptr_nonnull(a);
    uint64_t seq = 0, evicted = 0, appended = 0;
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < per_batch; i++) {
            seq++;
            a[i].user = 1 + (int64_t)((seq * 7919) % (uint64_t)users);
            a[i].id = (int64_t)seq;
            a[i].seq = seq;
            a[i].accepted_ns = seq;
            a[i].push = true;
            a[i].json = json + (size_t)i * (json_size + 1);
            a[i].json_len = make_json(json + (size_t)i * (json_size + 1), json_size + 1, seq);
        }
        store_write_stats st;
        write_ok(s, a, (size_t)per_batch, NULL, NULL, 0, &st);
        ck_assert_uint_eq(st.appended, (uint64_t)per_batch);
        ck_assert_uint_eq(st.trimmed, 0);
        evicted += st.evicted_full;
        appended += st.appended;
    }
    ck_assert_uint_gt(evicted, 0);
    store_usage u;
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.entries, appended - evicted);
    ck_assert_uint_le(u.file_bytes, MIB);
    ck_assert_uint_eq(u.map_size, MIB);
    /* survivors are exactly the newest: a suffix of the seqs */
    store_entry e;
    uint64_t first = seq - u.entries + 1;
    for (uint64_t q = 1; q <= seq; q++) {
        int64_t user = 1 + (int64_t)((q * 7919) % (uint64_t)users);
        int rc = store_find(s, user, (int64_t)q, 0, &e);
        ck_assert_int_eq(rc, q >= first ? 0 : 1);
        if (rc == 0) {
            char want[64];
            int n = snprintf(want, sizeof want, "{\"seq\":%" PRIu64 ",", q);
            ck_assert_mem_eq(e.json, want, (size_t)n);
        }
    }
    store_close(s);
    free(a);
    free(json);
    remove_dir(dir);
}

START_TEST(test_map_full_few_users)
{
    run_map_full(10, 250, 300, 20);
}
END_TEST

START_TEST(test_map_full_many_users)
{
    run_map_full(700, 250, 200, 50);
}
END_TEST

START_TEST(test_map_full_big_entries)
{
    run_map_full(5, 20 * 1024, 100, 3);
}
END_TEST

START_TEST(test_too_big)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store_options o = opts(dir, MIB, 1000, 0, false, true);
    store *s = open_ok(&o);
    for (uint64_t q = 1; q <= 100; q++)
        put1(s, 1, (int64_t)q, q, q, true);
    char *big = malloc(2 * MIB);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 2 * MIB);
    store_append a = {.user = 1, .id = 500, .seq = 101, .json = big, .json_len = (uint32_t)(2 * MIB)};
    char err[256] = "";
    store_write_stats st;
    ck_assert_int_eq(store_write(s, &a, 1, NULL, NULL, 0, NULL, &st, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "do not fit"));
    ck_assert_uint_eq(st.evicted_full, 0);

    /* each fits alone, the batch does not: evicts all there is, then fails */
    store_append b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (store_append){.user = 2, .id = 600 + i, .seq = 101 + (uint64_t)i, .json = big,
                              .json_len = 200 * 1024};
    err[0] = '\0';
    ck_assert_int_eq(store_write(s, b, 8, NULL, NULL, 0, NULL, &st, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "does not fit"));
    ck_assert_uint_eq(st.evicted_full, 100);
    ck_assert_uint_eq(st.appended, 0);
    store_entry e;
    ck_assert_int_eq(store_find(s, 2, 600, 0, &e), 1);
    ck_assert_uint_eq(store_last_seq(s), 100);
    /* still usable */
    put1(s, 3, 1, 101, 1, true);
    ck_assert_int_eq(store_find(s, 3, 1, 0, &e), 0);
    store_close(s);
    free(big);
    remove_dir(dir);
}
END_TEST

START_TEST(test_persist)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store_options o = opts(dir, 8 * MIB, 100, 0, true, true);
    store *s = open_ok(&o);
    ck_assert_uint_eq(store_last_seq(s), 0);
    ck_assert_int_eq(store_next_id(s), 1);
    put1(s, 1, 1, 10, 1, true);
    put1(s, 1, 2, 11, 1, true);
    store_set_next_id(s, 500);
    ck_assert_int_eq(store_next_id(s), 1);   /* not committed yet */
    put1(s, 2, 3, 12, 1, true);
    ck_assert_int_eq(store_next_id(s), 500);
    store_close(s);

    s = open_ok(&o);
    ck_assert_uint_eq(store_last_seq(s), 12);
    ck_assert_int_eq(store_next_id(s), 500);
    store_set_next_id(s, 400);   /* smaller: ignored */
    write_ok(s, NULL, 0, NULL, NULL, 0, NULL);
    ck_assert_int_eq(store_next_id(s), 500);
    store_set_next_id(s, 600);   /* an empty write still commits it */
    write_ok(s, NULL, 0, NULL, NULL, 0, NULL);
    ck_assert_int_eq(store_next_id(s), 600);
    store_entry e;
    ck_assert_int_eq(store_find(s, 1, 2, 0, &e), 0);
    store_close(s);

    o.writer = false;   /* and a reader sees the same */
    s = open_ok(&o);
    ck_assert_uint_eq(store_last_seq(s), 12);
    ck_assert_int_eq(store_next_id(s), 600);
    ck_assert_int_eq(store_find(s, 2, 3, 0, &e), 0);
    char err[128] = "";
    ck_assert_int_eq(store_write(s, NULL, 0, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "read-only"));
    ck_assert_int_eq(store_sweep(s, 0, 1, NULL, err, sizeof err), -1);
    store_usage u;
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_eq(u.map_size, 8 * MIB);
    ck_assert_uint_eq(u.entries, 3);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_seq_not_increasing)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store *s = writer(dir, 100, 0);
    put1(s, 1, 1, 5, 1, true);
    char err[256] = "";
    store_append a = app(1, 2, 5, 1, true, "{}");
    ck_assert_int_eq(store_write(s, &a, 1, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "seq 5"));
    a.seq = 4;
    ck_assert_int_eq(store_write(s, &a, 1, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    store_append b[2] = {app(1, 3, 7, 1, true, "{}"), app(1, 4, 6, 1, true, "{}")};
    ck_assert_int_eq(store_write(s, b, 2, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    b[1].seq = 7;
    ck_assert_int_eq(store_write(s, b, 2, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    store_entry e;
    ck_assert_int_eq(store_find(s, 1, 3, 0, &e), 1);   /* nothing of a refused batch */
    ck_assert_uint_eq(store_last_seq(s), 5);
    /* invalid users and ids */
    a = app(0, 1, 9, 1, true, "{}");
    ck_assert_int_eq(store_write(s, &a, 1, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    a = app(1, 0, 9, 1, true, "{}");
    ck_assert_int_eq(store_write(s, &a, 1, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    a = app(1, STORE_MAX_ID + 1, 9, 1, true, "{}");
    ck_assert_int_eq(store_write(s, &a, 1, NULL, NULL, 0, NULL, NULL, err, sizeof err), -1);
    a = app(1, STORE_MAX_ID, 9, 1, true, "{}");
    write_ok(s, &a, 1, NULL, NULL, 0, NULL);
    ck_assert_int_eq(store_find(s, 1, STORE_MAX_ID, 0, &e), 0);
    store_close(s);
    remove_dir(dir);
}
END_TEST

START_TEST(test_open_errors)
{
    char dir[256], err[256];
    make_dir(dir, sizeof dir);
    store *s = (store *)&err;   /* any non-NULL value: a failed open must reset it */
    store_options o = opts(dir, 64 * MIB, 10, 0, false, false);
    err[0] = '\0';
    ck_assert_int_eq(store_open(&s, &o, err, sizeof err), -1);   /* reader, no store yet */
    ck_assert_ptr_null(s);
    ck_assert_str_ne(err, "");
    o.writer = true;
    o.map_size = 4096;
    err[0] = '\0';
    ck_assert_int_eq(store_open(&s, &o, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "map size"));
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    o = opts(missing, 64 * MIB, 10, 0, false, true);
    err[0] = '\0';
    ck_assert_int_eq(store_open(&s, &o, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, missing));
    remove_dir(dir);
}
END_TEST

START_TEST(test_old_version_refused)
{
    /* A store written by another layout version is refused by name, never
     * read with the wrong layout (README: "Durability"). */
    /* Version 1's layout, as it wrote it: notes, byuser, ids, users, meta. */
    char dir[256], err[256];
    make_dir(dir, sizeof dir);
    store *s = NULL;
    store_options o = opts(dir, 64 * MIB, 10, 0, false, true);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, 64 * MIB), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    const char *v1[] = {"notes", "byuser", "ids", "users", "meta"};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(mdb_dbi_open(txn, v1[i], MDB_CREATE, &dbi), 0);
    unsigned char one[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    MDB_val k = {7, "version"}, v = {sizeof one, one};
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);   /* dbi is meta */
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    /* a lock file as a writer leaves it */
    char lock[300];
    snprintf(lock, sizeof lock, "%s/wsnotifyd.lock", dir);
    FILE *lf = fopen(lock, "w");
    ck_assert_ptr_nonnull(lf);
    fclose(lf);
    for (int writer = 1; writer >= 0; writer--) {
        o.writer = writer;
        err[0] = '\0';
        ck_assert_int_eq(store_open(&s, &o, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "version 1, expected 2"));
    }
    remove_dir(dir);
}
END_TEST

START_TEST(test_smaller_map_on_reopen)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    store_options o = opts(dir, 16 * MIB, 100000, 0, false, true);
    store *s = open_ok(&o);
    char json[1024];
    store_append a[50];
    uint64_t seq = 0;
    for (int b = 0; b < 80; b++) {   /* ~4 MiB */
        for (int i = 0; i < 50; i++) {
            seq++;
            a[i] = (store_append){.user = 1 + (int64_t)(seq % 13), .id = (int64_t)seq, .seq = seq,
                                  .json = json, .json_len = make_json(json, sizeof json, seq)};
        }
        write_ok(s, a, 50, NULL, NULL, 0, NULL);
    }
    store_usage before;
    ck_assert_int_eq(store_get_usage(s, &before), 0);
    store_close(s);
    ck_assert_uint_gt(before.file_bytes, 2 * MIB);

    o.map_size = MIB;   /* below what the file already spans */
    s = open_ok(&o);
    store_usage u;
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_gt(u.map_size, before.file_bytes);
    ck_assert_uint_eq(u.entries, seq);
    uint64_t evicted = 0;
    for (int b = 0; b < 20; b++) {
        for (int i = 0; i < 50; i++) {
            seq++;
            a[i] = (store_append){.user = 1 + (int64_t)(seq % 13), .id = (int64_t)seq, .seq = seq,
                                  .json = json, .json_len = make_json(json, sizeof json, seq)};
        }
        store_write_stats st;
        write_ok(s, a, 50, NULL, NULL, 0, &st);
        evicted += st.evicted_full;
    }
    ck_assert_int_eq(store_get_usage(s, &u), 0);
    ck_assert_uint_le(u.file_bytes, u.map_size);
    ck_assert_uint_eq(u.entries, seq - evicted);
    store_entry e;
    ck_assert_int_eq(store_find(s, 1 + (int64_t)(seq % 13), (int64_t)seq, 0, &e), 0);
    store_close(s);
    remove_dir(dir);
}
END_TEST

/* A second writer is refused with the holder's pid, in this process and in
 * another; a reader opens alongside the writer. */
START_TEST(test_second_writer)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    int go[2], done[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(done), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(go[1]);
        close(done[0]);
        CHILD_CHECK(wait_byte(go[0], 20000) == 'g');
        char err[512] = "", want[512];
        store *w = NULL;
        store_options o = opts(dir, 64 * MIB, 10, 0, false, true);
        CHILD_CHECK(store_open(&w, &o, err, sizeof err) == -1);
        snprintf(want, sizeof want, "another wsnotifyd (pid %ld) is using %s", (long)getppid(), dir);
        CHILD_CHECK(strcmp(err, want) == 0);
        o.writer = false;
        store *r = NULL;
        CHILD_CHECK(store_open(&r, &o, err, sizeof err) == 0);
        store_entry e;
        CHILD_CHECK(store_find(r, 1, 1, 0, &e) == 0);
        store_close(r);
        send_byte(done[1], 'd');
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    store *s = writer(dir, 10, 0);
    put1(s, 1, 1, 1, 1, true);
    char err[512] = "", want[512];
    store *w = NULL;
    store_options o = opts(dir, 64 * MIB, 10, 0, false, true);
    ck_assert_int_eq(store_open(&w, &o, err, sizeof err), -1);
    snprintf(want, sizeof want, "another wsnotifyd (pid %ld) is using %s", (long)getpid(), dir);
    ck_assert_str_eq(err, want);
    send_byte(go[1], 'g');
    ck_assert_int_eq(wait_byte(done[0], 30000), 'd');
    ck_assert_int_eq(child_status(pid), 0);
    /* still ours and working after the refusals */
    put1(s, 1, 2, 2, 1, true);
    store_close(s);
    s = writer(dir, 10, 0);   /* the lock went with the close */
    store_close(s);
    close(go[1]);
    close(done[0]);
    remove_dir(dir);
}
END_TEST

/* A reader in another process: sees each commit, follows the writer's map
 * when it grows past the reader's, and never sees half a batch while the
 * writer commits concurrently. */
START_TEST(test_reader_process)
{
    enum { BATCH = 10, ROUNDS = 150 };
    char dir[256];
    make_dir(dir, sizeof dir);
    int to_child[2], to_parent[2];
    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(to_parent), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        CHILD_CHECK(wait_byte(to_child[0], 20000) == 'a');
        store_options o = opts(dir, 0, 0, 0, false, false);
        char err[256];
        store *r = NULL;
        CHILD_CHECK(store_open(&r, &o, err, sizeof err) == 0);
        store_entry e;
        CHILD_CHECK(store_find(r, 1, 5, 0, &e) == 0);
        CHILD_CHECK(store_find(r, 2, 1, 0, &e) == 1);
        collect *c = calloc(1, sizeof *c);
        CHILD_CHECK(c != NULL);
        CHILD_CHECK(store_replay(r, 1, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, c, NULL) == 0);
        CHILD_CHECK(c->n == 10);
        send_byte(to_parent[1], 'b');

        CHILD_CHECK(wait_byte(to_child[0], 30000) == 'c');   /* the map grew */
        CHILD_CHECK(store_find(r, 2, 3000, 0, &e) == 0);
        CHILD_CHECK(e.json_len == 1000);
        store_usage u;
        CHILD_CHECK(store_get_usage(r, &u) == 0);
        CHILD_CHECK(u.entries == 3010);
        CHILD_CHECK(u.map_size == 16 * MIB);
        send_byte(to_parent[1], 'd');

        /* concurrent commits: every snapshot holds whole batches only */
        int last = 0, reads = 0;
        for (;;) {
            struct pollfd p = {.fd = to_child[0], .events = POLLIN};
            int finished = poll(&p, 1, 0) > 0;
            memset(c, 0, sizeof *c);
            CHILD_CHECK(store_replay(r, 3, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, collect_fn, c, NULL) == 0);
            CHILD_CHECK(c->n % BATCH == 0);
            CHILD_CHECK(c->n >= last);
            last = c->n;
            reads++;
            if (finished)
                break;
        }
        CHILD_CHECK(last == BATCH * ROUNDS);
        CHILD_CHECK(reads > 1);
        free(c);
        store_close(r);
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);

    store_options o = opts(dir, MIB, 100000, 0, false, true);
    store *s = open_ok(&o);
    uint64_t seq = 0;
    for (int i = 1; i <= 10; i++)
        put1(s, 1, i, ++seq, 1, true);
    send_byte(to_child[1], 'a');
    ck_assert_int_eq(wait_byte(to_parent[0], 30000), 'b');

    /* a new writer with a larger map writes well past the reader's mapping */
    store_close(s);
    o.map_size = 16 * MIB;
    s = open_ok(&o);
    char json[1001];
    memset(json, 'j', 1000);
    json[1000] = '\0';
    store_append a[100];
    for (int b = 0; b < 30; b++) {
        for (int i = 0; i < 100; i++) {
            seq++;
            a[i] = app(2, b * 100 + i + 1, seq, 1, true, json);
        }
        write_ok(s, a, 100, NULL, NULL, 0, NULL);
    }
    send_byte(to_child[1], 'c');
    ck_assert_int_eq(wait_byte(to_parent[0], 30000), 'd');

    for (int b = 0; b < ROUNDS; b++) {
        store_append ba[BATCH];
        for (int i = 0; i < BATCH; i++) {
            seq++;
            ba[i] = app(3, b * BATCH + i + 1, seq, 1, true, "{\"concurrent\":true}");
        }
        write_ok(s, ba, BATCH, NULL, NULL, 0, NULL);
    }
    send_byte(to_child[1], 'e');
    ck_assert_int_eq(child_status(pid), 0);
    store_close(s);
    close(to_child[1]);
    close(to_parent[0]);
    remove_dir(dir);
}
END_TEST

/* A reader that died without closing leaves a slot the writer clears. */
START_TEST(test_check_readers)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(go[1]);
        CHILD_CHECK(wait_byte(go[0], 20000) == 'g');
        store_options o = opts(dir, 0, 0, 0, false, false);
        char err[256];
        store *r = NULL;
        CHILD_CHECK(store_open(&r, &o, err, sizeof err) == 0);
        store_entry e;
        CHILD_CHECK(store_find(r, 1, 1, 0, &e) == 0);
        _exit(0);   /* no store_close: the slot stays behind */
    }
    close(go[0]);
    store *s = writer(dir, 10, 0);
    put1(s, 1, 1, 1, 1, true);
    send_byte(go[1], 'g');
    ck_assert_int_eq(child_status(pid), 0);
    int cleared = -1;
    ck_assert_int_eq(store_check_readers(s, &cleared), 0);
    ck_assert_int_ge(cleared, 1);
    ck_assert_int_eq(store_check_readers(s, &cleared), 0);
    ck_assert_int_eq(cleared, 0);
    store_close(s);
    close(go[1]);
    remove_dir(dir);
}
END_TEST

/* A writer SIGKILLed at random moments, many times: each reopen finds whole
 * batches only, and last_seq is the end of the last whole batch. */
enum { KILL_BATCH = 50, KILL_USERS = 7, KILL_ROUNDS = 40 };

static int64_t kill_user(uint64_t seq)
{
    return 1 + (int64_t)(seq % KILL_USERS);
}

static void kill_child(const char *dir, int report_fd)
{
    store_options o = opts(dir, 256 * MIB, 1000000, 0, true, true);
    char err[256];
    store *s = NULL;
    CHILD_CHECK(store_open(&s, &o, err, sizeof err) == 0);
    uint64_t seq = store_last_seq(s);
    CHILD_CHECK(seq % KILL_BATCH == 0);
    char json[KILL_BATCH][300];
    store_append a[KILL_BATCH];
    for (;;) {
        for (int i = 0; i < KILL_BATCH; i++) {
            uint64_t q = seq + 1 + (uint64_t)i;
            a[i] = (store_append){.user = kill_user(q), .id = (int64_t)q, .seq = q, .accepted_ns = q,
                                  .push = true, .json = json[i]};
            a[i].json_len = make_json(json[i], sizeof json[i], q);
        }
        CHILD_CHECK(store_write(s, a, KILL_BATCH, NULL, NULL, 0, NULL, NULL, err, sizeof err) == 0);
        seq += KILL_BATCH;
        send_byte(report_fd, 'c');
    }
}

typedef struct {
    uint8_t *seen;
    uint64_t limit;
    int bad;
} seen_set;

static int mark_seen(void *ctx, const store_entry *e)
{
    seen_set *v = ctx;
    char want[64];
    int n = snprintf(want, sizeof want, "{\"seq\":%" PRIu64 ",", e->seq);
    if (e->seq == 0 || e->seq > v->limit || v->seen[e->seq] || e->id != (int64_t)e->seq ||
        e->json_len < (uint32_t)n || memcmp(e->json, want, (size_t)n) != 0)
        v->bad++;
    else
        v->seen[e->seq] = 1;
    return 0;
}

START_TEST(test_kill_mid_commit)
{
    char dir[256];
    make_dir(dir, sizeof dir);
    unsigned rng = (unsigned)now_ns();
    uint64_t prev = 0;
    int mid_loop_kills = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int rep[2];
        ck_assert_int_eq(pipe(rep), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(rep[0]);
            kill_child(dir, rep[1]);
            _exit(2);
        }
        close(rep[1]);
        /* Mostly kill mid-loop after a first commit; sometimes during open. */
        if (rand_r(&rng) % 4 != 0 && wait_byte(rep[0], 20000) == 'c')
            mid_loop_kills++;
        struct timespec d = {0, (long)(rand_r(&rng) % 15000) * 1000};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int st = child_status(pid);
        ck_assert_msg(st == 128 + SIGKILL, "writer child ended with %d before the kill", st);
        close(rep[0]);

        store_options o = opts(dir, 256 * MIB, 1000000, 0, true, true);
        store *s = open_ok(&o);
        uint64_t last = store_last_seq(s);
        ck_assert_uint_eq(last % KILL_BATCH, 0);
        ck_assert_uint_ge(last, prev);
        store_usage u;
        ck_assert_int_eq(store_get_usage(s, &u), 0);
        ck_assert_uint_eq(u.entries, last);
        seen_set v = {calloc(last + 2, 1), last, 0};
        ck_assert_ptr_nonnull(v.seen);
        for (int64_t user = 1; user <= KILL_USERS; user++)
            ck_assert_int_eq(store_replay(s, user, STORE_REPLAY_AFTER, 0, UINT64_MAX, 0, mark_seen,
                                          &v, NULL), 0);
        ck_assert_int_eq(v.bad, 0);
        for (uint64_t q = 1; q <= last; q++)
            ck_assert_msg(v.seen[q], "seq %" PRIu64 " of %" PRIu64 " missing", q, last);
        store_entry e;
        ck_assert_int_eq(store_find(s, kill_user(last + 1), (int64_t)last + 1, 0, &e), 1);
        free(v.seen);
        store_close(s);
        prev = last;
    }
    ck_assert_int_gt(mid_loop_kills, 0);
    ck_assert_uint_gt(prev, 0);
    remove_dir(dir);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_put_find);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_replay_after);
    tcase_add_test(tc, test_replay_unsent);
    tcase_add_test(tc, test_marks_forward);
    tcase_add_test(tc, test_trim);
    tcase_add_test(tc, test_neighbour_users);
    tcase_add_test(tc, test_ttl_and_sweep);
    tcase_add_test(tc, test_map_full_few_users);
    tcase_add_test(tc, test_map_full_many_users);
    tcase_add_test(tc, test_map_full_big_entries);
    tcase_add_test(tc, test_too_big);
    tcase_add_test(tc, test_persist);
    tcase_add_test(tc, test_seq_not_increasing);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_old_version_refused);
    tcase_add_test(tc, test_smaller_map_on_reopen);
    tcase_add_test(tc, test_second_writer);
    tcase_add_test(tc, test_reader_process);
    tcase_add_test(tc, test_check_readers);
    tcase_add_test(tc, test_kill_mid_commit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(store_suite());
}
