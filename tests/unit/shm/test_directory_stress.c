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
 * Lock-free readers. Lookups take no lock, so reader processes run beside the
 * writers: users pinned (claimed once before the run, never touched again)
 * must be found every time with exactly their holder, and every holder seen
 * for a churned user must be one the ledger shows was written for it, with
 * its slot and epoch (a torn holder fails that). Readers run beside both
 * tests above, and beside churners of fresh users that get the tables rebuilt
 * thousands of times under them.
 *
 * Random kills land inside the lock only now and then, and inside the few
 * instructions that matter hardly ever. So a further test kills a process at
 * every crash point of every kind of update, and of the repair itself, and
 * checks that lock-free readers see the directory exactly as before the update
 * or exactly as after, before and after the repair. Another stops (SIGSTOP) a
 * writer at every crash point, lock held, and checks that lookups and slot
 * bumps still return, right, within a bound (a prober process, so that a
 * blocked lookup fails the test instead of hanging it); and one pauses a
 * lookup at every read point while rebuilds or a re-claim run under it. For
 * those tests a second copy of shm/directory.c is compiled into this file
 * with DIRECTORY_CRASH_POINTS, under other names, which also lets tests reach
 * its internals (epochs near a boundary, the generation counter's wrap, the
 * rebuild counter); the other tests use the library's copy, linked as usual.
 *
 * Set WSN_STRESS_SEED to replay a run's random choices (the seed is printed). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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
    WAIT_LIMIT_MS = 30000,   /* a process still running then is hung (a loaded CI machine is slow) */
    ORPHAN_ALARM_S = 30,     /* a child left behind by a failed test dies */
    READERS = 2,             /* lock-free reader processes per stress test */
    PIN_SLOT = 40,           /* the slot of the pinned users; no writer uses it */
    CALL_LIMIT_MS = 1000,    /* a lookup or bump slower than this "blocked" */
};

/* Readers' table of what epoch each slot's holders may carry. */
#define NO_WRITER UINT32_C(0)
#define ANY_EPOCH UINT32_MAX

/* What shm/directory.c prints when it repairs the table after a death. */
static const char RECOVERY_MARK[] = "died holding the directory lock";

typedef enum { EV_ADD = 1, EV_REMOVE = 2, EV_SEEN = 3 } ev_kind;

typedef struct {
    uint64_t generation;
    int32_t user;
    int16_t slot;   /* ADD: the claimer's; REMOVE, SEEN: as the directory reported it */
    uint16_t kind;
} event;

typedef struct {
    uint64_t ops, claims, full, releases, released, lookups, hits;
    uint64_t max_lookup_ns;     /* readers: their slowest lookup */
    _Atomic uint64_t progress;  /* churners: fresh users claimed so far */
    uint64_t mine[MAX_USERS];   /* generation this process believes it holds */
    uint32_t n_events;
    event ev[LOG_CAP];
} proc_log;

typedef enum { ROLE_MIXED, ROLE_READER, ROLE_CHURN } worker_role;

typedef struct {
    directory *d;
    worker_role role;
    int slot;
    uint32_t epoch;
    const int64_t *users;
    size_t n_users;
    uint64_t seed;
    long run_ms;        /* 0: run until killed */
    proc_log *log;      /* NULL for a victim: what it did is not audited */
    /* Readers: users present all along, and what each slot's holders may carry. */
    const int64_t *pinned;
    const dir_holder *pinned_holder;
    size_t n_pinned;
    const uint32_t *slot_epoch;      /* DIRECTORY_MAX_SLOTS entries */
    proc_log *const *follow;         /* churners whose recent users to look up */
    const int64_t *follow_base;
    size_t n_follow;
    /* Churners: fresh users base, base + 1, ... */
    int64_t base;
} worker_cfg;

/* ---- utilities --------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        abort();
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long now_ms(void)
{
    return (long)(now_ns() / 1000000u);
}

static void sleep_us(long us)
{
    struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void sleep_ms(long ms)
{
    sleep_us(ms * 1000);
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

static bool same_holder(const dir_holder *a, const dir_holder *b)
{
    return a->slot == b->slot && a->epoch == b->epoch && a->generation == b->generation;
}

/* Internals of the crash-point copy below, whose layout is the library's. */
static uint64_t rebuilds_of(const void *mem);

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
    dir_status st = directory_claim(cfg->d, user, &me, &prev);
    if (st == DIR_STALE) /* nobody bumps a slot whose process is alive */
        return violation(cfg, "DIR_STALE for a live incarnation", user, me.epoch, 0);
    if (st == DIR_FULL) {
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
        uint32_t bogus = UINT32_MAX - (uint32_t)(rnd(rng) % 1000);
        if (directory_release(cfg->d, user, bogus))
            return violation(cfg, "released a generation never issued", user, bogus, 0);
        return true;
    }
    bool removed = directory_release(cfg->d, user, (uint32_t)mine[i]);
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

static int mixed_run(const worker_cfg *cfg)
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

enum { CHURN_WINDOW = 8 }; /* live users per churner */

/* One lookup, checked as far as a reader can: pinned users exactly, others
 * against the slots' epochs now and against the ledger later (EV_SEEN). */
