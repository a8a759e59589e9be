/* test_redis_scripts.c — the cluster's Lua scripts (src/common/redis_scripts.c)
 * run against a real redis-server that this test starts on a free loopback
 * port (and stops at the end). Each test starts from FLUSHALL with its own
 * connection from redis_sync_connect (which SCRIPT LOADs every script) and
 * calls the scripts by EVALSHA. Time in the scripts comes from their
 * arguments, so expiry is exercised without waiting. Skipped (77) when
 * /usr/bin/redis-server is missing. */
#include <check.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "src/common/redis_scripts.h"
#include "src/common/redis_sync.h"
#include "src/common/redis_url.h"
#include "tests/check_main.h"

#define REDIS_SERVER "/usr/bin/redis-server"

static pid_t server_pid = -1;
static redis_url url;
static redisContext *C;   /* this test's command connection */

/* ---- the server --------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static pid_t spawn_server(int port)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The child: gone with the test if the test dies. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
    }
    execl(REDIS_SERVER, REDIS_SERVER, "--port", p, "--bind", "127.0.0.1", "--save", "",
          "--appendonly", "no", "--daemonize", "no", (char *)NULL);
    _exit(127);
}

/* Until the server answers PING, within ~5 s, or it exits. */
static int wait_ready(pid_t pid, int port)
{
    for (int i = 0; i < 250; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return -1;
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c != NULL && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r != NULL)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c != NULL) {
            redisFree(c);
        }
        sleep_ms(20);
    }
    return -1;
}

static void stop_server(void)
{
    if (server_pid <= 0)
        return;
    kill(server_pid, SIGTERM);
    for (int i = 0; i < 250; i++) {
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
            server_pid = -1;
            return;
        }
        sleep_ms(20);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = -1;
}

static void start_server(void)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = free_port();
        ck_assert_int_gt(port, 0);
        server_pid = spawn_server(port);
        ck_assert_int_gt(server_pid, 0);
        if (wait_ready(server_pid, port) == 0) {
            char s[64], err[256];
            snprintf(s, sizeof s, "redis://127.0.0.1:%d", port);
            ck_assert_int_eq(redis_url_parse(s, &url, err, sizeof err), 0);
            return;
        }
        stop_server();  /* the port was taken meanwhile, perhaps: another one */
    }
    ck_abort_msg("redis-server did not start");
}

/* ---- per test ------------------------------------------------------------ */

static redisContext *connect_sync(bool load_scripts)
{
    char err[256] = "";
    redisContext *c = redis_sync_connect(&url, 2000, load_scripts, err, sizeof err);
    ck_assert_msg(c != NULL, "connect: %s", err);
    return c;
}

static void setup(void)
{
    C = connect_sync(true);
    redisReply *r = redisCommand(C, "FLUSHALL");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

static void teardown(void)
{
    redis_sync_free(C);
    C = NULL;
}

/* ---- helpers --------------------------------------------------------- */

/* A plain command on C, its reply checked not to be an error. */
static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(C, fmt, ap);
    va_end(ap);
    ck_assert_msg(r != NULL, "%s: %s", fmt, C->errstr);
    ck_assert_msg(r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r->str);
    return r;
}

static void cmd_free(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(C, fmt, ap);
    va_end(ap);
    ck_assert_msg(r != NULL && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt,
                  r != NULL ? r->str : C->errstr);
    freeReplyObject(r);
}

static long long cmd_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(C, fmt, ap);
    va_end(ap);
    ck_assert_msg(r != NULL && r->type == REDIS_REPLY_INTEGER, "%s: not an integer", fmt);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The string reply of a command, in a static buffer ("(nil)" when nil). */
static const char *cmd_str(const char *fmt, ...)
{
    static char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(C, fmt, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(r);
    if (r->type == REDIS_REPLY_NIL)
        snprintf(buf, sizeof buf, "(nil)");
    else {
        ck_assert_msg(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS,
                      "%s: type %d", fmt, r->type);
        snprintf(buf, sizeof buf, "%.*s", (int)r->len, r->str);
    }
    freeReplyObject(r);
    return buf;
}

/* The user's history: "id:seq,id:seq" in order, "" when empty. */
static const char *history(const char *user)
{
    static char buf[4096];
    redisReply *r = cmd("ZRANGE wsn:h:%s 0 -1 WITHSCORES", user);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s:%s", i ? "," : "",
                              r->element[i]->str, r->element[i + 1]->str);
    freeReplyObject(r);
    return buf;
}

/* The hash fields of the user's entries, sorted, comma-separated. */
static const char *fields(const char *user)
{
    static char buf[4096];
    redisReply *r = cmd("HKEYS wsn:d:%s", user);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    /* insertion sort of the pointers, enough for a few fields */
    const char *k[64];
    size_t n = r->elements < 64 ? r->elements : 64;
    for (size_t i = 0; i < n; i++) {
        const char *v = r->element[i]->str;
        size_t j = i;
        while (j > 0 && strcmp(k[j - 1], v) > 0) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = v;
    }
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? "," : "", k[i]);
    freeReplyObject(r);
    return buf;
}

/* EVALSHA of script s with argc string arguments. */
static redisReply *evalv(redis_script s, int argc, const char *const *argv)
{
    char sha[REDIS_SHA_HEX + 1];
    redis_script_sha(s, sha);
    const char *a[128];
    size_t l[128];
    ck_assert_int_le(argc + 3, 128);
    a[0] = "EVALSHA";
    a[1] = sha;
    a[2] = "0";
    for (int i = 0; i < argc; i++)
        a[3 + i] = argv[i];
    for (int i = 0; i < argc + 3; i++)
        l[i] = strlen(a[i]);
    redisReply *r = redisCommandArgv(C, argc + 3, a, l);
    ck_assert_msg(r != NULL, "EVALSHA: %s", C->errstr);
    return r;
}
#define EVAL(s, ...)                                                                      \
    evalv(s, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),        \
          (const char *[]){__VA_ARGS__})

static void expect_array(const redisReply *r, size_t n)
{
    ck_assert_msg(r->type == REDIS_REPLY_ARRAY, "type %d (%s)", r->type,
                  r->type == REDIS_REPLY_ERROR ? r->str : "");
    ck_assert_uint_eq(r->elements, n);
}

static long long elem_int(const redisReply *r, size_t i)
{
    ck_assert_uint_lt(i, r->elements);
    ck_assert_msg(r->element[i]->type == REDIS_REPLY_INTEGER, "element %zu: type %d", i,
                  r->element[i]->type);
    return r->element[i]->integer;
}

