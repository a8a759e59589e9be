/* test_directory_stress.c — multi-process tests of the shared-memory user
 * directory (shm/directory.c): several forked processes claim, release and
 * look up a small set of users at once, and a ledger of what each one was told
 * proves that no owner was lost or duplicated; then the same while a process
 * is SIGKILLed again and again, possibly holding the directory lock.
 *
 * The ledger. Every claim "adds" its own generation to the user; every claim
 * that reports a previous holder g, and every successful release of g,
 * "removes" g. Each process logs what it was told, in its own shared log. With
 * all processes stopped, for every user the generations added and never
 * removed must be exactly the directory's current holder (or none), no
 * generation may be removed twice, and every removal must name a generation
 * really added for that user, with the slot that added it. A directory that
 * lost an entry leaves an orphan generation; one that duplicated an owner
 * leaves two, or removes one twice.
 *
 * Random kills land inside the lock only now and then, and inside the few
 * instructions that matter hardly ever. So a third test kills a process at
 * every crash point of every kind of update, and of the repair itself, and
 * checks that the repaired directory is exactly as before the update or
 * exactly as after. For that one test a second copy of shm/directory.c is
 * compiled into this file with DIRECTORY_CRASH_POINTS, under other names; the
 * other tests use the library's copy, linked as usual.
 *
 * Set WSN_STRESS_SEED to replay a run's random choices (the seed is printed). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/directory.h"
#include "tests/check_main.h"

enum {
    LOG_CAP = 1 << 21,       /* events per process; a process stops when full */
    MAX_USERS = 64,          /* users one process works on */
    MAX_PROCS = 8,
    RUN_MS = 2000,           /* how long the audited processes run */
    KILL_MIN_MS = 800,       /* victims are killed at least this long, */
    KILL_MIN_RECOVERIES = 3, /* until this many died holding the lock, */
    KILL_MAX_MS = 1700,      /* but no longer than this */
    WAIT_LIMIT_MS = 15000,   /* a process still running then is hung */
    ORPHAN_ALARM_S = 30,     /* a child left behind by a failed test dies */
};

/* What shm/directory.c prints when it repairs the table after a death. */
static const char RECOVERY_MARK[] = "died holding the directory lock";

typedef enum { EV_ADD = 1, EV_REMOVE = 2 } ev_kind;

typedef struct {
    uint64_t generation;
    int32_t user;
    int16_t slot;   /* ADD: the claimer's; REMOVE: as the directory reported it */
    uint16_t kind;
} event;

typedef struct {
    uint64_t ops, claims, full, releases, released, lookups, hits;
    uint64_t mine[MAX_USERS];   /* generation this process believes it holds */
    uint32_t n_events;
    event ev[LOG_CAP];
} proc_log;

typedef struct {
    directory *d;
    int slot;
    uint32_t epoch;
    const int64_t *users;
    size_t n_users;
    uint64_t seed;
    long run_ms;        /* 0: run until killed */
    proc_log *log;      /* NULL for a victim: what it did is not audited */
} worker_cfg;

/* ---- utilities --------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static long now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        abort();
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t base_seed(void)
{
    const char *env = getenv("WSN_STRESS_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
    return seed != 0 ? seed : 1;
}

static void *map_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}

/* ---- one process's workload -------------------------------------------- */

static void log_event(proc_log *log, ev_kind kind, int64_t user, uint64_t gen, int32_t slot)
{
    if (log != NULL)
        log->ev[log->n_events++] = (event){ .generation = gen, .user = (int32_t)user,
                                            .slot = (int16_t)slot, .kind = (uint16_t)kind };
}

static bool violation(const worker_cfg *cfg, const char *what, int64_t user, uint64_t a, uint64_t b)
{
    fprintf(stderr, "slot %d: VIOLATION: %s (user %lld, %llu vs %llu)\n", cfg->slot, what,
            (long long)user, (unsigned long long)a, (unsigned long long)b);
    return false;
}

static bool do_claim(const worker_cfg *cfg, uint64_t *mine, size_t i)
{
    int64_t user = cfg->users[i];
    dir_holder me = { .slot = cfg->slot, .epoch = cfg->epoch,
                      .generation = directory_next_generation(cfg->d) };
    dir_holder prev;
    if (directory_claim(cfg->d, user, &me, &prev) == DIR_FULL) {
        if (prev.slot != -1)
            return violation(cfg, "DIR_FULL with a previous holder", user, 0, 0);
        /* Refused means absent or stale: whatever this process held is gone,
         * and whoever displaced it has logged that. */
        mine[i] = 0;
        if (cfg->log != NULL)
            cfg->log->full++;
        return true;
    }
    log_event(cfg->log, EV_ADD, user, me.generation, me.slot);
    if (prev.slot != -1) {
        /* Only this process writes entries of its slot, so one it displaced
         * must be the one it believes it holds. */
        if (prev.slot == cfg->slot && prev.generation != mine[i])
            return violation(cfg, "displaced an own connection it did not hold", user,
                             prev.generation, mine[i]);
        log_event(cfg->log, EV_REMOVE, user, prev.generation, prev.slot);
    }
    mine[i] = me.generation;
    return true;
}