static bool reader_step(const worker_cfg *cfg, uint64_t *rng)
{
    proc_log *log = cfg->log;
    uint64_t r = rnd(rng);
    const dir_holder *want = NULL;
    int64_t user;
    if (cfg->n_pinned > 0 && r % 4 == 0) {
        size_t i = (size_t)(r >> 8) % cfg->n_pinned;
        user = cfg->pinned[i];
        want = &cfg->pinned_holder[i];
    } else if (cfg->n_follow > 0) {
        /* Around the churner's newest users: live ones, just released ones,
         * and the next one, being claimed. */
        size_t p = (size_t)(r >> 8) % cfg->n_follow;
        uint64_t done = atomic_load_explicit(&cfg->follow[p]->progress, memory_order_relaxed);
        uint64_t back = (r >> 24) % (2 * CHURN_WINDOW);
        user = cfg->follow_base[p] + (int64_t)(done > back ? done - back : 0);
    } else {
        user = cfg->users[(size_t)(r >> 8) % cfg->n_users];
    }
    dir_holder h = { .slot = -1, .epoch = 0, .generation = 0 };
    uint64_t t0 = now_ns();
    bool present = directory_lookup(cfg->d, user, &h);
    uint64_t took = now_ns() - t0;
    log->lookups++;
    if (took > log->max_lookup_ns)
        log->max_lookup_ns = took;
    if (took > (uint64_t)CALL_LIMIT_MS * 1000000u)
        return violation(cfg, "lookup blocked (ns)", user, took, 0);
    if (want != NULL) {
        if (!present)
            return violation(cfg, "pinned user absent", user, want->generation, 0);
        if (!same_holder(&h, want))
            return violation(cfg, "pinned user's holder torn", user, h.generation,
                             want->generation);
        log->hits++;
        return true;
    }
    if (!present)
        return true;
    log->hits++;
    uint32_t epoch = h.slot >= 0 && h.slot < DIRECTORY_MAX_SLOTS ? cfg->slot_epoch[h.slot]
                                                                  : NO_WRITER;
    if (h.generation == 0 || epoch == NO_WRITER || (epoch != ANY_EPOCH && h.epoch != epoch))
        return violation(cfg, "holder no writer wrote (torn?)", user, h.generation,
                         (uint64_t)h.slot << 32 | h.epoch);
    if (log->n_events < LOG_CAP)
        log_event(log, EV_SEEN, user, h.generation, h.slot);
    return true;
}

static int reader_run(const worker_cfg *cfg)
{
    uint64_t rng = cfg->seed;
    long deadline = now_ms() + cfg->run_ms;
    uint64_t op;
    bool ok = true;
    for (op = 0; ok; op++) {
        if ((op & 255) == 0 && now_ms() >= deadline)
            break;
        ok = reader_step(cfg, &rng);
    }
    cfg->log->ops = op;
    return ok ? 0 : 1;
}

/* Fresh users, CHURN_WINDOW of them live at a time: every claim is an insert
 * into an empty entry, so tables fill with tombstones and are rebuilt again
 * and again under the readers. */
static int churn_run(const worker_cfg *cfg)
{
    proc_log *log = cfg->log;
    uint64_t held[CHURN_WINDOW] = { 0 };
    long deadline = now_ms() + cfg->run_ms;
    uint64_t i;
    for (i = 0;; i++) {
        if ((i & 63) == 0 && now_ms() >= deadline)
            break;
        if (log->n_events + 2 > LOG_CAP)
            break;
        int64_t user = cfg->base + (int64_t)i;
        if (i >= CHURN_WINDOW) {
            uint64_t gen = held[i % CHURN_WINDOW];
            if (!directory_release(cfg->d, user - CHURN_WINDOW, (uint32_t)gen)) {
                violation(cfg, "churned user lost", user - CHURN_WINDOW, gen, 0);
                return 1;
            }
            log_event(log, EV_REMOVE, user - CHURN_WINDOW, gen, cfg->slot);
            log->releases++;
            log->released++;
        }
        dir_holder me = { .slot = cfg->slot, .epoch = cfg->epoch,
                          .generation = directory_next_generation(cfg->d) };
        dir_holder prev;
        if (directory_claim(cfg->d, user, &me, &prev) != DIR_OK || prev.slot != -1) {
            violation(cfg, "fresh user refused or already held", user, me.generation, 0);
            return 1;
        }
        log_event(log, EV_ADD, user, me.generation, me.slot);
        held[i % CHURN_WINDOW] = me.generation;
        log->claims++;
        atomic_store_explicit(&log->progress, i + 1, memory_order_relaxed);
    }
    log->ops = i;
    return 0;
}

