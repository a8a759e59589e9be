/* grpc_access.c — the bearer tokens and TLS credentials of the master's gRPC
 * port (see grpc_access.h).
 *
 * Tokens are checked per call by grpc_endpoint.c (which knows the method, so
 * Health/Check can be exempt) on its one serving thread; a reload on the
 * master's thread swaps the whole token set under the mutex.
 *
 * TLS goes through gRPC core's certificate config fetcher
 * (grpc_ssl_server_credentials_create_options_using_config_fetcher): gRPC
 * calls on_fetch_certificates when the port is added and then before every
 * new TLS handshake, on its own threads. We answer "unchanged" except once
 * after each successful load, when we hand it a fresh config built from the
 * PEM texts validated here; gRPC then builds a new handshaker factory for the
 * connections that follow. So SIGHUP reloads the gRPC certificate, key and
 * client CA without a restart, like the HTTP port's. The PEM texts are
 * validated with OpenSSL (tls_ctx_new: parse, key matches certificate)
 * before gRPC ever sees them, because gRPC would only log a bad file on the
 * first handshake and keep serving with the old one (or none at start). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero */
#endif

#include "src/master/grpc_access.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/common/errbuf.h"
#include "src/common/log.h"
#include "src/common/rfile.h"
#include "src/common/tls_ctx.h"
#include "src/common/token_file.h"

/* The PEM texts gRPC is given, NUL-terminated. */
typedef struct {
    char *cert;
    size_t cert_len;
    char *key;
    size_t key_len;
    char *ca;          /* NULL: no client certificates asked for */
    size_t ca_len;
} pem_texts;

static struct {
    pthread_mutex_t lock;      /* guards tokens, pem and pem_fresh */
    bool tokens_required;      /* fixed at load: the command line */
    bool tls;
    bool mtls;
    token_set tokens;
    pem_texts pem;
    bool pem_fresh;            /* pem not yet handed to gRPC */
} acc = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void pem_texts_free(pem_texts *p)
{
    if (p->key != NULL)
        explicit_bzero(p->key, p->key_len);
    free(p->key);
    free(p->cert);
    free(p->ca);
    memset(p, 0, sizeof *p);
}

/* One PEM file as a C string (gRPC takes them so): no NUL inside. */
static int read_pem(const char *flag, const char *path, char **text, size_t *len, char *err,
                    size_t err_size)
{
    unsigned char *data = NULL;
    const char *why = NULL;
    if (rfile_read_all(path, TLS_PEM_FILE_MAX, &data, len, &why) != 0) {
        errbuf_set(err, err_size, "%s: cannot read %s: %s", flag, path, why);
        return -1;
    }
    if (memchr(data, '\0', *len) != NULL) {
        explicit_bzero(data, *len);
        free(data);
        errbuf_set(err, err_size, "%s: %s holds a NUL byte: not a PEM file", flag, path);
        return -1;
    }
    *text = (char *)data;
    return 0;
}

/* The client CA file: at least one certificate, nothing but certificates. */
static int check_ca(const char *path, const pem_texts *p, char *err, size_t err_size)
{
    BIO *bio = BIO_new_mem_buf(p->ca, (int)p->ca_len);
    if (bio == NULL) {
        errbuf_set(err, err_size, "--grpc-client-ca %s: %s", path, tls_ctx_take_error_reason());
        return -1;
    }
    ERR_clear_error();
    int count = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        X509_free(x);
        count++;
    }
    unsigned long e = ERR_peek_last_error();
    bool at_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    int rc = 0;
    if (!at_end && e != 0) {
        errbuf_set(err, err_size, "--grpc-client-ca %s: certificate %d: %s", path, count + 1,
                   tls_ctx_take_error_reason());
        rc = -1;
    } else if (count == 0) {
        errbuf_set(err, err_size, "--grpc-client-ca %s: no PEM certificate in it", path);
        rc = -1;
    }
    ERR_clear_error();
    BIO_free(bio);
    return rc;
}

