/* wsn_load.c — WebSocket load client for the wsnotify benchmark (libevent).
 *
 * Holds up to ~15000 RFC 6455 client connections in one process, users
 * U..U+N-1, one connection each, and measures delivery latency of the
 * notifications they receive: the publisher (wsn_publish) embeds
 * t=<CLOCK_MONOTONIC ns> in the message text, this process takes
 * now_mono - t when the frame arrives (same host, same clock).
 *
 * Memory: an idle connection is a small struct and one struct event; handshake
 * state, partial frames, fragmented messages and unsent output are allocated
 * only while they exist. Reads go through one shared buffer.
 *
 * Not part of the daemon; built as a noinst program for scripts/bench. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "scripts/bench/bench_common.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PROG "wsn_load"
#define HANDSHAKE_TIMEOUT_NS (10 * 1000000000LL)
#define CLOSE_TIMEOUT_NS (3 * 1000000000LL)
#define RETRY_DELAY_NS (200 * 1000000LL)
#define RECONNECT_DELAY_NS (1000 * 1000000LL)
#define SWEEP_MS 100
#define MAX_TRIES 2 /* a failed handshake is retried once */
#define MAX_MESSAGE (16u << 20)
#define READ_CHUNK (256u << 10)
#define HS_BUF 4096
/* memmem for a string literal */
#define MEMSTR(data, len, lit) ((const uint8_t *)memmem((data), (len), (lit), sizeof(lit) - 1))

enum {
    ST_IDLE,       /* no socket, not scheduled */
    ST_QUEUED,     /* waiting for a handshake slot */
    ST_WAIT,       /* waiting for deadline before re-queueing */
    ST_CONNECTING, /* TCP connect in progress */
    ST_HANDSHAKE,  /* upgrade request sent, waiting for 101 */
    ST_OPEN,
    ST_CLOSING, /* close frame sent or echoed; waiting for the peer */
    ST_FAILED,  /* gave up */
    ST_COUNT,
};

typedef struct {
    char key[32];
    char accept[32];
    size_t len;
    char buf[HS_BUF];
} hs_state;

typedef struct {
    uint32_t cap;
    uint32_t n;
    int64_t v[];
} idset;

typedef struct {
    int fd;
    uint8_t state;
    uint8_t tries;
    uint8_t we_closed; /* we sent the first close frame (churn) */
    uint8_t msg_op;
    uint32_t rlen, rcap; /* partial frame bytes */
    uint32_t mlen, mcap; /* fragmented message bytes */
    uint32_t olen;       /* unsent output bytes */
    int64_t deadline;
    struct event *ev;
    hs_state *hs;
    uint8_t *rbuf;
    uint8_t *msg;
    uint8_t *out;
    idset *seen;
} conn;

static struct {
    /* options */
    const char *host;
    int port;
    int64_t n;
    int64_t first_user;
    struct sockaddr_in *src;
    int nsrc;
    int next_src;
    int64_t concurrency;
    const char *secret;
    const char *path_template;
    bool path_token; /* template takes %s (token), else %lld (user id) */
    bool nchan;
    const char *ready_file;
    const char *stats_file;
    const char *record_path;
    double churn;
    double duration;
    bool check_dups;
    bool reconnect;

    /* state */
    struct event_base *base;
    struct sockaddr_in dst;
    char host_header[300];
    conn *conns;
    uint32_t *queue;
    size_t qhead, qlen;
    int64_t by_state[ST_COUNT];
    uint64_t rng;
    FILE *rec;
    uint8_t *rdbuf;
    int64_t t_start;
    int64_t t_ready;
    bool ready_written;
    bool stopping;
    double churn_budget;
    int64_t last_sweep;

    /* stats */
    uint64_t attempts, handshakes, handshakes_ramp, retries, failed;
    uint64_t reconnects, churn_closed, churn_acked;
    uint64_t notifications, duplicates, no_timestamp, no_id, connected_msgs, other_msgs;
    uint64_t pings, pongs_recv, bytes_in;
    int64_t open_max;
    bench_counters connect_errors;
    bench_counters disconnects;
    bench_counters close_codes;
    bench_hist lat;
    bench_hist hs_lat;
    /* phase: since the last SIGUSR2 (or the start) */
    uint64_t stats_seq, resets, phase_notifications;
    int64_t phase_first_ns, phase_last_ns; /* CLOCK_MONOTONIC of the first/last notification */
} g;

static void pump(void);
static void maybe_ready(int64_t now);
static void on_io(evutil_socket_t fd, short what, void *arg);

/* ---------------------------------------------------------------- helpers */

static int64_t user_of(const conn *c)
{
    return g.first_user + (int64_t)(c - g.conns);
}

static void set_state(conn *c, int st)
{
    g.by_state[c->state]--;
    c->state = (uint8_t)st;
    g.by_state[st]++;
    if (g.by_state[ST_OPEN] > g.open_max)
        g.open_max = g.by_state[ST_OPEN];
}

static int64_t inflight(void)
{
    return g.by_state[ST_CONNECTING] + g.by_state[ST_HANDSHAKE];
}

static void enqueue(conn *c)
{
    set_state(c, ST_QUEUED);
    g.queue[(g.qhead + g.qlen) % (size_t)g.n] = (uint32_t)(c - g.conns);
    g.qlen++;
}

static void set_events(conn *c, short flags)
{
    event_del(c->ev);
    event_assign(c->ev, g.base, c->fd, flags, on_io, c);
    event_add(c->ev, NULL);
}

