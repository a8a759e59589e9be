/* tls_ctx.c — the OpenSSL server context of the HTTP/WebSocket port, built
 * from the operator's PEM files (see tls_ctx.h).
 *
 * The PEM files are read into memory by us, not by OpenSSL's file BIOs, so
 * that a missing or unreadable file gets errno's words, a huge or special file
 * cannot stall start-up, and the key's bytes can be wiped after parsing. */
#include "src/common/tls_ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/common/errbuf.h"
#include "src/common/rfile.h"

/* TLS 1.2 suites: forward secret (ECDHE) AEADs only. TLS 1.3 suites are all fine. */
#define TLS12_CIPHERS                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                          \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                          \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

typedef struct {
    unsigned char *data;
    size_t len;
} pem_file;

const char *tls_ctx_take_error_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return reason != NULL ? reason : "unknown OpenSSL error";
}

/* Never prompt on the terminal for an encrypted key: refuse it instead. */
static int no_password(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

static void pem_file_free(pem_file *f)
{
    if (f->data != NULL) {
        OPENSSL_cleanse(f->data, f->len);
        free(f->data);
    }
    f->data = NULL;
    f->len = 0;
}

static int pem_file_read(pem_file *f, const char *what, const char *path, char *err,
                         size_t err_size)
{
    f->data = NULL;
    f->len = 0;
    const char *why = NULL;
    int fd = rfile_open(path, &why);
    if (fd < 0) {
        errbuf_set(err, err_size, "cannot read the TLS %s %s: %s", what, path, why);
        return -1;
    }
    f->data = malloc(TLS_PEM_FILE_MAX + 1);
    if (f->data == NULL) {
        close(fd);
        errbuf_set(err, err_size, "cannot read the TLS %s %s: out of memory", what, path);
        return -1;
    }
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, f->data + f->len, TLS_PEM_FILE_MAX + 1 - f->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            errbuf_set(err, err_size, "cannot read the TLS %s %s: %s", what, path,
                       strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        f->len += (size_t)n;
        if (f->len > TLS_PEM_FILE_MAX) {
            errbuf_set(err, err_size, "the TLS %s %s is over %d bytes: not a PEM file", what,
                       path, TLS_PEM_FILE_MAX);
            rc = -1;
            break;
        }
    }
    if (close(fd) != 0 && rc == 0) {
        errbuf_set(err, err_size, "cannot read the TLS %s %s: %s", what, path, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        pem_file_free(f);
    return rc;
}

/* The leaf certificate, then any chain certificates that follow it. */
static int use_certificates(SSL_CTX *ctx, const char *path, const pem_file *f, char *err,
                            size_t err_size)
{
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    if (bio == NULL) {
        errbuf_set(err, err_size, "TLS certificate %s: %s", path, tls_ctx_take_error_reason());
        return -1;
    }
    int rc = -1;
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, no_password, NULL);
    if (leaf == NULL) {
        errbuf_set(err, err_size, "TLS certificate %s: not a PEM certificate (%s)", path,
                   tls_ctx_take_error_reason());
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        errbuf_set(err, err_size, "TLS certificate %s: refused (%s)", path, tls_ctx_take_error_reason());
        goto out;
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(bio, NULL, no_password, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            errbuf_set(err, err_size, "TLS certificate %s: chain certificate refused (%s)", path,
                       tls_ctx_take_error_reason());
            goto out;
        }
    }
    /* The loop ends at the end of the file ("no start line") or at garbage. */
    unsigned long e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        errbuf_set(err, err_size, "TLS certificate %s: bad chain certificate (%s)", path,
                   tls_ctx_take_error_reason());
        goto out;
    }
    ERR_clear_error();
    rc = 0;
out:
    X509_free(leaf);
    BIO_free(bio);
    return rc;
}

/* SSL_CTX_use_PrivateKey compares the key with the certificate already. */
static bool key_mismatch(unsigned long e)
{
    return ERR_GET_LIB(e) == ERR_LIB_X509 && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
                                              ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
}

static int use_private_key(SSL_CTX *ctx, const char *path, const char *cert_path,
                           const pem_file *f, char *err, size_t err_size)
{
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    if (bio == NULL) {
        errbuf_set(err, err_size, "TLS key %s: %s", path, tls_ctx_take_error_reason());
        return -1;
    }
    int rc = -1;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    if (key == NULL)
        errbuf_set(err, err_size,
                   "TLS key %s: not an unencrypted PEM private key (%s)", path,
                   tls_ctx_take_error_reason());
    else if (SSL_CTX_use_PrivateKey(ctx, key) == 1)
        rc = 0;
    else if (key_mismatch(ERR_peek_last_error()))
        errbuf_set(err, err_size, "TLS key %s does not match the certificate in %s (%s)", path,
                   cert_path, tls_ctx_take_error_reason());
    else
        errbuf_set(err, err_size, "TLS key %s: refused (%s)", path, tls_ctx_take_error_reason());
    EVP_PKEY_free(key);
    BIO_free(bio);
    return rc;
}

static int apply_defaults(SSL_CTX *ctx, char *err, size_t err_size)
{
    const uint64_t options = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION;
    SSL_CTX_set_options(ctx, options);
    /* Partial writes let conn.c keep only the unsent tail; moving buffers let
     * that tail be retried from the connection's own buffer; released buffers
     * keep an idle TLS connection small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* No server-side session cache: memory would grow with clients; tickets
     * (stateless) still allow resumption on the same worker. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        errbuf_set(err, err_size, "cannot configure TLS: %s", tls_ctx_take_error_reason());
        return -1;
    }
    return 0;
}

SSL_CTX *tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t err_size)
{
    if (cert_file == NULL || key_file == NULL) {
        errbuf_set(err, err_size, "TLS needs both a certificate and a key file");
        return NULL;
    }
    ERR_clear_error();
    pem_file cert = {NULL, 0};
    pem_file key = {NULL, 0};
    SSL_CTX *ctx = NULL;
    if (pem_file_read(&cert, "certificate", cert_file, err, err_size) != 0 ||
        pem_file_read(&key, "key", key_file, err, err_size) != 0)
        goto fail;
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        errbuf_set(err, err_size, "cannot create a TLS context: %s", tls_ctx_take_error_reason());
        goto fail;
    }
    if (apply_defaults(ctx, err, err_size) != 0 ||
        use_certificates(ctx, cert_file, &cert, err, err_size) != 0 ||
        use_private_key(ctx, key_file, cert_file, &key, err, err_size) != 0)
        goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1) {
        errbuf_set(err, err_size, "TLS key %s does not match the certificate in %s (%s)",
                   key_file, cert_file, tls_ctx_take_error_reason());
        goto fail;
    }
    pem_file_free(&cert);
    pem_file_free(&key);
    ERR_clear_error(); /* decoders may leave notes behind even on success */
    return ctx;
fail:
    SSL_CTX_free(ctx);
    pem_file_free(&cert);
    pem_file_free(&key);
    ERR_clear_error();
    return NULL;
}

static void describe_serial(const X509 *x, char *out, size_t out_size)
{
    snprintf(out, out_size, "?");
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL)
        snprintf(out, out_size, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
}

static void describe_subject(const X509 *x, char *out, size_t out_size)
{
    snprintf(out, out_size, "?");
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem == NULL)
        return;
    if (X509_NAME_print_ex(mem, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(mem, &p);
        if (n > 0 && p != NULL)
            snprintf(out, out_size, "%.*s", (int)n, p);
    }
    BIO_free(mem);
}

void tls_ctx_describe(SSL_CTX *ctx, char *out, size_t out_size)
{
    X509 *x = ctx != NULL ? SSL_CTX_get0_certificate(ctx) : NULL;
    if (x == NULL) {
        snprintf(out, out_size, "no certificate");
        return;
    }
    char subject[256];
    char serial[96];
    char expires[32] = "?";
    struct tm tm;
    describe_subject(x, subject, sizeof subject);
    describe_serial(x, serial, sizeof serial);
    const ASN1_TIME *not_after = X509_get0_notAfter(x);
    if (ASN1_TIME_to_tm(not_after, &tm) == 1)
        strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bool expired = X509_cmp_current_time(not_after) < 0;
    snprintf(out, out_size, "subject %s, serial %s, %s %s", subject, serial,
             expired ? "EXPIRED since" : "expires", expires);
    ERR_clear_error();
}

bool tls_ctx_expired(SSL_CTX *ctx)
{
    X509 *x = ctx != NULL ? SSL_CTX_get0_certificate(ctx) : NULL;
    bool expired = x != NULL && X509_cmp_current_time(X509_get0_notAfter(x)) < 0;
    ERR_clear_error();
    return expired;
}
