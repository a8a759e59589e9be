/* conn.h — the transport of one client connection inside a worker: its socket
 * (plain or TLS), bounded output buffering, the close (drain, half-close,
 * free) and the ordered lists a worker keeps connections in.
 *
 * It knows nothing of HTTP or WebSocket. The protocol layer embeds struct conn
 * first in its own connection struct and hands the transport a table of
 * callbacks (conn_ops), which it swaps as the connection moves from one
 * protocol to the next (HTTP, then WebSocket after the 101). The transport
 * calls up only through that table.
 *
 * Memory: an idle connection holds only its struct (no buffers); the output
 * buffer exists only while bytes are pending. A TLS connection adds OpenSSL's
 * SSL object (session state, ~15 KiB; its record buffers are released while
 * idle). */
#ifndef WSN_CONN_H
#define WSN_CONN_H

#include <event2/event_struct.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define CONN_MAX_OUTPUT (1024u * 1024u)  /* unsent bytes before a slow reader is dropped */
#define CONN_CLOSE_TIMEOUT 3u            /* seconds to finish a close */

struct ssl_st;
struct ssl_ctx_st;
typedef struct conn conn;

typedef struct {
    conn *head;
    conn *tail;
    size_t count;
} conn_list;

/* What the protocol layer gives the transport. */
typedef struct {
    /* Bytes from the peer. data is the loop's scratch buffer: valid during the
     * call only, and the callee may modify it (WebSocket unmasks in place). */
    void (*on_data)(conn *c, uint8_t *data, size_t len);
    /* The connection stops being usable by the protocol (conn_close_after_output
     * or conn_abort): leave whatever it registered. Called exactly once. why is
     * NULL for a close the protocol asked for, else the reason of the abort:
     * one of the conn_error_* strings (compare by pointer) or another text. */
    void (*on_close)(conn *c, const char *why);
    /* Optional: the peer half-closed (EOF) while open. Set, the connection
     * stops reading and stays open for the answer (a client that sends its
     * request and shuts down its side, like `nc -N`); NULL: EOF aborts. */
    void (*on_eof)(conn *c);
    /* The transport has released its part: free the struct around c. */
    void (*on_free)(conn *c);
} conn_ops;

/* What every connection of one event loop shares; owned by the worker. */
typedef struct {
    struct event_base *base;
    uint8_t *scratch;          /* socket reads, shared by all connections */
    size_t scratch_size;
    uint32_t now;              /* monotonic milliseconds (wrapping), refreshed per event */
    conn_list closing;         /* ordered by close start: oldest first */
    conn_list dead;            /* aborted during this event, freed by conn_reap */
    size_t out_total;          /* unsent bytes of every connection of the loop */
    size_t out_limit;          /* over it, the connection adding output is dropped (0: none) */
    uint64_t out_copied;       /* bytes ever copied into or within output buffers */
} conn_loop;

typedef enum {
    CONN_OPEN = 0,     /* the protocol is talking */
    CONN_CLOSING,      /* last bytes going out; reading and discarding until EOF */
    CONN_DEAD,         /* socket closed; freed by conn_reap at the end of the event */
} conn_state;

struct conn {
    struct event ev;
    conn *prev;
    conn *next;
    conn_list *list;
    conn_loop *loop;
    const conn_ops *ops;
    uint8_t *out;               /* unsent output: a ring of out_cap bytes, NULL when none */
    uint32_t out_head;          /* where the oldest unsent byte is */
    uint32_t out_len;           /* unsent bytes */
    uint32_t out_cap;
    uint32_t since;             /* loop->now of the protocol's choosing, or close start */
    struct ssl_st *ssl;         /* TLS session; NULL on a plain connection */
    uint8_t state;
    bool write_armed;
    bool peer_eof;              /* the peer's EOF was read: no more reading */
    bool tls_read_wants_write;  /* a TLS read waits for a writable socket */
    bool tls_write_wants_read;  /* a TLS write waits for a readable socket */
};

/* Reasons of an abort that a protocol may want to tell apart (by pointer). */
extern const char conn_error_eof[];          /* the peer closed its end */
extern const char conn_error_slow_reader[];  /* over CONN_MAX_OUTPUT unsent */
extern const char conn_error_loop_output[];  /* the loop's out_limit reached */

/* Refresh l->now from CLOCK_MONOTONIC_COARSE. */
void conn_loop_clock(conn_loop *l);

/* Take over an accepted, non-blocking socket (with TLS when tls is not NULL).
 * Returns 0, or -1 with the socket closed and c untouched by the loop (the
 * caller frees c). */
int conn_init(conn *c, conn_loop *l, int fd, struct ssl_ctx_st *tls, const conn_ops *ops);

/* The next protocol's callbacks, from the next event on. */
void conn_set_ops(conn *c, const conn_ops *ops);

/* Queue bytes for the peer (written at once as far as the socket takes them;
 * the rest is buffered, amortized O(1) per byte however it is appended and
 * drained). Returns 0, or -1 when the connection was aborted (slow reader over
 * CONN_MAX_OUTPUT, the loop over out_limit, write error) or is not open for
 * writing. */
int conn_write(conn *c, const void *data, size_t len);
int conn_writev(conn *c, const struct iovec *iov, int iovcnt);

/* Stop talking: on_close, then send what is queued, half-close, and wait for
 * the peer's EOF (at most CONN_CLOSE_TIMEOUT, enforced by conn_sweep_closing). */
void conn_close_after_output(conn *c);

/* Drop without a goodbye (I/O error, timeout). The socket is closed now; the
 * struct is freed by conn_reap, so callers up the stack stay safe. */
void conn_abort(conn *c, const char *why);

/* Free every connection aborted during the current event. */
void conn_reap(conn_loop *l);

/* Abort the closing connections older than CONN_CLOSE_TIMEOUT. */
void conn_sweep_closing(conn_loop *l);

/* A TLS handshake is still under way: nothing can be written to the peer yet. */
bool conn_handshake_pending(const conn *c);

int conn_fd(const conn *c);

/* "1.2.3.4:5678" of the peer, for log lines. */
void conn_peer_name(const conn *c, char *out, size_t out_size);

/* The ordered lists. */
void conn_list_append(conn_list *l, conn *c);
void conn_list_remove(conn_list *l, conn *c);
void conn_list_move(conn *c, conn_list *to);

#endif