static const char *elem_str(const redisReply *r, size_t i)
{
    ck_assert_uint_lt(i, r->elements);
    ck_assert_msg(r->element[i]->type == REDIS_REPLY_STRING, "element %zu: type %d", i,
                  r->element[i]->type);
    return r->element[i]->str;
}

/* An integer array reply of exactly n values, all checked. */
static void expect_ints(redisReply *r, size_t n, ...)
{
    expect_array(r, n);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        long long want = va_arg(ap, long long);
        ck_assert_msg(elem_int(r, i) == want, "element %zu: %lld, expected %lld", i,
                      elem_int(r, i), want);
    }
    va_end(ap);
    freeReplyObject(r);
}
#define L(x) ((long long)(x))

typedef struct {
    long long status, seq, route, gen;
} append_result;

typedef struct {
    const char *self;
    long long hsize, ttl, now;
} append_ctx;

#define ACCNS(ms) ((long long)(ms) * 1000000LL + 123)

/* One APPEND of one item: accepted_ns is ACCNS(accepted_ms). */
static append_result append(append_ctx x, const char *user, long long id, int dupc,
                            long long acc_ms, int push, int route, const char *json)
{
    char hs[24], ttl[24], now[24], ids[24], dup[4], ns[24], ms[24], ps[4], rt[4];
    snprintf(hs, sizeof hs, "%lld", x.hsize);
    snprintf(ttl, sizeof ttl, "%lld", x.ttl);
    snprintf(now, sizeof now, "%lld", x.now);
    snprintf(ids, sizeof ids, "%lld", id);
    snprintf(dup, sizeof dup, "%d", dupc);
    snprintf(ns, sizeof ns, "%lld", ACCNS(acc_ms));
    snprintf(ms, sizeof ms, "%lld", acc_ms);
    snprintf(ps, sizeof ps, "%d", push);
    snprintf(rt, sizeof rt, "%d", route);
    redisReply *r = EVAL(RSCRIPT_APPEND, x.self, hs, ttl, now, user, ids, dup, ns, ms, ps, rt,
                         json);
    expect_array(r, 4);
    append_result a = {elem_int(r, 0), elem_int(r, 1), elem_int(r, 2), elem_int(r, 3)};
    freeReplyObject(r);
    return a;
}

#define EXPECT_APPEND(res, st, sq, rr, g)                                                  \
    do {                                                                                  \
        append_result r_ = (res);                                                         \
        ck_assert_msg(r_.status == (st) && r_.seq == (sq) && r_.route == (rr) &&          \
                          r_.gen == (g),                                                  \
                      "APPEND gave {%lld, %lld, %lld, %lld}, expected {%d, %d, %d, %d}",  \
                      r_.status, r_.seq, r_.route, r_.gen, (int)(st), (int)(sq),          \
                      (int)(rr), (int)(g));                                               \
    } while (0)

static void set_live(const char *inst)
{
    char key[REDIS_NAME_MAX];
    redis_live_key(key, inst);
    cmd_free("SET %s 1 PX 60000", key);
}

static void set_holder(const char *user, const char *holder)
{
    cmd_free("SET wsn:o:%s %s", user, holder);
}

/* A second connection subscribed to the instance's channel. */
static redisContext *subscribe(const char *inst)
{
    char ch[REDIS_NAME_MAX];
    redis_node_channel(ch, inst);
    redisContext *s = connect_sync(false);
    redisReply *r = redisCommand(s, "SUBSCRIBE %s", ch);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(r->elements, 3);
    ck_assert_str_eq(r->element[0]->str, "subscribe");
    freeReplyObject(r);
    return s;
}

/* The next message on a subscribed connection (within its 2 s timeout),
 * in a static buffer; *len its length. */
static const char *next_message(redisContext *s, size_t *len)
{
    static char buf[8192];
    redisReply *r = NULL;
    ck_assert_msg(redisGetReply(s, (void **)&r) == REDIS_OK && r != NULL, "no message: %s",
                  s->errstr);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(r->elements, 3);
    ck_assert_str_eq(r->element[0]->str, "message");
    ck_assert_uint_lt(r->element[2]->len, sizeof buf);
    memcpy(buf, r->element[2]->str, r->element[2]->len);
    buf[r->element[2]->len] = '\0';
    if (len != NULL)
        *len = r->element[2]->len;
    freeReplyObject(r);
    return buf;
}

/* Unsubscribes (waiting for Redis to confirm, so a PUBLISH sent next finds
 * no subscriber) and closes. */
static void close_sub(redisContext *s)
{
    redisReply *r = redisCommand(s, "UNSUBSCRIBE");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_str_eq(r->element[0]->str, "unsubscribe");
    ck_assert_int_eq(r->element[2]->integer, 0);
    freeReplyObject(r);
    redis_sync_free(s);
}

static void expect_message(redisContext *s, const char *want)
{
    size_t len;
    const char *got = next_message(s, &len);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_str_eq(got, want);
}

/* Nothing was published to inst before now: a marker published now is the
 * next message. */
