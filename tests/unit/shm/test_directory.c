/* test_directory.c — single-process tests of the shared-memory user directory
 * (shm/directory.c): claim/release/lookup semantics, capacity (with and
 * without tombstones), slot epochs and DIR_STALE, the lazy sweep of stale
 * entries, epoch wrap-around and the packed holder's extremes, generations,
 * mapping at two addresses, and a randomised comparison against a trivially
 * correct model. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/directory.h"
#include "tests/check_main.h"

typedef struct {
    void *mem;
    size_t size;
    directory *d;
} region;

/* ck_assert records a checkpoint through a system call on every pass; the
 * loops below check millions of things, so they only call into check on
 * failure. */
#define expect(cond)                                                          \
    do {                                                                      \
        if (!(cond))                                                          \
            ck_abort_msg("%s:%d: expected %s", __FILE__, __LINE__, #cond);    \
    } while (0)

static const dir_holder NONE = { .slot = -1, .epoch = 0, .generation = 0 };

static void region_open(region *r, uint32_t capacity)
{
    r->size = directory_size(capacity);
    ck_assert_uint_gt(r->size, 0);
    r->mem = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(r->mem, MAP_FAILED);
    ck_assert_int_eq(directory_init(r->mem, capacity), 0);
    r->d = directory_attach(r->mem);
    ck_assert_ptr_nonnull(r->d);
}

static void region_close(region *r)
{
    ck_assert_int_eq(munmap(r->mem, r->size), 0);
}

/* A fresh connection of the current incarnation of slot. */
static dir_holder conn_in(directory *d, int slot)
{
    return (dir_holder){
        .slot = slot,
        .epoch = directory_slot_epoch(d, slot),
        .generation = directory_next_generation(d),
    };
}

static void assert_same(dir_holder a, dir_holder b)
{
    expect(a.slot == b.slot);
    expect(a.epoch == b.epoch);
    expect(a.generation == b.generation);
}

/* Claim that must succeed; returns the holder it displaced. */
static dir_holder claim_ok(directory *d, int64_t user, const dir_holder *me)
{
    dir_holder prev = { .slot = 77, .epoch = 77, .generation = 77 };
    expect(directory_claim(d, user, me, &prev) == DIR_OK);
    return prev;
}

static void claim_refused(directory *d, int64_t user, const dir_holder *me, dir_status want)
{
    dir_holder prev = { .slot = 77, .epoch = 77, .generation = 77 };
    expect(directory_claim(d, user, me, &prev) == want);
    assert_same(prev, NONE);
}

static void claim_full(directory *d, int64_t user, const dir_holder *me)
{
    claim_refused(d, user, me, DIR_FULL);
}

static void claim_stale(directory *d, int64_t user, const dir_holder *me)
{
    claim_refused(d, user, me, DIR_STALE);
}

static void assert_holder(directory *d, int64_t user, const dir_holder *want)
{
    dir_holder got;
    if (!directory_lookup(d, user, &got))
        ck_abort_msg("user %lld missing", (long long)user);
    assert_same(got, *want);
}

static void assert_absent(directory *d, int64_t user)
{
    dir_holder got = NONE;
    if (directory_lookup(d, user, &got))
        ck_abort_msg("user %lld present", (long long)user);
}

START_TEST(test_size_and_attach)
{
    ck_assert_uint_eq(directory_size(0), 0);
    ck_assert_uint_eq(directory_size((UINT32_C(1) << 24) + 1), 0);
    ck_assert_uint_gt(directory_size(1), 0);
    ck_assert_uint_gt(directory_size(1u << 24), directory_size(1000));
    ck_assert_uint_eq(directory_size(1000) % (size_t)sysconf(_SC_PAGESIZE), 0);

    region r;
    r.size = directory_size(8);
    r.mem = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(r.mem, MAP_FAILED);
    ck_assert_ptr_null(directory_attach(r.mem)); /* not formatted yet */
    ck_assert_ptr_null(directory_attach(NULL));
    ck_assert_int_eq(directory_init(r.mem, 0), -1);
    ck_assert_int_eq(directory_init(NULL, 8), -1);
    ck_assert_int_eq(directory_init(r.mem, 8), 0);
    directory *d = directory_attach(r.mem);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(directory_capacity(d), 8);
    ck_assert_uint_eq(directory_count(d), 0);
    ck_assert_uint_ne(directory_slot_epoch(d, 0), 0);
    ck_assert_uint_eq(directory_slot_epoch(d, -1), 0);
    ck_assert_uint_eq(directory_slot_epoch(d, DIRECTORY_MAX_SLOTS), 0);
    region_close(&r);
}
END_TEST

START_TEST(test_claim_replace_release)
{
    region r;
    region_open(&r, 16);
    directory *d = r.d;

    dir_holder a = conn_in(d, 0);
    assert_same(claim_ok(d, 42, &a), NONE);
    assert_holder(d, 42, &a);
    ck_assert_uint_eq(directory_count(d), 1);

    dir_holder b = conn_in(d, 1);
    assert_same(claim_ok(d, 42, &b), a); /* the claimer learns whom to evict */
    assert_holder(d, 42, &b);
    ck_assert_uint_eq(directory_count(d), 1);

    /* The evicted connection closing later must not remove its successor. */
    ck_assert(!directory_release(d, 42, a.generation));
    assert_holder(d, 42, &b);
    ck_assert(!directory_release(d, 43, b.generation));
    ck_assert(directory_release(d, 42, b.generation));
    assert_absent(d, 42);
    ck_assert_uint_eq(directory_count(d), 0);
    ck_assert(!directory_release(d, 42, b.generation));

    /* Re-claiming your own user displaces your own older connection. */
    dir_holder c = conn_in(d, 2);
    dir_holder c2 = conn_in(d, 2);
    assert_same(claim_ok(d, 42, &c), NONE);
    assert_same(claim_ok(d, 42, &c2), c);
    ck_assert_uint_eq(directory_count(d), 1);
    region_close(&r);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    region r;
    region_open(&r, 4);
    directory *d = r.d;
    dir_holder ok = conn_in(d, 0);
    dir_holder bad = ok;

    claim_full(d, 0, &ok);
    claim_full(d, -5, &ok);
    claim_full(d, 1, NULL);
    bad.generation = 0;
    claim_full(d, 1, &bad);
    bad = ok;
    bad.slot = -1;
    claim_full(d, 1, &bad);
    bad.slot = DIRECTORY_MAX_SLOTS;
    claim_full(d, 1, &bad);
    ck_assert_uint_eq(directory_count(d), 0);
    ck_assert(!directory_release(d, 0, ok.generation));
    ck_assert(!directory_release(d, 1, 0));
    ck_assert(!directory_lookup(d, -1, NULL));
    ck_assert_uint_eq(directory_slot_bump(d, -1), 0);

    /* prev may be NULL, out may be NULL. */
    ck_assert_int_eq(directory_claim(d, 1, &ok, NULL), DIR_OK);
    ck_assert(directory_lookup(d, 1, NULL));
    region_close(&r);
}
END_TEST

START_TEST(test_capacity)
{
    region r;
    region_open(&r, 3);
    directory *d = r.d;
    dir_holder h[5];
    for (int i = 0; i < 5; i++)
        h[i] = conn_in(d, i % 2);

    for (int i = 0; i < 3; i++)
        assert_same(claim_ok(d, 100 + i, &h[i]), NONE);
    ck_assert_uint_eq(directory_count(d), 3);
    claim_full(d, 103, &h[3]);
    assert_absent(d, 103);
    ck_assert_uint_eq(directory_count(d), 3);

    /* A user already present never makes the directory full. */
    assert_same(claim_ok(d, 101, &h[3]), h[1]);
    ck_assert_uint_eq(directory_count(d), 3);

    ck_assert(directory_release(d, 100, h[0].generation));
    assert_same(claim_ok(d, 103, &h[4]), NONE);
    ck_assert_uint_eq(directory_count(d), 3);
    claim_full(d, 104, &h[0]);
    region_close(&r);
}
END_TEST

START_TEST(test_slot_bump)
{
    region r;
    region_open(&r, 16);
    directory *d = r.d;
    uint32_t e0 = directory_slot_epoch(d, 0);

    dir_holder a = conn_in(d, 0), b = conn_in(d, 0), c = conn_in(d, 1);
    claim_ok(d, 1, &a);
    claim_ok(d, 2, &b);
    claim_ok(d, 3, &c);
    ck_assert_uint_eq(directory_count(d), 3);

    ck_assert_uint_eq(directory_slot_bump(d, 0), e0 + 1);
    ck_assert_uint_eq(directory_slot_epoch(d, 0), e0 + 1);
    ck_assert_uint_eq(directory_count(d), 1); /* at once, no scan */
    assert_absent(d, 1);
    assert_absent(d, 2);
    assert_holder(d, 3, &c);

    /* The respawned worker's connection replaces nobody. */
    dir_holder a2 = conn_in(d, 0);
    ck_assert_uint_eq(a2.epoch, e0 + 1);
    assert_same(claim_ok(d, 1, &a2), NONE);
    ck_assert_uint_eq(directory_count(d), 2);

    /* Releasing a stale entry works and must not uncount it a second time. */
    ck_assert(directory_release(d, 2, b.generation));
    ck_assert(!directory_release(d, 2, b.generation));
    ck_assert_uint_eq(directory_count(d), 2);

    /* A holder stamped with a dead (or unborn) epoch is refused as stale. */
    dir_holder zombie = conn_in(d, 0);
    zombie.epoch = e0;
    claim_stale(d, 3, &zombie);
    claim_stale(d, 9, &zombie);
    zombie.epoch = e0 + 2;
    claim_stale(d, 9, &zombie);
    assert_holder(d, 3, &c);
    ck_assert_uint_eq(directory_count(d), 2);

    /* Moving a user to another slot moves its count too. */
    dir_holder c2 = conn_in(d, 0);
    assert_same(claim_ok(d, 3, &c2), c);
    ck_assert_uint_eq(directory_slot_bump(d, 1), directory_slot_epoch(d, 1));
    ck_assert_uint_eq(directory_count(d), 2);
    assert_holder(d, 3, &c2);
    directory_slot_bump(d, 0);
    ck_assert_uint_eq(directory_count(d), 0);
    assert_absent(d, 3);
    region_close(&r);
}
END_TEST

typedef struct {
    int64_t users[8];
    uint32_t gens[8];
    size_t n;
} seen_list;

static void note_entry(void *ctx, int64_t user, uint32_t generation)
{
    seen_list *s = ctx;
    ck_assert_uint_lt(s->n, 8);
    s->users[s->n] = user;
    s->gens[s->n++] = generation;
}

/* A dead worker's entries can still be listed once its epoch is bumped (the
 * master releases them in Redis), and only they. */
START_TEST(test_each_of_dead_epoch)
{
    region r;
    region_open(&r, 16);
    directory *d = r.d;
    uint32_t e0 = directory_slot_epoch(d, 0);
    dir_holder a = conn_in(d, 0), b = conn_in(d, 0), c = conn_in(d, 1), gone = conn_in(d, 0);
    claim_ok(d, 1, &a);
    claim_ok(d, 2, &b);
    claim_ok(d, 3, &c);
    claim_ok(d, 4, &gone);
    ck_assert(directory_release(d, 4, gone.generation));
    directory_slot_bump(d, 0);
    seen_list s = {0};
    ck_assert_uint_eq(directory_each_of_epoch(d, 0, e0, note_entry, &s), 2);
    ck_assert_uint_eq(s.n, 2);
    for (size_t i = 0; i < s.n; i++) {
        ck_assert(s.users[i] == 1 || s.users[i] == 2);
        ck_assert_uint_eq(s.gens[i], s.users[i] == 1 ? a.generation : b.generation);
    }
    seen_list none = {0};
    ck_assert_uint_eq(directory_each_of_epoch(d, 0, e0 + 1, note_entry, &none), 0);
    ck_assert_uint_eq(directory_each_of_epoch(d, 1, directory_slot_epoch(d, 1), note_entry,
                                              &none), 1);
    ck_assert_uint_eq(directory_each_of_epoch(d, -1, 0, note_entry, &none), 0);
    region_close(&r);
}
END_TEST

START_TEST(test_stale_entry_respects_capacity)
{
    region r;
    region_open(&r, 1);
    directory *d = r.d;
    dir_holder a = conn_in(d, 0);
    claim_ok(d, 5, &a);
    directory_slot_bump(d, 0);
    dir_holder b = conn_in(d, 1);
    claim_ok(d, 6, &b);
    /* User 5 still has an entry, but a stale one: it is absent, so full. */
    dir_holder a2 = conn_in(d, 0);
    claim_full(d, 5, &a2);
    ck_assert(directory_release(d, 6, b.generation));
    assert_same(claim_ok(d, 5, &a2), NONE);
    ck_assert_uint_eq(directory_count(d), 1);
    region_close(&r);
}
END_TEST

START_TEST(test_many_users)
{
    enum { N = 10000 };
    region r;
    region_open(&r, N);
    directory *d = r.d;
    uint32_t *gen = calloc(N + 1, sizeof *gen);
    ck_assert_ptr_nonnull(gen);

    for (int64_t u = 1; u <= N; u++) {
        dir_holder h = conn_in(d, (int)(u % 7));
        assert_same(claim_ok(d, u, &h), NONE);
        gen[u] = h.generation;
    }
    expect(directory_count(d) == N);
    dir_holder extra = conn_in(d, 0);
    claim_full(d, N + 1, &extra);

    for (int64_t u = 1; u <= N; u += 2)
        expect(directory_release(d, u, gen[u]));
    expect(directory_count(d) == N / 2);
    for (int64_t u = 1; u <= N; u++) {
        dir_holder got;
        bool present = directory_lookup(d, u, &got);
        expect(present == (u % 2 == 0));
        if (present)
            expect(got.generation == gen[u]);
    }
    for (int64_t u = 1; u <= N; u += 2) {
        dir_holder h = conn_in(d, 3);
        assert_same(claim_ok(d, u, &h), NONE);
        gen[u] = h.generation;
    }
    expect(directory_count(d) == N);
    for (int64_t u = 1; u <= N; u++) {
        dir_holder got;
        expect(directory_lookup(d, u, &got));
        expect(got.generation == gen[u]);
    }
    free(gen);
    region_close(&r);
}
END_TEST

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

START_TEST(test_generations)
{
    enum { PER_PROC = 20000 };
    region r;
    region_open(&r, 4);
    directory *d = r.d;
    expect(directory_next_generation(d) == 1);

    /* Two processes draw at once: every value must be unique and each one's
     * sequence increasing. */
    uint32_t *child = mmap(NULL, PER_PROC * sizeof *child, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(child, MAP_FAILED);
    uint32_t *all = malloc(2 * PER_PROC * sizeof *all);
    ck_assert_ptr_nonnull(all);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (int i = 0; i < PER_PROC; i++)
            child[i] = directory_next_generation(d);
        _exit(0);
    }
    for (int i = 0; i < PER_PROC; i++)
        all[i] = directory_next_generation(d);
    int status;
    expect(waitpid(pid, &status, 0) == pid);
    expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < PER_PROC; i++) {
        all[PER_PROC + i] = child[i];
        if (i > 0) {
            expect(all[i] > all[i - 1]);
            expect(child[i] > child[i - 1]);
        }
    }
    qsort(all, 2 * PER_PROC, sizeof *all, cmp_u32);
    expect(all[0] != 0);
    for (int i = 1; i < 2 * PER_PROC; i++)
        expect(all[i] != all[i - 1]);
    free(all);
    expect(munmap(child, PER_PROC * sizeof *child) == 0);
    region_close(&r);
}
END_TEST

