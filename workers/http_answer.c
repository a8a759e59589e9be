/* http_answer.c — the last words of an HTTP exchange (see http_answer.h). */
#include "workers/http_answer.h"

#include "src/common/log.h"
#include "workers/http_response.h"

void http_answer(client *cl, const char *response, size_t len)
{
    conn *c = &cl->io;
    if (cl->phase != CLIENT_HTTP || c->state != CONN_OPEN)
        return;
    if (conn_handshake_pending(c)) {
        conn_abort(c, "TLS handshake not complete"); /* no channel to answer on */
        return;
    }
    if (conn_write(c, response, len) != 0)
        return;
    conn_close_after_output(c);
}

void http_answer_error(client *cl, int status, const char *message, const char *extra_headers)
{
    char resp[HTTP_ANSWER_MAX];
    char peer[64];
    conn_peer_name(&cl->io, peer, sizeof peer);
    log_info("HTTP %d to %s: %s", status, peer, message);
    size_t n = http_response_error(resp, sizeof resp, status, message, extra_headers);
    http_answer(cl, resp, n);
}
