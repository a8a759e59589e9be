/* http_serve.c — answer a client's HTTP request: the /ws upgrade (handshake
 * checks, JWT, per-user connect rate limit, directory claim, eviction of an
 * older connection), /health, /metrics, and JSON errors for everything
 * else. Each refusal is logged with its reason. */
#include <arpa/inet.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "src/log.h"
#include "workers/auth.h"
#include "workers/conn.h"
#include "workers/http_response.h"
#include "workers/metrics.h"
#include "workers/ws_handshake.h"

#define HTTP_RESPONSE_MAX 1024

static bool path_is(const http_request *req, const char *path)
{
    size_t n = strlen(path);
    return req->path_len == n && memcmp(req->path, path, n) == 0;
}

static bool method_is(const http_request *req, const char *method)
{
    size_t n = strlen(method);
    return req->method_len == n && memcmp(req->method, method, n) == 0;
}

static bool header_equals(const http_request *req, const char *name, const char *value)
{
    const http_header *h = http_request_header(req, name);
    size_t n = strlen(value);
    return h != NULL && h->value_len == n && memcmp(h->value, value, n) == 0;
}

/* "1.2.3.4:5678" of the client, for log lines. */
static void peer_name(const conn *c, char *out, size_t out_size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername((int)event_get_fd(&c->ev), (struct sockaddr *)&ss, &len) == 0) {
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

static void reply_error(conn *c, int status, const char *message, const char *extra_headers)
{
    char resp[HTTP_RESPONSE_MAX];
    char peer[INET6_ADDRSTRLEN + 8];
    peer_name(c, peer, sizeof peer);
    log_info("HTTP %d to %s: %s", status, peer, message);
    size_t n = http_response_error(resp, sizeof resp, status, message, extra_headers);
    conn_close_http(c, resp, n);
}

static void serve_health(conn *c)
{
    worker *w = c->w;
    char body[256];
    char resp[HTTP_RESPONSE_MAX];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"healthy\",\"service\":\"wsnotifyd\",\"ws_connections\":%lld,"
                     "\"workers\":%d}",
                     (long long)region_total_connections(&w->shm), region_ready_workers(&w->shm));
    if (n < 0 || (size_t)n >= sizeof body) {
        reply_error(c, 500, "internal error", "");
        return;
    }
    size_t len = http_response_format(resp, sizeof resp, 200, "application/json", "", body,
                                      (size_t)n);
    conn_close_http(c, resp, len);
}

/* One buffer: the exposition is rendered after room for the head, then the head
 * is put right before it, so the response goes out in one contiguous write. */
static void serve_metrics(conn *c)
{
    enum { HEAD_ROOM = 256 };
    char *buf = malloc(HEAD_ROOM + METRICS_MAX_TEXT);
    if (buf == NULL) {
        log_warn("out of memory rendering /metrics");
        reply_error(c, 500, "internal error", "");
        return;
    }
    char *body = buf + HEAD_ROOM;
    size_t body_len = metrics_render(&c->w->shm, body, METRICS_MAX_TEXT);
    char head[HEAD_ROOM];
    size_t head_len = body_len == 0 ? 0
                                    : http_response_head(head, sizeof head, 200,
                                                         METRICS_CONTENT_TYPE, "", body_len);
    if (head_len == 0) {
        free(buf);
        log_error("cannot render /metrics within %u bytes", METRICS_MAX_TEXT);
        reply_error(c, 500, "internal error", "");
        return;
    }
    memcpy(body - head_len, head, head_len);
    conn_close_http(c, body - head_len, head_len + body_len);
    free(buf);
}

/* The token from ?token= (URL-decoded) or "Authorization: Bearer". Returns its
 * length, 0 when absent, -1 when present but unusable. */
static long find_token(const http_request *req, char *out, size_t out_size)
{
    if (req->query != NULL) {
        long n = http_query_param(req->query, req->query_len, "token", out, out_size);
        if (n >= 0)
            return n;
        if (n == -2)
            return -1;
    }
    const http_header *h = http_request_header(req, "Authorization");
    if (h == NULL)
        return 0;
    static const char bearer[] = "Bearer ";
    size_t blen = sizeof bearer - 1;
    if (h->value_len <= blen || strncasecmp(h->value, bearer, blen) != 0)
        return -1;
    size_t n = h->value_len - blen;
    if (n >= out_size)
        return -1;
    memcpy(out, h->value + blen, n);
    out[n] = '\0';
    return (long)n;
}