/* Crash after crash with a full directory: stale entries pile up and only
 * the sweep keeps the table from overflowing, while live users survive it. */
START_TEST(test_stale_sweep)
{
    enum { CAP = 64, KEEP = 16, ROUNDS = 300 };
    region r;
    region_open(&r, CAP);
    directory *d = r.d;
    dir_holder keep[KEEP];
    for (int i = 0; i < KEEP; i++) {
        keep[i] = conn_in(d, 0);
        claim_ok(d, 1 + i, &keep[i]);
    }
    int64_t next_user = 1000;
    for (int round = 0; round < ROUNDS; round++) {
        int slot = 1 + round % 3;
        for (int i = 0; i < CAP - KEEP; i++) {
            dir_holder h = conn_in(d, slot);
            assert_same(claim_ok(d, next_user++, &h), NONE);
        }
        expect(directory_count(d) == CAP);
        dir_holder h = conn_in(d, slot);
        claim_full(d, next_user, &h);
        directory_slot_bump(d, slot);
        expect(directory_count(d) == KEEP);
        assert_absent(d, next_user - 1);
    }
    for (int i = 0; i < KEEP; i++)
        assert_holder(d, 1 + i, &keep[i]);
    for (int i = 0; i < KEEP; i++)
        expect(directory_release(d, 1 + i, keep[i].generation));
    expect(directory_count(d) == 0);
    region_close(&r);
}
END_TEST

