/* http_login.h — the login endpoint, POST /api/v1/auth/login (only with
 * --users-file): a JSON body {"email","password"} in, an HS256 token signed
 * with the first secret out (README "Logging in"). */
#ifndef WSN_HTTP_LOGIN_H
#define WSN_HTTP_LOGIN_H

#include <stddef.h>
#include <stdint.h>

#include "workers/client.h"
#include "workers/http_request.h"
#include "workers/login_pool.h"

#define HTTP_LOGIN_PER_MINUTE 5u   /* attempts per email, every worker together */

/* The head of a login request is parsed: read its body (rest: the bytes that
 * followed the head), then check it and answer. */
void http_login_start(client *cl, const http_request *req, const uint8_t *rest, size_t rest_len);

/* login_pool's on_done for the worker's pool (arg: unused). */
void http_login_done(login_job *job, void *arg);

#endif
