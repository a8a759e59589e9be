/* conn.c — a client connection's socket I/O and lifecycle (see conn.h).
 *
 * Reads land in the worker's scratch buffer; only bytes that cannot be handled
 * yet are copied into per-connection memory. Writes go straight to the socket
 * and only the unsent remainder is buffered, up to CONN_MAX_OUTPUT.
 *
 * With TLS (c->ssl set) every byte goes through conn_io_read/conn_io_write,
 * which use OpenSSL instead of recv/send. OpenSSL may need the other
 * direction first (a read that must write, a write that must read): the
 * tls_*_wants_* flags record that, and conn_update_write_interest arms
 * EV_WRITE accordingly on the connection's single event. The TLS handshake
 * runs inside the first reads of the CONN_HTTP stage, under its deadline. */
#include "workers/conn.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "src/log.h"
#include "workers/http_request.h"
#include "workers/http_response.h"
#include "workers/tls.h"

#define CONN_READS_PER_EVENT 4  /* fairness: let other connections run */

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

static void conn_move(conn *c, conn_list *to)
{
    if (c->list != NULL)
        conn_list_remove(c->list, c);
    conn_list_append(to, c);
}

static int conn_fd(const conn *c) { return (int)event_get_fd(&c->ev); }

int conn_accept(worker *w, int fd)
{
    conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        log_warn("out of memory accepting a connection");
        close(fd);
        return -1;
    }
    c->w = w;
    c->state = CONN_HTTP;
    c->since = w->now;
    ws_reader_init(&c->reader);
    if (w->tls_ctx != NULL && (c->ssl = tls_session_new(w->tls_ctx, fd)) == NULL) {
        log_warn("cannot start a TLS session (out of memory?): dropping the connection");
        close(fd);
        free(c);
        return -1;
    }
    if (event_assign(&c->ev, w->base, fd, EV_READ | EV_PERSIST, conn_on_event, c) != 0 ||
        event_add(&c->ev, NULL) != 0) {
        log_error("cannot register a connection with the event loop");
        close(fd);
        SSL_free(c->ssl);
        free(c);
        return -1;
    }
    conn_list_append(&w->handshaking, c);
    return 0;
}