/* The master and each worker map the region wherever mmap puts it. */
START_TEST(test_two_addresses)
{
    uint32_t cap = 100;
    size_t size = directory_size(cap);
    int fd = memfd_create("test-directory", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    void *m1 = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    void *m2 = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(m1, MAP_FAILED);
    ck_assert_ptr_ne(m2, MAP_FAILED);
    ck_assert_ptr_ne(m1, m2);
    ck_assert_int_eq(directory_init(m1, cap), 0);
    directory *a = directory_attach(m1);
    directory *b = directory_attach(m2);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);

    dir_holder h[100];
    for (int i = 0; i < 100; i++) {
        directory *via = i % 2 ? a : b;
        h[i] = conn_in(via, i % 3);
        claim_ok(via, 500 + i, &h[i]);
    }
    ck_assert_uint_eq(directory_count(a), 100);
    ck_assert_uint_eq(directory_count(b), 100);
    for (int i = 0; i < 100; i++) {
        assert_holder(a, 500 + i, &h[i]);
        assert_holder(b, 500 + i, &h[i]);
    }
    for (int i = 0; i < 100; i += 2)
        ck_assert(directory_release(i % 4 ? a : b, 500 + i, h[i].generation));
    directory_slot_bump(b, 1);
    uint32_t expect = 0;
    for (int i = 0; i < 100; i++) {
        bool live = i % 2 == 1 && i % 3 != 1;
        expect += live;
        ck_assert_int_eq(directory_lookup(a, 500 + i, NULL), live);
    }
    ck_assert_uint_eq(directory_count(a), expect);
    ck_assert_uint_eq(directory_next_generation(a) + 1, directory_next_generation(b));
    ck_assert_int_eq(munmap(m1, size), 0);
    ck_assert_int_eq(munmap(m2, size), 0);
    ck_assert_int_eq(close(fd), 0);
}
END_TEST