/* The checks of RFC 6455 4.2.1; on failure the answer is sent and false returned. */
static bool upgrade_request_valid(conn *c, const http_request *req, const http_header **key)
{
    const http_header *upgrade = http_request_header(req, "Upgrade");
    if (upgrade == NULL || !http_token_list_has(upgrade->value, upgrade->value_len, "websocket")) {
        reply_error(c, 426, "WebSocket upgrade required", "Upgrade: websocket\r\n");
        return false;
    }
    const http_header *connection = http_request_header(req, "Connection");
    if (connection == NULL ||
        !http_token_list_has(connection->value, connection->value_len, "upgrade")) {
        reply_error(c, 400, "Connection: Upgrade header required", "");
        return false;
    }
    if (req->version_minor < 1) {
        reply_error(c, 400, "WebSocket needs HTTP/1.1", "");
        return false;
    }
    if (!header_equals(req, "Sec-WebSocket-Version", "13")) {
        reply_error(c, 426, "unsupported Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\n");
        return false;
    }
    *key = http_request_header(req, "Sec-WebSocket-Key");
    if (*key == NULL || !ws_key_valid((*key)->value, (*key)->value_len)) {
        reply_error(c, 400, "missing or invalid Sec-WebSocket-Key", "");
        return false;
    }
    return true;
}

/* --max-connects-per-minute, counted in the shared region so it holds across
 * workers. Only callers with a valid token get here, so nobody can use up
 * another user's attempts; every attempt counts, refused ones too. On refusal
 * the 429 is sent and false returned. */
static bool connect_rate_ok(conn *c, int64_t user)
{
    worker *w = c->w;
    uint32_t limit = w->cfg->max_connects_per_minute;
    ratelimit_verdict v = ratelimit_hit(w->shm.rl, user, limit, ratelimit_clock_ms());
    if (v.allowed)
        return true;
    unsigned retry_s = (v.retry_after_ms + 999u) / 1000u;
    if (retry_s == 0)
        retry_s = 1;
    log_info("rate limit: UserID=%lld made %u connection attempts within a minute (limit %u); "
             "refused, retry after %u s",
             (long long)user, v.attempts, limit, retry_s);
    char retry_header[48];
    snprintf(retry_header, sizeof retry_header, "Retry-After: %u\r\n", retry_s);
    reply_error(c, 429, "too many connection attempts", retry_header);
    return false;
}

/* Register c as the user's connection; evict the previous holder wherever it is. */
static bool claim_user(conn *c, int64_t user, uint64_t *generation)
{
    worker *w = c->w;
    dir_holder me = {
        .slot = w->h.slot,
        .epoch = w->epoch,
        .generation = directory_next_generation(w->shm.dir),
    };
    dir_holder prev;
    if (directory_claim(w->shm.dir, user, &me, &prev) == DIR_FULL) {
        log_warn("directory full (%u users): refusing UserID=%lld",
                 directory_capacity(w->shm.dir), (long long)user);
        reply_error(c, 503, "server at connection capacity", "Retry-After: 5\r\n");
        return false;
    }
    *generation = me.generation;
    if (prev.slot == w->h.slot) {
        ws_session_evict(w, user, prev.generation); /* it checks the generation */
    } else if (prev.slot >= 0) {
        worker_send_evict(w, prev.slot, user, prev.generation);
    }
    return true;
}

static void serve_upgrade(conn *c, const http_request *req, uint8_t *rest, size_t rest_len)
{
    const http_header *key = NULL;
    if (!upgrade_request_valid(c, req, &key))
        return;
    char token[AUTH_MAX_TOKEN + 1];
    long tlen = find_token(req, token, sizeof token);
    auth_claims claims;
    auth_result ar = tlen == 0   ? AUTH_MISSING
                     : tlen < 0  ? AUTH_MALFORMED
                                 : auth_verify_token(&c->w->secrets, token, (size_t)tlen,
                                                     time(NULL), &claims);
    if (ar != AUTH_OK) {
        metrics_count_auth_failure(c->w->stats, (int)ar);
        reply_error(c, 401, auth_result_reason(ar), "");
        return;
    }
    if (!connect_rate_ok(c, claims.user_id))
        return;
    char accept[WS_ACCEPT_LEN + 1];
    char resp[HTTP_RESPONSE_MAX];
    size_t resp_len = 0;
    if (ws_accept_value(key->value, key->value_len, accept) == 0)
        resp_len = http_response_upgrade(resp, sizeof resp, accept);
    if (resp_len == 0) {
        reply_error(c, 500, "internal error", "");
        return;
    }
    uint64_t generation = 0;
    if (!claim_user(c, claims.user_id, &generation))
        return;
    ws_session_open(c, claims.user_id, generation, claims.email, resp, resp_len);
    if (rest_len > 0 && c->state == CONN_WS)
        ws_session_on_bytes(c, rest, rest_len);
}

/* Every path served here is GET only: any other method gets 405 (true). */
static bool refused_unless_get(conn *c, const http_request *req)
{
    if (method_is(req, "GET"))
        return false;
    reply_error(c, 405, "method not allowed", "Allow: GET\r\n");
    return true;
}

void http_serve(conn *c, const http_request *req, uint8_t *rest, size_t rest_len)
{
    if (path_is(req, "/ws")) {
        if (!refused_unless_get(c, req))
            serve_upgrade(c, req, rest, rest_len);
        return;
    }
    if (path_is(req, "/health")) {
        if (!refused_unless_get(c, req))
            serve_health(c);
        return;
    }
    if (path_is(req, "/metrics")) {
        if (!refused_unless_get(c, req))
            serve_metrics(c);
        return;
    }
    reply_error(c, 404, "not found", "");
}
