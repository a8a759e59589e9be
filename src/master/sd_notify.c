/* sd_notify.c — systemd's notification protocol spoken directly (no
 * libsystemd): one datagram per state change to the AF_UNIX socket systemd
 * names in $NOTIFY_SOCKET. systemd reads the sender's credentials from the
 * socket itself (SO_PASSCRED on its side), so with NotifyAccess=main only the
 * master's datagrams count; the workers never get the variables at all.
 *
 * Notification is best effort by design: a daemon must not stop serving
 * because its supervisor's socket is gone or full, so every error is logged
 * and swallowed, and nothing here ever blocks. */
#include "src/master/sd_notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/common/decimal.h"
#include "src/common/log.h"

#define SD_NOTIFY_MAX_MESSAGE 1024

int sd_notify_parse_address(const char *value, struct sockaddr_un *addr, socklen_t *len)
{
    size_t n = strlen(value);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    /* A path needs its NUL inside sun_path; an abstract name does not. */
    if (n < 2 || (value[0] != '/' && value[0] != '@') ||
        n > sizeof addr->sun_path - (value[0] == '/' ? 1 : 0))
        return -1;
    memcpy(addr->sun_path, value, n);
    if (value[0] == '@')
        addr->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (value[0] == '/' ? 1 : 0));
    return 0;
}

uint64_t sd_notify_parse_watchdog(const char *usec, const char *pid, long self)
{
    uint64_t interval;
    if (usec == NULL || !decimal_parse_range(usec, 1, UINT64_MAX, &interval))
        return 0;
    if (pid != NULL) {
        uint64_t p;
        /* The watchdog is meant for another process (e.g. a wrapper's child). */
        if (!decimal_parse_range(pid, 0, UINT64_MAX, &p) || p != (uint64_t)self)
            return 0;
    }
    return interval;
}

static void unset_variable(const char *name)
{
    if (unsetenv(name) != 0)
        log_warn("unsetenv(%s): %s", name, strerror(errno));
}

void sd_notifier_open(sd_notifier *n)
{
    memset(n, 0, sizeof *n);
    n->fd = -1;
    const char *sock = getenv("NOTIFY_SOCKET");
    const char *wd_usec = getenv("WATCHDOG_USEC");
    const char *wd_pid = getenv("WATCHDOG_PID");
    if (sock != NULL && sock[0] != '\0') {
        if (sd_notify_parse_address(sock, &n->addr, &n->addr_len) != 0) {
            log_warn("NOTIFY_SOCKET=%s: not an absolute path or @abstract name that fits "
                     "sockaddr_un; not notifying systemd",
                     sock);
        } else {
            n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (n->fd < 0)
                log_warn("NOTIFY_SOCKET: socket: %s; not notifying systemd", strerror(errno));
        }
    }
    if (n->fd >= 0) {
        n->watchdog_usec = sd_notify_parse_watchdog(wd_usec, wd_pid, (long)getpid());
        if (wd_usec != NULL && n->watchdog_usec == 0)
            log_info("WATCHDOG_USEC=%s%s%s: no watchdog for this process", wd_usec,
                     wd_pid != NULL ? ", WATCHDOG_PID=" : "", wd_pid != NULL ? wd_pid : "");
        log_debug("notifying systemd on %s, watchdog %" PRIu64 " us", sock, n->watchdog_usec);
    }
    /* getenv's pointers die here; nothing above keeps them. */
    unset_variable("NOTIFY_SOCKET");
    unset_variable("WATCHDOG_USEC");
    unset_variable("WATCHDOG_PID");
}

bool sd_notifier_enabled(const sd_notifier *n)
{
    return n->fd >= 0;
}

int sd_notifier_send(sd_notifier *n, const char *msg)
{
    if (n->fd < 0)
        return 0;
    size_t len = strlen(msg);
    ssize_t sent;
    do
        sent = sendto(n->fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT,
                      (const struct sockaddr *)&n->addr, n->addr_len);
    while (sent < 0 && errno == EINTR);
    if (sent == (ssize_t)len)
        return 0;
    int e = sent < 0 ? errno : EMSGSIZE;
    /* Say it loudly once; a supervisor that went away would otherwise flood the log. */
    log_msg(n->send_failed ? LOG_DEBUG : LOG_WARN, "cannot notify systemd (%.*s): %s",
            (int)strcspn(msg, "\n"), msg, strerror(e));
    n->send_failed = true;
    return -1;
}

int sd_notifier_sendf(sd_notifier *n, const char *fmt, ...)
{
    if (n->fd < 0)
        return 0;
    char msg[SD_NOTIFY_MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -1;
    return sd_notifier_send(n, msg);
}

uint64_t sd_notifier_watchdog_usec(const sd_notifier *n)
{
    return n->watchdog_usec;
}

void sd_notifier_close(sd_notifier *n)
{
    if (n->fd >= 0 && close(n->fd) != 0)
        log_debug("close(notify socket): %s", strerror(errno));
    n->fd = -1;
}
