/* ctl_health.c — `wsnotifyctl health`: GET /health over plain HTTP on a
 * blocking socket (every step bounded by CTL_TIMEOUT_SECONDS), the body
 * printed on a 200, anything else an error. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "src/ctl/ctl.h"
#include "src/ctl/ctl_health.h"

#define CTL_HTTP_MAX (1024 * 1024)   /* a /health answer is far smaller */

enum {
    OPT_SERVER = 256,
};

/* "host:port" or "[v6]:port" into its parts. Returns 0 or -1. */
static int split_host_port(const char *s, char *host, size_t host_size, char *port,
                           size_t port_size)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0' || strlen(colon + 1) >= port_size)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hl < 2 || h[hl - 1] != ']')
            return -1;
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_size)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, port_size, "%s", colon + 1);
    return 0;
}

static int ctl_connect(const char *host, const char *port, char *err, size_t err_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_size, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(err, err_size, "no address for %s", host);
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(err, err_size, "socket: %s", strerror(errno));
            continue;
        }
        /* Bounds connect, send and every recv (Linux honours them for connect too). */
        struct timeval tv = {CTL_TIMEOUT_SECONDS, 0};
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
            connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            snprintf(err, err_size, "cannot connect: %s", strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The whole answer (the server closes: Connection: close), NUL-terminated. */
static char *recv_all(int fd, size_t *len)
{
    char *buf = malloc(CTL_HTTP_MAX + 1);
    size_t n = 0;
    if (buf == NULL)
        return NULL;
    for (;;) {
        ssize_t r = recv(fd, buf + n, CTL_HTTP_MAX - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0 || (n += (size_t)r) == CTL_HTTP_MAX)
            break;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Print the body of a 200 answer. Returns the exit status. */
static int ctl_print_health(const char *server, char *resp, size_t len)
{
    int code = 0;
    char *body = strstr(resp, "\r\n\r\n");
    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1 || body == NULL) {
        fprintf(stderr, "wsnotifyctl: %s: not an HTTP answer\n", server);
        return 1;
    }
    body += 4;
    size_t body_len = len - (size_t)(body - resp);
    const char *cl = strcasestr(resp, "\r\nContent-Length:");
    if (cl != NULL && cl < body) {
        unsigned long long n = strtoull(cl + 17, NULL, 10);
        if (n < body_len)
            body_len = (size_t)n;
    }
    if (code != 200) {
        fprintf(stderr, "wsnotifyctl: %s: /health answered %d: %.*s\n", server, code,
                (int)body_len, body);
        return 1;
    }
    fwrite(body, 1, body_len, stdout);
    if (body_len == 0 || body[body_len - 1] != '\n')
        putchar('\n');
    return fflush(stdout) == 0 ? 0 : 1;
}

int ctl_health_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *server = CTL_DEFAULT_HTTP_SERVER;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == OPT_SERVER) {
            server = optarg;
        } else if (opt == 'h') {
            ctl_usage(stdout);
            return 0;
        } else {
            return ctl_bad_option(opt, argv);
        }
    }
    if (ctl_extra_operand(argc, argv))
        return 2;
    char host[256];
    char port[16];
    if (split_host_port(server, host, sizeof host, port, sizeof port) != 0)
        return ctl_bad_value("--server", server, "HOST:PORT");
    char err[300];
    int fd = ctl_connect(host, port, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "wsnotifyctl: %s: %s\n", server, err);
        return 1;
    }
    char req[400];
    int n = snprintf(req, sizeof req,
                     "GET /health HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                     "Connection: close\r\n\r\n", server);
    size_t len = 0;
    char *resp = NULL;
    if (n > 0 && (size_t)n < sizeof req && send_all(fd, req, (size_t)n) == 0)
        resp = recv_all(fd, &len);
    int saved = errno;
    close(fd);
    if (resp == NULL) {
        fprintf(stderr, "wsnotifyctl: %s: no answer: %s\n", server, strerror(saved));
        return 1;
    }
    int status = ctl_print_health(server, resp, len);
    free(resp);
    return status;
}