static bool do_release(const worker_cfg *cfg, uint64_t *mine, size_t i, uint64_t *rng)
{
    int64_t user = cfg->users[i];
    if (mine[i] == 0) {
        /* Never issued: no entry can carry it. */
        uint64_t bogus = UINT64_MAX - rnd(rng) % 1000;
        if (directory_release(cfg->d, user, bogus))
            return violation(cfg, "released a generation never issued", user, bogus, 0);
        return true;
    }
    bool removed = directory_release(cfg->d, user, mine[i]);
    if (removed) {
        log_event(cfg->log, EV_REMOVE, user, mine[i], cfg->slot);
        if (cfg->log != NULL)
            cfg->log->released++;
    }
    /* Not removed: it had been displaced, and the displacer logged that. */
    mine[i] = 0;
    return true;
}

static bool do_lookup(const worker_cfg *cfg, const uint64_t *mine, size_t i)
{
    int64_t user = cfg->users[i];
    dir_holder h;
    if (!directory_lookup(cfg->d, user, &h))
        return true;
    if (cfg->log != NULL)
        cfg->log->hits++;
    if (h.generation == 0 || h.slot < 0 || h.slot >= DIRECTORY_MAX_SLOTS)
        return violation(cfg, "malformed holder", user, h.generation, (uint64_t)h.slot);
    if (h.slot == cfg->slot && (h.generation != mine[i] || h.epoch != cfg->epoch))
        return violation(cfg, "directory names an own connection not held", user,
                         h.generation, mine[i]);
    return true;
}

/* Returns 0, or 1 after printing a violation. */
static int worker_run(const worker_cfg *cfg)
{
    uint64_t local[MAX_USERS] = { 0 };
    uint64_t *mine = cfg->log != NULL ? cfg->log->mine : local;
    uint64_t rng = cfg->seed;
    long deadline = now_ms() + cfg->run_ms;
    uint64_t op;
    bool ok = true;

    for (op = 0; ok; op++) {
        if ((op & 255) == 0 && cfg->run_ms > 0 && now_ms() >= deadline)
            break;
        if (cfg->log != NULL && cfg->log->n_events + 2 > LOG_CAP)
            break;
        size_t i = (size_t)(rnd(&rng) % cfg->n_users);
        unsigned what = (unsigned)(rnd(&rng) % 100);
        if (what < 45) {
            ok = do_claim(cfg, mine, i);
            if (cfg->log != NULL)
                cfg->log->claims++;
        } else if (what < 80) {
            ok = do_release(cfg, mine, i, &rng);
            if (cfg->log != NULL)
                cfg->log->releases++;
        } else {
            ok = do_lookup(cfg, mine, i);
            if (cfg->log != NULL)
                cfg->log->lookups++;
        }
    }
    if (cfg->log != NULL)
        cfg->log->ops = op;
    return ok ? 0 : 1;
}

static pid_t spawn(const worker_cfg *cfg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(ORPHAN_ALARM_S);
        _exit(worker_run(cfg));
    }
    return pid;
}

/* Reap every pid, or SIGKILL the stragglers after limit_ms. True if none
 * hung; statuses receive the wait statuses. */
static bool reap_all(const pid_t *pids, int *statuses, int n, long limit_ms)
{
    long deadline = now_ms() + limit_ms;
    int left = n;
    bool reaped[MAX_PROCS] = { false };
    while (left > 0 && now_ms() < deadline) {
        for (int i = 0; i < n; i++) {
            if (reaped[i])
                continue;
            pid_t r = waitpid(pids[i], &statuses[i], WNOHANG);
            ck_assert_int_ge(r, 0);
            if (r == pids[i]) {
                reaped[i] = true;
                left--;
            }
        }
        if (left > 0)
            sleep_ms(10);
    }
    for (int i = 0; i < n; i++) {
        if (!reaped[i]) {
            ck_assert_int_eq(kill(pids[i], SIGKILL), 0);
            ck_assert_int_eq(waitpid(pids[i], &statuses[i], 0), pids[i]);
        }
    }
    return left == 0;
}

