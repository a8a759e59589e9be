/* http_serve.h — the HTTP stage of a client connection: every accepted socket
 * starts here (http_serve_accept) and reads one request head, answered with an
 * HTTP response and a close, or upgraded to a WebSocket session
 * (ws_session.h). */
#ifndef WSN_HTTP_SERVE_H
#define WSN_HTTP_SERVE_H

#include <stddef.h>

#include "workers/client.h"

#define HTTP_SERVE_HANDSHAKE_TIMEOUT 10u  /* seconds to complete TLS and the HTTP upgrade */

struct worker;

/* Take over an accepted, non-blocking socket: a new client in the worker's
 * handshaking list. Returns 0, or -1 (socket closed, logged). */
int http_serve_accept(struct worker *w, int fd);

/* The handshake deadline passed: 408, then close. */
void http_serve_timeout(client *cl);

#endif
