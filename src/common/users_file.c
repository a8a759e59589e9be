/* users_file.c — load and search --users-file (see users_file.h). */
#include "src/common/users_file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/decimal.h"
#include "src/common/errbuf.h"
#include "src/common/password.h"
#include "src/common/rfile.h"

static void lower(char *s)
{
    for (; *s != '\0'; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static int by_email(const void *a, const void *b)
{
    return strcmp(((const users_entry *)a)->email, ((const users_entry *)b)->email);
}

/* The whole file into a NUL-terminated buffer, refusing what could be
 * changed by others or block the reader. */
static char *read_all(const char *path, size_t *len, char *err, size_t err_size)
{
    const char *why = NULL;
    int fd = rfile_open(path, &why);
    if (fd < 0) {
        errbuf_set(err, err_size, "cannot read %s: %s", path, why);
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        errbuf_set(err, err_size, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    /* Anyone who may write it could add an account with a password of theirs. */
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        errbuf_set(err, err_size, "%s is writable by group or others: refused (chmod go-w)",
                   path);
        goto out;
    }
    if ((size_t)st.st_size > USERS_FILE_MAX) {
        errbuf_set(err, err_size, "%s is over %u bytes", path, USERS_FILE_MAX);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        errbuf_set(err, err_size, "cannot read %s: out of memory", path);
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errbuf_set(err, err_size, "cannot read %s: %s", path,
                       n < 0 ? strerror(errno) : "it shrank while being read");
            free(buf);
            buf = NULL;
            goto out;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *len = got;
out:
    close(fd);
    return buf;
}

/* One "USER_ID:EMAIL:HASH" line (line holds no newline). */
static int parse_line(char *line, users_entry *e, const char *path, unsigned line_no, char *err,
                      size_t err_size)
{
    char *c1 = strchr(line, ':');
    char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL) {
        errbuf_set(err, err_size, "%s:%u: not USER_ID:EMAIL:HASH", path, line_no);
        return -1;
    }
    *c1 = *c2 = '\0';
    uint64_t id;
    if (!decimal_parse_range(line, 1, (UINT64_C(1) << 53) - 1, &id)) {
        errbuf_set(err, err_size, "%s:%u: user id '%.20s' is not 1..2^53-1", path, line_no, line);
        return -1;
    }
    char *email = c1 + 1;
    char *hash = c2 + 1;
    size_t hl = strlen(hash);
    while (hl > 0 && (hash[hl - 1] == '\r' || hash[hl - 1] == ' ' || hash[hl - 1] == '\t'))
        hash[--hl] = '\0';
    if (email[0] == '\0' || strlen(email) > USERS_EMAIL_MAX) {
        errbuf_set(err, err_size, "%s:%u: bad email", path, line_no);
        return -1;
    }
    if (!password_hash_valid(hash)) {
        errbuf_set(err, err_size, "%s:%u: the hash is not in crypt(3) format", path, line_no);
        return -1;
    }
    e->user_id = (int64_t)id;
    e->email = strdup(email);
    e->hash = strdup(hash);
    if (e->email == NULL || e->hash == NULL) {
        free(e->email);
        free(e->hash);
        errbuf_set(err, err_size, "out of memory");
        return -1;
    }
    lower(e->email);
    return 0;
}

int users_file_load(users_file *out, const char *path, char *err, size_t err_size)
{
    out->entry = NULL;
    out->count = 0;
    size_t len = 0;
    char *buf = read_all(path, &len, err, err_size);
    if (buf == NULL)
        return -1;
    size_t cap = 0;
    unsigned line_no = 0;
    int rc = 0;
    for (char *line = buf, *next; rc == 0 && line < buf + len; line = next) {
        char *nl = strchr(line, '\n');
        next = nl != NULL ? nl + 1 : buf + len;
        if (nl != NULL)
            *nl = '\0';
        line_no++;
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '\0' || *line == '#' || *line == '\r')
            continue;
        if (out->count == cap) {
            size_t c = cap ? 2 * cap : 64;
            users_entry *grown = realloc(out->entry, c * sizeof *grown);
            if (grown == NULL) {
                errbuf_set(err, err_size, "out of memory");
                rc = -1;
                break;
            }
            out->entry = grown;
            cap = c;
        }
        rc = parse_line(line, &out->entry[out->count], path, line_no, err, err_size);
        if (rc == 0)
            out->count++;
    }
    free(buf);
    if (rc == 0 && out->count > 1) {
        qsort(out->entry, out->count, sizeof out->entry[0], by_email);
        for (size_t i = 1; i < out->count; i++)
            if (strcmp(out->entry[i - 1].email, out->entry[i].email) == 0) {
                errbuf_set(err, err_size, "%s: %s appears twice", path, out->entry[i].email);
                rc = -1;
                break;
            }
    }
    if (rc != 0)
        users_file_free(out);
    return rc;
}

const users_entry *users_file_find(const users_file *u, const char *email)
{
    char key[USERS_EMAIL_MAX + 1];
    if (strlen(email) > USERS_EMAIL_MAX)
        return NULL;
    snprintf(key, sizeof key, "%s", email);
    lower(key);
    users_entry probe = {.email = key};
    return u->count > 0 ? bsearch(&probe, u->entry, u->count, sizeof u->entry[0], by_email)
                        : NULL;
}

void users_file_free(users_file *u)
{
    for (size_t i = 0; i < u->count; i++) {
        free(u->entry[i].email);
        if (u->entry[i].hash != NULL) {
            memset(u->entry[i].hash, 0, strlen(u->entry[i].hash));
            free(u->entry[i].hash);
        }
    }
    free(u->entry);
    u->entry = NULL;
    u->count = 0;
}