/* Drop the socket and every per-connection buffer. */
static void reset_io(conn *c)
{
    if (c->ev != NULL) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    free(c->hs);
    free(c->rbuf);
    free(c->msg);
    free(c->out);
    free(c->seen);
    c->hs = NULL;
    c->rbuf = c->msg = c->out = NULL;
    c->seen = NULL;
    c->rlen = c->rcap = c->mlen = c->mcap = c->olen = 0;
    c->we_closed = 0;
}

static const char *errno_kind(int e)
{
    switch (e) {
    case ECONNREFUSED:
        return "refused";
    case ECONNRESET:
        return "reset";
    case ETIMEDOUT:
        return "timeout";
    case EADDRNOTAVAIL:
        return "EADDRNOTAVAIL";
    case EADDRINUSE:
        return "EADDRINUSE";
    case EMFILE:
        return "EMFILE";
    case ENFILE:
        return "ENFILE";
    case ENOBUFS:
        return "ENOBUFS";
    case EPIPE:
        return "EPIPE";
    case ENETUNREACH:
        return "ENETUNREACH";
    default:
        return "other_errno";
    }
}

/* A handshake that did not make it: count it, retry once after a short delay. */
static void conn_fail(conn *c, const char *kind)
{
    bench_counters_add(&g.connect_errors, kind, 1);
    reset_io(c);
    c->tries++;
    if (!g.stopping && c->tries < MAX_TRIES) {
        g.retries++;
        c->deadline = bench_mono_ns() + RETRY_DELAY_NS;
        set_state(c, ST_WAIT);
    } else {
        g.failed++;
        set_state(c, ST_FAILED);
        maybe_ready(bench_mono_ns());
    }
}

/* An open (or closing) connection ended. why == NULL: a close we started completed. */
static void conn_closed(conn *c, const char *why, bool immediate_reconnect)
{
    if (why != NULL)
        bench_counters_add(&g.disconnects, why, 1);
    reset_io(c);
    c->tries = 0;
    if (g.stopping || !g.reconnect) {
        set_state(c, ST_IDLE);
        return;
    }
    g.reconnects++;
    if (immediate_reconnect) {
        enqueue(c);
    } else {
        c->deadline = bench_mono_ns() + RECONNECT_DELAY_NS;
        set_state(c, ST_WAIT);
    }
}

/* Write now, keep what does not fit. -1: the connection was closed. */
static int conn_send(conn *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (c->olen == 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            const char *kind = errno_kind(errno);
            if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE)
                conn_fail(c, kind);
            else
                conn_closed(c, kind, false);
            return -1;
        }
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
        if (len == 0)
            return 0;
    }
    uint8_t *o = realloc(c->out, c->olen + len);
    if (o == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        abort();
    }
    memcpy(o + c->olen, p, len);
    c->out = o;
    c->olen += (uint32_t)len;
    set_events(c, EV_READ | EV_WRITE | EV_PERSIST);
    return 0;
}

static int flush_out(conn *c)
{
    ssize_t n = send(c->fd, c->out, c->olen, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        const char *kind = errno_kind(errno);
        if (c->state == ST_HANDSHAKE)
            conn_fail(c, kind);
        else
            conn_closed(c, kind, false);
        return -1;
    }
    if ((uint32_t)n < c->olen) {
        memmove(c->out, c->out + n, c->olen - (size_t)n);
        c->olen -= (uint32_t)n;
        return 0;
    }
    free(c->out);
    c->out = NULL;
    c->olen = 0;
    set_events(c, EV_READ | EV_PERSIST);
    return 0;
}

/* A masked client frame (control payloads <= 125 bytes). */
static int send_frame(conn *c, uint8_t op, const uint8_t *payload, size_t len)
{
    uint8_t f[6 + 125];
    if (len > 125)
        len = 125;
    uint32_t mask = (uint32_t)bench_rand(&g.rng);
    f[0] = (uint8_t)(0x80 | op);
    f[1] = (uint8_t)(0x80 | len);
    memcpy(f + 2, &mask, 4);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = payload[i] ^ f[2 + (i & 3)];
    return conn_send(c, f, 6 + len);
}

static int send_close(conn *c, unsigned code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return send_frame(c, 0x8, p, code == 1005 ? 0 : 2);
}

/* ----------------------------------------------------------- connecting */

static void start_connect(conn *c)
{
    g.attempts++;
    c->deadline = bench_mono_ns() + HANDSHAKE_TIMEOUT_NS;
    set_state(c, ST_CONNECTING);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_fail(c, errno_kind(errno));
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g.nsrc > 0) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in *src = &g.src[g.next_src];
        g.next_src = (g.next_src + 1) % g.nsrc;
        if (bind(fd, (struct sockaddr *)src, sizeof *src) != 0) {
            conn_fail(c, errno == EADDRNOTAVAIL ? "bind_EADDRNOTAVAIL" : "bind_error");
            return;
        }
    }
    if (connect(fd, (struct sockaddr *)&g.dst, sizeof g.dst) != 0 && errno != EINPROGRESS) {
        conn_fail(c, errno_kind(errno));
        return;
    }
    c->ev = event_new(g.base, fd, EV_WRITE, on_io, c);
    if (c->ev == NULL) {
        conn_fail(c, "event_new");
        return;
    }
    event_add(c->ev, NULL);
}

