/* reload.c — the master's side of a reload (see reload.h): --log-level-file,
 * and validation of the secret file and TLS files at start and on SIGHUP. */
#include "src/master/reload.h"

#include <stdio.h>

#include "src/common/log_level_file.h"
#include "src/common/secrets.h"
#include "src/common/users_file.h"
#include "src/common/tls_ctx.h"

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
    long accounts = check_users(cfg, err, err_size);
    if (accounts < 0)
        return -1;
    if (cfg->users_file != NULL)
        log_info("login endpoint: %ld accounts in %s", accounts, cfg->users_file);
    if (cfg->tls_cert == NULL)
        return 0;
    SSL_CTX *ctx = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, err_size);
    if (ctx == NULL)
        return -1;
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
    if (secrets_load(&secrets, cfg->jwt_secret_file, err, sizeof err) == 0)
        secrets_free(&secrets);
    else
        log_error("reload: %s; the workers keep their current secrets", err);
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
