/* http_serve.c — the HTTP stage of a client connection: accepting it,
 * reading the request head (bounded), and answering it: the /ws upgrade
 * (handshake checks, the resume position, JWT, per-user connect rate limit,
 * directory claim, eviction of an older connection, then the WebSocket
 * session), /health, /metrics, and JSON errors for everything else. Each
 * refusal is logged with its reason. After an answer the connection is
 * closed. */
#include "workers/http_serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "shm/counters.h"
#include "src/common/auth.h"
#include "src/common/log.h"
#include "workers/cluster_link.h"
#include "workers/http_answer.h"
#include "workers/http_demo.h"
#include "workers/http_login.h"
#include "workers/http_request.h"
#include "workers/http_response.h"
#include "workers/metrics.h"
#include "workers/worker-t.h"
#include "workers/ws_handshake.h"
#include "workers/ws_session.h"


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

/* Cluster mode: the master's connections and this worker's link are up. */
static bool cluster_ready(const worker *w)
{
    return cluster_link_up(w) &&
           atomic_load_explicit(&w->shm.hdr->redis_up, memory_order_relaxed) != 0;
}

static void serve_health(client *cl)
{
    worker *w = client_worker(cl);
    char body[512];
    char resp[HTTP_ANSWER_MAX];
    int n;
    if (cluster_link_enabled(w)) {
        /* Degraded (still 200): this node cannot reach Redis (README "Cluster"). */
        bool up = cluster_ready(w);
        n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"service\":\"wsnotifyd\",\"ws_connections\":%lld,"
                     "\"workers\":%d,\"node\":\"%s\",\"redis\":\"%s\"}",
                     up ? "healthy" : "degraded", (long long)region_total_connections(&w->shm),
                     region_ready_workers(&w->shm), w->cfg->node_id, up ? "up" : "down");
    } else {
        n = snprintf(body, sizeof body,
                     "{\"status\":\"healthy\",\"service\":\"wsnotifyd\",\"ws_connections\":%lld,"
                     "\"workers\":%d}",
                     (long long)region_total_connections(&w->shm), region_ready_workers(&w->shm));
    }
    if (n < 0 || (size_t)n >= sizeof body) {
        http_answer_error(cl, 500, "internal error", "");
        return;
    }
    size_t len = http_response_format(resp, sizeof resp, 200, "application/json", "", body,
                                      (size_t)n);
    http_answer(cl, resp, len);
}

/* One buffer: the exposition is rendered after room for the head, then the head
 * is put right before it, so the response goes out in one contiguous write. */
