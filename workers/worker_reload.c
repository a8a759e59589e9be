/* worker_reload.c — loading and reloading a worker's secrets, JWT public
 * keys, TLS context, log level and login accounts (see worker_reload.h).
 *
 * The worker is single-threaded, so each swap is atomic with respect to
 * clients: a handshake is verified entirely against the old set or entirely
 * against the new one, and a secret kept in both files never fails. A new
 * TLS context serves new connections only; a connection holds a reference to
 * the context it started with (SSL_new), so freeing ours is safe. */
#include "workers/worker_reload.h"

#include <openssl/ssl.h>

#include "src/common/jwt_keys.h"
#include "src/common/log.h"
#include "src/common/log_level_file.h"
#include "src/common/password.h"
#include "src/common/tls_ctx.h"
#include "src/common/users_file.h"

#define RELOAD_ERR_MAX 512

/* No secret at all is fine when public keys verify: the master refused to
 * start with neither. */
static int reload_secrets(worker *w)
{
    char err[RELOAD_ERR_MAX];
    secret_set fresh;
    if (secrets_load_if_any(&fresh, w->cfg->jwt_secret_file, err, sizeof err) < 0) {
        log_error("reload: %s; keeping the %zu secrets loaded before", err, w->secrets.count);
        return -1;
    }
    secrets_free(&w->secrets);
    w->secrets = fresh;
    return 0;
}

/* --jwt-public-key-file: swapped in only when the whole file loaded. */
static int reload_jwt_keys(worker *w)
{
    if (w->cfg->jwt_public_key_file == NULL)
        return 0;
    char err[RELOAD_ERR_MAX];
    jwt_keys *fresh = NULL;
    if (jwt_keys_load(&fresh, w->cfg->jwt_public_key_file, err, sizeof err) != 0) {
        log_error("reload: %s; keeping the %zu public keys loaded before", err,
                  jwt_keys_count(w->jwt_keys, JWT_KEY_RSA) +
                      jwt_keys_count(w->jwt_keys, JWT_KEY_P256) +
                      jwt_keys_count(w->jwt_keys, JWT_KEY_ED25519));
        return -1;
    }
    jwt_keys_free(w->jwt_keys);
    w->jwt_keys = fresh;
    return 0;
}

static int reload_tls(worker *w)
{
    const wsn_config *cfg = w->cfg;
    if (cfg->tls_cert == NULL)
        return 0;
    char err[RELOAD_ERR_MAX];
    SSL_CTX *fresh = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof err);
    if (fresh == NULL) {
        log_error("reload: %s; %s", err,
                  w->tls_ctx ? "keeping the certificate loaded before" : "no TLS context");
        return -1;
    }
    SSL_CTX_free(w->tls_ctx);
    w->tls_ctx = fresh;
    return 0;
}

static int reload_log_level_file(worker *w)
{
    char err[RELOAD_ERR_MAX];
    log_level level;
    if (log_level_file_effective(w->cfg, &level, err, sizeof err) != 0) {
        log_error("reload: %s; keeping log level %s", err, log_level_name(log_get_level()));
        return -1;
    }
    log_set_level(level);
    return 0;
}

/* --users-file: swapped in only when it loaded completely. The dummy hash
 * (for unknown emails) is one of the file's own, so both cost the same. */
static int reload_users(worker *w)
{
    if (w->cfg->users_file == NULL)
        return 0;
    char err[RELOAD_ERR_MAX];
    users_file fresh;
    if (users_file_load(&fresh, w->cfg->users_file, err, sizeof err) != 0) {
        log_error("reload: %s; keeping the %zu accounts loaded before", err, w->users_db.count);
        return -1;
    }
    if (fresh.count > 0) {
        snprintf(w->login_dummy_hash, sizeof w->login_dummy_hash, "%s", fresh.entry[0].hash);
    } else if (w->login_dummy_hash[0] == '\0' &&
               password_hash("no such account", w->login_dummy_hash, err, sizeof err) != 0) {
        log_error("reload: %s", err);
        users_file_free(&fresh);
        return -1;
    }
    users_file_free(&w->users_db);
    w->users_db = fresh;
    return 0;
}

static void log_reloaded(worker *w, bool complete)
{
    char about[512] = "";
    if (w->tls_ctx != NULL)
        tls_ctx_describe(w->tls_ctx, about, sizeof about);
    char accounts[64] = "";
    if (w->cfg->users_file != NULL)
        snprintf(accounts, sizeof accounts, ", %zu login accounts", w->users_db.count);
    char keys[128] = "";
    if (w->cfg->jwt_public_key_file != NULL) {
        char about_keys[112];
        jwt_keys_describe(w->jwt_keys, about_keys, sizeof about_keys);
        snprintf(keys, sizeof keys, ", public %s", about_keys);
    }
    log_msg(complete ? LOG_INFO : LOG_WARN,
            "%s: %zu secrets%s%s, log level %s, TLS certificate %s%s%s%s",
            complete ? "reloaded" : "reload incomplete, now", w->secrets.count, keys, accounts,
            log_level_name(log_get_level()), w->cfg->tls_cert ? w->cfg->tls_cert : "none (TLS off)",
            about[0] ? " (" : "", about, about[0] ? ")" : "");
}

int worker_load_reloadables(worker *w)
{
    /* Read before the files: a SIGHUP after this point is still pending for us
     * (blocked until the loop runs) and is acknowledged by worker_reload. */
    uint64_t generation = region_reload_generation(&w->shm);
    /* At start a bad level file is not fatal: the master checked it moments ago. */
    reload_log_level_file(w);
    char err[RELOAD_ERR_MAX];
    if (secrets_load_if_any(&w->secrets, w->cfg->jwt_secret_file, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    if (reload_jwt_keys(w) != 0)
        return -1;
    if (w->cfg->tls_cert != NULL && reload_tls(w) != 0)
        return -1;
    if (reload_users(w) != 0)
        return -1;
    region_ack_reload(w->stats, generation);
    return 0;
}

void worker_reload(worker *w)
{
    uint64_t generation = region_reload_generation(&w->shm);
    /* The level first, so this reload's own lines follow the new level. */
    bool ok = reload_log_level_file(w) == 0;
    ok = reload_secrets(w) == 0 && ok;
    ok = reload_jwt_keys(w) == 0 && ok;
    ok = reload_tls(w) == 0 && ok;
    ok = reload_users(w) == 0 && ok;
    log_reloaded(w, ok);
    /* Done either way (a part that failed is logged and kept): the master may
     * now tell systemd READY=1. */
    region_ack_reload(w->stats, generation);
}

void worker_free_reloadables(worker *w)
{
    secrets_free(&w->secrets);
    jwt_keys_free(w->jwt_keys);
    w->jwt_keys = NULL;
    SSL_CTX_free(w->tls_ctx);
    w->tls_ctx = NULL;
    users_file_free(&w->users_db);
}