/* A stale incarnation is told so, distinctly from a full directory, and
 * whatever the directory's fill: a worker must be able to tell "I am dead"
 * from "come back later". */
START_TEST(test_stale_status)
{
    region r;
    region_open(&r, 2);
    directory *d = r.d;
    dir_holder old = conn_in(d, 4);
    claim_ok(d, 10, &old);
    directory_slot_bump(d, 4);
    dir_holder again = old;
    again.generation = directory_next_generation(d);
    claim_stale(d, 10, &again); /* its own (stale) entry */
    claim_stale(d, 11, &again); /* a new user */
    expect(!directory_lookup(d, 10, NULL));
    expect(directory_count(d) == 0);

    /* Full, and stale: stale wins, since retrying can never help. */
    dir_holder a = conn_in(d, 0), b = conn_in(d, 1);
    claim_ok(d, 20, &a);
    claim_ok(d, 21, &b);
    claim_stale(d, 22, &again);
    claim_stale(d, 20, &again);
    dir_holder fresh = conn_in(d, 4);
    claim_full(d, 22, &fresh);
    assert_same(claim_ok(d, 20, &fresh), a);

    /* An epoch not reached yet is no better. */
    dir_holder unborn = conn_in(d, 4);
    unborn.epoch++;
    claim_stale(d, 21, &unborn);
    assert_holder(d, 21, &b);
    expect(directory_count(d) == 2);
    region_close(&r);
}
END_TEST

