/* http_login.c — POST /api/v1/auth/login (see http_login.h): the body (read
 * with a conn_ops table of its own, bounded by Content-Length <=
 * LOGIN_BODY_MAX), the per-email attempt limit in the shared region, the
 * password check on the worker's login threads, and the token.
 *
 * An unknown email is checked against a dummy hash of the same kind as the
 * real ones, so both failures cost the same time and get the same answer. A
 * failure is logged with the email and the peer, never the password. */
#include "workers/http_login.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/hash.h"
#include "shm/ratelimit.h"
#include "src/common/auth.h"
#include "src/common/decimal.h"
#include "src/common/log.h"
#include "workers/http_answer.h"
#include "workers/http_response.h"
#include "workers/login_body.h"
#include "workers/worker-t.h"

/* The login rate limiter's key for an email: its case-folded bytes hashed
 * into a positive 63-bit number. */
static int64_t email_key(const char *email)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const char *p = email; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        h = (h ^ ch) * UINT64_C(0x100000001b3);
    }
    return (int64_t)(mix64(h) >> 1) | 1;
}

static void answer_token(client *cl, const login_job *job)
{
    worker *w = client_worker(cl);
    int64_t exp = (int64_t)time(NULL) + w->cfg->token_ttl;
    char *token = auth_token_create(&w->secrets, job->user_id, job->email, exp);
    if (token == NULL) {
        http_answer_error(cl, 500, "internal error", "");
        return;
    }
    char body[HTTP_ANSWER_MAX + AUTH_MAX_TOKEN];
    int n = snprintf(body, sizeof body,
                     "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%u,"
                     "\"user_id\":%lld}",
                     token, w->cfg->token_ttl, (long long)job->user_id);
    free(token);
    char resp[sizeof body + 256];
    size_t len = n > 0 && (size_t)n < sizeof body
                     ? http_response_format(resp, sizeof resp, 200, "application/json",
                                            "", body, (size_t)n)
                     : 0;
    OPENSSL_cleanse(body, sizeof body);
    if (len == 0) {
        http_answer_error(cl, 500, "internal error", "");
        return;
    }
    char peer[64];
    conn_peer_name(&cl->io, peer, sizeof peer);
    log_info("login: UserID=%lld (%s) from %s", (long long)job->user_id, job->email, peer);
    http_answer(cl, resp, len);
    OPENSSL_cleanse(resp, len);
}

/* The loop thread: a password check finished. */
void http_login_done(login_job *job, void *arg)
{
    (void)arg;
    client *cl = job->owner;
    if (cl != NULL) {
        cl->u.http.job = NULL;
        if (job->ok) {
            answer_token(cl, job);
        } else {
            char peer[64];
            conn_peer_name(&cl->io, peer, sizeof peer);
            log_info("login failed: %s from %s", job->email, peer);
            http_answer_error(cl, 401, "invalid_credentials", "");
        }
    }
    OPENSSL_cleanse(job, sizeof *job);
    free(job);
}

/* While the check runs nothing more is read from the client; a client that
 * goes away leaves its job to finish unanswered. */