static bool exited_ok(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---- stderr capture: children's violations and the recovery log --------- */

typedef struct {
    int saved;
    int fd;
} capture;

static void capture_start(capture *c)
{
    char path[] = "/tmp/test_directory_stress.XXXXXX";
    fflush(stderr);
    c->fd = mkstemp(path);
    ck_assert_int_ge(c->fd, 0);
    ck_assert_int_eq(unlink(path), 0);
    /* Several processes append through one file description. */
    ck_assert_int_eq(fcntl(c->fd, F_SETFL, O_APPEND), 0);
    c->saved = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved, 0);
    ck_assert_int_eq(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
}

/* What was written so far (caller frees). */
static char *capture_text(const capture *c)
{
    off_t len = lseek(c->fd, 0, SEEK_END);
    ck_assert_int_ge(len, 0);
    char *text = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(text);
    ssize_t got = pread(c->fd, text, (size_t)len, 0);
    ck_assert_int_ge(got, 0);
    text[got] = '\0';
    return text;
}

/* Restores stderr and returns what was written (caller frees). */
static char *capture_stop(capture *c)
{
    fflush(stderr);
    ck_assert_int_eq(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    ck_assert_int_eq(close(c->saved), 0);
    char *text = capture_text(c);
    ck_assert_int_eq(close(c->fd), 0);
    return text;
}

static int count_lines_with(const char *text, const char *mark)
{
    int n = 0;
    for (const char *p = strstr(text, mark); p != NULL; p = strstr(p + 1, mark))
        n++;
    return n;
}

static int captured_recoveries(const capture *c)
{
    char *text = capture_text(c);
    int n = count_lines_with(text, RECOVERY_MARK);
    free(text);
    return n;
}

/* Shows everything but the expected recovery lines, so a failure explains itself. */
static void echo_unexpected(const char *text)
{
    const char *line = text;
    while (*line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) + 1 : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (strstr(buf, RECOVERY_MARK) == NULL)
            fputs(buf, stderr);
        line += len;
    }
}

/* ---- the ledger check ---------------------------------------------------- */

typedef struct {
    int64_t first, last;    /* the audited users: first..last */
    uint64_t max_gen;       /* every generation issued is below this */
    int32_t *add_user;      /* by generation: user it was added for, 0 = none */
    int16_t *add_slot;
    uint8_t *removed;
} ledger;

static bool audited(const ledger *l, int64_t user)
{
    return user >= l->first && user <= l->last;
}

static void ledger_load(ledger *l, proc_log *const *logs, int n)
{
    l->add_user = calloc(l->max_gen, sizeof *l->add_user);
    l->add_slot = calloc(l->max_gen, sizeof *l->add_slot);
    l->removed = calloc(l->max_gen, sizeof *l->removed);
    ck_assert(l->add_user != NULL && l->add_slot != NULL && l->removed != NULL);
    for (int p = 0; p < n; p++) {
        for (uint32_t e = 0; e < logs[p]->n_events; e++) {
            const event *ev = &logs[p]->ev[e];
            if (ev->kind != EV_ADD || !audited(l, ev->user))
                continue;
            /* ck_assert costs a system call even when it passes: test first. */
            if (ev->generation >= l->max_gen || l->add_user[ev->generation] != 0)
                ck_abort_msg("generation %llu never issued or added twice",
                             (unsigned long long)ev->generation);
            l->add_user[ev->generation] = (int32_t)ev->user;
            l->add_slot[ev->generation] = (int16_t)ev->slot;
        }
    }
    for (int p = 0; p < n; p++) {
        for (uint32_t e = 0; e < logs[p]->n_events; e++) {
            const event *ev = &logs[p]->ev[e];
            if (ev->kind != EV_REMOVE || !audited(l, ev->user))
                continue;
            uint64_t g = ev->generation;
            if (g >= l->max_gen || l->add_user[g] != ev->user)
                ck_abort_msg("user %lld: removed generation %llu that was never added for it",
                             (long long)ev->user, (unsigned long long)g);
            if (l->add_slot[g] != ev->slot)
                ck_abort_msg("user %lld: generation %llu reported in slot %d, added in slot %d",
                             (long long)ev->user, (unsigned long long)g, ev->slot, l->add_slot[g]);
            if (++l->removed[g] > 1)
                ck_abort_msg("user %lld: generation %llu removed twice (duplicated owner)",
                             (long long)ev->user, (unsigned long long)g);
        }
    }
}

/* Checks every audited user against the directory; returns how many have a
 * holder. */
static uint32_t ledger_verify(const ledger *l, directory *d, proc_log *const *logs,
                              const int *slots, int n, const int64_t *users, size_t n_users)
{
    size_t span = (size_t)(l->last - l->first + 1);
    uint32_t *survivors = calloc(span, sizeof *survivors);
    uint64_t *survivor = calloc(span, sizeof *survivor);
    ck_assert(survivors != NULL && survivor != NULL);
    for (uint64_t g = 1; g < l->max_gen; g++) {
        if (l->add_user[g] != 0 && l->removed[g] == 0) {
            size_t u = (size_t)(l->add_user[g] - l->first);
            survivors[u]++;
            survivor[u] = g;
        }
    }
    uint32_t holders = 0;
    for (int64_t user = l->first; user <= l->last; user++) {
        size_t u = (size_t)(user - l->first);
        dir_holder h;
        if (!directory_lookup(d, user, &h)) {
            if (survivors[u] != 0)
                ck_abort_msg("user %lld: lost owner: generation %llu never removed, "
                             "but the directory has no holder",
                             (long long)user, (unsigned long long)survivor[u]);
            continue;
        }
        holders++;
        if (survivors[u] != 1 || survivor[u] != h.generation)
            ck_abort_msg("user %lld: directory holds %llu, ledger has %u unremoved (last %llu)",
                         (long long)user, (unsigned long long)h.generation, survivors[u],
                         (unsigned long long)survivor[u]);
        ck_assert_int_eq(h.slot, l->add_slot[h.generation]);
        /* The holding process must know it holds it. */
        for (int p = 0; p < n; p++) {
            if (slots[p] != h.slot)
                continue;
            for (size_t i = 0; i < n_users; i++)
                if (users[i] == user)
                    ck_assert_uint_eq(logs[p]->mine[i], h.generation);
        }
    }
    free(survivors);
    free(survivor);
    return holders;
}

static void ledger_free(ledger *l)
{
    free(l->add_user);
    free(l->add_slot);
    free(l->removed);
}

static void print_stats(const char *name, proc_log *const *logs, int n)
{
    uint64_t ops = 0, claims = 0, full = 0, releases = 0, released = 0, lookups = 0, hits = 0;
    for (int p = 0; p < n; p++) {
        ops += logs[p]->ops;
        claims += logs[p]->claims;
        full += logs[p]->full;
        releases += logs[p]->releases;
        released += logs[p]->released;
        lookups += logs[p]->lookups;
        hits += logs[p]->hits;
    }
    printf("%s: %llu ops: %llu claims (%llu full), %llu releases (%llu removed), "
           "%llu lookups (%llu hits)\n",
           name, (unsigned long long)ops, (unsigned long long)claims, (unsigned long long)full,
           (unsigned long long)releases, (unsigned long long)released,
           (unsigned long long)lookups, (unsigned long long)hits);
}

/* ---- the tests ------------------------------------------------------------- */

typedef struct {
    void *mem;
    size_t size;
    directory *d;
    proc_log *logs[MAX_PROCS];
    void *log_mem;
    size_t log_size;
} setup;

static void setup_open(setup *s, uint32_t capacity, int n_logs)
{
    s->size = directory_size(capacity);
    s->mem = map_shared(s->size);
    ck_assert_int_eq(directory_init(s->mem, capacity), 0);
    s->d = directory_attach(s->mem);
    ck_assert_ptr_nonnull(s->d);
    s->log_size = (size_t)n_logs * sizeof(proc_log);
    s->log_mem = map_shared(s->log_size);
    for (int p = 0; p < n_logs; p++)
        s->logs[p] = (proc_log *)((char *)s->log_mem + (size_t)p * sizeof(proc_log));
}

static void setup_close(setup *s)
{
    ck_assert_int_eq(munmap(s->log_mem, s->log_size), 0);
    ck_assert_int_eq(munmap(s->mem, s->size), 0);
}

/* Four processes, sixteen users, capacity twelve: heavy contention on every
 * user, claims refused for capacity, probe runs that wrap the table. */
START_TEST(test_concurrent_ledger)
{
    enum { PROCS = 4, USERS = 16, CAPACITY = 12 };
    uint64_t seed = base_seed();
    printf("concurrent: seed %llu\n", (unsigned long long)seed);
    setup s;
    setup_open(&s, CAPACITY, PROCS);
    int64_t users[USERS];
    for (int i = 0; i < USERS; i++)
        users[i] = 1 + i;

    capture cap;
    capture_start(&cap);
    pid_t pids[PROCS];
    int slots[PROCS], statuses[PROCS];
    for (int p = 0; p < PROCS; p++) {
        slots[p] = p * 3 + 1;
        worker_cfg cfg = { .d = s.d, .slot = slots[p], .epoch = directory_slot_epoch(s.d, slots[p]),
                           .users = users, .n_users = USERS, .seed = seed + (uint64_t)p * 7919,
                           .run_ms = RUN_MS, .log = s.logs[p] };
        pids[p] = spawn(&cfg);
    }
    bool none_hung = reap_all(pids, statuses, PROCS, WAIT_LIMIT_MS);
    char *err = capture_stop(&cap);
    echo_unexpected(err);
    ck_assert_msg(none_hung, "a process hung");
    for (int p = 0; p < PROCS; p++)
        ck_assert_msg(exited_ok(statuses[p]), "process %d failed (status %#x)", p, statuses[p]);
    ck_assert_int_eq(count_lines_with(err, RECOVERY_MARK), 0); /* nobody died */
    free(err);

    print_stats("concurrent", s.logs, PROCS);
    ledger l = { .first = 1, .last = USERS, .max_gen = directory_next_generation(s.d) };
    ledger_load(&l, s.logs, PROCS);
    uint32_t holders = ledger_verify(&l, s.d, s.logs, slots, PROCS, users, USERS);
    ledger_free(&l);
    ck_assert_uint_eq(directory_count(s.d), holders);
    ck_assert_uint_le(holders, CAPACITY);
    setup_close(&s);
}
END_TEST

enum {
    K_STABLE = 3,        /* audited processes */
    K_OWN = 16,          /* users 1..16: only the stable processes touch them */
    K_SHARED = 8,        /* users 17..24: everyone, victims included */
    K_VICTIM_OWN = 32,   /* fresh users per victim, like new connections */
    K_VICTIM_SLOT = 7,
    K_VICTIM_BASE = 1000,
    K_CAPACITY = K_OWN + K_SHARED + K_VICTIM_OWN,
};

/* Whether to kill one more victim: a victim dies holding the lock only by
 * chance, so keep going until that happened a few times (or time is up). */
static bool keep_killing(const capture *cap, long start)
{
    long elapsed = now_ms() - start;
    if (elapsed >= KILL_MAX_MS)
        return false;
    return elapsed < KILL_MIN_MS || captured_recoveries(cap) < KILL_MIN_RECOVERIES;
}

/* Kill victim after victim (the master's part: reap, then bump its slot),
 * while the stable processes keep working. Returns the number of victims. */
static int kill_victims(directory *d, uint64_t seed, const capture *cap)
{
    uint64_t rng = seed;
    int64_t users[K_VICTIM_OWN + K_SHARED];
    long start = now_ms();
    int k;
    for (k = 0; keep_killing(cap, start); k++) {
        for (int i = 0; i < K_VICTIM_OWN; i++)
            users[i] = K_VICTIM_BASE + (int64_t)k * K_VICTIM_OWN + i;
        for (int i = 0; i < K_SHARED; i++)
            users[K_VICTIM_OWN + i] = K_OWN + 1 + i;
        worker_cfg cfg = { .d = d, .slot = K_VICTIM_SLOT,
                           .epoch = directory_slot_epoch(d, K_VICTIM_SLOT),
                           .users = users, .n_users = K_VICTIM_OWN + K_SHARED,
                           .seed = rnd(&rng), .run_ms = 0, .log = NULL };
        pid_t pid = spawn(&cfg);
        sleep_ms(10 + (long)(rnd(&rng) % 50));
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "victim %d ended by itself (status %#x)", k, status);
        directory_slot_bump(d, K_VICTIM_SLOT);
    }
    return k;
}