static void send_upgrade(conn *c)
{
    c->hs = calloc(1, sizeof *c->hs);
    if (c->hs == NULL) {
        conn_fail(c, "oom");
        return;
    }
    uint8_t raw[16];
    uint64_t r1 = bench_rand(&g.rng), r2 = bench_rand(&g.rng);
    memcpy(raw, &r1, 8);
    memcpy(raw + 8, &r2, 8);
    bench_b64(raw, 16, c->hs->key);
    if (bench_ws_accept(c->hs->key, c->hs->accept) != 0) {
        conn_fail(c, "sha1");
        return;
    }
    char value[512];
    char path[1024];
    int64_t user = user_of(c);
    if (g.path_token) {
        if (bench_jwt(g.secret, user, bench_wall_s() + 86400, value, sizeof value) == 0) {
            conn_fail(c, "jwt");
            return;
        }
    } else {
        snprintf(value, sizeof value, "%" PRId64, user);
    }
    if (bench_subst(g.path_template, g.path_token ? "%s" : "%lld", value, path, sizeof path) < 0) {
        conn_fail(c, "path_too_long");
        return;
    }
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     path, g.host_header, c->hs->key);
    if (n < 0 || (size_t)n >= sizeof req) {
        conn_fail(c, "request_too_long");
        return;
    }
    set_state(c, ST_HANDSHAKE);
    set_events(c, EV_READ | EV_PERSIST);
    conn_send(c, req, (size_t)n);
}

static void feed(conn *c, uint8_t *data, size_t n);

