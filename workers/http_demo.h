/* http_demo.h — with --demo, the browser test page and its client module
 * (scripts/web/, built into the daemon): GET /test_websocket.html and
 * GET /wsnotify-client.js. */
#ifndef WSN_HTTP_DEMO_H
#define WSN_HTTP_DEMO_H

#include <stdbool.h>

#include "workers/client.h"
#include "workers/http_request.h"

/* Answer req if it asks for one of the demo files. Returns false (nothing
 * sent) for any other path. */
bool http_demo_serve(client *cl, const http_request *req);

#endif