static void expect_no_message(redisContext *s, const char *inst)
{
    char ch[REDIS_NAME_MAX];
    redis_node_channel(ch, inst);
    ck_assert_int_eq(cmd_int("PUBLISH %s marker", ch), 1);
    expect_message(s, "marker");
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(names_and_shas)
{
    char out[REDIS_NAME_MAX];
    redis_node_channel(out, "node-1");
    ck_assert_str_eq(out, "wsn:n:node-1");
    redis_live_key(out, "node-1");
    ck_assert_str_eq(out, "wsn:live:node-1");
    ck_assert_str_eq(REDIS_BROADCAST_CHANNEL, "wsn:bc");
    /* The SHA EVALSHA uses is Redis's own for each source, and all differ. */
    char shas[RSCRIPT_COUNT][REDIS_SHA_HEX + 1];
    for (int s = 0; s < RSCRIPT_COUNT; s++) {
        redis_script_sha((redis_script)s, shas[s]);
        ck_assert_uint_eq(strlen(shas[s]), REDIS_SHA_HEX);
        const char *src = redis_script_source((redis_script)s);
        ck_assert_ptr_nonnull(src);
        const char *argv[3] = {"SCRIPT", "LOAD", src};
        size_t lens[3] = {6, 4, strlen(src)};
        redisReply *r = redisCommandArgv(C, 3, argv, lens);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(r->str, shas[s]);
        freeReplyObject(r);
        for (int t = 0; t < s; t++)
            ck_assert_str_ne(shas[s], shas[t]);
    }
}
END_TEST

START_TEST(append_stores_in_order)
{
    append_ctx x = {"A", 100, 0, 5000};
    EXPECT_APPEND(append(x, "42", 1001, 1, 4000, 1, RASK_NONE, "{\"a\":1}"), RAPPEND_STORED, 1,
                  RROUTE_NONE, 0);
    EXPECT_APPEND(append(x, "42", 1002, 1, 4001, 0, RASK_NONE, "{\"a\":2}"), RAPPEND_STORED, 2,
                  RROUTE_NONE, 0);
    /* The seq is global: another user's entry takes the next one. */
    EXPECT_APPEND(append(x, "7", 1003, 0, 4002, 1, RASK_NONE, "{}"), RAPPEND_STORED, 3,
                  RROUTE_NONE, 0);
    EXPECT_APPEND(append(x, "42", 1004, 0, 4003, 1, RASK_NONE, "{\"a\":4}"), RAPPEND_STORED,
                  4, RROUTE_NONE, 0);
    ck_assert_str_eq(history("42"), "1001:1,1002:2,1004:4");
    ck_assert_str_eq(history("7"), "1003:3");
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 1001"), "{\"a\":1}");
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 1001:m"), "1 4000 1 A");
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 1002:m"), "2 4001 0 A");
    ck_assert_str_eq(cmd_str("GET wsn:seq"), "4");
    /* ttl 0: the keys do not expire. */
    ck_assert_int_eq(cmd_int("PTTL wsn:h:42"), -1);
    ck_assert_int_eq(cmd_int("PTTL wsn:d:42"), -1);

    /* A batch: 4 results per item, in order. */
    redisReply *r = EVAL(RSCRIPT_APPEND, "A", "100", "60000", "5000",
                         "42", "1005", "0", "1", "4004", "1", "0", "{\"b\":5}",
                         "9", "1006", "0", "2", "4005", "0", "0", "{\"b\":6}");
    expect_ints(r, 8, L(RAPPEND_STORED), L(5), L(RROUTE_NONE), L(0),
                L(RAPPEND_STORED), L(6), L(RROUTE_NONE), L(0));
    ck_assert_str_eq(cmd_str("HGET wsn:d:9 1006:m"), "6 4005 0 A");
    /* ttl > 0: both keys of the user expire after it. */
    long long pttl = cmd_int("PTTL wsn:h:9");
    ck_assert(pttl > 55000 && pttl <= 60000);
    pttl = cmd_int("PTTL wsn:d:42");
    ck_assert(pttl > 55000 && pttl <= 60000);
}
END_TEST

START_TEST(append_duplicates)
{
    append_ctx x = {"A", 100, 0, 5000};
    EXPECT_APPEND(append(x, "42", 77, 1, 4000, 1, RASK_NONE, "{\"v\":1}"), RAPPEND_STORED, 1,
                  RROUTE_NONE, 0);
    /* check_duplicate=1: the same id again is a duplicate, nothing changes. */
    EXPECT_APPEND(append(x, "42", 77, 1, 4500, 1, RASK_NONE, "{\"v\":2}"), RAPPEND_DUPLICATE,
                  0, RROUTE_NONE, 0);
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 77"), "{\"v\":1}");
    ck_assert_str_eq(cmd_str("GET wsn:seq"), "1");
    /* Only for that user. */
    EXPECT_APPEND(append(x, "43", 77, 1, 4500, 1, RASK_NONE, "{}"), RAPPEND_STORED, 2,
                  RROUTE_NONE, 0);
    /* check_duplicate=0 (a server id: never seen before in practice): stored
     * again with a new seq; its state field is not looked at. */
    cmd_free("HSET wsn:d:42 77:s 2");
    EXPECT_APPEND(append(x, "42", 77, 0, 4600, 1, RASK_NONE, "{\"v\":3}"), RAPPEND_STORED, 3,
                  RROUTE_NONE, 0);
    ck_assert_str_eq(history("42"), "77:3");
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 77"), "{\"v\":3}");
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 77:m"), "3 4600 1 A");
    ck_assert_str_eq(fields("42"), "77,77:m,77:s");

    /* With a ttl, a duplicate only while the entry is alive. */
    append_ctx t = {"A", 100, 10000, 10000};
    EXPECT_APPEND(append(t, "5", 88, 1, 10000, 1, RASK_NONE, "{}"), RAPPEND_STORED, 4,
                  RROUTE_NONE, 0);
    t.now = 19999;
    EXPECT_APPEND(append(t, "5", 88, 1, 19999, 1, RASK_NONE, "{}"), RAPPEND_DUPLICATE, 0,
                  RROUTE_NONE, 0);
    t.now = 20000; /* accepted 10000 + ttl 10000 <= now: expired */
    cmd_free("HSET wsn:d:5 88:s 2");
    EXPECT_APPEND(append(t, "5", 88, 1, 20000, 1, RASK_NONE, "{\"new\":1}"), RAPPEND_STORED, 5,
                  RROUTE_NONE, 0);
    ck_assert_str_eq(history("5"), "88:5");
    /* The re-used caller id starts afresh: its old state is gone. */
    ck_assert_str_eq(fields("5"), "88,88:m");
    ck_assert_str_eq(cmd_str("HGET wsn:d:5 88:m"), "5 20000 1 A");
}
END_TEST

START_TEST(append_trims_to_history_size)
{
    append_ctx x = {"A", 3, 0, 5000};
    for (int i = 1; i <= 3; i++)
        EXPECT_APPEND(append(x, "42", 100 + i, 0, 4000 + i, 1, RASK_NONE, "{}"), RAPPEND_STORED,
                      i, RROUTE_NONE, 0);
    cmd_free("HSET wsn:d:42 101:s 2");
    cmd_free("HSET wsn:d:42 102:s %s", "3 123");
    ck_assert_str_eq(fields("42"), "101,101:m,101:s,102,102:m,102:s,103,103:m");
    EXPECT_APPEND(append(x, "42", 104, 0, 4004, 1, RASK_NONE, "{}"), RAPPEND_STORED, 4,
                  RROUTE_NONE, 0);
    ck_assert_str_eq(history("42"), "102:2,103:3,104:4");
    ck_assert_str_eq(fields("42"), "102,102:m,102:s,103,103:m,104,104:m");
    /* A smaller history_size trims several at once. */
    x.hsize = 1;
    EXPECT_APPEND(append(x, "42", 105, 0, 4005, 1, RASK_NONE, "{}"), RAPPEND_STORED, 5,
                  RROUTE_NONE, 0);
    ck_assert_str_eq(history("42"), "105:5");
    ck_assert_str_eq(fields("42"), "105,105:m");
}
END_TEST

START_TEST(append_drops_expired_front)
{
    append_ctx x = {"A", 100, 10000, 3000};
    for (int i = 1; i <= 3; i++) {
        x.now = i * 1000;
        EXPECT_APPEND(append(x, "42", 100 + i, 0, i * 1000, 1, RASK_NONE, "{}"),
                      RAPPEND_STORED, i, RROUTE_NONE, 0);
    }
    cmd_free("HSET wsn:d:42 101:s 2");
    /* At 12500, 101 (1000) and 102 (2000) are expired, 103 (3000) is not;
     * the front is swept on every eighth seq. */
    x.now = 12500;
    cmd_free("SET wsn:seq 6");
    EXPECT_APPEND(append(x, "42", 104, 0, 12500, 1, RASK_NONE, "{}"), RAPPEND_STORED, 7,
                  RROUTE_NONE, 0);
    ck_assert_str_eq(history("42"), "101:1,102:2,103:3,104:7");
    EXPECT_APPEND(append(x, "42", 106, 0, 12500, 1, RASK_NONE, "{}"), RAPPEND_STORED, 8,
                  RROUTE_NONE, 0);
    ck_assert_str_eq(history("42"), "103:3,104:7,106:8");
    ck_assert_str_eq(fields("42"), "103,103:m,104,104:m,106,106:m");
    /* Without a ttl nothing expires. */
    x.ttl = 0;
    x.now = 1000000;
    cmd_free("SET wsn:seq 15");
    EXPECT_APPEND(append(x, "42", 105, 0, 1000000, 1, RASK_NONE, "{}"), RAPPEND_STORED, 16,
                  RROUTE_NONE, 0);
    ck_assert_str_eq(history("42"), "103:3,104:7,106:8,105:16");
}
END_TEST

START_TEST(append_route_none_and_local)
{
    append_ctx x = {"A", 100, 0, 5000};
    /* Nobody holds the user. */
    EXPECT_APPEND(append(x, "42", 1, 0, 4000, 1, RASK_REMOTE, "{}"), RAPPEND_STORED, 1,
                  RROUTE_NONE, 0);
    EXPECT_APPEND(append(x, "42", 2, 0, 4000, 1, RASK_ANY, "{}"), RAPPEND_STORED, 2,
                  RROUTE_NONE, 0);
    /* Held here: LOCAL with the generation when asked for any, else nothing. */
    set_holder("42", "A|17");
    EXPECT_APPEND(append(x, "42", 3, 0, 4000, 1, RASK_ANY, "{}"), RAPPEND_STORED, 3,
                  RROUTE_LOCAL, 17);
    EXPECT_APPEND(append(x, "42", 4, 0, 4000, 1, RASK_REMOTE, "{}"), RAPPEND_STORED, 4,
                  RROUTE_NONE, 0);
    EXPECT_APPEND(append(x, "42", 5, 0, 4000, 1, RASK_NONE, "{}"), RAPPEND_STORED, 5,
                  RROUTE_NONE, 0);
    /* An instance whose name is a prefix of self's is another one. */
    set_holder("42", "AB|3");
    EXPECT_APPEND(append(x, "42", 6, 0, 4000, 1, RASK_ANY, "{}"), RAPPEND_STORED, 6,
                  RROUTE_UNREACHABLE, 0);
    /* A duplicate is not routed. */
    set_holder("42", "A|17");
    EXPECT_APPEND(append(x, "42", 6, 1, 4000, 1, RASK_ANY, "{}"), RAPPEND_DUPLICATE, 0,
                  RROUTE_NONE, 0);
}
END_TEST

START_TEST(append_route_remote)
{
    append_ctx x = {"A", 100, 0, 5000};
    set_holder("42", "B|9");
    redisContext *sub = subscribe("B");

    /* Live and subscribed: SENT, with the message in its exact format. */
    set_live("B");
    EXPECT_APPEND(append(x, "42", 1001, 0, 1700000000000LL, 1, RASK_REMOTE, "{\"m\":\"hi\"}"),
                  RAPPEND_STORED, 1, RROUTE_SENT, 0);
    expect_message(sub, "N 42 9 1001 1 1700000000000000123\n{\"m\":\"hi\"}");
    EXPECT_APPEND(append(x, "42", 1002, 0, 1700000000001LL, 0, RASK_ANY, "[1,2]"),
                  RAPPEND_STORED, 2, RROUTE_SENT, 0);
    expect_message(sub, "N 42 9 1002 2 1700000000001000123\n[1,2]");
    /* Not asked: not published. */
    EXPECT_APPEND(append(x, "42", 1003, 0, 4000, 1, RASK_NONE, "{}"), RAPPEND_STORED, 3,
                  RROUTE_NONE, 0);
    expect_no_message(sub, "B");

    /* Subscribed but not live: UNREACHABLE, nothing published. */
    cmd_free("DEL wsn:live:B");
    EXPECT_APPEND(append(x, "42", 1004, 0, 4000, 1, RASK_REMOTE, "{}"), RAPPEND_STORED, 4,
                  RROUTE_UNREACHABLE, 0);
    expect_no_message(sub, "B");
    close_sub(sub);

    /* Live but nobody subscribed: UNREACHABLE. */
    set_live("B");
    EXPECT_APPEND(append(x, "42", 1005, 0, 4000, 1, RASK_REMOTE, "{}"), RAPPEND_STORED, 5,
                  RROUTE_UNREACHABLE, 0);
    /* Live, but somebody else's channel is the subscribed one. */
    sub = subscribe("C");
    EXPECT_APPEND(append(x, "42", 1006, 0, 4000, 1, RASK_ANY, "{}"), RAPPEND_STORED, 6,
                  RROUTE_UNREACHABLE, 0);
    expect_no_message(sub, "C");
    close_sub(sub);
}
END_TEST

START_TEST(append_history_size_zero)
{
    append_ctx x = {"A", 0, 60000, 5000};
    /* Nothing stored, not even with check_duplicate, and no seq taken. */
    EXPECT_APPEND(append(x, "42", 1, 1, 4000, 1, RASK_ANY, "{}"), RAPPEND_NOT_STORED, 0,
                  RROUTE_NONE, 0);
    EXPECT_APPEND(append(x, "42", 1, 1, 4000, 1, RASK_ANY, "{}"), RAPPEND_NOT_STORED, 0,
                  RROUTE_NONE, 0);
    ck_assert_int_eq(cmd_int("EXISTS wsn:h:42 wsn:d:42 wsn:seq"), 0);
    /* Still routed: locally, and to a live subscribed node with seq 0. */
    set_holder("42", "A|4");
    EXPECT_APPEND(append(x, "42", 2, 0, 4000, 1, RASK_ANY, "{}"), RAPPEND_NOT_STORED, 0,
                  RROUTE_LOCAL, 4);
    set_holder("42", "B|5");
    set_live("B");
    redisContext *sub = subscribe("B");
    EXPECT_APPEND(append(x, "42", 3, 1, 4000, 0, RASK_REMOTE, "{\"z\":0}"), RAPPEND_NOT_STORED,
                  0, RROUTE_SENT, 0);
    expect_message(sub, "N 42 5 3 0 4000000123\n{\"z\":0}");
    close_sub(sub);
    cmd_free("DEL wsn:live:B");
    EXPECT_APPEND(append(x, "42", 4, 0, 4000, 1, RASK_REMOTE, "{}"), RAPPEND_NOT_STORED, 0,
                  RROUTE_UNREACHABLE, 0);
    ck_assert_int_eq(cmd_int("EXISTS wsn:h:42 wsn:d:42 wsn:seq"), 0);
}
END_TEST

START_TEST(mark_moves_forward)
{
    append_ctx x = {"A", 100, 0, 5000};
    append(x, "42", 11, 0, 4000, 1, RASK_NONE, "{}");
    append(x, "42", 12, 0, 4000, 1, RASK_NONE, "{}");
    /* SENT, then SENT again (unchanged), then ACKED from this instance. */
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "11", "2", "0"), 1, L(RMARK_MOVED));
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 11:s"), "2");
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "11", "2", "0"), 1, L(RMARK_UNCHANGED));
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "11", "3", "5555"), 1, L(RMARK_ACKED_HERE));
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 11:s"), "3 5555");
    /* Never backwards, and an ack is not acked again. */
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "11", "2", "0"), 1, L(RMARK_UNCHANGED));
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "11", "3", "6666"), 1, L(RMARK_UNCHANGED));
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 11:s"), "3 5555");
    /* A batch: missing entry, missing user, ACKED straight from stored. */
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "99", "2", "0", "43", "11", "3", "1",
                     "42", "12", "3", "7777"),
                3, L(RMARK_MISSING), L(RMARK_MISSING), L(RMARK_ACKED_HERE));
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 12:s"), "3 7777");
    ck_assert_int_eq(cmd_int("HEXISTS wsn:d:42 99:s"), 0);
    ck_assert_int_eq(cmd_int("EXISTS wsn:d:43"), 0);
}
END_TEST

