/* tls_io.h — TLS on a client connection's socket: the server session, and
 * non-blocking read/write/shutdown wrappers that tell the transport which
 * socket event OpenSSL is waiting for. */
#ifndef WSN_TLS_IO_H
#define WSN_TLS_IO_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#define TLS_RECORD_MAX 16384            /* plaintext bytes in one TLS record */

typedef enum {
    TLS_IO_OK = 0,       /* *done bytes moved (> 0) */
    TLS_IO_WANT_READ,    /* call again once the socket is readable */
    TLS_IO_WANT_WRITE,   /* call again once the socket is writable */
    TLS_IO_CLOSED,       /* the peer closed (close_notify or TCP end of stream) */
    TLS_IO_FAILED,       /* fatal: protocol error, bad handshake, socket error */
} tls_io_result;

/* The server end of a new connection on the non-blocking socket fd. NULL on error. */
SSL *tls_io_new(SSL_CTX *ctx, int fd);

/* On TLS_IO_FAILED, *why says what went wrong (OpenSSL's reason or errno's
 * text), for a log line; it stays valid until the next call. */
tls_io_result tls_io_read(SSL *ssl, void *buf, size_t len, size_t *done, const char **why);
/* buf may move between a WANT_* result and the retry, but must start with the
 * same bytes and not be shorter. */
tls_io_result tls_io_write(SSL *ssl, const void *buf, size_t len, size_t *done, const char **why);

/* Send close_notify, best effort, when the handshake is complete. */
void tls_io_shutdown(SSL *ssl);

bool tls_io_handshake_done(const SSL *ssl);
bool tls_io_pending(const SSL *ssl);

#endif
