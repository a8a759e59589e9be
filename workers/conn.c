/* conn.c — a client connection's transport: socket I/O, output buffering
 * and the close (see conn.h).
 *
 * Reads land in the loop's scratch buffer; only bytes that cannot be handled
 * yet are copied into per-connection memory. Writes go straight to the socket
 * and only the unsent remainder is buffered, up to CONN_MAX_OUTPUT.
 *
 * With TLS (c->ssl set) every byte goes through conn_io_read/conn_io_write,
 * which use OpenSSL instead of recv/send. OpenSSL may need the other
 * direction first (a read that must write, a write that must read): the
 * tls_*_wants_* flags record that, and conn_update_write_interest arms
 * EV_WRITE accordingly on the connection's single event. The TLS handshake
 * runs inside the first reads, under the protocol's deadline. */
#include "workers/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "src/common/log.h"
#include "workers/tls_io.h"

#define CONN_READS_PER_EVENT 4  /* fairness: let other connections run */

const char conn_error_eof[] = "end of stream";
const char conn_error_slow_reader[] = "slow reader";
const char conn_error_loop_output[] = "worker output limit";

/* conn_io_* results besides byte counts */
enum { CONN_IO_AGAIN = -1, CONN_IO_ERROR = -2 };

static void conn_on_event(evutil_socket_t fd, short what, void *arg);

void conn_list_append(conn_list *l, conn *c)
{
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail != NULL)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->count++;
    c->list = l;
}

void conn_list_remove(conn_list *l, conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = NULL;
    l->count--;
}

void conn_list_move(conn *c, conn_list *to)
{
    if (c->list != NULL)
        conn_list_remove(c->list, c);
    conn_list_append(to, c);
}

int conn_fd(const conn *c) { return (int)event_get_fd(&c->ev); }

void conn_loop_clock(conn_loop *l)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        l->now = (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

int conn_init(conn *c, conn_loop *l, int fd, SSL_CTX *tls, const conn_ops *ops)
{
    c->loop = l;
    c->ops = ops;
    c->state = CONN_OPEN;
    c->since = l->now;
    if (tls != NULL && (c->ssl = tls_io_new(tls, fd)) == NULL) {
        log_warn("cannot start a TLS session (out of memory?): dropping the connection");
        close(fd);
        return -1;
    }
    if (event_assign(&c->ev, l->base, fd, EV_READ | EV_PERSIST, conn_on_event, c) != 0 ||
        event_add(&c->ev, NULL) != 0) {
        log_error("cannot register a connection with the event loop");
        close(fd);
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -1;
    }
    return 0;
}

void conn_set_ops(conn *c, const conn_ops *ops) { c->ops = ops; }

bool conn_handshake_pending(const conn *c)
{
    return c->ssl != NULL && !tls_io_handshake_done(c->ssl);
}

void conn_peer_name(const conn *c, char *out, size_t out_size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(conn_fd(c), (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
            if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host) == NULL)
                snprintf(host, sizeof host, "?");
            port = ntohs(sin->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
            if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host) == NULL)
                snprintf(host, sizeof host, "?");
            port = ntohs(sin6->sin6_port);
        }
    }
    snprintf(out, out_size, "%s:%u", host, port);
}

static void conn_arm_write(conn *c, bool want)
{
    if (c->write_armed == want)
        return;
    short events = (c->peer_eof ? 0 : EV_READ) | EV_PERSIST | (want ? EV_WRITE : 0);
    int fd = conn_fd(c);
    if (event_del(&c->ev) != 0 ||
        event_assign(&c->ev, c->loop->base, fd, events, conn_on_event, c) != 0 ||
        event_add(&c->ev, NULL) != 0) {
        conn_abort(c, "event loop refused the connection");
        return;
    }
    c->write_armed = want;
}

/* EV_WRITE is wanted while output waits for room in the socket (unless TLS
 * first needs to read), or while a TLS read waits to write. */
static void conn_update_write_interest(conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    conn_arm_write(c, (c->out != NULL && !c->tls_write_wants_read) || c->tls_read_wants_write);
}

/* Handshake failures are mostly scanners and plain-HTTP clients: info at most.
 * Later failures are one client's trouble: debug. */
static void conn_log_tls_failure(const conn *c, const char *op, const char *why)
{
    if (!tls_io_handshake_done(c->ssl))
        log_info("TLS handshake failed: %s", why != NULL ? why : "unknown reason");
    else
        log_debug("TLS %s failed: %s", op, why != NULL ? why : "unknown reason");
}