START_TEST(mark_ack_to_origin)
{
    append_ctx a = {"A", 100, 0, 5000};
    append(a, "42", 21, 0, 4000, 1, RASK_NONE, "{}");
    append(a, "42", 22, 0, 4000, 1, RASK_NONE, "{}");
    append(a, "42", 23, 0, 4000, 1, RASK_NONE, "{}");
    redisContext *sub = subscribe("A");
    set_live("A");
    /* B acks A's notification: published to A. */
    expect_ints(EVAL(RSCRIPT_MARK, "B", "42", "21", "3", "1700000000123"), 1, L(RMARK_MOVED));
    expect_message(sub, "A 42 21 1700000000123");
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 21:s"), "3 1700000000123");
    /* A SENT mark is not published. */
    expect_ints(EVAL(RSCRIPT_MARK, "B", "42", "22", "2", "0"), 1, L(RMARK_MOVED));
    expect_no_message(sub, "A");
    /* An unchanged ack is not published again. */
    expect_ints(EVAL(RSCRIPT_MARK, "B", "42", "21", "3", "9"), 1, L(RMARK_UNCHANGED));
    expect_no_message(sub, "A");
    /* A is dead: the ack is stored, nothing published. */
    cmd_free("DEL wsn:live:A");
    expect_ints(EVAL(RSCRIPT_MARK, "B", "42", "23", "3", "42"), 1, L(RMARK_MOVED));
    ck_assert_str_eq(cmd_str("HGET wsn:d:42 23:s"), "3 42");
    expect_no_message(sub, "A");
    close_sub(sub);
}
END_TEST

