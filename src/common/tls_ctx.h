/* tls_ctx.h — the TLS server context of the HTTP/WebSocket port (OpenSSL),
 * built from the operator's PEM files: by the workers for their connections
 * and by the master to check the files at start and on SIGHUP.
 *
 * A context is immutable once built: a reload builds a new one for new
 * connections while existing connections keep a reference to theirs. */
#ifndef WSN_TLS_CTX_H
#define WSN_TLS_CTX_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#define TLS_PEM_FILE_MAX (1024 * 1024)  /* bigger is not a certificate or a key */

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

/* OpenSSL's words for the newest queued error, then an empty queue. */
const char *tls_ctx_take_error_reason(void);

#endif