static void serve_metrics(client *cl)
{
    enum { HEAD_ROOM = 256 };
    char *buf = malloc(HEAD_ROOM + METRICS_MAX_TEXT);
    if (buf == NULL) {
        log_warn("out of memory rendering /metrics");
        http_answer_error(cl, 500, "internal error", "");
        return;
    }
    char *body = buf + HEAD_ROOM;
    const worker *w = client_worker(cl);
    size_t body_len = metrics_render(&w->shm, w->cfg->redis_url != NULL ? w->cfg->node_id : NULL,
                                     body, METRICS_MAX_TEXT);
    char head[HEAD_ROOM];
    size_t head_len = body_len == 0 ? 0
                                    : http_response_head(head, sizeof head, 200,
                                                         METRICS_CONTENT_TYPE, "", body_len);
    if (head_len == 0) {
        free(buf);
        log_error("cannot render /metrics within %u bytes", METRICS_MAX_TEXT);
        http_answer_error(cl, 500, "internal error", "");
        return;
    }
    memcpy(body - head_len, head, head_len);
    http_answer(cl, body - head_len, head_len + body_len);
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
static bool upgrade_request_valid(client *c, const http_request *req, const http_header **key)
{
    const http_header *upgrade = http_request_header(req, "Upgrade");
    if (upgrade == NULL || !http_token_list_has(upgrade->value, upgrade->value_len, "websocket")) {
        http_answer_error(c, 426, "WebSocket upgrade required",
                    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        return false;
    }
    const http_header *connection = http_request_header(req, "Connection");
    if (connection == NULL ||
        !http_token_list_has(connection->value, connection->value_len, "upgrade")) {
        http_answer_error(c, 400, "Connection: Upgrade header required", "");
        return false;
    }
    if (req->version_minor < 1) {
        http_answer_error(c, 400, "WebSocket needs HTTP/1.1", "");
        return false;
    }
    if (!header_equals(req, "Sec-WebSocket-Version", "13")) {
        http_answer_error(c, 426, "unsupported Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\n");
        return false;
    }
    *key = http_request_header(req, "Sec-WebSocket-Key");
    if (*key == NULL || !ws_key_valid((*key)->value, (*key)->value_len)) {
        http_answer_error(c, 400, "missing or invalid Sec-WebSocket-Key", "");
        return false;
    }
    return true;
}

/* --max-connects-per-minute, counted in the shared region so it holds across
 * workers. Only callers with a valid token get here, so nobody can use up
 * another user's attempts; every attempt counts, refused ones too. On refusal
 * the 429 is sent and false returned. */
static bool connect_rate_ok(client *c, int64_t user)
{
    worker *w = client_worker(c);
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
    http_answer_error(c, 429, "too many connection attempts", retry_header);
    return false;
}

/* Register c as the user's connection; evict the previous holder wherever it is. */
static bool claim_user(client *c, int64_t user, uint32_t *generation)
{
    worker *w = client_worker(c);
    if (cluster_link_enabled(w) && !cluster_ready(w)) {
        log_info("refusing UserID=%lld with 503: Redis is out of reach (cluster mode)",
                 (long long)user);
        http_answer_error(c, 503, "cluster unavailable", "Retry-After: 1\r\n");
        return false;
    }
    dir_holder me = {
        .slot = w->h.slot,
        .epoch = w->epoch,
        .generation = directory_next_generation(w->shm.dir),
    };
    dir_holder prev;
    switch (directory_claim(w->shm.dir, user, &me, &prev)) {
    case DIR_OK:
        break;
    case DIR_STALE:
        /* The master has declared this worker's incarnation dead: its sessions
         * are invisible to the router. Refuse, and make way for a new one. */
        log_error("this worker's directory epoch %u is stale: refusing UserID=%lld and "
                  "stopping so that the master starts a fresh worker",
                  w->epoch, (long long)user);
        http_answer_error(c, 503, "worker restarting", "Retry-After: 1\r\n");
        w->stop_requested = true; /* the loop's next tick stops it */
        return false;
    case DIR_FULL:
    default:
        log_warn("directory full (%u users): refusing UserID=%lld",
                 directory_capacity(w->shm.dir), (long long)user);
        http_answer_error(c, 503, "server at connection capacity", "Retry-After: 5\r\n");
        return false;
    }
    *generation = me.generation;
    if (prev.slot == w->h.slot) {
        ws_session_evict(w, user, prev.generation); /* it checks the generation */
    } else if (prev.slot >= 0) {
        ws_session_send_evict(w, prev.slot, user, prev.generation);
    }
    return true;
}

static void serve_upgrade(client *c, const http_request *req, uint8_t *rest, size_t rest_len)
{
    worker *w = client_worker(c);
    const http_header *key = NULL;
    if (!upgrade_request_valid(c, req, &key))
        return;
    /* A malformed resume position is a bad request, answered before the
     * token is looked at (like the other malformed upgrades). */
    int64_t last_id = -1;
    if (http_request_last_id(req, &last_id) < 0) {
        http_answer_error(c, 400, "bad_last_id", "");
        return;
    }
    char token[AUTH_MAX_TOKEN + 1];
    long tlen = find_token(req, token, sizeof token);
    auth_claims claims;
    auth_verifier verifier = {
        .secrets = &w->secrets,
        .keys = w->jwt_keys,
        .audience = w->cfg->jwt_audience,
        .issuer = w->cfg->jwt_issuer,
    };
    auth_result ar = tlen == 0   ? AUTH_MISSING
                     : tlen < 0  ? AUTH_MALFORMED
                                 : auth_verify(&verifier, token, (size_t)tlen, time(NULL),
                                               &claims);
    if (ar != AUTH_OK) {
        counters_count_auth_failure(w->stats, (int)ar);
        http_answer_error(c, 401, auth_result_reason(ar), "");
        return;
    }
    if (!connect_rate_ok(c, claims.user_id))
        return;
    char accept[WS_ACCEPT_LEN + 1];
    char resp[HTTP_ANSWER_MAX];
    size_t resp_len = 0;
    if (ws_accept_value(key->value, key->value_len, accept) == 0)
        resp_len = http_response_upgrade(resp, sizeof resp, accept);
    if (resp_len == 0) {
        http_answer_error(c, 500, "internal error", "");
        return;
    }
    uint32_t generation = 0;
    if (!claim_user(c, claims.user_id, &generation))
        return;
    ws_session_open(c, claims.user_id, generation, claims.email, last_id, resp, resp_len);
    if (rest_len > 0 && c->phase == CLIENT_WS && c->io.state == CONN_OPEN)
        ws_session_feed(c, rest, rest_len);
}

/* Every path served here is GET only: any other method gets 405 (true). */
static bool refused_unless_get(client *c, const http_request *req)
{
    if (method_is(req, "GET"))
        return false;
    http_answer_error(c, 405, "method not allowed", "Allow: GET\r\n");
    return true;
}

static void route(client *c, const http_request *req, uint8_t *rest, size_t rest_len)
{
    /* RFC 9112 3.2: an HTTP/1.1 request without exactly one Host is a 400. */
    if (req->version_minor >= 1 && http_request_header_count(req, "Host") != 1) {
        http_answer_error(c, 400, "exactly one Host header required", "");
        return;
    }
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
    worker *w = client_worker(c);
    if (path_is(req, "/api/v1/auth/login") && w->cfg->users_file != NULL) {
        if (method_is(req, "POST"))
            http_login_start(c, req, rest, rest_len);
        else
            http_answer_error(c, 405, "method not allowed", "Allow: POST\r\n");
        return;
    }
    if (w->cfg->demo && http_demo_serve(c, req))
        return;
    http_answer_error(c, 404, "not found", "");
}

static void http_error(client *cl, http_parse_status st)
{
    char resp[256];
    int status = st == HTTP_PARSE_TOO_LARGE ? 431 : st == HTTP_PARSE_BAD_VERSION ? 505 : 400;
    const char *msg = status == 431   ? "request head too large"
                      : status == 505 ? "HTTP version not supported"
                                      : "malformed HTTP request";
    log_info("HTTP %d: %s", status, msg);
    size_t n = http_response_error(resp, sizeof resp, status, msg, "");
    http_answer(cl, resp, n);
}

/* Accumulate the request head until it is complete, then serve it. A head that
 * arrives whole in one read is parsed in the scratch buffer without a copy. */
static void on_http_data(conn *c, uint8_t *data, size_t len)
{
    client *cl = client_of(c);
    http_request req;
    size_t head_len = 0;
    http_parse_status st;
    if (cl->u.http.head == NULL) {
        st = http_request_parse((const char *)data, len, &req, &head_len);
        if (st == HTTP_PARSE_OK) {
            route(cl, &req, data + head_len, len - head_len);
            return;
        }
        if (st != HTTP_PARSE_INCOMPLETE || len > HTTP_MAX_HEAD) {
            http_error(cl, st == HTTP_PARSE_INCOMPLETE ? HTTP_PARSE_TOO_LARGE : st);
            return;
        }
        cl->u.http.head = malloc(HTTP_MAX_HEAD + 1);
        if (cl->u.http.head == NULL) {
            conn_abort(c, "out of memory reading a request");
            return;
        }
        memcpy(cl->u.http.head, data, len);
        cl->u.http.head_len = (uint32_t)len;
        return;
    }
    char *head = cl->u.http.head;
    st = http_head_append(head, &cl->u.http.head_len, data, len, &req, &head_len, NULL);
    if (st == HTTP_PARSE_OK) {
        uint32_t have = cl->u.http.head_len;
        /* Taken out first: an upgrade reuses the HTTP state's memory. */
        cl->u.http.head = NULL;
        cl->u.http.head_len = 0;
        route(cl, &req, (uint8_t *)head + head_len, have - head_len);
        free(head);
        return;
    }
    if (st != HTTP_PARSE_INCOMPLETE)
        http_error(cl, st);
}

/* Nothing is registered before the upgrade. */
static void on_http_close(conn *c, const char *why)
{
    if (why == conn_error_slow_reader) {
        char peer[64];
        conn_peer_name(c, peer, sizeof peer);
        log_warn("slow client %s: over %u bytes unsent, dropping it", peer, CONN_MAX_OUTPUT);
    }
}

static const conn_ops http_ops = {
    .on_data = on_http_data,
    .on_close = on_http_close,
    .on_free = client_free,
};

int http_serve_accept(worker *w, int fd)
{
    client *cl = client_new();
    if (cl == NULL) {
        log_warn("out of memory accepting a connection");
        close(fd);
        return -1;
    }
    if (conn_init(&cl->io, &w->loop, fd, w->tls_ctx, &http_ops) != 0) {
        client_free(&cl->io);
        return -1;
    }
    conn_list_append(&w->handshaking, &cl->io);
    return 0;
}

void http_serve_timeout(client *cl)
{
    char resp[256];
    size_t n = http_response_error(resp, sizeof resp, 408, "handshake timeout", "");
    log_info("HTTP 408: request not complete within %u s", HTTP_SERVE_HANDSHAKE_TIMEOUT);
    http_answer(cl, resp, n);
}
