/* log.c — leveled stderr logging; the only state is this process's log context
 * (role and threshold), kept in one struct. A line is written with a single
 * write(2) so lines from the master and workers sharing stderr never interleave. */
#include "src/common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The role is set once, before any thread starts; the level changes on
 * SIGHUP while the master's gRPC thread logs, hence atomic. */
typedef struct {
    char role[32];
    _Atomic int level;
} log_context;

static log_context log_ctx = {"wsnotifyd", LOG_INFO};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(const char *role, log_level level)
{
    snprintf(log_ctx.role, sizeof log_ctx.role, "%s", role);
    atomic_store_explicit(&log_ctx.level, (int)level, memory_order_relaxed);
}

void log_set_level(log_level level)
{
    atomic_store_explicit(&log_ctx.level, (int)level, memory_order_relaxed);
}

log_level log_get_level(void)
{
    return (log_level)atomic_load_explicit(&log_ctx.level, memory_order_relaxed);
}

int log_level_parse(const char *s, log_level *out)
{
    for (int i = LOG_ERROR; i <= LOG_DEBUG; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(log_level level)
{
    if (level < LOG_ERROR || level > LOG_DEBUG)
        return "?";
    return level_names[level];
}

/* Control bytes of a message (a client's email with a newline, say) are
 * written as \xNN, so no input can forge or split a log line. Appends msg
 * to line[len..cap), truncating; returns the new length. */
static size_t log_escape_into(char *line, size_t len, size_t cap, const char *msg, size_t mlen)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < mlen; i++) {
        unsigned char ch = (unsigned char)msg[i];
        if (ch >= 0x20 && ch != 0x7f) {
            if (len + 1 > cap)
                break;
            line[len++] = (char)ch;
            continue;
        }
        if (len + 4 > cap)
            break;
        line[len++] = '\\';
        line[len++] = 'x';
        line[len++] = hex[ch >> 4];
        line[len++] = hex[ch & 15];
    }
    return len;
}

void log_msg(log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_ctx.level, memory_order_relaxed))
        return;
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ wsnotifyd[%ld] %s [%s]: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000), (long)getpid(),
                     log_level_name(level), log_ctx.role);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    char msg[sizeof line];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t mlen = m > 0 ? ((size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1) : 0;
    len = log_escape_into(line, len, sizeof line - 1, msg, mlen);
    line[len++] = '\n';
    /* stderr is unbuffered; a failed log write has nowhere better to go. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