/* Released users leave tombstones (nothing moves under lock-free readers);
 * they must never count against capacity, a released user must come back
 * through its own tombstone, and the rebuilds that drop them must keep every
 * live user. Capacity 4 is a table of 8: a few distinct users fill it. */
START_TEST(test_capacity_with_tombstones)
{
    enum { CAP = 4, KEEP = 2, CHURN = 3000 };
    region r;
    region_open(&r, CAP);
    directory *d = r.d;
    dir_holder keep[KEEP];
    for (int i = 0; i < KEEP; i++) {
        keep[i] = conn_in(d, i);
        claim_ok(d, 1 + i, &keep[i]);
    }
    for (int64_t u = 100; u < 100 + CHURN; u++) {
        dir_holder h = conn_in(d, (int)(u % 3));
        assert_same(claim_ok(d, u, &h), NONE);
        expect(directory_count(d) == KEEP + 1);
        if (u % 5 != 0) {
            expect(directory_release(d, u, h.generation));
            expect(!directory_lookup(d, u, NULL));
        } else {
            /* Re-claimed through its own tombstone, then gone for good. */
            expect(directory_release(d, u, h.generation));
            dir_holder h2 = conn_in(d, 2);
            assert_same(claim_ok(d, u, &h2), NONE);
            assert_holder(d, u, &h2);
            expect(!directory_release(d, u, h.generation));
            expect(directory_release(d, u, h2.generation));
        }
        expect(directory_count(d) == KEEP);
    }
    for (int i = 0; i < KEEP; i++)
        assert_holder(d, 1 + i, &keep[i]);

    /* Tombstones of many users, and a table full of live ones: exactly CAP. */
    dir_holder h[CAP];
    for (int i = KEEP; i < CAP; i++) {
        h[i] = conn_in(d, 3);
        claim_ok(d, 50 + i, &h[i]);
    }
    expect(directory_count(d) == CAP);
    dir_holder extra = conn_in(d, 3);
    claim_full(d, 100, &extra);  /* has a tombstone, if not swept: absent all the same */
    claim_full(d, 9999, &extra); /* never seen */
    assert_same(claim_ok(d, 1, &extra), keep[0]); /* present: never full */
    ck_assert(directory_release(d, 50 + KEEP, h[KEEP].generation));
    dir_holder back = conn_in(d, 3);
    assert_same(claim_ok(d, 100, &back), NONE);
    claim_full(d, 50 + KEEP, &back);
    expect(directory_count(d) == CAP);
    region_close(&r);
}
END_TEST

