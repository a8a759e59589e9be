/* http_demo.c — serve the demo page and module (see http_demo.h). Their bytes
 * are scripts/web/'s, embedded at build time (web_assets.c, made by make), so
 * the daemon needs no file at run time. */
#include "workers/http_demo.h"

#include <stdlib.h>
#include <string.h>

#include "src/common/log.h"
#include "workers/http_answer.h"
#include "workers/http_response.h"

extern const unsigned char wsn_demo_page[];
extern const size_t wsn_demo_page_len;
extern const unsigned char wsn_demo_module[];
extern const size_t wsn_demo_module_len;

/* The page's script is inline; it talks only to this origin. */
#define DEMO_HEADERS                                                                      \
    "X-Content-Type-Options: nosniff\r\n"                                              \
    "Referrer-Policy: no-referrer\r\n"
#define DEMO_CSP                                                                          \
    "Content-Security-Policy: default-src 'self'; script-src 'self' 'unsafe-inline'; "    \
    "style-src 'unsafe-inline'; connect-src 'self' ws: wss: http: https:; img-src 'self'; " \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"

static void send_file(client *cl, const char *type, const char *headers,
                      const unsigned char *body, size_t len)
{
    char head[1024];
    size_t hlen = http_response_head(head, sizeof head, 200, type, headers, len);
    char *resp = hlen > 0 ? malloc(hlen + len) : NULL;
    if (resp == NULL) {
        http_answer_error(cl, 500, "internal error", "");
        return;
    }
    memcpy(resp, head, hlen);
    memcpy(resp + hlen, body, len);
    http_answer(cl, resp, hlen + len);
    free(resp);
}

static bool path_is(const http_request *req, const char *path)
{
    size_t n = strlen(path);
    return req->path_len == n && memcmp(req->path, path, n) == 0;
}

bool http_demo_serve(client *cl, const http_request *req)
{
    bool page = path_is(req, "/test_websocket.html");
    if (!page && !path_is(req, "/wsnotify-client.js"))
        return false;
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
        http_answer_error(cl, 405, "method not allowed", "Allow: GET\r\n");
        return true;
    }
    if (page)
        send_file(cl, "text/html; charset=utf-8", DEMO_HEADERS DEMO_CSP, wsn_demo_page,
                  wsn_demo_page_len);
    else
        send_file(cl, "text/javascript; charset=utf-8", DEMO_HEADERS, wsn_demo_module,
                  wsn_demo_module_len);
    return true;
}
