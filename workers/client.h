/* client.h — a client connection as the protocols see it: the transport
 * (struct conn, first, so a conn_ops callback's conn * is the client) plus
 * the state of the HTTP request and of the WebSocket session. One allocation
 * per connection, made when it is accepted (http_serve_accept) and freed by
 * the transport through conn_ops.on_free (client_free). */
#ifndef WSN_CLIENT_H
#define WSN_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/ratelimit.h"
#include "workers/conn.h"
#include "workers/ws_frame.h"

struct worker;
struct login_job;

typedef enum {
    CLIENT_HTTP = 0,   /* reading the request head */
    CLIENT_WS,         /* upgraded and registered in the directory */
} client_phase;

/* Acks a session may send beyond the notifications written to it: a client
 * may ack what an older connection showed it. */
#define CLIENT_ACK_SLACK 16u

/* The HTTP and WebSocket states never live at once, so they share memory:
 * an idle connection stays within one small allocation (280 bytes on
 * x86-64: the history adds only a flag and the ack budget, in padding). */
typedef struct client {
    conn io;
    int64_t user_id;
    uint32_t generation;        /* the directory's (dir_holder.generation) */
    uint8_t phase;
    bool in_handover;           /* its history hand-over is in the worker's table (handover.h) */
    uint16_t ctl_count;         /* ping/pong frames in the current second (ws_session.c) */
    uint32_t ctl_window;        /* loop->now when that second began */
    uint32_t ack_credit;        /* acks it may still send: notifications written + slack */
    union {
        struct {
            char *head;                 /* partial request head (or the login body), NULL when none */
            uint32_t head_len;
            uint32_t body_need;         /* the login body's Content-Length */
            struct login_job *job;      /* the password check it waits for (http_login.c) */
        } http;                         /* phase CLIENT_HTTP */
        struct {
            ws_reader reader;
            ratelimit_local msg_rate;   /* client data messages, for --max-messages-per-second */
        } ws;                           /* phase CLIENT_WS */
    } u;
} client;

static inline client *client_of(conn *c) { return (client *)c; }

/* A zeroed client in the HTTP phase, not yet attached to a socket (conn_init).
 * NULL: out of memory. */
client *client_new(void);

/* Enter the WebSocket phase: the HTTP state must be released already. */
void client_start_ws(client *cl);

/* conn_ops.on_free of every protocol: the request head or the frame reader, the struct. */
void client_free(conn *c);

/* The worker whose loop c runs in. */
struct worker *client_worker(const client *cl);

#endif