static void conn_arm_write(conn *c, bool want)
{
    if (c->write_armed == want)
        return;
    short events = EV_READ | EV_PERSIST | (want ? EV_WRITE : 0);
    int fd = conn_fd(c);
    if (event_del(&c->ev) != 0 ||
        event_assign(&c->ev, c->w->base, fd, events, conn_on_event, c) != 0 ||
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
    if (!tls_handshake_done(c->ssl))
        log_info("TLS handshake failed: %s", why != NULL ? why : "unknown reason");
    else
        log_debug("TLS %s failed (UserID=%lld): %s", op, (long long)c->user_id,
                  why != NULL ? why : "unknown reason");
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
    switch (tls_read(c->ssl, buf, len, &done, &why)) {
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
    switch (tls_write(c->ssl, buf, len, &done, &why)) {
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
    if (c->state == CONN_WS)
        ws_session_end(c);
    log_debug("connection closed: %s", why);
    if (event_del(&c->ev) != 0)
        log_warn("event_del failed while closing a connection");
    if (close(conn_fd(c)) != 0)
        log_debug("close: %s", strerror(errno));
    c->state = CONN_DEAD;
    conn_move(c, &c->w->dead);
}

void conn_reap(worker *w)
{
    conn *c;
    while ((c = w->dead.head) != NULL) {
        conn_list_remove(&w->dead, c);
        free(c->head);
        free(c->out);
        SSL_free(c->ssl);
        ws_reader_reset(&c->reader);
        free(c);
    }
}

/* Our last bytes are out: close_notify (TLS, best effort), then our FIN, so
 * the client sees everything we sent before any reset. */
static void conn_half_close(conn *c)
{
    if (c->ssl != NULL)
        tls_shutdown(c->ssl);
    if (shutdown(conn_fd(c), SHUT_WR) != 0)
        conn_abort(c, "shutdown failed");
}

/* The output is drained: free the buffer, and finish a close by half-closing. */
static void conn_output_drained(conn *c)
{
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    conn_update_write_interest(c);
    if (c->state == CONN_CLOSING)
        conn_half_close(c);
}

static int conn_buffer(conn *c, const struct iovec *iov, int iovcnt, size_t skip)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t rest = total - skip;
    size_t pending = c->out_len - c->out_off;
    if (pending + rest > CONN_MAX_OUTPUT) {
        log_warn("slow client: over %u bytes unsent, dropping it (UserID=%lld)",
                 CONN_MAX_OUTPUT, (long long)c->user_id);
        conn_abort(c, "slow reader");
        return -1;
    }
    if (c->out_off > 0 && pending > 0)
        memmove(c->out, c->out + c->out_off, pending);
    uint8_t *out = realloc(c->out, pending + rest);
    if (out == NULL) {
        conn_abort(c, "out of memory buffering output");
        return -1;
    }
    c->out = out;
    c->out_off = 0;
    c->out_len = (uint32_t)pending;
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        const uint8_t *base = iov[i].iov_base;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(c->out + c->out_len, base + skip, len - skip);
        c->out_len += (uint32_t)(len - skip);
        skip = 0;
    }
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

static int conn_writev(conn *c, const struct iovec *iov, int iovcnt)
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

int conn_send_frame(conn *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t header[10];
    size_t hlen = ws_frame_header_encode(header, opcode, len);
    struct iovec iov[2] = {
        {.iov_base = header, .iov_len = hlen},
        {.iov_base = (void *)payload, .iov_len = len},
    };
    int rc = conn_writev(c, iov, len ? 2 : 1);
    if (rc == 0)
        atomic_fetch_add_explicit(&c->w->stats->frames_out, 1, memory_order_relaxed);
    return rc;
}

static void conn_begin_closing(conn *c)
{
    c->state = CONN_CLOSING;
    c->since = c->w->now;
    conn_move(c, &c->w->closing);
    if (c->out == NULL)
        conn_half_close(c);
}

void conn_close_ws(conn *c, uint16_t code, const char *reason)
{
    if (c->state != CONN_WS)
        return;
    ws_session_end(c); /* state is CONN_CLOSING from here: the frame may still go out */
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t len = code == WS_CLOSE_NO_STATUS ? 0 : ws_close_payload(payload, code, reason);
    if (conn_send_frame(c, WS_OP_CLOSE, payload, len) != 0)
        return;
    conn_begin_closing(c);
}

void conn_close_http(conn *c, const char *response, size_t len)
{
    if (c->state != CONN_HTTP)
        return;
    if (c->ssl != NULL && !tls_handshake_done(c->ssl)) {
        conn_abort(c, "TLS handshake not complete"); /* no channel to answer on */
        return;
    }
    if (conn_write(c, response, len) != 0)
        return;
    conn_begin_closing(c);
}

static void conn_http_error(conn *c, http_parse_status st)
{
    char resp[256];
    int status = st == HTTP_PARSE_TOO_LARGE ? 431 : st == HTTP_PARSE_BAD_VERSION ? 505 : 400;
    const char *msg = status == 431   ? "request head too large"
                      : status == 505 ? "HTTP version not supported"
                                      : "malformed HTTP request";
    log_info("HTTP %d: %s", status, msg);
    size_t n = http_response_error(resp, sizeof resp, status, msg, "");
    conn_close_http(c, resp, n);
}

/* Accumulate the request head until it is complete, then serve it. A head that
 * arrives whole in one read is parsed in the scratch buffer without a copy. */
static void conn_on_http_bytes(conn *c, uint8_t *data, size_t len)
{
    http_request req;
    size_t head_len = 0;
    http_parse_status st;
    if (c->head == NULL) {
        st = http_request_parse((const char *)data, len, &req, &head_len);
        if (st == HTTP_PARSE_OK) {
            http_serve(c, &req, data + head_len, len - head_len);
            return;
        }
        if (st != HTTP_PARSE_INCOMPLETE || len > HTTP_MAX_HEAD) {
            conn_http_error(c, st == HTTP_PARSE_INCOMPLETE ? HTTP_PARSE_TOO_LARGE : st);
            return;
        }
        c->head = malloc(HTTP_MAX_HEAD + 1);
        if (c->head == NULL) {
            conn_abort(c, "out of memory reading a request");
            return;
        }
        memcpy(c->head, data, len);
        c->head_len = (uint32_t)len;
        return;
    }
    /* Never hold more than the limit plus one byte (which proves "too large"). */
    size_t room = HTTP_MAX_HEAD + 1 - c->head_len;
    size_t take = len < room ? len : room;
    memcpy(c->head + c->head_len, data, take);
    c->head_len += (uint32_t)take;
    st = http_request_parse(c->head, c->head_len, &req, &head_len);
    if (st == HTTP_PARSE_OK) {
        http_serve(c, &req, (uint8_t *)c->head + head_len, c->head_len - head_len);
        if (c->state != CONN_DEAD) { /* a dead one is freed whole by conn_reap */
            free(c->head);
            c->head = NULL;
            c->head_len = 0;
        }
        return;
    }
    if (st != HTTP_PARSE_INCOMPLETE || c->head_len > HTTP_MAX_HEAD)
        conn_http_error(c, st == HTTP_PARSE_INCOMPLETE ? HTTP_PARSE_TOO_LARGE : st);
}

static void conn_on_readable(conn *c)
{
    worker *w = c->w;
    for (int i = 0; i < CONN_READS_PER_EVENT; i++) {
        ssize_t n = conn_io_read(c, w->scratch, w->scratch_size);
        if (n == 0) {
            if (c->state == CONN_WS)
                log_debug("client closed without a close frame (UserID=%lld)",
                          (long long)c->user_id);
            conn_abort(c, "end of stream");
            return;
        }
        if (n == CONN_IO_AGAIN)
            return;
        if (n < 0) {
            conn_abort(c, "read error");
            return;
        }
        switch (c->state) {
        case CONN_HTTP:
            conn_on_http_bytes(c, w->scratch, (size_t)n);
            break;
        case CONN_WS:
            c->since = w->now;
            conn_move(c, &w->open); /* keeps the open list ordered by last activity */
            ws_session_on_bytes(c, w->scratch, (size_t)n);
            break;
        default:
            break; /* closing: discard until the client's EOF */
        }
        /* A TLS read returns one record at most: keep going until it would block. */
        if (c->state == CONN_DEAD || (c->ssl == NULL && (size_t)n < w->scratch_size))
            return;
    }
}

static void conn_on_writable(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = conn_io_write(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n == CONN_IO_AGAIN) {
            conn_update_write_interest(c); /* a TLS write may now wait for a read */
            return;
        }
        if (n < 0) {
            conn_abort(c, "write error");
            return;
        }
        c->out_off += (uint32_t)n;
    }
    conn_output_drained(c);
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    conn *c = arg;
    worker *w = c->w;
    worker_clock(w);
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
    if (c->state != CONN_DEAD && c->ssl != NULL && tls_has_pending(c->ssl))
        event_active(&c->ev, EV_READ, 1);
    conn_reap(w);
}
