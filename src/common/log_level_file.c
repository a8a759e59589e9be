/* log_level_file.c — the level in force from --log-level-file or --log-level
 * (see log_level_file.h). The file is opened O_NONBLOCK and read at most
 * LOG_LEVEL_FILE_MAX bytes, so a huge file cannot stall whoever reads it. */
#include "src/common/log_level_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/common/rfile.h"

static bool is_blank_char(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

int log_level_file_read(const char *path, log_level *out, char *err, size_t err_size)
{
    char buf[LOG_LEVEL_FILE_MAX + 1];
    const char *why = NULL;
    int fd = rfile_open(path, &why);
    if (fd < 0) {
        snprintf(err, err_size, "cannot read the log level file %s: %s", path, why);
        return -1;
    }
    size_t len = 0;
    int read_errno = 0;
    while (len < LOG_LEVEL_FILE_MAX) {
        ssize_t n = read(fd, buf + len, LOG_LEVEL_FILE_MAX - len);
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

int log_level_file_effective(const wsn_config *cfg, log_level *out, char *err, size_t err_size)
{
    if (cfg->log_level_file == NULL) {
        *out = cfg->log_level;
        return 0;
    }
    return log_level_file_read(cfg->log_level_file, out, err, err_size);
}
