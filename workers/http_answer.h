/* http_answer.h — answering a client still in its HTTP stage: one complete
 * response, then the close (every HTTP answer of the gateway closes the
 * connection), and the JSON error answers {"error":"..."} with their log
 * line. Used by every HTTP handler (http_serve.c, http_login.c,
 * http_demo.c). */
#ifndef WSN_HTTP_ANSWER_H
#define WSN_HTTP_ANSWER_H

#include <stddef.h>

#include "workers/client.h"

#define HTTP_ANSWER_MAX 1024   /* room for an error answer or a small JSON one */

/* Send a complete HTTP response, then close. Only in the HTTP stage. */
void http_answer(client *cl, const char *response, size_t len);

/* status with {"error":"message"} (message must not need escaping), logged
 * with the peer's address; extra_headers is "" or CRLF-terminated lines. */
void http_answer_error(client *cl, int status, const char *message, const char *extra_headers);

#endif
