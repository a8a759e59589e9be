/* client.c — allocation and release of a client connection (see client.h). */
#include "workers/client.h"

#include <stddef.h>
#include <stdlib.h>

#include "workers/worker-t.h"

client *client_new(void)
{
    client *cl = calloc(1, sizeof *cl);
    if (cl != NULL)
        cl->phase = CLIENT_HTTP;
    return cl;
}

void client_start_ws(client *cl)
{
    cl->phase = CLIENT_WS;
    ws_reader_init(&cl->u.ws.reader);
    cl->u.ws.msg_rate = (ratelimit_local){0};
    cl->ack_credit = CLIENT_ACK_SLACK;
}

void client_free(conn *c)
{
    client *cl = client_of(c);
    if (cl->phase == CLIENT_HTTP)
        free(cl->u.http.head);
    else
        ws_reader_reset(&cl->u.ws.reader);
    free(cl);
}

/* The loop is embedded in struct worker, so no per-connection back pointer is needed. */
worker *client_worker(const client *cl)
{
    return (worker *)(void *)((char *)cl->io.loop - offsetof(worker, loop));
}