/* 24-bit epochs wrap after 2^24-1 bumps of one slot (skipping 0): an entry
 * left by the incarnation that last had the epoch must not come back to life
 * when the epoch recurs, nor its count. Also the packed holder's extremes:
 * the last slot, the largest epoch and generation survive a round trip. */
START_TEST(test_epoch_wrap)
{
    enum { SLOT = DIRECTORY_MAX_SLOTS - 1 };
    const uint32_t epoch_max = (UINT32_C(1) << 24) - 1;
    region r;
    region_open(&r, 8);
    directory *d = r.d;
    uint32_t first = directory_slot_epoch(d, SLOT);
    dir_holder ghost = conn_in(d, SLOT);
    claim_ok(d, 7, &ghost);

    uint32_t e = first;
    while (e != epoch_max) {
        uint32_t next = directory_slot_bump(d, SLOT);
        expect(next == e + 1);
        e = next;
        /* Any lock taker: here, a worker's ordinary claim and release. */
        if (e == (UINT32_C(1) << 23) + 5) {
            dir_holder other = conn_in(d, 0);
            claim_ok(d, 8, &other);
            expect(directory_release(d, 8, other.generation));
        }
    }
    expect(!directory_lookup(d, 7, NULL));
    expect(directory_count(d) == 0);

    dir_holder top = { .slot = SLOT, .epoch = epoch_max, .generation = UINT32_MAX };
    assert_same(claim_ok(d, INT64_MAX, &top), NONE);
    assert_holder(d, INT64_MAX, &top);
    expect(directory_count(d) == 1);

    expect(directory_slot_bump(d, SLOT) == 1); /* skips 0 */
    expect(directory_slot_epoch(d, SLOT) == first);
    expect(!directory_lookup(d, INT64_MAX, NULL));
    expect(!directory_lookup(d, 7, NULL)); /* its epoch is back, it is not */
    expect(directory_count(d) == 0);
    dir_holder reborn = conn_in(d, SLOT);
    assert_same(claim_ok(d, 7, &reborn), NONE);
    expect(directory_count(d) == 1);
    region_close(&r);
}
END_TEST