/* Header value of name (case-insensitive) in the response head, or NULL. */
static const char *header_value(char *head, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            char *e = strstr(v, "\r\n");
            if (e == NULL)
                return NULL;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

static void read_handshake(conn *c)
{
    hs_state *hs = c->hs;
    ssize_t n = recv(c->fd, hs->buf + hs->len, HS_BUF - 1 - hs->len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_fail(c, errno_kind(errno));
        return;
    }
    if (n == 0) {
        conn_fail(c, "eof_in_handshake");
        return;
    }
    g.bytes_in += (uint64_t)n;
    hs->len += (size_t)n;
    hs->buf[hs->len] = '\0';
    char *end = strstr(hs->buf, "\r\n\r\n");
    if (end == NULL) {
        if (hs->len >= HS_BUF - 1)
            conn_fail(c, "bad_response");
        return;
    }
    end[2] = '\0'; /* keep the last header's CRLF for header_value */
    int status = 0;
    if (sscanf(hs->buf, "HTTP/1.%*d %d", &status) != 1) {
        conn_fail(c, "bad_response");
        return;
    }
    if (status != 101) {
        char kind[32];
        snprintf(kind, sizeof kind, "http_%d", status);
        conn_fail(c, kind);
        return;
    }
    size_t vlen = 0;
    const char *acc = header_value(hs->buf, "Sec-WebSocket-Accept", &vlen);
    if (acc == NULL || vlen != strlen(hs->accept) || memcmp(acc, hs->accept, vlen) != 0) {
        conn_fail(c, "bad_accept");
        return;
    }
    const char *up = header_value(hs->buf, "Upgrade", &vlen);
    if (up == NULL || vlen != 9 || strncasecmp(up, "websocket", 9) != 0) {
        conn_fail(c, "bad_upgrade");
        return;
    }
    int64_t now = bench_mono_ns();
    bench_hist_add(&g.hs_lat, now - (c->deadline - HANDSHAKE_TIMEOUT_NS));
    g.handshakes++;
    if (!g.ready_written)
        g.handshakes_ramp++;
    c->tries = 0;
    size_t head_len = (size_t)(end + 4 - hs->buf);
    size_t rest = hs->len - head_len;
    set_state(c, ST_OPEN);
    maybe_ready(now);
    if (rest > 0) {
        /* Frames that came with the 101: move them through the shared buffer. */
        memcpy(g.rdbuf, hs->buf + head_len, rest);
        free(c->hs);
        c->hs = NULL;
        feed(c, g.rdbuf, rest);
    } else {
        free(c->hs);
        c->hs = NULL;
    }
}

/* -------------------------------------------------------------- frames */

static bool is_alnum(uint8_t ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* The decimal after the first key (standing alone: not preceded by a letter
 * or digit) in data[from..len); false if there is none. */
static bool find_number(const uint8_t *data, size_t len, size_t from, const char *key,
                        int64_t *out)
{
    size_t kl = strlen(key);
    while (from + kl < len) {
        const uint8_t *p = memmem(data + from, len - from, key, kl);
        if (p == NULL)
            return false;
        size_t at = (size_t)(p - data);
        size_t i = at + kl;
        if ((at == 0 || !is_alnum(data[at - 1]) || key[0] == '"') && i < len && data[i] >= '0' &&
            data[i] <= '9') {
            int64_t v = 0;
            while (i < len && data[i] >= '0' && data[i] <= '9' && v < INT64_MAX / 10)
                v = v * 10 + (data[i++] - '0');
            *out = v;
            return true;
        }
        from = at + 1;
    }
    return false;
}

static bool idset_add(idset **sp, int64_t id)
{
    idset *s = *sp;
    if (s == NULL || (s->n + 1) * 2 > s->cap) {
        uint32_t cap = s ? s->cap * 2 : 8;
        idset *ns = calloc(1, sizeof *ns + cap * sizeof(int64_t));
        if (ns == NULL) {
            fprintf(stderr, PROG ": out of memory\n");
            abort();
        }
        ns->cap = cap;
        for (uint32_t i = 0; s && i < s->cap; i++) {
            int64_t v = s->v[i];
            if (v == 0)
                continue;
            uint32_t h = (uint32_t)(((uint64_t)v * 0x9E3779B97F4A7C15ULL) >> 32) & (cap - 1);
            while (ns->v[h] != 0)
                h = (h + 1) & (cap - 1);
            ns->v[h] = v;
            ns->n++;
        }
        free(s);
        *sp = s = ns;
    }
    int64_t key = id == 0 ? INT64_MIN : id; /* 0 marks an empty slot */
    uint32_t h = (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> 32) & (s->cap - 1);
    while (s->v[h] != 0) {
        if (s->v[h] == key)
            return false;
        h = (h + 1) & (s->cap - 1);
    }
    s->v[h] = key;
    s->n++;
    return true;
}

static void on_notification(conn *c, const uint8_t *data, size_t len)
{
    int64_t now = bench_mono_ns();
    g.notifications++;
    g.phase_notifications++;
    if (g.phase_first_ns == 0)
        g.phase_first_ns = now;
    g.phase_last_ns = now;
    int64_t id = -1;
    int64_t t = 0;
    bool have_t;
    if (g.nchan) {
        if (!find_number(data, len, 0, "n=", &id))
            id = -1;
        have_t = find_number(data, len, 0, "t=", &t);
    } else {
        if (!find_number(data, len, 0, "\"id\":", &id))
            id = -1;
        const uint8_t *m = MEMSTR(data, len, "\"message\":\"");
        have_t = find_number(data, len, m ? (size_t)(m - data) : 0, "t=", &t);
    }
    if (have_t && t > 0 && t <= now + 1000000000LL)
        bench_hist_add(&g.lat, now - t);
    else
        g.no_timestamp++;
    if (id < 0)
        g.no_id++;
    if (g.check_dups && id >= 0 && !idset_add(&c->seen, id))
        g.duplicates++;
    if (g.rec != NULL)
        fprintf(g.rec, "%" PRId64 " %" PRId64 " %" PRId64 "\n", user_of(c), id, now);
}

static void on_message(conn *c, uint8_t op, const uint8_t *data, size_t len)
{
    /* Messages after a close frame (either side's) still count: the server
     * may have sent them before it saw ours. */
    if (op != 0x1) {
        g.other_msgs++;
        return;
    }
    if (g.nchan) {
        on_notification(c, data, len);
    } else if (MEMSTR(data, len, "\"type\":\"notification\"") != NULL) {
        on_notification(c, data, len);
    } else if (MEMSTR(data, len, "\"type\":\"connected\"") != NULL) {
        g.connected_msgs++;
    } else {
        g.other_msgs++;
    }
}

static void protocol_error(conn *c, const char *why)
{
    if (c->state == ST_OPEN && send_close(c, 1002) != 0)
        return; /* the failed write already closed it */
    conn_closed(c, why, false);
}

/* 0: go on; 1: the connection was closed. */
static int on_frame(conn *c, bool fin, uint8_t op, uint8_t *p, size_t len)
{
    if (op >= 0x8) {
        if (!fin || len > 125) {
            protocol_error(c, "protocol_error");
            return 1;
        }
        switch (op) {
        case 0x8: {
            unsigned code = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
            char key[16];
            snprintf(key, sizeof key, "%u", code);
            bench_counters_add(&g.close_codes, key, 1);
            if (c->we_closed) {
                g.churn_acked++;
                conn_closed(c, NULL, true);
                return 1;
            }
            if (c->state == ST_CLOSING) {
                conn_closed(c, NULL, false);
                return 1;
            }
            /* Server-initiated: echo the code, then wait for its TCP close. */
            if (send_close(c, code == 1005 ? 1000 : code) != 0)
                return 1;
            c->deadline = bench_mono_ns() + CLOSE_TIMEOUT_NS;
            set_state(c, ST_CLOSING);
            return 0;
        }
        case 0x9:
            g.pings++;
            if (c->state == ST_OPEN && send_frame(c, 0xA, p, len) != 0)
                return 1;
            return 0;
        case 0xA:
            g.pongs_recv++;
            return 0;
        default:
            protocol_error(c, "protocol_error");
            return 1;
        }
    }
    if (op != 0x0 && op != 0x1 && op != 0x2) {
        protocol_error(c, "protocol_error");
        return 1;
    }
    if (op != 0x0) {
        if (c->mlen > 0 || c->msg != NULL) {
            protocol_error(c, "protocol_error");
            return 1;
        }
        if (fin) {
            on_message(c, op, p, len);
            return 0;
        }
        c->msg_op = op;
    } else if (c->msg == NULL) {
        protocol_error(c, "protocol_error");
        return 1;
    }
    if ((size_t)c->mlen + len > MAX_MESSAGE) {
        protocol_error(c, "message_too_big");
        return 1;
    }
    if (c->mlen + len > c->mcap || c->msg == NULL) {
        uint32_t cap = c->mcap ? c->mcap : 1024;
        while (cap < c->mlen + len)
            cap *= 2;
        uint8_t *m = realloc(c->msg, cap);
        if (m == NULL)
            abort();
        c->msg = m;
        c->mcap = cap;
    }
    memcpy(c->msg + c->mlen, p, len);
    c->mlen += (uint32_t)len;
    if (fin) {
        on_message(c, c->msg_op, c->msg, c->mlen);
        free(c->msg);
        c->msg = NULL;
        c->mlen = c->mcap = 0;
    }
    return 0;
}

/* Frames in buf[0..len): returns bytes consumed, or SIZE_MAX if c was closed. */
static size_t parse_frames(conn *c, uint8_t *buf, size_t len)
{
    size_t pos = 0;
    while (len - pos >= 2) {
        uint8_t *p = buf + pos;
        size_t avail = len - pos;
        uint8_t b0 = p[0], b1 = p[1];
        size_t hdr = 2;
        uint64_t plen = b1 & 0x7f;
        if (b0 & 0x70) {
            protocol_error(c, "protocol_error");
            return SIZE_MAX;
        }
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)p[2] << 8 | p[3];
            hdr = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | p[2 + i];
            hdr = 10;
        }
        bool masked = b1 & 0x80;
        if (masked)
            hdr += 4;
        if (plen > MAX_MESSAGE) {
            protocol_error(c, "message_too_big");
            return SIZE_MAX;
        }
        if (avail < hdr + plen)
            break;
        uint8_t *payload = p + hdr;
        if (masked) {
            const uint8_t *mk = p + hdr - 4;
            for (uint64_t i = 0; i < plen; i++)
                payload[i] ^= mk[i & 3];
        }
        if (on_frame(c, (b0 & 0x80) != 0, b0 & 0x0f, payload, (size_t)plen) != 0)
            return SIZE_MAX;
        pos += hdr + (size_t)plen;
    }
    return pos;
}

