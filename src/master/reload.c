/* reload.c — the master's side of a reload (see reload.h): --log-level-file,
 * validation of the JWT secrets and public keys, the users file and the TLS
 * files at start and on SIGHUP, and the gRPC port's tokens and certificate
 * (grpc_access.h), which the master itself uses. */
#include "src/master/reload.h"

#include <stdio.h>

#include "src/common/errbuf.h"
#include "src/common/jwt_keys.h"
#include "src/common/log_level_file.h"
#include "src/common/secrets.h"
#include "src/common/users_file.h"
#include "src/common/tls_ctx.h"
#include "src/master/grpc_access.h"

/* What verifies tokens: the HS256 secrets (--jwt-secret-file, else
 * JWT_SECRET) and the public keys. Either may be absent, not both. Returns 0
 * (about says what was found) or -1 with err naming the flag. */
static int check_jwt(const wsn_config *cfg, char *about, size_t about_size, char *err,
                     size_t err_size)
{
    char why[512];
    secret_set secrets;
    int found = secrets_load_if_any(&secrets, cfg->jwt_secret_file, why, sizeof why);
    if (found < 0) {
        errbuf_set(err, err_size, "%s%s", cfg->jwt_secret_file ? "--jwt-secret-file: " : "",
                   why);
        return -1;
    }
    size_t n_secrets = secrets.count;
    secrets_free(&secrets);
    if (found == 1 && cfg->users_file != NULL) {
        errbuf_set(err, err_size,
                   "--users-file: the login endpoint signs HS256 tokens and there is no secret "
                   "(JWT_SECRET is not set and no --jwt-secret-file given)");
        return -1;
    }
    char keys[128] = "no public keys";
    if (cfg->jwt_public_key_file != NULL) {
        jwt_keys *k = NULL;
        if (jwt_keys_load(&k, cfg->jwt_public_key_file, why, sizeof why) != 0) {
            errbuf_set(err, err_size, "--jwt-public-key-file: %s", why);
            return -1;
        }
        jwt_keys_describe(k, keys, sizeof keys);
        jwt_keys_free(k);
    } else if (found == 1) {
        errbuf_set(err, err_size,
                   "nothing can verify tokens: no HS256 secret (JWT_SECRET is not set and no "
                   "--jwt-secret-file given) and no public key (--jwt-public-key-file)");
        return -1;
    }
    errbuf_set(about, about_size, "HS256 with %zu secrets, %s%s", n_secrets,
               cfg->jwt_public_key_file ? "public " : "", keys);
    return 0;
}

/* --users-file: usable, or why not. Returns the number of accounts, or -1. */
static long check_users(const wsn_config *cfg, char *err, size_t err_size)
{
    if (cfg->users_file == NULL)
        return 0;
    users_file u;
    if (users_file_load(&u, cfg->users_file, err, err_size) != 0)
        return -1;
    long n = (long)u.count;
    users_file_free(&u);
    return n;
}

int reload_master_start(const wsn_config *cfg, char *err, size_t err_size)
{
    log_level level;
    if (log_level_file_effective(cfg, &level, err, err_size) != 0)
        return -1;
    log_set_level(level);
    /* Every check first, then the log lines: a refusal is the only line. */
    char about_jwt[256];
    if (check_jwt(cfg, about_jwt, sizeof about_jwt, err, err_size) != 0)
        return -1;
    long accounts = check_users(cfg, err, err_size);
    if (accounts < 0)
        return -1;
    SSL_CTX *ctx = NULL;
    if (cfg->tls_cert != NULL &&
        (ctx = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, err_size)) == NULL)
        return -1;
    if (grpc_access_load(cfg, err, err_size) != 0) { /* logs what it loaded, once it all did */
        SSL_CTX_free(ctx);
        return -1;
    }
    log_info("tokens: %s%s%s%s%s", about_jwt, cfg->jwt_issuer ? "; iss must be " : "",
             cfg->jwt_issuer ? cfg->jwt_issuer : "", cfg->jwt_audience ? "; aud must hold " : "",
             cfg->jwt_audience ? cfg->jwt_audience : "");
    if (cfg->jwt_public_key_file != NULL && cfg->jwt_audience == NULL)
        log_warn("--jwt-public-key-file without --jwt-audience: a token those keys signed for "
                 "any other service is accepted too");
    if (cfg->users_file != NULL)
        log_info("login endpoint: %ld accounts in %s", accounts, cfg->users_file);
    if (ctx == NULL)
        return 0;
    char about[512];
    tls_ctx_describe(ctx, about, sizeof about);
    log_msg(tls_ctx_expired(ctx) ? LOG_WARN : LOG_INFO,
            "TLS on the HTTP/WebSocket port: certificate %s (%s)", cfg->tls_cert, about);
    SSL_CTX_free(ctx);
    return 0;
}

void reload_master_check(const wsn_config *cfg)
{
    char err[512];
    log_level level;
    if (log_level_file_effective(cfg, &level, err, sizeof err) == 0)
        log_set_level(level);
    else
        log_error("reload: %s; keeping log level %s", err, log_level_name(log_get_level()));
    secret_set secrets;
    if (secrets_load_if_any(&secrets, cfg->jwt_secret_file, err, sizeof err) >= 0)
        secrets_free(&secrets);
    else
        log_error("reload: %s; the workers keep their current secrets", err);
    jwt_keys *keys = NULL;
    if (cfg->jwt_public_key_file != NULL &&
        jwt_keys_load(&keys, cfg->jwt_public_key_file, err, sizeof err) != 0)
        log_error("reload: %s; the workers keep their current public keys", err);
    jwt_keys_free(keys);
    grpc_access_reload(cfg);
    if (check_users(cfg, err, sizeof err) < 0)
        log_error("reload: %s; the workers keep their current accounts", err);
    if (cfg->tls_cert == NULL)
        return;
    SSL_CTX *ctx = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof err);
    if (ctx == NULL) {
        log_error("reload: %s; the workers keep their current certificate", err);
        return;
    }
    if (tls_ctx_expired(ctx)) {
        char about[512];
        tls_ctx_describe(ctx, about, sizeof about);
        log_warn("reload: the TLS certificate %s has expired (%s)", cfg->tls_cert, about);
    }
    SSL_CTX_free(ctx);
}