static int worker_run(const worker_cfg *cfg)
{
    switch (cfg->role) {
    case ROLE_READER:
        return reader_run(cfg);
    case ROLE_CHURN:
        return churn_run(cfg);
    case ROLE_MIXED:
        break;
    }
    return mixed_run(cfg);
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

/* Every holder a reader saw for an audited user must have been added for that
 * user, by that slot: otherwise the reader saw a holder nobody wrote for it
 * (torn, or another user's). Returns how many were checked. */
static uint64_t ledger_check_seen(const ledger *l, proc_log *const *logs, int n)
{
    uint64_t checked = 0;
    for (int p = 0; p < n; p++) {
        for (uint32_t e = 0; e < logs[p]->n_events; e++) {
            const event *ev = &logs[p]->ev[e];
            if (ev->kind != EV_SEEN || !audited(l, ev->user))
                continue;
            uint64_t g = ev->generation;
            if (g >= l->max_gen || l->add_user[g] != ev->user || l->add_slot[g] != ev->slot)
                ck_abort_msg("reader saw user %lld held by generation %llu in slot %d, "
                             "never written for it",
                             (long long)ev->user, (unsigned long long)g, ev->slot);
            checked++;
        }
    }
    return checked;
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


static void print_reader_stats(const char *name, proc_log *const *logs, int n, uint64_t checked)
{
    uint64_t lookups = 0, hits = 0, max_ns = 0;
    for (int p = 0; p < n; p++) {
        lookups += logs[p]->lookups;
        hits += logs[p]->hits;
        if (logs[p]->max_lookup_ns > max_ns)
            max_ns = logs[p]->max_lookup_ns;
    }
    printf("%s: readers: %llu lock-free lookups (%llu hits, %llu holders audited), "
           "slowest %llu us\n",
           name, (unsigned long long)lookups, (unsigned long long)hits,
           (unsigned long long)checked, (unsigned long long)(max_ns / 1000));
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

enum { PINNED = 4, PIN_BASE = 100000 };

typedef struct {
    int64_t users[PINNED];
    dir_holder holder[PINNED];
} pinned_set;

/* Claimed before the run and never touched again: readers must see them,
 * exactly, every time. Their ids are hashed among the churned users' runs. */
static void pin_users(directory *d, pinned_set *p)
{
    for (int i = 0; i < PINNED; i++) {
        p->users[i] = PIN_BASE + i;
        p->holder[i] = (dir_holder){ .slot = PIN_SLOT, .epoch = directory_slot_epoch(d, PIN_SLOT),
                                     .generation = directory_next_generation(d) };
        ck_assert_int_eq(directory_claim(d, p->users[i], &p->holder[i], NULL), DIR_OK);
    }
}

static void check_pinned(directory *d, const pinned_set *p)
{
    for (int i = 0; i < PINNED; i++) {
        dir_holder h;
        ck_assert_msg(directory_lookup(d, p->users[i], &h), "pinned user %lld lost",
                      (long long)p->users[i]);
        ck_assert(same_holder(&h, &p->holder[i]));
    }
}

static worker_cfg reader_cfg(directory *d, const pinned_set *p, const uint32_t *slot_epoch,
                             uint64_t seed, proc_log *log)
{
    return (worker_cfg){ .d = d, .role = ROLE_READER, .slot = -1, .seed = seed,
                         .run_ms = RUN_MS, .log = log, .pinned = p->users,
                         .pinned_holder = p->holder, .n_pinned = PINNED,
                         .slot_epoch = slot_epoch };
}

/* Four processes, sixteen users, capacity twelve: heavy contention on every
 * user, claims refused for capacity, probe runs that wrap the table; and two
 * lock-free readers beside them (the pinned users add their own capacity). */
START_TEST(test_concurrent_ledger)
{
    enum { PROCS = 4, USERS = 16, CAPACITY = 12 };
    uint64_t seed = base_seed();
    printf("concurrent: seed %llu\n", (unsigned long long)seed);
    setup s;
    setup_open(&s, CAPACITY + PINNED, PROCS + READERS);
    int64_t users[USERS];
    for (int i = 0; i < USERS; i++)
        users[i] = 1 + i;
    pinned_set pin;
    pin_users(s.d, &pin);
    uint32_t slot_epoch[DIRECTORY_MAX_SLOTS] = { 0 };

    capture cap;
    capture_start(&cap);
    pid_t pids[PROCS + READERS];
    int slots[PROCS], statuses[PROCS + READERS];
    for (int p = 0; p < PROCS; p++) {
        slots[p] = p * 3 + 1;
        slot_epoch[slots[p]] = directory_slot_epoch(s.d, slots[p]);
        worker_cfg cfg = { .d = s.d, .slot = slots[p], .epoch = slot_epoch[slots[p]],
                           .users = users, .n_users = USERS, .seed = seed + (uint64_t)p * 7919,
                           .run_ms = RUN_MS, .log = s.logs[p] };
        pids[p] = spawn(&cfg);
    }
    for (int r = 0; r < READERS; r++) {
        worker_cfg cfg = reader_cfg(s.d, &pin, slot_epoch, seed ^ (0xabcdefu + (uint64_t)r),
                                    s.logs[PROCS + r]);
        cfg.users = users;
        cfg.n_users = USERS;
        pids[PROCS + r] = spawn(&cfg);
    }
    bool none_hung = reap_all(pids, statuses, PROCS + READERS, WAIT_LIMIT_MS);
    char *err = capture_stop(&cap);
    echo_unexpected(err);
    ck_assert_msg(none_hung, "a process hung");
    for (int p = 0; p < PROCS + READERS; p++)
        ck_assert_msg(exited_ok(statuses[p]), "process %d failed (status %#x)", p, statuses[p]);
    ck_assert_int_eq(count_lines_with(err, RECOVERY_MARK), 0); /* nobody died */
    free(err);

    print_stats("concurrent", s.logs, PROCS);
    ledger l = { .first = 1, .last = USERS, .max_gen = directory_next_generation(s.d) };
    ledger_load(&l, s.logs, PROCS);
    uint64_t seen = ledger_check_seen(&l, s.logs + PROCS, READERS);
    uint32_t holders = ledger_verify(&l, s.d, s.logs, slots, PROCS, users, USERS);
    ledger_free(&l);
    print_reader_stats("concurrent", s.logs + PROCS, READERS, seen);
    ck_assert_uint_eq(directory_count(s.d), holders + PINNED);
    ck_assert_uint_le(holders, CAPACITY);
    check_pinned(s.d, &pin);
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
    K_CAPACITY = K_OWN + K_SHARED + K_VICTIM_OWN + PINNED,
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
    ck_assert_uint_eq(directory_count(d), holders + PINNED);

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
    ck_assert_uint_eq(directory_count(d), K_OWN + K_SHARED + PINNED);
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
    ck_assert_uint_eq(directory_count(d), PINNED);
}

START_TEST(test_survives_killed_processes)
{
    uint64_t seed = base_seed();
    printf("killed: seed %llu\n", (unsigned long long)seed);
    setup s;
    setup_open(&s, K_CAPACITY, K_STABLE + READERS);
    int64_t users[K_OWN + K_SHARED];
    for (int i = 0; i < K_OWN + K_SHARED; i++)
        users[i] = 1 + i;
    pinned_set pin;
    pin_users(s.d, &pin);
    /* Readers look up users 1..16 only, which no victim touches: a holder
     * there in the victims' slot would be a violation too. */
    uint32_t slot_epoch[DIRECTORY_MAX_SLOTS] = { 0 };

    capture cap;
    capture_start(&cap);
    pid_t pids[K_STABLE + READERS];
    int slots[K_STABLE], statuses[K_STABLE + READERS];
    for (int p = 0; p < K_STABLE; p++) {
        slots[p] = p;
        slot_epoch[p] = directory_slot_epoch(s.d, p);
        worker_cfg cfg = { .d = s.d, .slot = p, .epoch = slot_epoch[p],
                           .users = users, .n_users = K_OWN + K_SHARED,
                           .seed = seed + (uint64_t)p * 7919, .run_ms = RUN_MS,
                           .log = s.logs[p] };
        pids[p] = spawn(&cfg);
    }
    for (int r = 0; r < READERS; r++) {
        worker_cfg cfg = reader_cfg(s.d, &pin, slot_epoch, seed ^ (0x1234567u + (uint64_t)r),
                                    s.logs[K_STABLE + r]);
        cfg.users = users;
        cfg.n_users = K_OWN;
        pids[K_STABLE + r] = spawn(&cfg);
    }
    int victims = kill_victims(s.d, seed ^ 0x5555, &cap);
    bool none_hung = reap_all(pids, statuses, K_STABLE + READERS, WAIT_LIMIT_MS);
    char *err = capture_stop(&cap);
    echo_unexpected(err);
    ck_assert_msg(none_hung, "a process hung after a victim was killed");
    for (int p = 0; p < K_STABLE + READERS; p++)
        ck_assert_msg(exited_ok(statuses[p]), "process %d failed (status %#x)", p, statuses[p]);
    int recoveries = count_lines_with(err, RECOVERY_MARK);
    free(err);
    print_stats("killed", s.logs, K_STABLE);
    printf("killed: %d victims SIGKILLed, %d killed holding the lock (table rebuilt), "
           "%llu rebuilds in all\n",
           victims, recoveries, (unsigned long long)rebuilds_of(s.mem));
    /* Otherwise this test did not test the repair path. */
    ck_assert_int_ge(recoveries, 1);

    /* Users 1..16 never saw a victim, so the ledger must still balance
     * exactly: a victim dying mid-update lost none of them. */
    ledger l = { .first = 1, .last = K_OWN, .max_gen = directory_next_generation(s.d) };
    ledger_load(&l, s.logs, K_STABLE);
    uint64_t seen = ledger_check_seen(&l, s.logs + K_STABLE, READERS);
    uint32_t holders = ledger_verify(&l, s.d, s.logs, slots, K_STABLE, users, K_OWN);
    ledger_free(&l);
    print_reader_stats("killed", s.logs + K_STABLE, READERS, seen);
    check_pinned(s.d, &pin);

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

/* Lock-free readers while the tables are rebuilt thousands of times: two
 * churners claim fresh users (every claim takes an empty entry, every release
 * leaves a tombstone), so the physical load hits 3/4 every few dozen claims.
 * Readers follow the churners' newest users and check the pinned ones. */
START_TEST(test_readers_during_rebuilds)
{
    enum { CHURNERS = 2, CAPACITY = 64, CHURN_BASE = 1000000, MIN_REBUILDS = 100 };
    uint64_t seed = base_seed();
    printf("rebuilds: seed %llu\n", (unsigned long long)seed);
    setup s;
    setup_open(&s, CAPACITY, CHURNERS + READERS);
    pinned_set pin;
    pin_users(s.d, &pin);
    uint32_t slot_epoch[DIRECTORY_MAX_SLOTS] = { 0 };
    int64_t base[CHURNERS];
    proc_log *churn_logs[CHURNERS];

    capture cap;
    capture_start(&cap);
    pid_t pids[CHURNERS + READERS];
    int slots[CHURNERS], statuses[CHURNERS + READERS];
    for (int p = 0; p < CHURNERS; p++) {
        slots[p] = 1 + p;
        slot_epoch[slots[p]] = directory_slot_epoch(s.d, slots[p]);
        base[p] = CHURN_BASE + (int64_t)p * LOG_CAP; /* a churner claims < LOG_CAP / 2 */
        churn_logs[p] = s.logs[p];
    }
    for (int p = 0; p < CHURNERS; p++) {
        worker_cfg cfg = { .d = s.d, .role = ROLE_CHURN, .slot = slots[p],
                           .epoch = slot_epoch[slots[p]], .run_ms = RUN_MS, .log = s.logs[p],
                           .base = base[p] };
        pids[p] = spawn(&cfg);
    }
    for (int r = 0; r < READERS; r++) {
        worker_cfg cfg = reader_cfg(s.d, &pin, slot_epoch, seed ^ (0x777u + (uint64_t)r),
                                    s.logs[CHURNERS + r]);
        cfg.follow = churn_logs;
        cfg.follow_base = base;
        cfg.n_follow = CHURNERS;
        pids[CHURNERS + r] = spawn(&cfg);
    }
    bool none_hung = reap_all(pids, statuses, CHURNERS + READERS, WAIT_LIMIT_MS);
    char *err = capture_stop(&cap);
    echo_unexpected(err);
    ck_assert_msg(none_hung, "a process hung");
    for (int p = 0; p < CHURNERS + READERS; p++)
        ck_assert_msg(exited_ok(statuses[p]), "process %d failed (status %#x)", p, statuses[p]);
    free(err);

    uint64_t rebuilds = rebuilds_of(s.mem);
    print_stats("rebuilds", s.logs, CHURNERS);
    printf("rebuilds: %llu table rebuilds under the readers\n", (unsigned long long)rebuilds);
    ck_assert_uint_ge(rebuilds, MIN_REBUILDS);

    uint64_t last = atomic_load(&s.logs[CHURNERS - 1]->progress);
    ledger l = { .first = base[0], .last = base[CHURNERS - 1] + (int64_t)last,
                 .max_gen = directory_next_generation(s.d) };
    ledger_load(&l, s.logs, CHURNERS);
    uint64_t seen = ledger_check_seen(&l, s.logs + CHURNERS, READERS);
    uint32_t holders = ledger_verify(&l, s.d, s.logs, slots, CHURNERS, NULL, 0);
    ledger_free(&l);
    print_reader_stats("rebuilds", s.logs + CHURNERS, READERS, seen);
    ck_assert_uint_eq(holders, CHURNERS * CHURN_WINDOW);
    ck_assert_uint_eq(directory_count(s.d), holders + PINNED);
    check_pinned(s.d, &pin);
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
#define directory_each_of_epoch crash_directory_each_of_epoch

/* The renamed copy's prototypes, which its own #include of the header (done
 * already) cannot provide. */
size_t directory_size(uint32_t capacity);
int directory_init(void *mem, uint32_t capacity);
directory *directory_attach(void *mem);
uint32_t directory_capacity(const directory *d);
uint32_t directory_slot_epoch(const directory *d, int slot);
uint32_t directory_slot_bump(directory *d, int slot);
uint32_t directory_next_generation(directory *d);
dir_status directory_claim(directory *d, int64_t user, const dir_holder *me, dir_holder *prev);
bool directory_release(directory *d, int64_t user, uint32_t generation);
bool directory_lookup(const directory *d, int64_t user, dir_holder *out);
uint32_t directory_count(const directory *d);
size_t directory_each_of_epoch(const directory *d, int slot, uint32_t epoch,
                               void (*fn)(void *ctx, int64_t user, uint32_t generation),
                               void *ctx);

#define DIRECTORY_CRASH_POINTS 1
#include "shm/directory.c"

/* The library's copy has this very layout: same source, same flags. */
static uint64_t rebuilds_of(const void *mem)
{
    const struct directory *d = mem;
    return atomic_load(&d->rebuild_seq) / 2;
}

/* Test hooks, so necessarily global: set only in a child that is to die (or
 * stop) at the n-th crash point of what it does next, or to stop at the n-th
 * read point of a lookup. */
static long crash_countdown;
static int crash_signal = SIGKILL;
static long read_countdown;

void directory_crash_point(void)
{
    if (crash_countdown > 0 && --crash_countdown == 0 && raise(crash_signal) != 0)
        abort();
}

void directory_read_point(void)
{
    if (read_countdown > 0 && --read_countdown == 0 && raise(SIGSTOP) != 0)
        abort();
}

/* Generations are 32 bits: the counter wraps, skipping 0, and stays unique
 * across processes drawing at the wrap. */
START_TEST(test_generation_wrap)
{
    enum { PER_PROC = 20000 };
    size_t size = directory_size(16);
    void *mem = map_shared(size);
    ck_assert_int_eq(directory_init(mem, 16), 0);
    directory *d = directory_attach(mem);
    ck_assert_ptr_nonnull(d);

    atomic_store(&d->next_generation, UINT32_MAX - 1);
    ck_assert_uint_eq(directory_next_generation(d), UINT32_MAX - 1);
    dir_holder a = { .slot = 3, .epoch = directory_slot_epoch(d, 3),
                     .generation = directory_next_generation(d) };
    ck_assert_uint_eq(a.generation, UINT32_MAX);
    dir_holder b = { .slot = 3, .epoch = a.epoch, .generation = directory_next_generation(d) };
    ck_assert_uint_eq(b.generation, 1); /* not 0 */
    ck_assert_uint_eq(directory_next_generation(d), 2);
    dir_holder prev;
    ck_assert_int_eq(directory_claim(d, 9, &a, &prev), DIR_OK);
    ck_assert_int_eq(directory_claim(d, 9, &b, &prev), DIR_OK);
    ck_assert(same_holder(&prev, &a));
    ck_assert(!directory_release(d, 9, a.generation));
    ck_assert(directory_release(d, 9, b.generation));

    /* Two processes draw across the wrap at once. */
    atomic_store(&d->next_generation, UINT32_MAX - PER_PROC);
    uint32_t *drawn = map_shared(2 * PER_PROC * sizeof *drawn);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (int i = 0; i < PER_PROC; i++)
            drawn[PER_PROC + i] = directory_next_generation(d);
        _exit(0);
    }
    for (int i = 0; i < PER_PROC; i++)
        drawn[i] = directory_next_generation(d);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(exited_ok(status));
    uint8_t *hit = calloc(2 * PER_PROC + 2, 1); /* values UINT32_MAX - PER_PROC .. PER_PROC + 1 */
    ck_assert_ptr_nonnull(hit);
    for (int i = 0; i < 2 * PER_PROC; i++) {
        uint32_t g = drawn[i];
        if (g == 0)
            ck_abort_msg("generation 0 drawn");
        uint32_t at = g - (UINT32_MAX - PER_PROC); /* modulo 2^32 */
        if (at > 2 * PER_PROC + 1 || hit[at]++ != 0)
            ck_abort_msg("generation %u out of range or drawn twice", g);
    }
    free(hit);
    ck_assert_int_eq(munmap(drawn, 2 * PER_PROC * sizeof *drawn), 0);
    ck_assert_int_eq(munmap(mem, size), 0);
}
END_TEST

enum { CC_USERS = 14, CC_CAPACITY = 8, CC_CHECK_SLOT = 5 };

typedef enum { OP_CLAIM, OP_RELEASE, OP_BUMP } op_kind;

typedef struct {
    int n;                       /* users watched */
    int64_t users[CC_USERS];
    dir_holder held[CC_USERS];   /* as claimed while preparing */
    op_kind op;
    int64_t op_user;
    dir_holder op_holder;        /* OP_CLAIM */
    uint32_t op_generation;      /* OP_RELEASE */
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
 * around index 0: one long run, where tombstones and inserts interleave. */
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

static void unput(directory *d, crash_case *cc, int i)
{
    if (!directory_release(d, cc->users[i], cc->held[i].generation))
        ck_abort_msg("preparing: release of user %lld refused", (long long)cc->users[i]);
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

/* Others' tombstones early in the run: the insert passes them by. */
static void prep_insert_past_tombstones(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    unput(d, cc, 0);
    unput(d, cc, 1);
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

/* A released user comes back through its own tombstone. */
static void prep_reclaim(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    unput(d, cc, 1);
    cc->op = OP_CLAIM;
    cc->op_user = cc->users[1];
    cc->op_holder = fresh_holder(d, 2);
}

static void prep_release(directory *d, crash_case *cc)
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

/* The bump that reaches an epoch boundary also flags the wrap sweep. */
static void prep_bump_boundary(directory *d, crash_case *cc)
{
    atomic_store(&d->epoch[1], EPOCH_SWEEP - 1);
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

/* Twelve users inserted, six of them released: six tombstones and six live
 * entries put the table at its load limit, so the next new user rebuilds it,
 * dropping the tombstones. */
static void prep_tombstone_rebuild(directory *d, crash_case *cc)
{
    colliding_users(cc, 13);
    for (int i = 0; i < 12; i++) {
        put(d, cc, i, i % 3);
        if (i % 2 == 0)
            unput(d, cc, i);
    }
    cc->op = OP_CLAIM;
    cc->op_user = cc->users[12];
    cc->op_holder = fresh_holder(d, 0);
}

/* A bump crossed an epoch boundary: the next locker (this claim) sweeps
 * before it inserts. */
static void prep_sweep_due(directory *d, crash_case *cc)
{
    prep_cluster(d, cc);
    atomic_store(&d->epoch[3], EPOCH_SWEEP - 1);
    directory_slot_bump(d, 3);
    if (atomic_load(&d->sweep_due) == 0)
        ck_abort_msg("preparing: the boundary bump did not flag a sweep");
    cc->op = OP_CLAIM;
    cc->op_user = cc->users[6];
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

/* Takes the lock and changes nothing (no entry has generation UINT32_MAX):
 * whatever a dead holder left is repaired here. */
static void repair_now(directory *d, const crash_case *cc)
{
    if (directory_release(d, cc->users[0], UINT32_MAX))
        ck_abort_msg("released a generation never issued");
}

/* Lookups only: never locks, never repairs. */
static void take_holders(const directory *d, const crash_case *cc, snapshot *s)
{
    for (int i = 0; i < cc->n; i++) {
        if (!directory_lookup(d, cc->users[i], &s->h[i]))
            s->h[i] = (dir_holder){ .slot = -1, .epoch = 0, .generation = 0 };
    }
}

static void take_snapshot(directory *d, const crash_case *cc, snapshot *s)
{
    take_holders(d, cc, s);
    s->count = directory_count(d);
}

static bool same_holders(const snapshot *a, const snapshot *b, int n)
{
    for (int i = 0; i < n; i++) {
        if (!same_holder(&a->h[i], &b->h[i]))
            return false;
    }
    return true;
}

static bool same_snapshot(const snapshot *a, const snapshot *b, int n)
{
    return a->count == b->count && same_holders(a, b, n);
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

/* Fork a process that runs the update (as_op) or just a repair of what an
 * earlier death left, and is SIGKILLed at its n-th crash point. Returns true
 * if it died there, false if it finished first. */
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
            repair_now(d, cc);
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
    bool locked;     /* the update holds the lock (a bump does not) */
    long min_points; /* fewer means crash points are not compiled in */
} crash_scenario;

typedef struct {
    long runs, points;
} crash_totals;

/* Kill the update at crash point k (and the repair at point j, if j > 0),
 * then check what the next processes find: lock-free readers before any
 * repair, and everyone after it. False if the update finished before
 * reaching point k (or the repair before point j). */
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
    snapshot seen;
    take_holders(r.d, &cc, &seen);
    if (!same_holders(&seen, before, cc.n) && !same_holders(&seen, after, cc.n))
        ck_abort_msg("%s, crash point %ld/%ld: unrepaired, lookups see neither the state "
                     "before nor after the update", sc->name, k, j);
    repair_now(r.d, &cc);
    int repaired = recoveries_since(cap, offset);
    if (repaired != (sc->locked ? 1 : 0))
        ck_abort_msg("%s, crash point %ld/%ld: %d repairs instead of %d", sc->name, k, j,
                     repaired, sc->locked ? 1 : 0);
    snapshot got;
    take_snapshot(r.d, &cc, &got);
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
    if (k - 1 < sc->min_points)
        ck_abort_msg("%s: only %ld crash points: are crash points compiled in?", sc->name, k - 1);
}

START_TEST(test_crash_points)
{
    static const crash_scenario scenarios[] = {
        { "insert into a wrapping run", prep_insert, false, true, 3 },
        { "insert past others' tombstones", prep_insert_past_tombstones, false, true, 3 },
        { "replace a live holder", prep_replace, true, true, 3 },
        { "re-claim through its own tombstone", prep_reclaim, true, true, 3 },
        { "overwrite a stale entry", prep_overwrite_stale, false, true, 3 },
        { "release to a tombstone", prep_release, true, true, 3 },
        { "release a stale entry", prep_release_stale, false, true, 3 },
        { "bump a slot", prep_bump, false, false, 1 },
        { "bump to an epoch boundary", prep_bump_boundary, false, false, 2 },
        { "sweep stale entries", prep_sweep, true, true, 10 },
        { "rebuild dropping tombstones", prep_tombstone_rebuild, true, true, 10 },
        { "sweep due after an epoch boundary", prep_sweep_due, true, true, 10 },
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

/* ---- a writer stopped while it holds the lock --------------------------------- */

enum { PROBE_LIMIT_MS = 10000 }; /* the prober as a whole; each call: CALL_LIMIT_MS */

/* What the prober found, in memory shared with the test. */
typedef struct {
    int ok;
    uint64_t max_call_ns;
    char why[256];
} probe_result;

static uint64_t timed_ns(uint64_t t0, probe_result *res)
{
    uint64_t took = now_ns() - t0;
    if (took > res->max_call_ns)
        res->max_call_ns = took;
    return took;
}

static bool probe_fail(probe_result *res, const char *what, long long a, long long b)
{
    snprintf(res->why, sizeof res->why, "%s (%lld, %lld)", what, a, b);
    return false;
}

/* The master's part while a writer is stopped in the middle of an update:
 * look up every watched user and a few absent ones, bump a slot, look up
 * again. Everything must return within CALL_LIMIT_MS and be right. */
static bool probe_run(directory *d, const crash_case *cc, int bump_slot, const snapshot *before,
                      const snapshot *after, probe_result *res)
{
    const uint64_t limit = (uint64_t)CALL_LIMIT_MS * 1000000u;
    snapshot seen;
    for (int i = 0; i < cc->n; i++) {
        uint64_t t0 = now_ns();
        if (!directory_lookup(d, cc->users[i], &seen.h[i]))
            seen.h[i] = (dir_holder){ .slot = -1, .epoch = 0, .generation = 0 };
        if (timed_ns(t0, res) > limit)
            return probe_fail(res, "lookup too slow", (long long)cc->users[i], 0);
    }
    for (int64_t u = 900001; u <= 900004; u++) {
        uint64_t t0 = now_ns();
        bool present = directory_lookup(d, u, NULL);
        if (timed_ns(t0, res) > limit || present)
            return probe_fail(res, "absent user slow or present", (long long)u, present);
    }
    if (!same_holders(&seen, before, cc->n) && !same_holders(&seen, after, cc->n))
        return probe_fail(res, "lookups see neither the state before nor after", 0, 0);

    uint32_t count = directory_count(d), of_slot = live_of(d, bump_slot);
    uint64_t t0 = now_ns();
    uint32_t epoch = directory_slot_bump(d, bump_slot);
    if (timed_ns(t0, res) > limit || epoch != directory_slot_epoch(d, bump_slot))
        return probe_fail(res, "bump too slow or epoch not stored", bump_slot, epoch);
    /* The count is right at once, with the lock still held by the writer. */
    if (live_of(d, bump_slot) != 0 || directory_count(d) != count - of_slot)
        return probe_fail(res, "count not adjusted by the bump", directory_count(d),
                          (long long)count - of_slot);
    for (int i = 0; i < cc->n; i++) {
        dir_holder h;
        t0 = now_ns();
        bool present = directory_lookup(d, cc->users[i], &h);
        if (timed_ns(t0, res) > limit)
            return probe_fail(res, "lookup after bump too slow", (long long)cc->users[i], 0);
        bool want = seen.h[i].slot >= 0 && seen.h[i].slot != bump_slot;
        if (present != want || (present && !same_holder(&h, &seen.h[i])))
            return probe_fail(res, "wrong answer after the bump", (long long)cc->users[i],
                              present);
    }
    return true;
}

/* Runs probe_run in its own process, so that a lookup that blocks (as with
 * a lookup that takes the lock) fails the test after PROBE_LIMIT_MS instead
 * of hanging it. */
static bool probe_stopped(directory *d, const crash_case *cc, int bump_slot,
                          const snapshot *before, const snapshot *after, probe_result *res)
{
    memset(res, 0, sizeof *res);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        ck_abort_msg("fork failed");
    if (pid == 0) {
        alarm(ORPHAN_ALARM_S);
        res->ok = probe_run(d, cc, bump_slot, before, after, res);
        _exit(0);
    }
    long deadline = now_ms() + PROBE_LIMIT_MS;
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        sleep_us(200);
    if (r == 0) {
        if (kill(pid, SIGKILL) != 0 || waitpid(pid, &status, 0) != pid)
            ck_abort_msg("cannot stop the prober");
        snprintf(res->why, sizeof res->why,
                 "lookups or bump still blocked after %d ms", PROBE_LIMIT_MS);
        return false;
    }
    if (r != pid || !exited_ok(status)) {
        snprintf(res->why, sizeof res->why, "prober failed (status %#x)", status);
        return false;
    }
    return res->ok != 0;
}

typedef struct {
    const char *name;
    prepare_fn prep;
    int bump_slot[2];   /* the updating holder's slot, and another with users */
    bool kill_first;    /* kill the update mid-way, stop its repair instead */
} stop_scenario;

/* The states a directory may end in: the update linearised before or after
 * the bump (a claim stopped before its epoch check is refused as stale), or,
 * with kill_first, the update lost before the bump. */
typedef struct {
    snapshot end[3];
    int n;
} end_states;

static void end_state(const stop_scenario *sc, int bump_slot, int order, snapshot *s)
{
    small_region r;
    crash_case cc;
    small_open(&r);
    sc->prep(r.d, &cc);
    if (order == 0)
        run_op(r.d, &cc);
    directory_slot_bump(r.d, bump_slot);
    if (order == 1)
        run_op(r.d, &cc);
    take_snapshot(r.d, &cc, s);
    small_close(&r);
}

/* Crash points the update passes, counted without dying. */
static long points_of(prepare_fn prep)
{
    small_region r;
    crash_case cc;
    small_open(&r);
    prep(r.d, &cc);
    crash_countdown = LONG_MAX;
    run_op(r.d, &cc);
    long n = LONG_MAX - crash_countdown;
    crash_countdown = 0;
    small_close(&r);
    return n;
}

/* Stop the update (or, after killing it at kill_k, its repair) at crash point
 * k, probe, continue it, and check the end state. False if it finished before
 * reaching point k. */
static bool stop_once(const stop_scenario *sc, int bump_slot, long k, long kill_k,
                      const snapshot *before, const snapshot *after, const end_states *ends,
                      probe_result *res)
{
    small_region r;
    crash_case cc;
    small_open(&r);
    sc->prep(r.d, &cc);
    if (kill_k > 0 && !die_at(kill_k, r.d, &cc, true))
        ck_abort_msg("%s: the update has no crash point %ld", sc->name, kill_k);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        ck_abort_msg("fork failed");
    if (pid == 0) {
        /* A stopped orphan would never see an alarm: die with the test. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
            _exit(3);
        alarm(ORPHAN_ALARM_S);
        crash_signal = SIGSTOP;
        crash_countdown = k;
        if (kill_k > 0)
            repair_now(r.d, &cc);
        else
            run_op(r.d, &cc);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, WUNTRACED) != pid)
        ck_abort_msg("waitpid failed");
    if (!WIFSTOPPED(status)) {
        if (!exited_ok(status))
            ck_abort_msg("%s: the writer failed (status %#x)", sc->name, status);
        small_close(&r);
        return false;
    }
    bool ok = probe_stopped(r.d, &cc, bump_slot, before, after, res);
    /* Let it finish before judging, so that nothing is left stopped. */
    if (kill(pid, SIGCONT) != 0 || waitpid(pid, &status, 0) != pid)
        ck_abort_msg("cannot resume the stopped writer");
    if (!ok)
        ck_abort_msg("%s, writer stopped at point %ld (bumping slot %d): %s", sc->name, k,
                     bump_slot, res->why);
    if (!exited_ok(status))
        ck_abort_msg("%s: the resumed writer failed (status %#x)", sc->name, status);
    snapshot got;
    take_snapshot(r.d, &cc, &got);
    bool expected = false;
    for (int i = 0; i < ends->n; i++)
        expected = expected || same_snapshot(&got, &ends->end[i], cc.n);
    if (!expected)
        ck_abort_msg("%s, writer stopped at point %ld (bumping slot %d): inconsistent after "
                     "SIGCONT", sc->name, k, bump_slot);
    check_usable(r.d, &cc, &got);
    small_close(&r);
    return true;
}

START_TEST(test_stopped_writer)
{
    static const stop_scenario scenarios[] = {
        { "insert", prep_insert, { 2, 0 }, false },
        { "replace", prep_replace, { 1, 0 }, false },
        { "re-claim through its own tombstone", prep_reclaim, { 2, 1 }, false },
        { "release", prep_release, { 0, 1 }, false },
        { "sweep stale entries", prep_sweep, { 2, 1 }, false },
        { "rebuild dropping tombstones", prep_tombstone_rebuild, { 0, 1 }, false },
        { "repair of a rebuild killed midway", prep_tombstone_rebuild, { 0, 1 }, true },
    };
    capture cap;
    capture_start(&cap); /* the repairs' log lines */
    long runs = 0;
    uint64_t slowest = 0;
    probe_result *res = map_shared(sizeof *res);
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        const stop_scenario *sc = &scenarios[i];
        snapshot before, after;
        reference_states(sc->prep, &before, &after);
        long kill_k = sc->kill_first ? points_of(sc->prep) / 2 : 0;
        for (int b = 0; b < 2; b++) {
            end_states ends = { .n = 2 };
            end_state(sc, sc->bump_slot[b], 0, &ends.end[0]);
            end_state(sc, sc->bump_slot[b], sc->kill_first ? 2 : 1, &ends.end[1]);
            long k;
            for (k = 1; stop_once(sc, sc->bump_slot[b], k, kill_k, &before, &after, &ends, res);
                 k++) {
                runs++;
                if (res->max_call_ns > slowest)
                    slowest = res->max_call_ns;
            }
            if (k < 3)
                ck_abort_msg("%s: stopped at only %ld points", sc->name, k - 1);
        }
    }
    ck_assert_int_eq(munmap(res, sizeof *res), 0);
    char *err = capture_stop(&cap);
    echo_unexpected(err);
    free(err);
    printf("stopped writer: %ld stops in %zu kinds of update, lock held each time; "
           "slowest lookup or bump %llu us\n",
           runs, sizeof scenarios / sizeof scenarios[0], (unsigned long long)(slowest / 1000));
}
END_TEST

/* ---- a reader paused in the middle of a lookup ------------------------------- */

typedef struct {
    int present;
    dir_holder h;
} lookup_result;

/* Fork a lookup of user that stops at its n-th read point. Returns its pid,
 * stopped, or 0 if it finished first (then *res holds its answer). */
static pid_t pause_lookup(directory *d, int64_t user, long n, lookup_result *res)
{
    memset(res, 0, sizeof *res);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        ck_abort_msg("fork failed");
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
            _exit(3);
        alarm(ORPHAN_ALARM_S);
        read_countdown = n;
        res->present = directory_lookup(d, user, &res->h);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, WUNTRACED) != pid)
        ck_abort_msg("waitpid failed");
    if (WIFSTOPPED(status))
        return pid;
    if (!exited_ok(status))
        ck_abort_msg("lookup child failed (status %#x)", status);
    return 0;
}

static void resume_lookup(pid_t pid)
{
    int status;
    if (kill(pid, SIGCONT) != 0 || waitpid(pid, &status, 0) != pid || !exited_ok(status))
        ck_abort_msg("paused lookup did not finish");
}

/* Claim and release fresh users until the tables were rebuilt n times. */
static void churn_rebuilds(directory *d, int n)
{
    uint64_t target = atomic_load(&d->rebuild_seq) + 2 * (uint64_t)n;
    for (int64_t u = 5000; atomic_load(&d->rebuild_seq) < target; u++) {
        dir_holder h = fresh_holder(d, 6);
        if (directory_claim(d, u, &h, NULL) != DIR_OK || !directory_release(d, u, h.generation))
            ck_abort_msg("churning user %lld failed", (long long)u);
    }
}

/* A lookup paused at every read point while one, two or three rebuilds run:
 * by the second, the table it was scanning is rewritten under it, with the
 * tombstones before the user gone and the user moved up its run. It must
 * still find the user, present all along, with exactly its holder. */
static long paused_over_rebuilds(void)
{
    long runs = 0;
    for (int rebuilds = 1; rebuilds <= 3; rebuilds++) {
        for (long n = 1;; n++) {
            small_region r;
            crash_case cc;
            small_open(&r);
            prep_cluster(r.d, &cc);
            for (int i = 0; i < 4; i++)
                unput(r.d, &cc, i);
            lookup_result *res = map_shared(sizeof *res);
            pid_t pid = pause_lookup(r.d, cc.users[5], n, res);
            if (pid != 0) {
                churn_rebuilds(r.d, rebuilds);
                resume_lookup(pid);
                runs++;
            }
            if (!res->present || !same_holder(&res->h, &cc.held[5]))
                ck_abort_msg("lookup paused at read point %ld over %d rebuilds: user %s", n,
                             rebuilds, res->present ? "with a wrong holder" : "missed");
            ck_assert_int_eq(munmap(res, sizeof *res), 0);
            small_close(&r);
            if (pid == 0)
                break;
        }
    }
    return runs;
}

/* A lookup paused at every read point while its user is released and
 * re-claimed by a writer stopped at each of its crash points: the answer
 * must be a state of some moment of the lookup: the old holder, absent, or
 * what the stopped writer has published. Never a holder not yet published
 * (the writer could die before publishing it). */
static long paused_over_reclaim(void)
{
    long runs = 0;
    for (long n = 1;; n++) {
        bool paused = false;
        for (long k = 1;; k++) {
            small_region r;
            crash_case cc;
            small_open(&r);
            prep_cluster(r.d, &cc);
            int64_t user = cc.users[3];
            lookup_result *res = map_shared(sizeof *res);
            pid_t pid = pause_lookup(r.d, user, n, res);
            if (pid == 0) {
                ck_assert_int_eq(munmap(res, sizeof *res), 0);
                small_close(&r);
                break;
            }
            paused = true;
            unput(r.d, &cc, 3);
            cc.op = OP_CLAIM;
            cc.op_user = user;
            cc.op_holder = fresh_holder(r.d, 2);
            fflush(stdout);
            fflush(stderr);
            pid_t writer = fork();
            if (writer < 0)
                ck_abort_msg("fork failed");
            if (writer == 0) {
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
                    _exit(3);
                crash_signal = SIGSTOP;
                crash_countdown = k;
                run_op(r.d, &cc);
                _exit(0);
            }
            int status;
            if (waitpid(writer, &status, WUNTRACED) != writer)
                ck_abort_msg("waitpid failed");
            bool writer_stopped = WIFSTOPPED(status);
            dir_holder now = { .slot = -1, .epoch = 0, .generation = 0 };
            bool published = directory_lookup(r.d, user, &now);
            resume_lookup(pid);
            if (writer_stopped && (kill(writer, SIGCONT) != 0 || waitpid(writer, &status, 0) != writer))
                ck_abort_msg("cannot resume the writer");
            if (!exited_ok(status))
                ck_abort_msg("writer failed (status %#x)", status);
            runs++;
            bool valid = !res->present || same_holder(&res->h, &cc.held[3]) ||
                         (published && same_holder(&res->h, &now));
            if (!valid)
                ck_abort_msg("lookup paused at read point %ld, writer stopped at point %ld: "
                             "returned generation %u, never published", n, k, res->h.generation);
            ck_assert_int_eq(munmap(res, sizeof *res), 0);
            small_close(&r);
            if (!writer_stopped)
                break;
        }
        if (!paused)
            break;
    }
    return runs;
}

START_TEST(test_paused_reader)
{
    long a = paused_over_rebuilds();
    long b = paused_over_reclaim();
    printf("paused reader: %ld lookups paused over rebuilds, %ld over a re-claim\n", a, b);
    ck_assert_int_ge(a, 3);
    ck_assert_int_ge(b, 3);
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
    tcase_add_test(tc, test_readers_during_rebuilds);
    tcase_add_test(tc, test_crash_points);
    tcase_add_test(tc, test_stopped_writer);
    tcase_add_test(tc, test_paused_reader);
    tcase_add_test(tc, test_generation_wrap);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(stress_suite());
}