START_TEST(release_compare_and_delete)
{
    set_holder("42", "A|5");
    set_holder("43", "B|1");
    redisReply *r = EVAL(RSCRIPT_RELEASE, "42", "A|4");
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r->integer, 0);
    freeReplyObject(r);
    ck_assert_str_eq(cmd_str("GET wsn:o:42"), "A|5");
    r = EVAL(RSCRIPT_RELEASE, "42", "A|5", "43", "A|1", "44", "A|1");
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r->integer, 1);
    freeReplyObject(r);
    ck_assert_int_eq(cmd_int("EXISTS wsn:o:42"), 0);
    ck_assert_str_eq(cmd_str("GET wsn:o:43"), "B|1");
    set_holder("42", "A|6");
    r = EVAL(RSCRIPT_RELEASE, "42", "A|6", "43", "B|1");
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r->integer, 2);
    freeReplyObject(r);
    ck_assert_int_eq(cmd_int("EXISTS wsn:o:42 wsn:o:43"), 0);
}
END_TEST

START_TEST(announce)
{
    set_holder("2", "A|5");   /* the same */
    set_holder("3", "B|1");   /* another live instance */
    set_holder("4", "C|1");   /* another dead instance */
    set_holder("5", "A|10");  /* this instance, newer (10 > 9 as numbers) */
    set_holder("6", "A|3");   /* this instance, older */
    set_live("B");
    expect_ints(EVAL(RSCRIPT_ANNOUNCE, "A", "1", "7", "2", "5", "3", "7", "4", "7", "5", "9",
                     "6", "5"),
                6, L(1), L(1), L(0), L(1), L(0), L(1));
    ck_assert_str_eq(cmd_str("GET wsn:o:1"), "A|7");
    ck_assert_str_eq(cmd_str("GET wsn:o:2"), "A|5");
    ck_assert_str_eq(cmd_str("GET wsn:o:3"), "B|1");
    ck_assert_str_eq(cmd_str("GET wsn:o:4"), "A|7");
    ck_assert_str_eq(cmd_str("GET wsn:o:5"), "A|10");
    ck_assert_str_eq(cmd_str("GET wsn:o:6"), "A|5");
    /* "AB" is not "A". */
    set_holder("7", "AB|1");
    expect_ints(EVAL(RSCRIPT_ANNOUNCE, "A", "7", "2"), 1, L(1));
    ck_assert_str_eq(cmd_str("GET wsn:o:7"), "A|2");
}
END_TEST

