/* rfile.c — open and read a regular file without ever blocking (see rfile.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero */
#endif

#include "src/common/rfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rfile_open(const char *path, const char **why)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        *why = strerror(errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == -1) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        /* A FIFO or a device could keep its reader waiting for ever. */
        *why = "not a regular file";
        close(fd);
        return -1;
    }
    return fd;
}

int rfile_read_all(const char *path, size_t max, unsigned char **data, size_t *len,
                   const char **why)
{
    *data = NULL;
    *len = 0;
    int fd = rfile_open(path, why);
    if (fd < 0)
        return -1;
    /* One byte more than allowed tells "exactly max" from "too large"; the
     * buffer is sized once, so no copy of the bytes is left behind by realloc. */
    unsigned char *buf = malloc(max + 2);
    if (buf == NULL) {
        *why = strerror(ENOMEM);
        close(fd);
        return -1;
    }
    size_t n = 0;
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, max + 1 - n);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1) {
            *why = strerror(errno);
            rc = -1;
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n > max) {
            *why = "too large";
            rc = -1;
            break;
        }
    }
    if (close(fd) == -1 && rc == 0) {
        *why = strerror(errno);
        rc = -1;
    }
    if (rc != 0) {
        explicit_bzero(buf, n);
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}