/* After the storm: the directory must answer for every user, agree with its
 * count, and still claim and release normally up to its capacity. */
static void check_still_works(directory *d, int victims, uint32_t holders)
{
    for (int64_t u = K_VICTIM_BASE; u < K_VICTIM_BASE + (int64_t)victims * K_VICTIM_OWN; u++)
        ck_assert_msg(!directory_lookup(d, u, NULL), "dead victim's user %lld still live",
                      (long long)u);
    ck_assert_uint_eq(directory_count(d), holders);

    int slot = K_VICTIM_SLOT;
    for (int64_t u = 1; u <= K_OWN + K_SHARED; u++) {
        dir_holder before = { .slot = -1, .epoch = 0, .generation = 0 }, prev;
        directory_lookup(d, u, &before);
        dir_holder me = { .slot = slot, .epoch = directory_slot_epoch(d, slot),
                          .generation = directory_next_generation(d) };
        ck_assert_int_eq(directory_claim(d, u, &me, &prev), DIR_OK);
        ck_assert_int_eq(prev.slot, before.slot);
        ck_assert_uint_eq(prev.generation, before.generation);
    }
    ck_assert_uint_eq(directory_count(d), K_OWN + K_SHARED);
    for (int64_t u = 5000; u < 5000 + K_VICTIM_OWN; u++) {
        dir_holder me = { .slot = 0, .epoch = directory_slot_epoch(d, 0),
                          .generation = directory_next_generation(d) };
        ck_assert_int_eq(directory_claim(d, u, &me, NULL), DIR_OK);
    }
    ck_assert_uint_eq(directory_count(d), K_CAPACITY);
    dir_holder extra = { .slot = 0, .epoch = directory_slot_epoch(d, 0),
                         .generation = directory_next_generation(d) };
    ck_assert_int_eq(directory_claim(d, 9999, &extra, NULL), DIR_FULL);
    directory_slot_bump(d, 0);
    for (int64_t u = 1; u <= K_OWN + K_SHARED; u++) {
        dir_holder h;
        ck_assert(directory_lookup(d, u, &h));
        ck_assert(directory_release(d, u, h.generation));
        ck_assert(!directory_lookup(d, u, NULL));
    }
    ck_assert_uint_eq(directory_count(d), 0);
}