/* ---- randomised comparison with a model -------------------------------- */

enum { MODEL_SLOTS = 3 };

typedef struct {
    bool present;      /* an entry exists, live or stale */
    dir_holder holder;
} model_user;

typedef struct {
    uint32_t capacity;
    int64_t users;
    model_user *user;  /* indexed by user id, 1..users */
    uint32_t epoch[MODEL_SLOTS];
    uint64_t rng;
} model;

static uint64_t rnd(model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static bool model_live(const model *m, const model_user *mu)
{
    return mu->present && mu->holder.epoch == m->epoch[mu->holder.slot];
}

static uint32_t model_count(const model *m)
{
    uint32_t n = 0;
    for (int64_t u = 1; u <= m->users; u++)
        n += model_live(m, &m->user[u]);
    return n;
}

static void model_claim(model *m, directory *d, int64_t u)
{
    model_user *mu = &m->user[u];
    int slot = (int)(rnd(m) % MODEL_SLOTS);
    dir_holder me = { .slot = slot, .epoch = m->epoch[slot], .generation = directory_next_generation(d) };
    dir_holder prev;
    if (rnd(m) % 20 == 0) {
        /* A dead incarnation of the slot: refused as such, changes nothing. */
        me.epoch = m->epoch[slot] - 1;
        expect(directory_claim(d, u, &me, &prev) == DIR_STALE);
        assert_same(prev, NONE);
        return;
    }
    dir_status st = directory_claim(d, u, &me, &prev);
    if (model_live(m, mu)) {
        expect(st == DIR_OK);
        assert_same(prev, mu->holder);
    } else if (model_count(m) >= m->capacity) {
        expect(st == DIR_FULL);
        assert_same(prev, NONE);
        return;
    } else {
        expect(st == DIR_OK);
        assert_same(prev, NONE);
    }
    mu->present = true;
    mu->holder = me;
}

static void model_release(model *m, directory *d, int64_t u)
{
    model_user *mu = &m->user[u];
    bool right = mu->present && rnd(m) % 4 != 0;
    uint32_t gen = right ? mu->holder.generation : 1 + (uint32_t)(rnd(m) % 1000000);
    bool matches = mu->present && mu->holder.generation == gen;
    bool removed = directory_release(d, u, gen);
    if (!matches) {
        expect(!removed);
    } else if (model_live(m, mu)) {
        expect(removed);
        mu->present = false;
    } else {
        /* A stale entry may already have been swept away: either answer is
         * right, and either way it is gone now. */
        mu->present = false;
    }
}

static void model_lookup(model *m, directory *d, int64_t u)
{
    model_user *mu = &m->user[u];
    dir_holder got = NONE;
    bool present = directory_lookup(d, u, &got);
    expect(present == model_live(m, mu));
    if (present)
        assert_same(got, mu->holder);
}

static void run_model(uint32_t capacity, int64_t users, long ops, uint64_t seed)
{
    region r;
    region_open(&r, capacity);
    model m = { .capacity = capacity, .users = users, .rng = seed };
    m.user = calloc((size_t)users + 1, sizeof *m.user);
    ck_assert_ptr_nonnull(m.user);
    for (int s = 0; s < MODEL_SLOTS; s++)
        m.epoch[s] = directory_slot_epoch(r.d, s);

    for (long i = 0; i < ops; i++) {
        /* Large ids too: the hash must spread whatever the id looks like. */
        int64_t u = 1 + (int64_t)(rnd(&m) % (uint64_t)users);
        unsigned op = (unsigned)(rnd(&m) % 1000);
        if (op < 450)
            model_claim(&m, r.d, u);
        else if (op < 750)
            model_release(&m, r.d, u);
        else if (op < 995)
            model_lookup(&m, r.d, u);
        else {
            int slot = (int)(rnd(&m) % MODEL_SLOTS);
            m.epoch[slot] = directory_slot_bump(r.d, slot);
        }
        expect(directory_count(r.d) == model_count(&m));
    }
    for (int64_t u = 1; u <= users; u++)
        model_lookup(&m, r.d, u);
    free(m.user);
    region_close(&r);
}

START_TEST(test_model_tiny)
{
    /* 16 entries for 24 users: every run wraps around the table end. */
    run_model(8, 24, 200000, 0x9e3779b97f4a7c15u);
}
END_TEST

START_TEST(test_model_small)
{
    run_model(1, 3, 20000, 12345);
    run_model(5, 40, 100000, 777);
}
END_TEST

START_TEST(test_model_medium)
{
    run_model(300, 700, 60000, 0xdeadbeefcafef00du);
}
END_TEST

static Suite *directory_suite(void)
{
    Suite *s = suite_create("directory");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_size_and_attach);
    tcase_add_test(tc, test_claim_replace_release);
    tcase_add_test(tc, test_invalid_arguments);
    tcase_add_test(tc, test_capacity);
    tcase_add_test(tc, test_slot_bump);
    tcase_add_test(tc, test_each_of_dead_epoch);
    tcase_add_test(tc, test_stale_entry_respects_capacity);
    tcase_add_test(tc, test_stale_status);
    tcase_add_test(tc, test_capacity_with_tombstones);
    tcase_add_test(tc, test_epoch_wrap);
    tcase_add_test(tc, test_many_users);
    tcase_add_test(tc, test_generations);
    tcase_add_test(tc, test_stale_sweep);
    tcase_add_test(tc, test_two_addresses);
    tcase_add_test(tc, test_model_tiny);
    tcase_add_test(tc, test_model_small);
    tcase_add_test(tc, test_model_medium);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(directory_suite());
}