START_TEST(claim)
{
    append_ctx x = {"A", 100, 0, 5000};
    append(x, "9", 1, 0, 4000, 1, RASK_NONE, "{}");
    append(x, "9", 2, 0, 4000, 1, RASK_NONE, "{}");

    /* Nobody held it. */
    redisReply *r = EVAL(RSCRIPT_CLAIM, "A", "7", "42");
    expect_array(r, 4);
    ck_assert_int_eq(elem_int(r, 0), 2);
    ck_assert_str_eq(elem_str(r, 1), "");
    ck_assert_int_eq(elem_int(r, 2), 0);
    ck_assert_int_eq(elem_int(r, 3), 0);
    freeReplyObject(r);
    ck_assert_str_eq(cmd_str("GET wsn:o:42"), "A|7");

    /* A live subscribed node held it: the eviction is published there. */
    set_holder("42", "B|3");
    set_live("B");
    redisContext *sub = subscribe("B");
    r = EVAL(RSCRIPT_CLAIM, "A", "8", "42");
    expect_array(r, 4);
    ck_assert_int_eq(elem_int(r, 0), 2);
    ck_assert_str_eq(elem_str(r, 1), "B|3");
    ck_assert_int_eq(elem_int(r, 2), 1);
    ck_assert_int_eq(elem_int(r, 3), 0);
    freeReplyObject(r);
    expect_message(sub, "E 42 3 A 8");
    ck_assert_str_eq(cmd_str("GET wsn:o:42"), "A|8");

    /* Live but nobody listening: 0 receivers. */
    close_sub(sub);
    set_holder("42", "B|4");
    r = EVAL(RSCRIPT_CLAIM, "A", "9", "42");
    expect_array(r, 4);
    ck_assert_str_eq(elem_str(r, 1), "B|4");
    ck_assert_int_eq(elem_int(r, 2), 0);
    ck_assert_int_eq(elem_int(r, 3), 0);
    freeReplyObject(r);
    ck_assert_str_eq(cmd_str("GET wsn:o:42"), "A|9");

    /* A dead node held it: nothing published. */
    sub = subscribe("C");
    set_holder("42", "C|2");
    r = EVAL(RSCRIPT_CLAIM, "A", "10", "42");
    expect_array(r, 4);
    ck_assert_str_eq(elem_str(r, 1), "C|2");
    ck_assert_int_eq(elem_int(r, 2), 0);
    freeReplyObject(r);
    expect_no_message(sub, "C");
    close_sub(sub);
    ck_assert_str_eq(cmd_str("GET wsn:o:42"), "A|10");

    /* An older connection of this instance: replaced, no publish. */
    sub = subscribe("A");
    set_live("A");
    append(x, "9", 3, 0, 4000, 1, RASK_NONE, "{}");
    r = EVAL(RSCRIPT_CLAIM, "A", "12", "42");
    expect_array(r, 4);
    ck_assert_int_eq(elem_int(r, 0), 3);
    ck_assert_str_eq(elem_str(r, 1), "A|10");
    ck_assert_int_eq(elem_int(r, 2), 0);
    ck_assert_int_eq(elem_int(r, 3), 0);
    freeReplyObject(r);
    expect_no_message(sub, "A");
    close_sub(sub);
    ck_assert_str_eq(cmd_str("GET wsn:o:42"), "A|12");

    /* A newer connection of this instance holds it: superseded (12 > 9 as numbers). */
    r = EVAL(RSCRIPT_CLAIM, "A", "9", "42");
    expect_array(r, 4);
    ck_assert_int_eq(elem_int(r, 0), 3);
    ck_assert_str_eq(elem_str(r, 1), "A|12");
    ck_assert_int_eq(elem_int(r, 2), 0);
    ck_assert_int_eq(elem_int(r, 3), 1);
    freeReplyObject(r);
    ck_assert_str_eq(cmd_str("GET wsn:o:42"), "A|12");
}
END_TEST

/* ---- REPLAY -------------------------------------------------------------- */

typedef struct {
    const char *mode, *after_id;
    long long after_seq;
    const char *upto;
    long long limit, now, ttl;
    const char *self, *gen;
    long long max_bytes;
} replay_args;

static redisReply *replay(const char *user, replay_args a)
{
    char as[24], lim[24], now[24], ttl[24], mb[24];
    snprintf(as, sizeof as, "%lld", a.after_seq);
    snprintf(lim, sizeof lim, "%lld", a.limit);
    snprintf(now, sizeof now, "%lld", a.now);
    snprintf(ttl, sizeof ttl, "%lld", a.ttl);
    snprintf(mb, sizeof mb, "%lld", a.max_bytes);
    redisReply *r = EVAL(RSCRIPT_REPLAY, user, a.mode, a.after_id, as, a.upto, lim, now, ttl,
                         a.self, a.gen, mb);
    ck_assert_msg(r->type == REDIS_REPLY_ARRAY, "REPLAY: type %d %s", r->type,
                  r->type == REDIS_REPLY_ERROR ? r->str : "");
    ck_assert_uint_ge(r->elements, 4);
    ck_assert_uint_eq((r->elements - 4) % 3, 0);
    return r;
}

/* Checks the header {S, recovered, more, last} and the entries, given as
 * "id:seq:json,..." ("" for none); frees r. */
static void expect_replay(redisReply *r, long long S, long long rec, long long more,
                          long long last, const char *entries)
{
    ck_assert_int_eq(elem_int(r, 0), S);
    ck_assert_int_eq(elem_int(r, 1), rec);
    ck_assert_int_eq(elem_int(r, 2), more);
    ck_assert_int_eq(elem_int(r, 3), last);
    char got[4096];
    size_t n = 0;
    got[0] = '\0';
    for (size_t i = 4; i + 2 < r->elements; i += 3)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%s:%lld:%s", i > 4 ? "," : "",
                              elem_str(r, i), elem_int(r, i + 1), elem_str(r, i + 2));
    ck_assert_str_eq(got, entries);
    freeReplyObject(r);
}

static const replay_args first_a = {"A", "0", 0, "", 100, 5000, 0, "A", "1", 1000000};

