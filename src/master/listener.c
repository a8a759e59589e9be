/* listener.c — open the listening sockets (see listener.h). */
#include "src/master/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 4096

static int make_addr(const char *addr, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof *sin;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof *sin6;
        return 0;
    }
    return -1;
}

static int bind_socket(const char *addr, uint16_t port, bool reuseport, char *err,
                       size_t err_size)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_addr(addr, port, &ss, &len) != 0) {
        snprintf(err, err_size, "%s: not an IP address", addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)) {
        snprintf(err, err_size, "setsockopt: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        snprintf(err, err_size, "cannot bind %s port %u: %s", addr, (unsigned)port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int listener_check_free(const char *addr, uint16_t port, char *err, size_t err_size)
{
    int fd = bind_socket(addr, port, false, err, err_size);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

int listener_open(const char *addr, uint16_t port, bool reuseport, char *err, size_t err_size)
{
    int fd = bind_socket(addr, port, reuseport, err, err_size);
    if (fd < 0)
        return -1;
    if (listen(fd, LISTEN_BACKLOG) != 0) {
        snprintf(err, err_size, "cannot listen on %s port %u: %s", addr, (unsigned)port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