/* New bytes for an open connection; keeps only an incomplete frame's bytes. */
static void feed(conn *c, uint8_t *data, size_t n)
{
    uint8_t *buf = data;
    size_t len = n;
    if (c->rlen > 0) {
        if ((size_t)c->rlen + n > c->rcap) {
            size_t cap = c->rcap ? c->rcap : 1024;
            while (cap < (size_t)c->rlen + n)
                cap *= 2;
            if (cap > MAX_MESSAGE + 64) {
                protocol_error(c, "message_too_big");
                return;
            }
            uint8_t *r = realloc(c->rbuf, cap);
            if (r == NULL)
                abort();
            c->rbuf = r;
            c->rcap = (uint32_t)cap;
        }
        memcpy(c->rbuf + c->rlen, data, n);
        buf = c->rbuf;
        len = c->rlen + n;
    }
    size_t used = parse_frames(c, buf, len);
    if (used == SIZE_MAX)
        return;
    size_t left = len - used;
    if (left == 0) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rlen = c->rcap = 0;
    } else if (buf == c->rbuf) {
        memmove(c->rbuf, c->rbuf + used, left);
        c->rlen = (uint32_t)left;
    } else {
        size_t cap = 1024;
        while (cap < left)
            cap *= 2;
        c->rbuf = malloc(cap);
        if (c->rbuf == NULL)
            abort();
        memcpy(c->rbuf, buf + used, left);
        c->rlen = (uint32_t)left;
        c->rcap = (uint32_t)cap;
    }
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
        if (err != 0) {
            conn_fail(c, errno_kind(err));
        } else {
            send_upgrade(c);
        }
        pump();
        return;
    }
    if ((what & EV_WRITE) && c->olen > 0 && flush_out(c) != 0) {
        pump();
        return;
    }
    if (!(what & EV_READ))
        return;
    if (c->state == ST_HANDSHAKE) {
        read_handshake(c);
        pump();
        return;
    }
    ssize_t n = recv(c->fd, g.rdbuf, READ_CHUNK, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_closed(c, errno_kind(errno), false);
    } else if (n == 0) {
        if (c->state == ST_CLOSING)
            conn_closed(c, c->we_closed ? "eof_after_our_close" : NULL, c->we_closed);
        else
            conn_closed(c, "eof", false);
    } else {
        g.bytes_in += (uint64_t)n;
        feed(c, g.rdbuf, (size_t)n);
    }
    pump();
}

/* Start handshakes while slots are free. */
static void pump(void)
{
    while (g.qlen > 0 && inflight() < g.concurrency && !g.stopping) {
        conn *c = &g.conns[g.queue[g.qhead]];
        g.qhead = (g.qhead + 1) % (size_t)g.n;
        g.qlen--;
        start_connect(c);
    }
}

/* ---------------------------------------------------------------- stats */

static void stats_json(bench_buf *b)
{
    int64_t now = bench_mono_ns();
    double elapsed = (double)(now - g.t_start) / 1e9;
    int64_t ramp_end = g.ready_written ? g.t_ready : now;
    double ramp_s = (double)(ramp_end - g.t_start) / 1e9;
    bench_buf_printf(b, "{\"program\":\"wsn_load\",\"pid\":%ld,\"mode\":\"%s\",\"elapsed_s\":%.3f,",
                     (long)getpid(), g.nchan ? "nchan" : "wsnotify", elapsed);
    bench_buf_printf(b,
                     "\"connections\":{\"target\":%" PRId64 ",\"open\":%" PRId64
                     ",\"open_max\":%" PRId64 ",\"connecting\":%" PRId64 ",\"waiting\":%" PRId64
                     ",\"closing\":%" PRId64 ",\"failed\":%" PRId64 "},",
                     g.n, g.by_state[ST_OPEN], g.open_max, inflight(),
                     g.by_state[ST_QUEUED] + g.by_state[ST_WAIT], g.by_state[ST_CLOSING],
                     g.by_state[ST_FAILED]);
    bench_buf_printf(b,
                     "\"handshakes\":{\"attempts\":%" PRIu64 ",\"completed\":%" PRIu64
                     ",\"retries\":%" PRIu64 ",\"ramp_completed\":%" PRIu64
                     ",\"ramp_s\":%.3f,\"rate_per_s\":%.1f,\"ready\":%s,\"latency_us\":",
                     g.attempts, g.handshakes, g.retries, g.handshakes_ramp, ramp_s,
                     ramp_s > 0 ? (double)g.handshakes_ramp / ramp_s : 0.0,
                     g.ready_written ? "true" : "false");
    bench_buf_hist_json(b, &g.hs_lat);
    bench_buf_add(b, "},\"connect_errors\":", 19);
    bench_buf_counters_json(b, &g.connect_errors);
    bench_buf_printf(b, ",\"connect_errors_total\":%" PRIu64 ",\"disconnects\":",
                     bench_counters_total(&g.connect_errors));
    bench_buf_counters_json(b, &g.disconnects);
    bench_buf_printf(b,
                     ",\"reconnects\":%" PRIu64 ",\"churn\":{\"rate\":%.3f,\"closed\":%" PRIu64
                     ",\"acked\":%" PRIu64 "},\"close_codes\":",
                     g.reconnects, g.churn, g.churn_closed, g.churn_acked);
    bench_buf_counters_json(b, &g.close_codes);
    bench_buf_printf(b,
                     ",\"messages\":{\"connected\":%" PRIu64 ",\"other\":%" PRIu64
                     ",\"pings\":%" PRIu64 ",\"pongs\":%" PRIu64 ",\"bytes_in\":%" PRIu64 "},",
                     g.connected_msgs, g.other_msgs, g.pings, g.pongs_recv, g.bytes_in);
    bench_buf_printf(b, "\"notifications\":%" PRIu64 ",\"no_timestamp\":%" PRIu64
                        ",\"no_id\":%" PRIu64 ",",
                     g.notifications, g.no_timestamp, g.no_id);
    if (g.check_dups)
        bench_buf_printf(b, "\"duplicates\":%" PRIu64 ",", g.duplicates);
    else
        bench_buf_add(b, "\"duplicates\":null,", 18);
    bench_buf_add(b, "\"latency_us\":", 13);
    bench_buf_hist_json(b, &g.lat);
    /* The phase (since the last SIGUSR2): the latency histogram above covers it too. */
    bench_buf_printf(b,
                     ",\"phase\":{\"stats_seq\":%" PRIu64 ",\"resets\":%" PRIu64
                     ",\"now_mono_ns\":%" PRId64 ",\"notifications\":%" PRIu64
                     ",\"first_mono_ns\":%" PRId64 ",\"last_mono_ns\":%" PRId64
                     ",\"latency_hist_ns\":",
                     ++g.stats_seq, g.resets, now, g.phase_notifications, g.phase_first_ns,
                     g.phase_last_ns);
    bench_buf_hist_buckets_json(b, &g.lat);
    bench_buf_printf(b, "},\"rss_kb\":%ld}\n", bench_rss_kb());
}