START_TEST(test_survives_killed_processes)
{
    uint64_t seed = base_seed();
    printf("killed: seed %llu\n", (unsigned long long)seed);
    setup s;
    setup_open(&s, K_CAPACITY, K_STABLE);
    int64_t users[K_OWN + K_SHARED];
    for (int i = 0; i < K_OWN + K_SHARED; i++)
        users[i] = 1 + i;

    capture cap;
    capture_start(&cap);
    pid_t pids[K_STABLE];
    int slots[K_STABLE], statuses[K_STABLE];
    for (int p = 0; p < K_STABLE; p++) {
        slots[p] = p;
        worker_cfg cfg = { .d = s.d, .slot = p, .epoch = directory_slot_epoch(s.d, p),
                           .users = users, .n_users = K_OWN + K_SHARED,
                           .seed = seed + (uint64_t)p * 7919, .run_ms = RUN_MS,
                           .log = s.logs[p] };
        pids[p] = spawn(&cfg);
    }
    int victims = kill_victims(s.d, seed ^ 0x5555, &cap);
    bool none_hung = reap_all(pids, statuses, K_STABLE, WAIT_LIMIT_MS);
    char *err = capture_stop(&cap);
    echo_unexpected(err);
    ck_assert_msg(none_hung, "a process hung after a victim was killed");
    for (int p = 0; p < K_STABLE; p++)
        ck_assert_msg(exited_ok(statuses[p]), "process %d failed (status %#x)", p, statuses[p]);
    int recoveries = count_lines_with(err, RECOVERY_MARK);
    free(err);
    print_stats("killed", s.logs, K_STABLE);
    printf("killed: %d victims SIGKILLed, %d killed holding the lock (table rebuilt)\n",
           victims, recoveries);
    /* Otherwise this test did not test the repair path. */
    ck_assert_int_ge(recoveries, 1);

    /* Users 1..16 never saw a victim, so the ledger must still balance
     * exactly: a victim dying mid-shift or mid-rewrite lost none of them. */
    ledger l = { .first = 1, .last = K_OWN, .max_gen = directory_next_generation(s.d) };
    ledger_load(&l, s.logs, K_STABLE);
    uint32_t holders = ledger_verify(&l, s.d, s.logs, slots, K_STABLE, users, K_OWN);
    ledger_free(&l);

    /* Shared users: the victims' effects are unknown, but a stable holder
     * must be the one its process believes in, and no victim may hold one. */
    for (int i = K_OWN; i < K_OWN + K_SHARED; i++) {
        dir_holder h;
        if (!directory_lookup(s.d, users[i], &h))
            continue;
        holders++;
        ck_assert_int_lt(h.slot, K_STABLE);
        ck_assert_uint_eq(s.logs[h.slot]->mine[i], h.generation);
    }
    check_still_works(s.d, victims, holders);
    setup_close(&s);
}
END_TEST

