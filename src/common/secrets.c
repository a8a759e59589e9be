/* secrets.c — loading the HS256 secrets from a file (one per line; the first
 * signs, all verify, which allows key rotation) or from an environment
 * variable, and wiping them again.
 *
 * The file is read with read(2) into our own buffers rather than through
 * stdio or getline(), so that every copy of secret bytes we make is one we
 * can wipe afterwards. Error messages name the file and line, never the
 * secret itself. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero, O_CLOEXEC */
#endif

#include "src/common/secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/common/errbuf.h"
#include "src/common/rfile.h"

#define READ_CHUNK 4096
/* Generous for SECRETS_MAX lines of SECRET_MAX_LEN; stops a mistaken path
 * such as /dev/zero from being read forever. */
#define SECRETS_FILE_MAX (1024 * 1024)

/* One line being assembled. One spare byte holds a '\r' that may turn out
 * to be the first half of a "\r\n" terminator. */
typedef struct {
    unsigned char data[SECRET_MAX_LEN + 1];
    size_t len;
    size_t line_no;
} line_buffer;

static void secret_set_init(secret_set *s)
{
    memset(s, 0, sizeof *s);
}

/* A secret of only whitespace is a mistake (a stray indented blank line),
 * not a key anyone meant to use. */
static bool is_blank(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\v' && p[i] != '\f')
            return false;
    }
    return true;
}

static int secret_set_add(secret_set *s, const unsigned char *p, size_t n)
{
    unsigned char *copy = malloc(n);
    if (copy == NULL)
        return -1;
    memcpy(copy, p, n);
    s->item[s->count].data = copy;
    s->item[s->count].len = n;
    s->count++;
    return 0;
}

static int report_overlong(const line_buffer *line, const char *path, char *err,
                           size_t err_size)
{
    errbuf_set(err, err_size, "%s:%zu: secret longer than %d bytes", path, line->line_no,
               SECRET_MAX_LEN);
    return -1;
}

/* A complete line (terminator already removed) goes into the set. */
static int finish_line(secret_set *out, line_buffer *line, const char *path, char *err,
                       size_t err_size)
{
    /* len can be SECRET_MAX_LEN + 1 when the spare byte holds a '\r' that
     * was not followed by '\n': it is then part of the secret. */
    if (line->len > SECRET_MAX_LEN)
        return report_overlong(line, path, err, err_size);
    if (line->len == 0 || is_blank(line->data, line->len))
        return 0;
    if (out->count == SECRETS_MAX) {
        errbuf_set(err, err_size, "%s:%zu: more than %d secrets", path, line->line_no,
                   SECRETS_MAX);
        return -1;
    }
    if (secret_set_add(out, line->data, line->len) != 0) {
        errbuf_set(err, err_size, "%s:%zu: out of memory", path, line->line_no);
        return -1;
    }
    return 0;
}

static void start_next_line(line_buffer *line)
{
    explicit_bzero(line->data, line->len);
    line->len = 0;
    line->line_no++;
}

/* false when the line cannot be a valid secret any more, whatever follows */
static bool append_byte(line_buffer *line, unsigned char b)
{
    if (line->len == sizeof line->data)
        return false;
    line->data[line->len++] = b;
    return true;
}

/* Feed one chunk of file bytes through the line splitter. */
static int feed_chunk(secret_set *out, line_buffer *line, const unsigned char *chunk, size_t n,
                      const char *path, char *err, size_t err_size)
{
    for (size_t i = 0; i < n; i++) {
        if (chunk[i] != '\n') {
            if (!append_byte(line, chunk[i]))
                return report_overlong(line, path, err, err_size);
            continue;
        }
        if (line->len > 0 && line->data[line->len - 1] == '\r')
            line->len--; /* "\r\n": the '\r' belongs to the terminator */
        if (finish_line(out, line, path, err, err_size) != 0)
            return -1;
        start_next_line(line);
    }
    return 0;
}