static void write_stats(void)
{
    bench_buf b;
    bench_buf_init(&b);
    stats_json(&b);
    if (g.rec != NULL)
        fflush(g.rec);
    if (g.stats_file != NULL) {
        if (bench_write_atomic(g.stats_file, b.p, b.len) != 0)
            fprintf(stderr, PROG ": cannot write %s: %s\n", g.stats_file, strerror(errno));
    } else {
        fwrite(b.p, 1, b.len, stdout);
        fflush(stdout);
    }
    bench_buf_free(&b);
}

static void maybe_ready(int64_t now)
{
    if (g.ready_written)
        return;
    bool all_open = g.by_state[ST_OPEN] == g.n;
    bool settled = g.by_state[ST_OPEN] + g.by_state[ST_FAILED] == g.n;
    if (!all_open && !settled)
        return;
    g.ready_written = true;
    g.t_ready = now;
    double s = (double)(now - g.t_start) / 1e9;
    double rate = s > 0 ? (double)g.handshakes_ramp / s : 0;
    fprintf(stderr, PROG "[%ld]: %" PRId64 "/%" PRId64 " connected in %.2f s (%.0f/s), %" PRId64
                    " failed, rss %ld KiB\n",
            (long)getpid(), g.by_state[ST_OPEN], g.n, s, rate, g.by_state[ST_FAILED],
            bench_rss_kb());
    if (g.ready_file != NULL) {
        char line[128];
        int n = snprintf(line, sizeof line, "%" PRId64 " %.1f\n", g.by_state[ST_OPEN], rate);
        if (bench_write_atomic(g.ready_file, line, (size_t)n) != 0)
            fprintf(stderr, PROG ": cannot write %s: %s\n", g.ready_file, strerror(errno));
    }
}

/* ----------------------------------------------------------- timers, signals */

static void start_close(conn *c)
{
    c->we_closed = 1;
    g.churn_closed++;
    if (send_close(c, 1000) != 0)
        return;
    c->deadline = bench_mono_ns() + CLOSE_TIMEOUT_NS;
    set_state(c, ST_CLOSING);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    int64_t now = bench_mono_ns();
    for (int64_t i = 0; i < g.n; i++) {
        conn *c = &g.conns[i];
        switch (c->state) {
        case ST_CONNECTING:
        case ST_HANDSHAKE:
            if (now >= c->deadline)
                conn_fail(c, "timeout");
            break;
        case ST_CLOSING:
            if (now >= c->deadline)
                conn_closed(c, "close_timeout", c->we_closed);
            break;
        case ST_WAIT:
            if (now >= c->deadline)
                enqueue(c);
            break;
        default:
            break;
        }
    }
    if (g.churn > 0 && g.ready_written && g.last_sweep > 0) {
        g.churn_budget += g.churn * (double)(now - g.last_sweep) / 1e9;
        int picks = 0;
        while (g.churn_budget >= 1 && g.by_state[ST_OPEN] > 0 && picks < 100000) {
            conn *c = &g.conns[bench_rand_below(&g.rng, (uint64_t)g.n)];
            picks++;
            if (c->state != ST_OPEN)
                continue;
            start_close(c);
            g.churn_budget -= 1;
        }
        if (g.churn_budget > g.churn)
            g.churn_budget = g.churn; /* do not bank closes while none are open */
    }
    g.last_sweep = now;
    pump();
    maybe_ready(now);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    fprintf(stderr, PROG "[%ld]: signal %d, stopping\n", (long)getpid(), (int)sig);
    g.stopping = true;
    event_base_loopbreak(g.base);
}

static void on_usr1(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    write_stats();
}

/* SIGUSR2: start a new phase (latency histogram, first/last notification
 * times and the phase count from zero), then write the stats, whose
 * phase.resets tells the driver the reset is done. */
static void on_usr2(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    bench_hist_init(&g.lat);
    g.phase_notifications = 0;
    g.phase_first_ns = g.phase_last_ns = 0;
    g.resets++;
    write_stats();
}