static void on_wait_data(conn *c, uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

static void on_wait_close(conn *c, const char *why)
{
    (void)why;
    client *cl = client_of(c);
    if (cl->u.http.job != NULL) {
        cl->u.http.job->owner = NULL;
        cl->u.http.job = NULL;
    }
}

/* The request is whole: a client that half-closes now still gets its answer. */
static void on_wait_eof(conn *c) { (void)c; }

static const conn_ops wait_ops = {
    .on_data = on_wait_data,
    .on_close = on_wait_close,
    .on_eof = on_wait_eof,
    .on_free = client_free,
};

/* More than HTTP_LOGIN_PER_MINUTE attempts for one email → 429. Every
 * attempt counts, refused ones too, as for connections. */
static bool login_rate_ok(client *cl, const char *email)
{
    worker *w = client_worker(cl);
    ratelimit_verdict v = ratelimit_hit(w->shm.login_rl, email_key(email),
                                        HTTP_LOGIN_PER_MINUTE, ratelimit_clock_ms());
    if (v.allowed)
        return true;
    unsigned retry_s = (v.retry_after_ms + 999u) / 1000u;
    if (retry_s == 0)
        retry_s = 1;
    log_info("login rate limit: %u attempts for %s within a minute (limit %u); refused, retry "
             "after %u s",
             v.attempts, email, HTTP_LOGIN_PER_MINUTE, retry_s);
    char retry_header[48];
    snprintf(retry_header, sizeof retry_header, "Retry-After: %u\r\n", retry_s);
    http_answer_error(cl, 429, "too many login attempts", retry_header);
    return false;
}

static void check_body(client *cl, const uint8_t *data, size_t len)
{
    worker *w = client_worker(cl);
    login_body body;
    const char *why = NULL;
    if (login_body_parse(data, len, &body, &why) != 0) {
        char peer[64];
        conn_peer_name(&cl->io, peer, sizeof peer);
        log_info("login: malformed body from %s: %s", peer, why);
        http_answer_error(cl, 400, "invalid_request", "");
        return;
    }
    if (!login_rate_ok(cl, body.email)) {
        OPENSSL_cleanse(&body, sizeof body);
        return;
    }
    login_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        OPENSSL_cleanse(&body, sizeof body);
        http_answer_error(cl, 503, "login busy", "Retry-After: 1\r\n");
        return;
    }
    const users_entry *u = users_file_find(&w->users_db, body.email);
    job->owner = cl;
    job->user_id = u != NULL ? u->user_id : 0;
    snprintf(job->email, sizeof job->email, "%s", u != NULL ? u->email : body.email);
    snprintf(job->password, sizeof job->password, "%s", body.password);
    snprintf(job->hash, sizeof job->hash, "%s", u != NULL ? u->hash : w->login_dummy_hash);
    OPENSSL_cleanse(&body, sizeof body);
    if (login_pool_submit(&w->logins, job) != 0) {
        OPENSSL_cleanse(job, sizeof *job);
        free(job);
        log_warn("login: %u checks already queued on this worker: 503", LOGIN_POOL_QUEUE);
        http_answer_error(cl, 503, "login busy", "Retry-After: 1\r\n");
        return;
    }
    cl->u.http.job = job;
    conn_set_ops(&cl->io, &wait_ops);
}

/* The body arrives after the head: gather Content-Length bytes. */
static void on_body_data(conn *c, uint8_t *data, size_t len)
{
    client *cl = client_of(c);
    uint32_t need = cl->u.http.body_need;
    uint32_t have = cl->u.http.head_len;
    size_t take = len < need - have ? len : need - have;
    memcpy(cl->u.http.head + have, data, take);
    cl->u.http.head_len = have + (uint32_t)take;
    if (cl->u.http.head_len < need)
        return;
    char *buf = cl->u.http.head;
    cl->u.http.head = NULL;
    cl->u.http.head_len = 0;
    check_body(cl, (const uint8_t *)buf, need);
    OPENSSL_cleanse(buf, need);
    free(buf);
}

static void on_body_close(conn *c, const char *why)
{
    (void)c;
    (void)why; /* the partial body is freed with the client */
}

static const conn_ops body_ops = {
    .on_data = on_body_data,
    .on_close = on_body_close,
    .on_free = client_free,
};

void http_login_start(client *cl, const http_request *req, const uint8_t *rest, size_t rest_len)
{
    if (http_request_header(req, "Transfer-Encoding") != NULL) {
        http_answer_error(cl, 411, "Content-Length required", "");
        return;
    }
    const http_header *cl_header = http_request_header(req, "Content-Length");
    uint64_t need = 0;
    if (cl_header == NULL) {
        http_answer_error(cl, 411, "Content-Length required", "");
        return;
    }
    if (http_request_header_count(req, "Content-Length") != 1 ||
        !decimal_parse_n(cl_header->value, cl_header->value_len, &need)) {
        http_answer_error(cl, 400, "invalid_request", "");
        return;
    }
    if (need > LOGIN_BODY_MAX) {
        http_answer_error(cl, 413, "body too large", "");
        return;
    }
    if (rest_len >= need) {
        check_body(cl, rest, (size_t)need);
        return;
    }
    /* The rest comes with the next reads (the handshake deadline still runs). */
    char *buf = malloc(need > 0 ? (size_t)need : 1);
    if (buf == NULL) {
        conn_abort(&cl->io, "out of memory reading a login");
        return;
    }
    memcpy(buf, rest, rest_len);
    free(cl->u.http.head);
    cl->u.http.head = buf;
    cl->u.http.head_len = (uint32_t)rest_len;
    cl->u.http.body_need = (uint32_t)need;
    conn_set_ops(&cl->io, &body_ops);
}