/* Read and validate the TLS files into out; describe the certificate. */
static int load_pems(const wsn_config *cfg, pem_texts *out, char *about, size_t about_size,
                     bool *expired, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    /* OpenSSL parses them exactly as gRPC's TLS stack (also OpenSSL) will. */
    SSL_CTX *ctx = tls_ctx_new(cfg->grpc_tls_cert, cfg->grpc_tls_key, err, err_size);
    if (ctx == NULL) {
        char why[512];
        snprintf(why, sizeof why, "%s", err);
        errbuf_set(err, err_size, "--grpc-tls-cert/--grpc-tls-key: %s", why);
        return -1;
    }
    tls_ctx_describe(ctx, about, about_size);
    *expired = tls_ctx_expired(ctx);
    SSL_CTX_free(ctx);
    if (read_pem("--grpc-tls-cert", cfg->grpc_tls_cert, &out->cert, &out->cert_len, err,
                 err_size) != 0 ||
        read_pem("--grpc-tls-key", cfg->grpc_tls_key, &out->key, &out->key_len, err,
                 err_size) != 0 ||
        (cfg->grpc_client_ca != NULL &&
         (read_pem("--grpc-client-ca", cfg->grpc_client_ca, &out->ca, &out->ca_len, err,
                   err_size) != 0 ||
          check_ca(cfg->grpc_client_ca, out, err, err_size) != 0))) {
        pem_texts_free(out);
        return -1;
    }
    return 0;
}

static int load_tokens(const wsn_config *cfg, token_set *out, char *err, size_t err_size)
{
    char why[512];
    if (token_file_load(out, cfg->grpc_token_file, why, sizeof why) != 0) {
        errbuf_set(err, err_size, "--grpc-token-file: %s", why);
        return -1;
    }
    return 0;
}

static bool loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strcmp(addr, "[::1]") == 0 || strcmp(addr, "localhost") == 0;
}

int grpc_access_load(const wsn_config *cfg, char *err, size_t err_size)
{
    grpc_access_free();
    token_set tokens;
    memset(&tokens, 0, sizeof tokens);
    if (cfg->grpc_token_file != NULL && load_tokens(cfg, &tokens, err, err_size) != 0)
        return -1;
    pem_texts pem;
    memset(&pem, 0, sizeof pem);
    char about[512] = "";
    bool expired = false;
    if (cfg->grpc_tls_cert != NULL &&
        load_pems(cfg, &pem, about, sizeof about, &expired, err, err_size) != 0) {
        token_file_free(&tokens);
        return -1;
    }
    pthread_mutex_lock(&acc.lock);
    acc.tokens_required = cfg->grpc_token_file != NULL;
    acc.tokens = tokens;
    acc.tls = cfg->grpc_tls_cert != NULL;
    acc.mtls = cfg->grpc_client_ca != NULL;
    acc.pem = pem;
    acc.pem_fresh = acc.tls;
    pthread_mutex_unlock(&acc.lock);

    if (acc.tokens_required)
        log_info("gRPC: every call but Health/Check needs one of the %zu bearer tokens of %s",
                 tokens.count, cfg->grpc_token_file);
    if (acc.tls)
        log_msg(expired ? LOG_WARN : LOG_INFO, "gRPC: TLS only, certificate %s (%s)%s%s",
                cfg->grpc_tls_cert, about, acc.mtls ? "; client certificates signed by " : "",
                acc.mtls ? cfg->grpc_client_ca : "");
    if (!acc.tokens_required && !acc.mtls && !loopback(cfg->grpc_bind))
        log_warn("gRPC on %s asks callers for no token (--grpc-token-file) and no client "
                 "certificate (--grpc-client-ca): whoever reaches the port can send",
                 cfg->grpc_bind);
    return 0;
}

