/* conn.h — one client connection inside a worker: its socket I/O, bounded
 * output buffering, state (HTTP handshake → WebSocket → closing), and the
 * WebSocket session (messages, pings, close handshake).
 *
 * Memory: an idle open connection holds only struct conn (no buffers); the
 * head, output and frame buffers exist only while bytes are pending. A TLS
 * connection adds OpenSSL's SSL object (session state, ~15 KiB; its record
 * buffers are released while idle). */
#ifndef WSN_CONN_H
#define WSN_CONN_H

#include <event2/event_struct.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "workers/http_request.h"
#include "workers/worker.h"
#include "workers/ws_frame.h"

#define CONN_MAX_OUTPUT (1024u * 1024u)  /* unsent bytes before a slow reader is dropped */
#define CONN_HANDSHAKE_TIMEOUT 10u       /* seconds to complete TLS and the HTTP upgrade */
#define CONN_CLOSE_TIMEOUT 3u            /* seconds to finish a close */

typedef enum {
    CONN_HTTP = 0,     /* reading the request head */
    CONN_WS,           /* upgraded, registered in the directory */
    CONN_CLOSING,      /* last bytes going out; reading and discarding until EOF */
    CONN_DEAD,         /* to be freed by worker_reap at the end of the current event */
} conn_state;

struct conn {
    struct event ev;
    conn *prev;
    conn *next;
    worker *w;
    conn_list *list;
    int64_t user_id;
    uint64_t generation;
    char *head;                 /* partial request head, NULL when none */
    uint8_t *out;               /* unsent output, NULL when none */
    uint32_t head_len;
    uint32_t out_len;
    uint32_t out_off;
    uint32_t since;             /* w->now at arrival, last byte received, or close start */
    ws_reader reader;
    SSL *ssl;                   /* TLS session; NULL on a plain connection */
    uint8_t state;
    bool write_armed;
    bool tls_read_wants_write;  /* a TLS read waits for a writable socket */
    bool tls_write_wants_read;  /* a TLS write waits for a readable socket */
    ratelimit_local msg_rate;   /* client data messages, for --max-messages-per-second */
};

/* Take over an accepted, non-blocking socket. Returns 0, or -1 (socket closed). */
int conn_accept(worker *w, int fd);

/* Queue bytes for the client (tries to write at once). Returns 0, or -1 when the
 * connection was aborted (slow reader over CONN_MAX_OUTPUT or write error). */
int conn_write(conn *c, const void *data, size_t len);

/* One unmasked server frame. Returns as conn_write. */
int conn_send_frame(conn *c, uint8_t opcode, const void *payload, size_t len);

/* Start the close handshake: leave the directory, send a close frame, then finish. */
void conn_close_ws(conn *c, uint16_t code, const char *reason);

/* Send a complete HTTP response then close. */
void conn_close_http(conn *c, const char *response, size_t len);

/* Drop without a goodbye (I/O error, timeout of a close). The socket is closed
 * now; the struct is freed by conn_reap, so callers up the stack stay safe. */
void conn_abort(conn *c, const char *why);

/* Free every connection aborted during the current event. */
void conn_reap(worker *w);

/* List helpers (the worker's ordered lists). */
void conn_list_append(conn_list *l, conn *c);
void conn_list_remove(conn_list *l, conn *c);

/* HTTP stage (http_serve.c): answer a complete request head; /ws may upgrade.
 * rest holds bytes that followed the head. */
void http_serve(conn *c, const http_request *req, uint8_t *rest, size_t rest_len);

/* WebSocket stage (ws_session.c). Open: register the upgraded connection, then
 * write the 101 response and the `connected` message. */
void ws_session_open(conn *c, int64_t user_id, uint64_t generation, const char *email,
                     const char *response, size_t response_len);
void ws_session_on_bytes(conn *c, uint8_t *data, size_t len);
void ws_session_deliver(worker *w, int64_t user, uint64_t generation, const uint8_t *json,
                        size_t len, uint64_t accepted_ns);
void ws_session_evict(worker *w, int64_t user, uint64_t generation);
/* Leave the directory, the user map and the counters; state becomes CONN_CLOSING.
 * Called exactly once per session, by conn_close_ws or conn_abort. */
void ws_session_end(conn *c);

#endif
