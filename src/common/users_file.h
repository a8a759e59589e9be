/* users_file.h — the accounts of the login endpoint (--users-file): lines
 * USER_ID:EMAIL:HASH (HASH in crypt(3) format, see password.h; blank lines and
 * lines starting with # are skipped). The file is refused when group- or
 * world-writable, or not a regular file. Emails compare case-insensitively
 * (ASCII). Read at start and on SIGHUP; swapped in only when complete. */
#ifndef WSN_USERS_FILE_H
#define WSN_USERS_FILE_H

#include <stddef.h>
#include <stdint.h>

#define USERS_FILE_MAX (16u * 1024u * 1024u)  /* bytes */
#define USERS_EMAIL_MAX 320

typedef struct {
    int64_t user_id;
    char *email;
    char *hash;
} users_entry;

typedef struct {
    users_entry *entry;     /* sorted by email (lower case) */
    size_t count;
} users_file;

/* Load path into out. Returns 0, or -1 with a one-line message naming the
 * file (and the line) in err. */
int users_file_load(users_file *out, const char *path, char *err, size_t err_size);

/* The entry of email (any case), or NULL. */
const users_entry *users_file_find(const users_file *u, const char *email);

void users_file_free(users_file *u);

#endif