void grpc_access_reload(const wsn_config *cfg)
{
    char err[768];
    if (acc.tokens_required) {
        token_set fresh;
        if (load_tokens(cfg, &fresh, err, sizeof err) != 0) {
            log_error("reload: %s; the gRPC port keeps the tokens it had", err);
        } else {
            pthread_mutex_lock(&acc.lock);
            token_set old = acc.tokens;
            acc.tokens = fresh;
            pthread_mutex_unlock(&acc.lock);
            token_file_free(&old);
            log_info("reload: gRPC bearer tokens: %zu from %s", fresh.count,
                     cfg->grpc_token_file);
        }
    }
    if (!acc.tls)
        return;
    pem_texts fresh;
    char about[512] = "";
    bool expired = false;
    if (load_pems(cfg, &fresh, about, sizeof about, &expired, err, sizeof err) != 0) {
        log_error("reload: %s; the gRPC port keeps its certificate", err);
        return;
    }
    pthread_mutex_lock(&acc.lock);
    pem_texts old = acc.pem;
    acc.pem = fresh;
    acc.pem_fresh = true;
    pthread_mutex_unlock(&acc.lock);
    pem_texts_free(&old);
    log_msg(expired ? LOG_WARN : LOG_INFO,
            "reload: gRPC TLS certificate %s (%s) for new connections", cfg->grpc_tls_cert,
            about);
}

/* gRPC's threads, when the port is added and before each new handshake. gRPC
 * owns (and destroys) the config we return. */
static grpc_ssl_certificate_config_reload_status on_fetch_certificates(
    void *user_data, grpc_ssl_server_certificate_config **config)
{
    (void)user_data;
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&acc.lock);
    if (acc.pem_fresh && acc.pem.cert != NULL) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = acc.pem.key,
                                           .cert_chain = acc.pem.cert};
        /* gRPC 1.51 asserts that a fetched config has root certificates even
         * when no client certificate is asked for; without --grpc-client-ca
         * our own chain stands in: with GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
         * nothing is ever verified against it. */
        const char *roots = acc.pem.ca != NULL ? acc.pem.ca : acc.pem.cert;
        *config = grpc_ssl_server_certificate_config_create(roots, &pair, 1);
        st = *config != NULL ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW
                             : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
        acc.pem_fresh = false;
    }
    pthread_mutex_unlock(&acc.lock);
    return st;
}

struct grpc_server_credentials *grpc_access_server_credentials(void)
{
    if (!acc.tls)
        return grpc_insecure_server_credentials_create();
    /* The first fetch, when the port is added, must get a config. */
    pthread_mutex_lock(&acc.lock);
    acc.pem_fresh = true;
    pthread_mutex_unlock(&acc.lock);
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            acc.mtls ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                     : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            on_fetch_certificates, NULL);
    return o != NULL ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

bool grpc_access_tokens_required(void)
{
    return acc.tokens_required;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

grpc_access_result grpc_access_check_bearer(const char *value, size_t len)
{
    if (!acc.tokens_required)
        return GRPC_ACCESS_OK;
    /* RFC 6750 §2.1: "Bearer" (a scheme: any case), white space, the token. */
    if (len < 7 || strncasecmp(value, "bearer", 6) != 0 || !is_blank(value[6]))
        return GRPC_ACCESS_NOT_BEARER;
    size_t start = 7;
    while (start < len && is_blank(value[start]))
        start++;
    size_t end = len;
    while (end > start && is_blank(value[end - 1]))
        end--;
    if (end == start)
        return GRPC_ACCESS_NOT_BEARER;
    pthread_mutex_lock(&acc.lock);
    bool ok = token_file_match(&acc.tokens, value + start, end - start);
    pthread_mutex_unlock(&acc.lock);
    return ok ? GRPC_ACCESS_OK : GRPC_ACCESS_WRONG_TOKEN;
}

const char *grpc_access_reason(grpc_access_result r)
{
    switch (r) {
    case GRPC_ACCESS_OK: return "ok";
    case GRPC_ACCESS_NO_TOKEN: return "no bearer token (metadata authorization: Bearer TOKEN)";
    case GRPC_ACCESS_NOT_BEARER: return "the authorization metadata is not \"Bearer TOKEN\"";
    case GRPC_ACCESS_WRONG_TOKEN: return "the bearer token is not accepted";
    }
    return "refused";
}

void grpc_access_free(void)
{
    pthread_mutex_lock(&acc.lock);
    token_file_free(&acc.tokens);
    pem_texts_free(&acc.pem);
    acc.tokens_required = false;
    acc.tls = false;
    acc.mtls = false;
    acc.pem_fresh = false;
    pthread_mutex_unlock(&acc.lock);
}
