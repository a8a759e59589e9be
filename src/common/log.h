/* log.h — leveled logging to stderr, one line per event:
 *   2026-11-25T20:00:00.123Z wsnotifyd[PID] info [worker 2]: Client connected: UserID=1, Total=1
 * The role ("master", "worker N", "wsnotifyctl") and level live in one log
 * context per process, set once at start (and the level again on SIGHUP). */
#ifndef WSN_LOG_H
#define WSN_LOG_H

typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

/* Set the role shown in brackets and the threshold. */
void log_setup(const char *role, log_level level);
void log_set_level(log_level level);
log_level log_get_level(void);

/* Parse "error", "warn", "info", "debug". Returns 0 or -1. */
int log_level_parse(const char *s, log_level *out);
const char *log_level_name(log_level level);

void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                  \
    do {                                                \
        if (log_get_level() >= LOG_DEBUG)               \
            log_msg(LOG_DEBUG, __VA_ARGS__);            \
    } while (0)

#endif