static int read_secrets_fd(secret_set *out, int fd, const char *path, line_buffer *line,
                           unsigned char *chunk, char *err, size_t err_size)
{
    size_t total = 0;
    for (;;) {
        ssize_t got = read(fd, chunk, READ_CHUNK);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            errbuf_set(err, err_size, "cannot read %s: %s", path, strerror(errno));
            return -1;
        }
        if (got == 0)
            break;
        total += (size_t)got;
        if (total > SECRETS_FILE_MAX) {
            errbuf_set(err, err_size, "%s is larger than %d bytes", path, SECRETS_FILE_MAX);
            return -1;
        }
        if (feed_chunk(out, line, chunk, (size_t)got, path, err, err_size) != 0)
            return -1;
    }
    /* A last line without a terminator still counts. */
    if (line->len > 0) {
        if (finish_line(out, line, path, err, err_size) != 0)
            return -1;
    }
    if (out->count == 0) {
        errbuf_set(err, err_size, "no secret in %s", path);
        return -1;
    }
    return 0;
}

int secrets_load_file(secret_set *out, const char *path, char *err, size_t err_size)
{
    if (out == NULL)
        return -1;
    secret_set_init(out);
    if (path == NULL) {
        errbuf_set(err, err_size, "no secret file given");
        return -1;
    }
    const char *why = NULL;
    int fd = rfile_open(path, &why);
    if (fd < 0) {
        errbuf_set(err, err_size, "cannot read %s: %s", path, why);
        return -1;
    }
    line_buffer line = { .len = 0, .line_no = 1 };
    unsigned char chunk[READ_CHUNK];
    int rc = read_secrets_fd(out, fd, path, &line, chunk, err, err_size);
    explicit_bzero(&line, sizeof line);
    explicit_bzero(chunk, sizeof chunk);
    if (close(fd) != 0 && rc == 0) {
        errbuf_set(err, err_size, "cannot read %s: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        secrets_free(out);
    return rc;
}

/* hint completes the "not set" message for the caller's context. */
static int load_env_secret(secret_set *out, const char *var, const char *hint, char *err,
                           size_t err_size)
{
    secret_set_init(out);
    const char *value = getenv(var);
    size_t n = value ? strlen(value) : 0;
    if (n == 0 || is_blank((const unsigned char *)value, n)) {
        errbuf_set(err, err_size, "%s is not set%s", var, hint);
        return -1;
    }
    if (n > SECRET_MAX_LEN) {
        errbuf_set(err, err_size, "%s is longer than %d bytes", var, SECRET_MAX_LEN);
        return -1;
    }
    if (secret_set_add(out, (const unsigned char *)value, n) != 0) {
        errbuf_set(err, err_size, "%s: out of memory", var);
        return -1;
    }
    return 0;
}

int secrets_load_env(secret_set *out, const char *var, char *err, size_t err_size)
{
    if (out == NULL || var == NULL)
        return -1;
    return load_env_secret(out, var, "", err, err_size);
}

int secrets_load(secret_set *out, const char *path, char *err, size_t err_size)
{
    if (path != NULL)
        return secrets_load_file(out, path, err, err_size);
    if (out == NULL)
        return -1;
    return load_env_secret(out, "JWT_SECRET", " and no --jwt-secret-file given", err, err_size);
}

int secrets_load_if_any(secret_set *out, const char *path, char *err, size_t err_size)
{
    if (out == NULL)
        return -1;
    if (path == NULL) {
        const char *value = getenv("JWT_SECRET");
        if (value == NULL || is_blank((const unsigned char *)value, strlen(value))) {
            secret_set_init(out);
            return 1;
        }
    }
    return secrets_load(out, path, err, err_size);
}

void secrets_free(secret_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count && i < SECRETS_MAX; i++) {
        if (s->item[i].data != NULL)
            explicit_bzero(s->item[i].data, s->item[i].len);
        free(s->item[i].data);
    }
    explicit_bzero(s, sizeof *s);
}