static void on_duration(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    g.stopping = true;
    event_base_loopbreak(g.base);
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " --port P --connections N [options]\n"
            "WebSocket load client for wsnotifyd (or nginx+nchan): holds N connections,\n"
            "users U..U+N-1, and measures notification delivery latency from the\n"
            "t=<CLOCK_MONOTONIC ns> that wsn_publish puts in each message.\n\n"
            "  --host ADDR            server address (127.0.0.1)\n"
            "  --port P               server port (required)\n"
            "  --connections N        connections to hold (required; ~15000 max per process)\n"
            "  --first-user U         first user id (1)\n"
            "  --source-addrs A-B     bind each socket to the next source address, round-robin:\n"
            "                         a range 127.0.0.2-127.0.0.20 or a comma list\n"
            "  --concurrency K        handshakes in flight (256)\n"
            "  --secret S             HS256 secret for the ?token= JWTs (else $JWT_SECRET)\n"
            "  --path-template T      request path; %%s is the token, or %%lld the user id\n"
            "                         (/ws?token=%%s; /sub/%%lld with --nchan)\n"
            "  --nchan                nginx+nchan subscriber mode: no token, every text\n"
            "                         frame is a notification (id from n=, time from t=)\n"
            "  --ready-file PATH      written (tmp + rename) once all N are connected\n"
            "                         (or given up): \"<open> <connects/s>\"\n"
            "  --stats-file PATH      JSON stats on SIGUSR1 and at exit (default: stdout);\n"
            "                         SIGUSR2 starts a new phase (latency histogram and the\n"
            "                         \"phase\" counters from zero), then writes them\n"
            "  --record PATH          one line per notification: user id recv_mono_ns\n"
            "  --check-dups           count ids seen twice on one connection (implied by --record)\n"
            "  --churn R              close R random connections per second and reconnect them\n"
            "  --no-reconnect         do not reconnect connections the server closed\n"
            "  --duration S           exit after S seconds (0: until SIGTERM/SIGINT)\n"
            "  --help\n");
}

static bool parse_sources(const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL)
        return false;
    bool ok = true;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && ok;
         tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        struct in_addr a, b;
        if (dash != NULL)
            *dash = '\0';
        if (inet_pton(AF_INET, tok, &a) != 1 || (dash && inet_pton(AF_INET, dash + 1, &b) != 1)) {
            ok = false;
            break;
        }
        uint32_t lo = ntohl(a.s_addr), hi = dash ? ntohl(b.s_addr) : lo;
        if (hi < lo || hi - lo > 4096 || g.nsrc + (hi - lo + 1) > 4096) {
            ok = false;
            break;
        }
        g.src = realloc(g.src, sizeof *g.src * (size_t)(g.nsrc + (int)(hi - lo + 1)));
        if (g.src == NULL)
            abort();
        for (uint32_t v = lo; v <= hi; v++) {
            struct sockaddr_in *sa = &g.src[g.nsrc++];
            memset(sa, 0, sizeof *sa);
            sa->sin_family = AF_INET;
            sa->sin_addr.s_addr = htonl(v);
        }
    }
    free(copy);
    return ok && g.nsrc > 0;
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_CONNECTIONS,
    OPT_FIRST_USER,
    OPT_SOURCE_ADDRS,
    OPT_CONCURRENCY,
    OPT_SECRET,
    OPT_PATH_TEMPLATE,
    OPT_NCHAN,
    OPT_READY_FILE,
    OPT_STATS_FILE,
    OPT_RECORD,
    OPT_CHECK_DUPS,
    OPT_CHURN,
    OPT_NO_RECONNECT,
    OPT_DURATION,
};

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"first-user", required_argument, NULL, OPT_FIRST_USER},
        {"source-addrs", required_argument, NULL, OPT_SOURCE_ADDRS},
        {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
        {"secret", required_argument, NULL, OPT_SECRET},
        {"path-template", required_argument, NULL, OPT_PATH_TEMPLATE},
        {"nchan", no_argument, NULL, OPT_NCHAN},
        {"ready-file", required_argument, NULL, OPT_READY_FILE},
        {"stats-file", required_argument, NULL, OPT_STATS_FILE},
        {"record", required_argument, NULL, OPT_RECORD},
        {"check-dups", no_argument, NULL, OPT_CHECK_DUPS},
        {"churn", required_argument, NULL, OPT_CHURN},
        {"no-reconnect", no_argument, NULL, OPT_NO_RECONNECT},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t v;
    int opt;
    g.host = "127.0.0.1";
    g.first_user = 1;
    g.concurrency = 256;
    g.reconnect = true;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HOST:
            g.host = optarg;
            break;
        case OPT_PORT:
            if (!bench_parse_i64(optarg, 1, 65535, &v))
                bench_die_usage(PROG, "--port: 1..65535, not '%s'", optarg);
            g.port = (int)v;
            break;
        case OPT_CONNECTIONS:
            if (!bench_parse_i64(optarg, 1, 1000000, &g.n))
                bench_die_usage(PROG, "--connections: 1..1000000, not '%s'", optarg);
            break;
        case OPT_FIRST_USER:
            if (!bench_parse_i64(optarg, 1, INT64_MAX / 2, &g.first_user))
                bench_die_usage(PROG, "--first-user: a positive integer, not '%s'", optarg);
            break;
        case OPT_SOURCE_ADDRS:
            if (!parse_sources(optarg))
                bench_die_usage(PROG, "--source-addrs: IPv4 A-B or a comma list, not '%s'", optarg);
            break;
        case OPT_CONCURRENCY:
            if (!bench_parse_i64(optarg, 1, 100000, &g.concurrency))
                bench_die_usage(PROG, "--concurrency: 1..100000, not '%s'", optarg);
            break;
        case OPT_SECRET:
            g.secret = optarg;
            break;
        case OPT_PATH_TEMPLATE:
            g.path_template = optarg;
            break;
        case OPT_NCHAN:
            g.nchan = true;
            break;
        case OPT_READY_FILE:
            g.ready_file = optarg;
            break;
        case OPT_STATS_FILE:
            g.stats_file = optarg;
            break;
        case OPT_RECORD:
            g.record_path = optarg;
            g.check_dups = true;
            break;
        case OPT_CHECK_DUPS:
            g.check_dups = true;
            break;
        case OPT_CHURN:
            if (!bench_parse_double(optarg, 0, 1e6, &g.churn))
                bench_die_usage(PROG, "--churn: closes per second >= 0, not '%s'", optarg);
            break;
        case OPT_NO_RECONNECT:
            g.reconnect = false;
            break;
        case OPT_DURATION:
            if (!bench_parse_double(optarg, 0, 1e7, &g.duration))
                bench_die_usage(PROG, "--duration: seconds >= 0, not '%s'", optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "Try '" PROG " --help'.\n");
            exit(2);
        }
    }
    if (optind < argc)
        bench_die_usage(PROG, "unexpected argument '%s'", argv[optind]);
    if (g.port == 0 || g.n == 0)
        bench_die_usage(PROG, "--port and --connections are required");
    if (g.path_template == NULL)
        g.path_template = g.nchan ? "/sub/%lld" : "/ws?token=%s";
    if (bench_template_check(g.path_template, "%s") == 1)
        g.path_token = true;
    else if (bench_template_check(g.path_template, "%lld") == 1)
        g.path_token = false;
    else
        bench_die_usage(PROG, "--path-template needs exactly one %%s (token) or %%lld (user id)");
    if (g.path_token && g.secret == NULL)
        g.secret = getenv("JWT_SECRET");
    if (g.path_token && (g.secret == NULL || g.secret[0] == '\0'))
        bench_die_usage(PROG, "--secret (or JWT_SECRET) is needed for token paths");
    if (g.churn > 0 && !g.reconnect)
        bench_die_usage(PROG, "--churn reconnects: drop --no-reconnect");
}