/* ---- every crash point ------------------------------------------------------ */

/* A second copy of the directory, compiled in with crash points and renamed
 * (crash_directory_*), so that it can sit next to the library's copy used
 * above. From here to the #undefs below, directory_* means this copy. */
#define directory_size crash_directory_size
#define directory_init crash_directory_init
#define directory_attach crash_directory_attach
#define directory_capacity crash_directory_capacity
#define directory_slot_epoch crash_directory_slot_epoch
#define directory_slot_bump crash_directory_slot_bump
#define directory_next_generation crash_directory_next_generation
#define directory_claim crash_directory_claim
#define directory_release crash_directory_release
#define directory_lookup crash_directory_lookup
#define directory_count crash_directory_count

/* The renamed copy's prototypes, which its own #include of the header (done
 * already) cannot provide. */
size_t directory_size(uint32_t capacity);
int directory_init(void *mem, uint32_t capacity);
directory *directory_attach(void *mem);
uint32_t directory_capacity(const directory *d);
uint32_t directory_slot_epoch(const directory *d, int slot);
uint32_t directory_slot_bump(directory *d, int slot);
uint64_t directory_next_generation(directory *d);
dir_status directory_claim(directory *d, int64_t user, const dir_holder *me, dir_holder *prev);
bool directory_release(directory *d, int64_t user, uint64_t generation);
bool directory_lookup(directory *d, int64_t user, dir_holder *out);
uint32_t directory_count(directory *d);

#define DIRECTORY_CRASH_POINTS 1
#include "shm/directory.c"

/* Test hook, so necessarily global: set only in a child that is to die at the
 * n-th crash point of what it does next. */
static long crash_countdown;

void directory_crash_point(void)
{
    if (crash_countdown > 0 && --crash_countdown == 0 && raise(SIGKILL) != 0)
        abort();
}

enum { CC_USERS = 14, CC_CAPACITY = 8, CC_CHECK_SLOT = 5 };

typedef enum { OP_CLAIM, OP_RELEASE, OP_BUMP } op_kind;

typedef struct {
    int n;                       /* users watched */
    int64_t users[CC_USERS];
    dir_holder held[CC_USERS];   /* as claimed while preparing */
    op_kind op;
    int64_t op_user;
    dir_holder op_holder;        /* OP_CLAIM */
    uint64_t op_generation;      /* OP_RELEASE */
    int op_slot;                 /* OP_BUMP */
} crash_case;

typedef struct {
    dir_holder h[CC_USERS];      /* slot -1: absent */
    uint32_t count;
} snapshot;

typedef void (*prepare_fn)(directory *d, crash_case *cc);

typedef struct {
    void *mem;
    size_t size;
    directory *d;
} small_region;

static void small_open(small_region *r)
{
    r->size = directory_size(CC_CAPACITY);
    r->mem = map_shared(r->size);
    if (directory_init(r->mem, CC_CAPACITY) != 0 || (r->d = directory_attach(r->mem)) == NULL)
        ck_abort_msg("directory_init failed");
}

static void small_close(small_region *r)
{
    if (munmap(r->mem, r->size) != 0)
        ck_abort_msg("munmap failed");
}

/* Users whose probe runs start at the last entries of the table and wrap
 * around index 0: the hardest case for backward-shift deletion. */
static void colliding_users(crash_case *cc, int n)
{
    uint32_t mask = table_size_for(CC_CAPACITY) - 1;
    cc->n = 0;
    for (int64_t u = 1; cc->n < n; u++) {
        uint32_t home = home_of(mask, u);
        if (home + 3 > mask || home == 0)
            cc->users[cc->n++] = u;
    }
}