/* A plain recv()/send() result in conn_io terms; call it straight after the
 * syscall, while errno is still the syscall's. */
static ssize_t conn_plain_io_result(ssize_t n)
{
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? CONN_IO_AGAIN
                                                                      : CONN_IO_ERROR;
}

/* Bytes read (> 0), 0 at the end of the stream, CONN_IO_AGAIN or CONN_IO_ERROR. */
static ssize_t conn_io_read(conn *c, void *buf, size_t len)
{
    if (c->ssl == NULL)
        return conn_plain_io_result(recv(conn_fd(c), buf, len, 0));
    size_t done = 0;
    const char *why = NULL;
    switch (tls_io_read(c->ssl, buf, len, &done, &why)) {
    case TLS_IO_OK:
        return (ssize_t)done;
    case TLS_IO_WANT_READ:
        return CONN_IO_AGAIN;
    case TLS_IO_WANT_WRITE:
        c->tls_read_wants_write = true;
        conn_update_write_interest(c);
        return CONN_IO_AGAIN;
    case TLS_IO_CLOSED:
        return 0;
    case TLS_IO_FAILED:
        break;
    }
    conn_log_tls_failure(c, "read", why);
    return CONN_IO_ERROR;
}

/* Bytes written (>= 0), CONN_IO_AGAIN or CONN_IO_ERROR. After AGAIN a TLS
 * write must be retried with the same bytes first (see tls_write). */
static ssize_t conn_io_write(conn *c, const void *buf, size_t len)
{
    if (c->ssl == NULL)
        return conn_plain_io_result(send(conn_fd(c), buf, len, MSG_NOSIGNAL | MSG_DONTWAIT));
    size_t done = 0;
    const char *why = NULL;
    switch (tls_io_write(c->ssl, buf, len, &done, &why)) {
    case TLS_IO_OK:
        return (ssize_t)done;
    case TLS_IO_WANT_WRITE:
        return CONN_IO_AGAIN;
    case TLS_IO_WANT_READ:
        c->tls_write_wants_read = true;
        return CONN_IO_AGAIN;
    case TLS_IO_CLOSED:
        why = "the client closed the TLS session";
        break;
    case TLS_IO_FAILED:
        break;
    }
    conn_log_tls_failure(c, "write", why);
    return CONN_IO_ERROR;
}

void conn_abort(conn *c, const char *why)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state == CONN_OPEN)
        c->ops->on_close(c, why);
    log_debug("connection closed: %s", why);
    if (event_del(&c->ev) != 0)
        log_warn("event_del failed while closing a connection");
    if (close(conn_fd(c)) != 0)
        log_debug("close: %s", strerror(errno));
    c->state = CONN_DEAD;
    conn_list_move(c, &c->loop->dead);
}

void conn_reap(conn_loop *l)
{
    conn *c;
    while ((c = l->dead.head) != NULL) {
        conn_list_remove(&l->dead, c);
        l->out_total -= c->out_len;
        free(c->out);
        c->out = NULL;
        SSL_free(c->ssl);
        c->ssl = NULL;
        c->ops->on_free(c);
    }
}

void conn_sweep_closing(conn_loop *l)
{
    conn *c;
    while ((c = l->closing.head) != NULL && l->now - c->since >= CONN_CLOSE_TIMEOUT * 1000u)
        conn_abort(c, "close timeout");
}

/* Our last bytes are out: close_notify (TLS, best effort), then our FIN, so
 * the client sees everything we sent before any reset. */
static void conn_half_close(conn *c)
{
    if (c->ssl != NULL)
        tls_io_shutdown(c->ssl);
    if (shutdown(conn_fd(c), SHUT_WR) != 0)
        conn_abort(c, "shutdown failed");
}

/* The last output is out: half-close, and when the peer's EOF came already
 * there is nothing left to wait for. */
static void conn_finish_close(conn *c)
{
    conn_half_close(c);
    if (c->peer_eof && c->state == CONN_CLOSING)
        conn_abort(c, conn_error_eof);
}

/* The output is drained: free the buffer, and finish a close by half-closing. */
static void conn_output_drained(conn *c)
{
    free(c->out);
    c->out = NULL;
    c->out_head = c->out_len = c->out_cap = 0;
    conn_update_write_interest(c);
    if (c->state == CONN_CLOSING)
        conn_finish_close(c);
}

/* Room for `more` unsent bytes. The buffer is a ring, so appending and
 * draining never move bytes; it only grows, by doubling (up to
 * CONN_MAX_OUTPUT), which copies each byte O(1) times amortized. */
