/* tls.h — TLS on the HTTP/WebSocket port (OpenSSL): the server context built
 * from the operator's PEM files, and non-blocking read/write/shutdown wrappers
 * that tell the connection which socket event OpenSSL is waiting for.
 *
 * A context is immutable once built: a reload builds a new one for new
 * connections while existing connections keep a reference to theirs. */
#ifndef WSN_TLS_H
#define WSN_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#define TLS_PEM_FILE_MAX (1024 * 1024)  /* bigger is not a certificate or a key */
#define TLS_RECORD_MAX 16384            /* plaintext bytes in one TLS record */

typedef enum {
    TLS_IO_OK = 0,       /* *done bytes moved (> 0) */
    TLS_IO_WANT_READ,    /* call again once the socket is readable */
    TLS_IO_WANT_WRITE,   /* call again once the socket is writable */
    TLS_IO_CLOSED,       /* the peer closed (close_notify or TCP end of stream) */
    TLS_IO_FAILED,       /* fatal: protocol error, bad handshake, socket error */
} tls_io;

/* A server context for TLS 1.2 and 1.3 with the certificate (chain) in cert_file
 * and its private key in key_file, both PEM. Returns NULL with a one-line message
 * in err naming the file at fault (missing, unreadable, not PEM, key not matching
 * the certificate, encrypted key). Free with SSL_CTX_free. */
SSL_CTX *tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t err_size);

/* "subject CN=example.com, serial 1A2B, expires …" of the context's
 * certificate, for log lines. */
void tls_ctx_describe(SSL_CTX *ctx, char *out, size_t out_size);

/* The certificate's notAfter is in the past (clients will refuse it). */
bool tls_ctx_expired(SSL_CTX *ctx);

/* The server end of a new connection on the non-blocking socket fd. NULL on error. */
SSL *tls_session_new(SSL_CTX *ctx, int fd);

/* On TLS_IO_FAILED, *why says what went wrong (OpenSSL's reason or errno's
 * text), for a log line; it stays valid until the next call. */
tls_io tls_read(SSL *ssl, void *buf, size_t len, size_t *done, const char **why);
/* buf may move between a WANT_* result and the retry, but must start with the
 * same bytes and not be shorter. */
tls_io tls_write(SSL *ssl, const void *buf, size_t len, size_t *done, const char **why);

/* Send close_notify, best effort, when the handshake is complete. */
void tls_shutdown(SSL *ssl);

bool tls_handshake_done(const SSL *ssl);
bool tls_has_pending(const SSL *ssl);

#endif