static dir_holder fresh_holder(directory *d, int slot)
{
    return (dir_holder){ .slot = slot, .epoch = directory_slot_epoch(d, slot),
                         .generation = directory_next_generation(d) };
}

static void put(directory *d, crash_case *cc, int i, int slot)
{
    cc->held[i] = fresh_holder(d, slot);
    if (directory_claim(d, cc->users[i], &cc->held[i], NULL) != DIR_OK)
        ck_abort_msg("preparing: claim of user %lld refused", (long long)cc->users[i]);
}

/* Six users in one run that wraps the table end, in slots 0 and 1. */
static void prep_cluster(directory *d, crash_case *cc)
{
    colliding_users(cc, 7);
    for (int i = 0; i < 6; i++)
        put(d, cc, i, i % 2);
}

static void prep_insert(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    cc->op = OP_CLAIM;
    cc->op_user = cc->users[6];
    cc->op_holder = fresh_holder(d, 2);
}

static void prep_replace(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    cc->op = OP_CLAIM;
    cc->op_user = cc->users[2];
    cc->op_holder = fresh_holder(d, 1);
}

static void prep_release_shift(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    cc->op = OP_RELEASE;
    cc->op_user = cc->users[0];
    cc->op_generation = cc->held[0].generation;
}

static void prep_bump(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    cc->op = OP_BUMP;
    cc->op_slot = 1;
}

static void prep_overwrite_stale(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    directory_slot_bump(d, 0);
    cc->op = OP_CLAIM;
    cc->op_user = cc->users[2];
    cc->op_holder = fresh_holder(d, 0);
}

static void prep_release_stale(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    directory_slot_bump(d, 0);
    cc->op = OP_RELEASE;
    cc->op_user = cc->users[0];
    cc->op_generation = cc->held[0].generation;
}

/* Eight stale entries and four live ones: the next new user finds the table
 * at its load limit and sweeps it (a rebuild into the other table). */
static void prep_sweep(directory *d, crash_case *cc)
{
    colliding_users(cc, 13);
    for (int i = 0; i < 8; i++)
        put(d, cc, i, 1);
    directory_slot_bump(d, 1);
    for (int i = 8; i < 12; i++)
        put(d, cc, i, 2);
    cc->op = OP_CLAIM;
    cc->op_user = cc->users[12];
    cc->op_holder = fresh_holder(d, 2);
}

static void run_op(directory *d, const crash_case *cc)
{
    switch (cc->op) {
    case OP_CLAIM:
        directory_claim(d, cc->op_user, &cc->op_holder, NULL);
        break;
    case OP_RELEASE:
        directory_release(d, cc->op_user, cc->op_generation);
        break;
    case OP_BUMP:
        directory_slot_bump(d, cc->op_slot);
        break;
    }
}

static void take_snapshot(directory *d, const crash_case *cc, snapshot *s)
{
    for (int i = 0; i < cc->n; i++) {
        if (!directory_lookup(d, cc->users[i], &s->h[i]))
            s->h[i] = (dir_holder){ .slot = -1, .epoch = 0, .generation = 0 };
    }
    s->count = directory_count(d);
}

static bool same_snapshot(const snapshot *a, const snapshot *b, int n)
{
    if (a->count != b->count)
        return false;
    for (int i = 0; i < n; i++) {
        if (a->h[i].slot != b->h[i].slot || a->h[i].epoch != b->h[i].epoch ||
            a->h[i].generation != b->h[i].generation)
            return false;
    }
    return true;
}

/* The repaired table must still remove and insert correctly. */
static void check_usable(directory *d, const crash_case *cc, const snapshot *now)
{
    for (int i = 0; i < cc->n; i++) {
        if (now->h[i].slot >= 0 && !directory_release(d, cc->users[i], now->h[i].generation))
            ck_abort_msg("after repair: release of user %lld failed", (long long)cc->users[i]);
    }
    if (directory_count(d) != 0)
        ck_abort_msg("after repair: count %u after releasing everyone", directory_count(d));
    for (int i = 0; i < cc->n; i++) {
        dir_holder me = fresh_holder(d, CC_CHECK_SLOT), got;
        dir_status want = i < CC_CAPACITY ? DIR_OK : DIR_FULL;
        if (directory_claim(d, cc->users[i], &me, NULL) != want)
            ck_abort_msg("after repair: claim %d of user %lld gave the wrong answer", i,
                         (long long)cc->users[i]);
        if (want == DIR_OK && (!directory_lookup(d, cc->users[i], &got) ||
                               got.generation != me.generation))
            ck_abort_msg("after repair: user %lld not found after claim", (long long)cc->users[i]);
    }
}

/* The states the update may leave: before it, and after it. */
static void reference_states(prepare_fn prep, snapshot *before, snapshot *after)
{
    small_region r;
    crash_case cc;
    small_open(&r);
    prep(r.d, &cc);
    take_snapshot(r.d, &cc, before);
    run_op(r.d, &cc);
    take_snapshot(r.d, &cc, after);
    small_close(&r);
}