START_TEST(replay_after_id)
{
    append_ctx x = {"A", 100, 0, 5000};
    for (int i = 1; i <= 5; i++) {
        char json[16];
        snprintf(json, sizeof json, "{\"n\":%d}", i);
        append(x, "42", 100 + i, 0, 4000, 1, RASK_NONE, json);
    }
    append(x, "43", 999, 0, 4000, 1, RASK_NONE, "{}"); /* seq 6, another user */
    const char *all = "101:1:{\"n\":1},102:2:{\"n\":2},103:3:{\"n\":3},104:4:{\"n\":4},"
                      "105:5:{\"n\":5}";

    replay_args a = first_a;
    a.after_id = "102";
    expect_replay(replay("42", a), 6, 1, 0, 5,
                  "103:3:{\"n\":3},104:4:{\"n\":4},105:5:{\"n\":5}");
    a.after_id = "105";
    expect_replay(replay("42", a), 6, 1, 0, 5, "");
    /* Not in the history (or another user's): everything, not recovered. */
    a.after_id = "777";
    expect_replay(replay("42", a), 6, 0, 0, 5, all);
    a.after_id = "999";
    expect_replay(replay("42", a), 6, 0, 0, 5, all);
    /* 0: everything, recovered. after_seq is ignored on the first chunk. */
    a.after_id = "0";
    a.after_seq = 3;
    expect_replay(replay("42", a), 6, 1, 0, 5, all);
    /* An empty history. */
    expect_replay(replay("44", a), 6, 1, 0, 0, "");
}
END_TEST

START_TEST(replay_expired)
{
    append_ctx x = {"A", 100, 10000, 1000};
    for (int i = 1; i <= 4; i++) {
        x.now = i * 1000;
        append(x, "42", 100 + i, 0, i * 1000, 1, RASK_NONE, "{}");
    }
    /* At 12500, 101 and 102 are expired: skipped, though scanned. */
    replay_args a = first_a;
    a.ttl = 10000;
    a.now = 12500;
    expect_replay(replay("42", a), 4, 1, 0, 4, "103:3:{},104:4:{}");
    /* An expired after_id is not recovered. */
    a.after_id = "102";
    expect_replay(replay("42", a), 4, 0, 0, 4, "103:3:{},104:4:{}");
    a.after_id = "103";
    expect_replay(replay("42", a), 4, 1, 0, 4, "104:4:{}");
    /* Past everything: nothing left, the last seq still scanned. */
    a.after_id = "0";
    a.now = 100000;
    expect_replay(replay("42", a), 4, 1, 0, 4, "");
}
END_TEST

START_TEST(replay_unsent)
{
    append_ctx x = {"A", 100, 0, 5000};
    append(x, "42", 101, 0, 4000, 1, RASK_NONE, "{\"a\":1}");
    append(x, "42", 102, 0, 4000, 0, RASK_NONE, "{\"a\":2}"); /* not push */
    append(x, "42", 103, 0, 4000, 1, RASK_NONE, "{\"a\":3}");
    append(x, "42", 104, 0, 4000, 1, RASK_NONE, "{\"a\":4}");
    append(x, "42", 105, 0, 4000, 1, RASK_NONE, "{\"a\":5}");
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "103", "2", "0", "42", "105", "3", "1"), 2,
                L(RMARK_MOVED), L(RMARK_ACKED_HERE));
    replay_args a = first_a;
    a.mode = "U";
    a.after_id = "104"; /* ignored in mode U */
    expect_replay(replay("42", a), 5, -1, 0, 5, "101:1:{\"a\":1},104:4:{\"a\":4}");
}
END_TEST

START_TEST(replay_chunks_by_limit)
{
    append_ctx x = {"A", 100, 0, 5000};
    for (int i = 1; i <= 5; i++)
        append(x, "42", 100 + i, 0, 4000, 1, RASK_NONE, "{}");
    replay_args a = first_a;
    a.limit = 2;
    expect_replay(replay("42", a), 5, 1, 1, 2, "101:1:{},102:2:{}");
    /* Appended after the snapshot: not part of this replay. */
    append(x, "42", 106, 0, 4000, 1, RASK_NONE, "{}");
    a.upto = "5";
    a.after_seq = 2;
    a.after_id = "777"; /* only read on the first chunk */
    expect_replay(replay("42", a), 5, -1, 1, 4, "103:3:{},104:4:{}");
    a.after_seq = 4;
    expect_replay(replay("42", a), 5, -1, 0, 5, "105:5:{}");
    /* A fresh first chunk sees it. */
    replay_args f = first_a;
    f.after_id = "105";
    expect_replay(replay("42", f), 6, 1, 0, 6, "106:6:{}");

    /* Mode U chunks count scanned entries, sent or not. */
    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "101", "2", "0", "42", "102", "2", "0"), 2,
                L(RMARK_MOVED), L(RMARK_MOVED));
    replay_args u = first_a;
    u.mode = "U";
    u.limit = 2;
    expect_replay(replay("42", u), 6, -1, 1, 2, "");
    u.upto = "6";
    u.after_seq = 2;
    expect_replay(replay("42", u), 6, -1, 1, 4, "103:3:{},104:4:{}");
}
END_TEST

START_TEST(replay_chunks_by_bytes)
{
    append_ctx x = {"A", 100, 0, 5000};
    /* 10 bytes each. */
    for (int i = 1; i <= 5; i++)
        append(x, "42", 100 + i, 0, 4000, 1, RASK_NONE, "{\"x\":\"ab\"}");
    replay_args a = first_a;
    a.max_bytes = 25; /* reached by the third entry */
    expect_replay(replay("42", a), 5, 1, 1, 3,
                  "101:1:{\"x\":\"ab\"},102:2:{\"x\":\"ab\"},103:3:{\"x\":\"ab\"}");
    append(x, "42", 106, 0, 4000, 1, RASK_NONE, "{\"x\":\"ab\"}");
    a.upto = "5";
    a.after_seq = 3;
    /* 20 >= 25 never: the rest, up to the snapshot only. */
    expect_replay(replay("42", a), 5, -1, 0, 5, "104:4:{\"x\":\"ab\"},105:5:{\"x\":\"ab\"}");
    /* Reached by the very last entry: no more. */
    a.max_bytes = 20;
    expect_replay(replay("42", a), 5, -1, 0, 5, "104:4:{\"x\":\"ab\"},105:5:{\"x\":\"ab\"}");
    /* Reached exactly in the middle: stops there. */
    a.after_seq = 0;
    expect_replay(replay("42", a), 5, -1, 1, 2, "101:1:{\"x\":\"ab\"},102:2:{\"x\":\"ab\"}");
    a.after_seq = 3;
    /* One entry bigger than max_bytes still goes, alone. */
    a.max_bytes = 1;
    expect_replay(replay("42", a), 5, -1, 1, 4, "104:4:{\"x\":\"ab\"}");
}
END_TEST