static int conn_reserve(conn *c, size_t more)
{
    if ((size_t)c->out_len + more <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? 2 * (size_t)c->out_cap : 4096;
    while (cap < (size_t)c->out_len + more)
        cap *= 2;
    if (cap > CONN_MAX_OUTPUT)
        cap = CONN_MAX_OUTPUT; /* callers never ask beyond it */
    uint8_t *out = malloc(cap);
    if (out == NULL)
        return -1;
    size_t first = c->out_cap - c->out_head < c->out_len ? c->out_cap - c->out_head : c->out_len;
    if (first > 0)
        memcpy(out, c->out + c->out_head, first);
    if (c->out_len > first)
        memcpy(out + first, c->out, c->out_len - first);
    c->loop->out_copied += c->out_len;
    free(c->out);
    c->out = out;
    c->out_cap = (uint32_t)cap;
    c->out_head = 0;
    return 0;
}

static void ring_append(conn *c, const uint8_t *data, size_t n)
{
    size_t tail = ((size_t)c->out_head + c->out_len) % c->out_cap;
    size_t first = c->out_cap - tail < n ? c->out_cap - tail : n;
    memcpy(c->out + tail, data, first);
    memcpy(c->out, data + first, n - first);
    c->out_len += (uint32_t)n;
}

/* The unsent bytes as at most two contiguous pieces, oldest first. */
static int ring_pieces(const conn *c, struct iovec iov[2])
{
    size_t first = c->out_cap - c->out_head < c->out_len ? c->out_cap - c->out_head : c->out_len;
    iov[0] = (struct iovec){.iov_base = c->out + c->out_head, .iov_len = first};
    iov[1] = (struct iovec){.iov_base = c->out, .iov_len = c->out_len - first};
    return iov[1].iov_len > 0 ? 2 : 1;
}

static void ring_consume(conn *c, size_t n)
{
    c->out_head = (uint32_t)(((size_t)c->out_head + n) % c->out_cap);
    c->out_len -= (uint32_t)n;
    c->loop->out_total -= n;
}

static int conn_buffer(conn *c, const struct iovec *iov, int iovcnt, size_t skip)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t rest = total - skip;
    if ((size_t)c->out_len + rest > CONN_MAX_OUTPUT) {
        conn_abort(c, conn_error_slow_reader); /* the protocol logs who it was */
        return -1;
    }
    conn_loop *l = c->loop;
    if (l->out_limit != 0 && l->out_total + rest > l->out_limit) {
        conn_abort(c, conn_error_loop_output);
        return -1;
    }
    if (conn_reserve(c, rest) != 0) {
        conn_abort(c, "out of memory buffering output");
        return -1;
    }
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        const uint8_t *base = iov[i].iov_base;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        ring_append(c, base + skip, len - skip);
        skip = 0;
    }
    l->out_total += rest;
    l->out_copied += rest;
    conn_update_write_interest(c);
    return c->state == CONN_DEAD ? -1 : 0;
}

static ssize_t conn_plain_writev(conn *c, const struct iovec *iov, int iovcnt)
{
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n = sendmsg(conn_fd(c), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? CONN_IO_AGAIN
                                                                      : CONN_IO_ERROR;
}

/* TLS has no gathered write. The first record's worth is staged into one
 * buffer, so a frame's header and a small payload share one record instead of
 * costing a tiny record of their own; the rest goes from the caller's memory.
 * Returns bytes written, CONN_IO_AGAIN (nothing written) or CONN_IO_ERROR. */
static ssize_t conn_tls_writev(conn *c, const struct iovec *iov, int iovcnt)
{
    uint8_t stage[TLS_RECORD_MAX];
    size_t staged = 0;
    for (int i = 0; i < iovcnt && staged < sizeof stage; i++) {
        size_t take = iov[i].iov_len < sizeof stage - staged ? iov[i].iov_len
                                                             : sizeof stage - staged;
        memcpy(stage + staged, iov[i].iov_base, take);
        staged += take;
    }
    if (staged == 0)
        return 0;
    ssize_t n = conn_io_write(c, stage, staged);
    if (n < 0 || (size_t)n < staged)
        return n;
    size_t sent = staged;
    size_t skip = staged;
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        const uint8_t *p = (const uint8_t *)iov[i].iov_base + skip;
        size_t left = len - skip;
        skip = 0;
        while (left > 0) {
            n = conn_io_write(c, p, left); /* one record per call (partial writes) */
            if (n == CONN_IO_ERROR)
                return n;
            if (n < 0)
                return (ssize_t)sent;
            sent += (size_t)n;
            p += n;
            left -= (size_t)n;
        }
    }
    return (ssize_t)sent;
}