/* Fork a process that runs the update (as_op) or just a lookup, which repairs
 * what an earlier death left, and is SIGKILLed at its n-th crash point.
 * Returns true if it died there, false if it finished first. */
static bool die_at(long n, directory *d, const crash_case *cc, bool as_op)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        ck_abort_msg("fork failed");
    if (pid == 0) {
        alarm(ORPHAN_ALARM_S);
        crash_countdown = n;
        if (as_op)
            run_op(d, cc);
        else
            directory_lookup(d, cc->users[0], NULL); /* repairs, if need be */
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        ck_abort_msg("waitpid failed");
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return true;
    if (!exited_ok(status))
        ck_abort_msg("crash-point child failed (status %#x)", status);
    return false;
}

/* Recovery lines written to the capture since *offset. */
static int recoveries_since(const capture *c, off_t *offset)
{
    off_t end = lseek(c->fd, 0, SEEK_END);
    if (end < *offset)
        ck_abort_msg("capture shrank");
    size_t len = (size_t)(end - *offset);
    char *text = malloc(len + 1);
    if (text == NULL || pread(c->fd, text, len, *offset) != (ssize_t)len)
        ck_abort_msg("reading the capture failed");
    text[len] = '\0';
    int n = count_lines_with(text, RECOVERY_MARK);
    free(text);
    *offset = end;
    return n;
}

typedef struct {
    const char *name;
    prepare_fn prep;
    bool nested;     /* also kill the repair at each of its crash points */
} crash_scenario;

typedef struct {
    long runs, points;
} crash_totals;

/* Kill the update at crash point k (and the repair at point j, if j > 0),
 * then check what the next process finds. False if the update finished
 * before reaching point k (or the repair before point j). */
static bool crash_once(const crash_scenario *sc, long k, long j, const snapshot *before,
                       const snapshot *after, const capture *cap, off_t *offset)
{
    small_region r;
    crash_case cc;
    small_open(&r);
    sc->prep(r.d, &cc);
    bool died = die_at(k, r.d, &cc, true);
    if (died && j > 0)
        died = die_at(j, r.d, &cc, false);
    if (!died) {
        small_close(&r);
        return false;
    }
    (void)recoveries_since(cap, offset);
    snapshot got;
    take_snapshot(r.d, &cc, &got);
    int repaired = recoveries_since(cap, offset);
    if (j == 0 && repaired != 1)
        ck_abort_msg("%s, crash point %ld: %d repairs instead of 1", sc->name, k, repaired);
    if (!same_snapshot(&got, before, cc.n) && !same_snapshot(&got, after, cc.n))
        ck_abort_msg("%s, crash point %ld/%ld: the repaired directory is neither as before "
                     "nor as after the update", sc->name, k, j);
    check_usable(r.d, &cc, &got);
    small_close(&r);
    return true;
}

static void crash_scenario_run(const crash_scenario *sc, const capture *cap, off_t *offset,
                               crash_totals *t)
{
    snapshot before, after;
    reference_states(sc->prep, &before, &after);
    if (same_snapshot(&before, &after, CC_USERS))
        ck_abort_msg("%s: the update changes nothing", sc->name);
    long k;
    for (k = 1; crash_once(sc, k, 0, &before, &after, cap, offset); k++) {
        t->runs++;
        for (long j = 1; sc->nested && crash_once(sc, k, j, &before, &after, cap, offset); j++)
            t->runs++;
    }
    t->points += k - 1;
    if (k < 4) /* even a bump has three */
        ck_abort_msg("%s: only %ld crash points: are crash points compiled in?", sc->name, k - 1);
}

START_TEST(test_crash_points)
{
    static const crash_scenario scenarios[] = {
        { "insert into a wrapping run", prep_insert, false },
        { "replace a live holder", prep_replace, true },
        { "overwrite a stale entry", prep_overwrite_stale, false },
        { "release with backward shift", prep_release_shift, true },
        { "release a stale entry", prep_release_stale, false },
        { "bump a slot", prep_bump, false },
        { "sweep stale entries", prep_sweep, true },
    };
    capture cap;
    capture_start(&cap);
    off_t offset = 0;
    crash_totals t = { 0, 0 };
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        crash_scenario_run(&scenarios[i], &cap, &offset, &t);
    char *err = capture_stop(&cap);
    echo_unexpected(err);
    free(err);
    printf("crash points: %ld points in %zu kinds of update, %ld kills, all repaired\n",
           t.points, sizeof scenarios / sizeof scenarios[0], t.runs);
}
END_TEST

/* Back to the library's copy. */
#undef directory_size
#undef directory_init
#undef directory_attach
#undef directory_capacity
#undef directory_slot_epoch
#undef directory_slot_bump
#undef directory_next_generation
#undef directory_claim
#undef directory_release
#undef directory_lookup
#undef directory_count

static Suite *stress_suite(void)
{
    Suite *s = suite_create("directory_stress");
    TCase *tc = tcase_create("processes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_concurrent_ledger);
    tcase_add_test(tc, test_survives_killed_processes);
    tcase_add_test(tc, test_crash_points);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(stress_suite());
}
