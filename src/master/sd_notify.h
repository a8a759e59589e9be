/* sd_notify.h — the systemd notification protocol (sd_notify(3)) without
 * libsystemd: newline-separated VAR=VALUE datagrams on an AF_UNIX socket named
 * by $NOTIFY_SOCKET, plus the watchdog settings from $WATCHDOG_USEC and
 * $WATCHDOG_PID. Only the master notifies; it takes these variables out of the
 * environment so the workers it starts never see them. */
#ifndef WSN_SD_NOTIFY_H
#define WSN_SD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef struct {
    int fd;                    /* -1: not under systemd (every send is a no-op) */
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint64_t watchdog_usec;    /* 0: no watchdog for this process */
    bool send_failed;          /* the first failure is a warning, later ones debug */
} sd_notifier;

/* Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, then unset them (and
 * NOTIFY_SOCKET's companions) so children do not inherit the duty. A missing or
 * unusable NOTIFY_SOCKET leaves n disabled; that is logged, never fatal.
 * Call before any thread starts (it changes the environment). */
void sd_notifier_open(sd_notifier *n);

bool sd_notifier_enabled(const sd_notifier *n);

/* Send one datagram ("READY=1\nSTATUS=..."); never blocks. Returns 0, or -1
 * when it could not be sent (logged). A disabled notifier returns 0. */
int sd_notifier_send(sd_notifier *n, const char *msg);

/* printf-style sd_notifier_send; the message is truncated at 1 KiB. */
int sd_notifier_sendf(sd_notifier *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Microseconds between WATCHDOG=1 messages systemd wants at most; 0 = none. */
uint64_t sd_notifier_watchdog_usec(const sd_notifier *n);

void sd_notifier_close(sd_notifier *n);

/* Parse a NOTIFY_SOCKET value into addr: an absolute path, or '@' for the
 * abstract namespace. Returns 0, or -1 (unsupported or too long). */
int sd_notify_parse_address(const char *value, struct sockaddr_un *addr, socklen_t *len);

/* Parse WATCHDOG_USEC (decimal, > 0) given WATCHDOG_PID (NULL, or a decimal pid
 * that must equal self). Returns the interval, or 0 when there is no watchdog
 * for this process. */
uint64_t sd_notify_parse_watchdog(const char *usec, const char *pid, long self);

#endif