static void resolve_host(void)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(g.host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        fprintf(stderr, PROG ": cannot resolve %s: %s\n", g.host, gai_strerror(rc));
        exit(1);
    }
    memcpy(&g.dst, res->ai_addr, sizeof g.dst);
    g.dst.sin_port = htons((uint16_t)g.port);
    freeaddrinfo(res);
    snprintf(g.host_header, sizeof g.host_header, "%s:%d", g.host, g.port);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)g.n + 64 > rl.rlim_cur)
        fprintf(stderr,
                PROG ": warning: %" PRId64 " connections but the open-file limit is %llu\n", g.n,
                (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    resolve_host();
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    g.rng = bench_rand_seed();
    bench_hist_init(&g.lat);
    bench_hist_init(&g.hs_lat);
    g.rdbuf = malloc(READ_CHUNK);
    g.conns = calloc((size_t)g.n, sizeof *g.conns);
    g.queue = calloc((size_t)g.n, sizeof *g.queue);
    if (g.rdbuf == NULL || g.conns == NULL || g.queue == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    if (g.record_path != NULL) {
        g.rec = fopen(g.record_path, "w");
        if (g.rec == NULL) {
            fprintf(stderr, PROG ": cannot open %s: %s\n", g.record_path, strerror(errno));
            return 1;
        }
        setvbuf(g.rec, NULL, _IOFBF, 1 << 20);
    }
    g.base = event_base_new();
    if (g.base == NULL) {
        fprintf(stderr, PROG ": event_base_new failed\n");
        return 1;
    }
    g.by_state[ST_IDLE] = g.n;
    for (int64_t i = 0; i < g.n; i++) {
        g.conns[i].fd = -1;
        enqueue(&g.conns[i]);
    }
    struct event *sigterm = evsignal_new(g.base, SIGTERM, on_stop_signal, NULL);
    struct event *sigint = evsignal_new(g.base, SIGINT, on_stop_signal, NULL);
    struct event *sigusr1 = evsignal_new(g.base, SIGUSR1, on_usr1, NULL);
    struct event *sigusr2 = evsignal_new(g.base, SIGUSR2, on_usr2, NULL);
    struct event *sweep = event_new(g.base, -1, EV_PERSIST, on_sweep, NULL);
    struct event *dur = evtimer_new(g.base, on_duration, NULL);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    evsignal_add(sigusr1, NULL);
    evsignal_add(sigusr2, NULL);
    struct timeval tv = {0, SWEEP_MS * 1000};
    event_add(sweep, &tv);
    if (g.duration > 0) {
        struct timeval dtv = {(time_t)g.duration,
                              (suseconds_t)((g.duration - (double)(time_t)g.duration) * 1e6)};
        evtimer_add(dur, &dtv);
    }
    g.t_start = bench_mono_ns();
    pump();
    event_base_dispatch(g.base);
    g.stopping = true;
    write_stats();
    if (g.rec != NULL && fclose(g.rec) != 0)
        fprintf(stderr, PROG ": writing %s: %s\n", g.record_path, strerror(errno));
    g.rec = NULL;
    for (int64_t i = 0; i < g.n; i++)
        reset_io(&g.conns[i]);
    event_free(sigterm);
    event_free(sigint);
    event_free(sigusr1);
    event_free(sigusr2);
    event_free(sweep);
    event_free(dur);
    event_base_free(g.base);
    free(g.conns);
    free(g.queue);
    free(g.rdbuf);
    free(g.src);
    return 0;
}