int conn_writev(conn *c, const struct iovec *iov, int iovcnt)
{
    if (c->state == CONN_DEAD)
        return -1;
    size_t sent = 0;
    if (c->out == NULL) {
        ssize_t n = c->ssl != NULL ? conn_tls_writev(c, iov, iovcnt)
                                   : conn_plain_writev(c, iov, iovcnt);
        if (n == CONN_IO_ERROR) {
            conn_abort(c, "write error");
            return -1;
        }
        sent = n < 0 ? 0 : (size_t)n;
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++)
            total += iov[i].iov_len;
        if (sent == total)
            return 0;
    }
    return conn_buffer(c, iov, iovcnt, sent);
}

int conn_write(conn *c, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return conn_writev(c, &iov, 1);
}

void conn_close_after_output(conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->ops->on_close(c, NULL);
    c->state = CONN_CLOSING;
    c->since = c->loop->now;
    conn_list_move(c, &c->loop->closing);
    if (c->out == NULL)
        conn_finish_close(c);
}

/* Reading stops (a level-triggered EV_READ would fire for ever at EOF);
 * the write side stays for the answer. */
static void conn_peer_half_closed(conn *c)
{
    c->peer_eof = true;
    bool armed = c->write_armed;
    c->write_armed = !armed;  /* force conn_arm_write to re-register */
    conn_arm_write(c, armed);
    if (c->state == CONN_OPEN)
        c->ops->on_eof(c);
}

static void conn_on_readable(conn *c)
{
    conn_loop *l = c->loop;
    for (int i = 0; i < CONN_READS_PER_EVENT; i++) {
        ssize_t n = conn_io_read(c, l->scratch, l->scratch_size);
        if (n == 0) {
            if (c->state == CONN_OPEN && c->ops->on_eof != NULL)
                conn_peer_half_closed(c);
            else
                conn_abort(c, conn_error_eof);
            return;
        }
        if (n == CONN_IO_AGAIN)
            return;
        if (n < 0) {
            conn_abort(c, "read error");
            return;
        }
        if (c->state == CONN_OPEN)
            c->ops->on_data(c, l->scratch, (size_t)n);
        /* (closing: discard until the peer's EOF) */
        /* A TLS read returns one record at most: keep going until it would block. */
        if (c->state == CONN_DEAD || (c->ssl == NULL && (size_t)n < l->scratch_size))
            return;
    }
}

static void conn_on_writable(conn *c)
{
    while (c->out_len > 0) {
        struct iovec iov[2];
        int pieces = ring_pieces(c, iov);
        /* TLS writes the oldest piece only: a retry after WANT_* must start
         * with the same bytes, and the ring never moves them. */
        ssize_t n = c->ssl != NULL ? conn_io_write(c, iov[0].iov_base, iov[0].iov_len)
                                   : conn_plain_writev(c, iov, pieces);
        if (n == CONN_IO_AGAIN) {
            conn_update_write_interest(c); /* a TLS write may now wait for a read */
            return;
        }
        if (n < 0) {
            conn_abort(c, "write error");
            return;
        }
        ring_consume(c, (size_t)n);
    }
    conn_output_drained(c);
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    conn *c = arg;
    conn_loop *l = c->loop;
    conn_loop_clock(l);
    if ((what & EV_WRITE) && c->state != CONN_DEAD && c->tls_read_wants_write) {
        c->tls_read_wants_write = false;
        conn_on_readable(c);
    }
    if ((what & EV_WRITE) && c->state != CONN_DEAD && c->out != NULL && !c->tls_write_wants_read)
        conn_on_writable(c);
    if ((what & EV_READ) && c->state != CONN_DEAD && c->tls_write_wants_read) {
        c->tls_write_wants_read = false;
        if (c->out != NULL)
            conn_on_writable(c);
    }
    if ((what & EV_READ) && c->state != CONN_DEAD)
        conn_on_readable(c);
    conn_update_write_interest(c);
    /* Decrypted bytes left inside OpenSSL (out of turns) would never make the
     * socket readable: come back in the next loop iteration. Done after the
     * last event_assign, which would cancel it. */
    if (c->state != CONN_DEAD && c->ssl != NULL && tls_io_pending(c->ssl))
        event_active(&c->ev, EV_READ, 1);
    conn_reap(l);
}
