/* reload.c — the master's side of a reload (see reload.h): --log-level-file,
 * and validation of the secret file and TLS files at start and on SIGHUP. */
#include "src/reload.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/secrets.h"
#include "workers/tls.h"

static bool is_blank_char(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

int reload_read_log_level(const char *path, log_level *out, char *err, size_t err_size)
{
    char buf[RELOAD_LEVEL_FILE_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, err_size, "cannot read the log level file %s: %s", path, strerror(errno));
        return -1;
    }
    size_t len = 0;
    int read_errno = 0;
    while (len < RELOAD_LEVEL_FILE_MAX) {
        ssize_t n = read(fd, buf + len, RELOAD_LEVEL_FILE_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            read_errno = errno;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    if (close(fd) != 0 && read_errno == 0)
        read_errno = errno;
    if (read_errno != 0) {
        snprintf(err, err_size, "cannot read the log level file %s: %s", path,
                 strerror(read_errno));
        return -1;
    }
    buf[len] = '\0';
    size_t start = 0;
    while (start < len && is_blank_char(buf[start]))
        start++;
    size_t end = start;
    while (end < len && !is_blank_char(buf[end]) && buf[end] != '\0')
        end++;
    buf[end] = '\0';
    if (log_level_parse(buf + start, out) != 0) {
        snprintf(err, err_size,
                 "log level file %s: first word '%.16s' is not error, warn, info or debug", path,
                 buf + start);
        return -1;
    }
    return 0;
}

int reload_log_level(const wsn_config *cfg, log_level *out, char *err, size_t err_size)
{
    if (cfg->log_level_file == NULL) {
        *out = cfg->log_level;
        return 0;
    }
    return reload_read_log_level(cfg->log_level_file, out, err, err_size);
}

int reload_master_start(const wsn_config *cfg, char *err, size_t err_size)
{
    log_level level;
    if (reload_log_level(cfg, &level, err, err_size) != 0)
        return -1;
    log_set_level(level);
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
    if (reload_log_level(cfg, &level, err, sizeof err) == 0)
        log_set_level(level);
    else
        log_error("reload: %s; keeping log level %s", err, log_level_name(log_get_level()));
    secret_set secrets;
    if (secrets_load(&secrets, cfg->jwt_secret_file, err, sizeof err) == 0)
        secrets_free(&secrets);
    else
        log_error("reload: %s; the workers keep their current secrets", err);
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