START_TEST(replay_barrier)
{
    append_ctx x = {"A", 100, 0, 5000};
    append(x, "42", 101, 0, 4000, 1, RASK_NONE, "{}");
    append(x, "42", 102, 0, 4000, 1, RASK_NONE, "{}");
    redisContext *sub = subscribe("A");
    replay_args a = first_a;
    a.gen = "31";
    a.limit = 1;
    expect_replay(replay("42", a), 2, 1, 1, 1, "101:1:{}");
    expect_message(sub, "W 42 31");
    /* Later chunks publish nothing. */
    a.upto = "2";
    a.after_seq = 1;
    expect_replay(replay("42", a), 2, -1, 1, 2, "102:2:{}");
    expect_no_message(sub, "A");
    /* Mode U's first chunk too; and to self's channel only. */
    redisContext *other = subscribe("B");
    replay_args u = first_a;
    u.mode = "U";
    u.gen = "32";
    expect_replay(replay("43", u), 2, -1, 0, 0, "");
    expect_message(sub, "W 43 32");
    expect_no_message(other, "B");
    close_sub(other);
    close_sub(sub);
}
END_TEST

START_TEST(status)
{
    append_ctx x = {"A", 100, 10000, 5000};
    append(x, "42", 55, 0, 4321, 1, RASK_NONE, "{}");
    /* Absent: another id, another user. */
    redisReply *r = EVAL(RSCRIPT_STATUS, "42", "56", "5000", "10000");
    expect_array(r, 0);
    freeReplyObject(r);
    r = EVAL(RSCRIPT_STATUS, "43", "55", "5000", "10000");
    expect_array(r, 0);
    freeReplyObject(r);

    r = EVAL(RSCRIPT_STATUS, "42", "55", "5000", "10000");
    expect_array(r, 3);
    ck_assert_int_eq(elem_int(r, 0), RAPPEND_STORED); /* 1: stored */
    ck_assert_str_eq(elem_str(r, 1), "4321");
    ck_assert_str_eq(elem_str(r, 2), "0");
    freeReplyObject(r);

    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "55", "2", "0"), 1, L(RMARK_MOVED));
    r = EVAL(RSCRIPT_STATUS, "42", "55", "5000", "10000");
    expect_array(r, 3);
    ck_assert_int_eq(elem_int(r, 0), 2);
    ck_assert_str_eq(elem_str(r, 2), "0");
    freeReplyObject(r);

    expect_ints(EVAL(RSCRIPT_MARK, "A", "42", "55", "3", "1700000000999"), 1,
                L(RMARK_ACKED_HERE));
    r = EVAL(RSCRIPT_STATUS, "42", "55", "5000", "10000");
    expect_array(r, 3);
    ck_assert_int_eq(elem_int(r, 0), 3);
    ck_assert_str_eq(elem_str(r, 1), "4321");
    ck_assert_str_eq(elem_str(r, 2), "1700000000999");
    freeReplyObject(r);

    /* Expired (4321 + 10000 <= 14321): absent; without a ttl: never. */
    r = EVAL(RSCRIPT_STATUS, "42", "55", "14320", "10000");
    expect_array(r, 3);
    freeReplyObject(r);
    r = EVAL(RSCRIPT_STATUS, "42", "55", "14321", "10000");
    expect_array(r, 0);
    freeReplyObject(r);
    r = EVAL(RSCRIPT_STATUS, "42", "55", "99999999", "0");
    expect_array(r, 3);
    freeReplyObject(r);
}
END_TEST

static long long ids(const char *count, const char *floor)
{
    redisReply *r = EVAL(RSCRIPT_IDS, count, floor);
    ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "IDS: type %d %s", r->type,
                  r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

START_TEST(id_blocks)
{
    /* Never below the floor; consecutive blocks do not overlap. */
    long long a = ids("10000", "1700000000000");
    ck_assert_int_eq(a, 1700000000000LL);
    long long b = ids("10000", "1700000000000");
    ck_assert_int_ge(b, a + 10000);
    ck_assert_int_eq(b, 1700000010000LL);
    long long c = ids("5", "1");
    ck_assert_int_eq(c, b + 10000);
    ck_assert_str_eq(cmd_str("GET wsn:id"), "1700000020005");
    /* A higher floor (the clock ran ahead, or Redis was emptied) wins. */
    long long d = ids("10000", "1800000000000");
    ck_assert_int_eq(d, 1800000000000LL);
    cmd_free("FLUSHALL");
    ck_assert_int_eq(ids("10000", "1800000000000"), 1800000000000LL);
    ck_assert_int_eq(ids("10000", "0"), 1800000010000LL);
    /* Large values round-trip exactly (no 1e+15 notation). */
    ck_assert_int_eq(ids("1", "1000000000000000"), 1000000000000000LL);
    ck_assert_str_eq(cmd_str("GET wsn:id"), "1000000000000001");

    /* Never past 2^53 - 1. */
    cmd_free("SET wsn:id 9007199254740980");
    ck_assert_int_eq(ids("11", "0"), 9007199254740980LL);
    ck_assert_str_eq(cmd_str("GET wsn:id"), "9007199254740991");
    redisReply *r = EVAL(RSCRIPT_IDS, "1", "0");
    ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
    ck_assert_ptr_nonnull(strstr(r->str, "ids exhausted"));
    freeReplyObject(r);
    ck_assert_str_eq(cmd_str("GET wsn:id"), "9007199254740991");
    cmd_free("DEL wsn:id");
    r = EVAL(RSCRIPT_IDS, "10000", "9007199254740000");
    ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    ck_assert_int_eq(cmd_int("EXISTS wsn:id"), 0);
}
END_TEST

int main(void)
{
    if (access(REDIS_SERVER, X_OK) != 0) {
        fprintf(stderr, "%s not found: skipped\n", REDIS_SERVER);
        return 77;
    }
    Suite *s = suite_create("redis_scripts");
    TCase *tc = tcase_create("scripts");
    tcase_add_unchecked_fixture(tc, start_server, stop_server);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, names_and_shas);
    tcase_add_test(tc, append_stores_in_order);
    tcase_add_test(tc, append_duplicates);
    tcase_add_test(tc, append_trims_to_history_size);
    tcase_add_test(tc, append_drops_expired_front);
    tcase_add_test(tc, append_route_none_and_local);
    tcase_add_test(tc, append_route_remote);
    tcase_add_test(tc, append_history_size_zero);
    tcase_add_test(tc, mark_moves_forward);
    tcase_add_test(tc, mark_ack_to_origin);
    tcase_add_test(tc, release_compare_and_delete);
    tcase_add_test(tc, announce);
    tcase_add_test(tc, claim);
    tcase_add_test(tc, replay_after_id);
    tcase_add_test(tc, replay_expired);
    tcase_add_test(tc, replay_unsent);
    tcase_add_test(tc, replay_chunks_by_limit);
    tcase_add_test(tc, replay_chunks_by_bytes);
    tcase_add_test(tc, replay_barrier);
    tcase_add_test(tc, status);
    tcase_add_test(tc, id_blocks);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
