/* tls_io.c — non-blocking TLS reads, writes and shutdown on a client
 * connection's socket, telling the transport (conn.c) which socket event
 * OpenSSL waits for (see tls_io.h). */
#include "workers/tls_io.h"

#include <errno.h>
#include <openssl/err.h>
#include <string.h>

#include "src/common/tls_ctx.h"

SSL *tls_io_new(SSL_CTX *ctx, int fd)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* Map a failed SSL_read_ex/SSL_write_ex onto what the event loop must do. */
static tls_io_result tls_result(SSL *ssl, int rc, const char **why)
{
    int saved_errno = errno;
    int e = SSL_get_error(ssl, rc);
    *why = NULL;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        /* End of stream without close_notify, or a reset: the peer is gone,
         * which is no TLS failure worth a log line of its own. */
        if (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE)
            return TLS_IO_CLOSED;
        *why = strerror(saved_errno);
        return TLS_IO_FAILED;
    case SSL_ERROR_SSL: {
        unsigned long last = ERR_peek_last_error();
        if (ERR_GET_LIB(last) == ERR_LIB_SSL &&
            ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return TLS_IO_CLOSED;
        }
        *why = tls_ctx_take_error_reason();
        return TLS_IO_FAILED;
    }
    default:
        ERR_clear_error();
        *why = "unexpected TLS state";
        return TLS_IO_FAILED;
    }
}

tls_io_result tls_io_read(SSL *ssl, void *buf, size_t len, size_t *done, const char **why)
{
    size_t n = 0;
    *done = 0;
    *why = NULL;
    ERR_clear_error(); /* SSL_get_error reads the queue: only this call's errors */
    errno = 0;
    if (SSL_read_ex(ssl, buf, len, &n) == 1) {
        *done = n;
        return TLS_IO_OK;
    }
    return tls_result(ssl, 0, why);
}

tls_io_result tls_io_write(SSL *ssl, const void *buf, size_t len, size_t *done, const char **why)
{
    size_t n = 0;
    *done = 0;
    *why = NULL;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(ssl, buf, len, &n) == 1) {
        *done = n;
        return TLS_IO_OK;
    }
    return tls_result(ssl, 0, why);
}

void tls_io_shutdown(SSL *ssl)
{
    if (ssl == NULL || !SSL_is_init_finished(ssl))
        return;
    ERR_clear_error();
    if (SSL_shutdown(ssl) < 0)
        ERR_clear_error(); /* best effort: the TCP half-close follows anyway */
}

bool tls_io_handshake_done(const SSL *ssl) { return SSL_is_init_finished(ssl) != 0; }

bool tls_io_pending(const SSL *ssl) { return SSL_pending(ssl) > 0; }
