/* secrets.h — the HS256 secrets: from a file (one per line, the first signs,
 * all verify) or from the JWT_SECRET environment variable. */
#ifndef WSN_SECRETS_H
#define WSN_SECRETS_H

#include <stddef.h>

#define SECRETS_MAX 16
#define SECRET_MAX_LEN 4096

typedef struct {
    size_t count;
    struct {
        unsigned char *data;
        size_t len;
    } item[SECRETS_MAX];
} secret_set;

/* Blank lines are skipped; "\n" or "\r\n" line ends are not part of a secret.
 * Returns 0, or -1 with a one-line message in err (no secret in it). */
int secrets_load_file(secret_set *out, const char *path, char *err, size_t err_size);
int secrets_load_env(secret_set *out, const char *var, char *err, size_t err_size);
/* File when path is non-NULL, else env JWT_SECRET. */
int secrets_load(secret_set *out, const char *path, char *err, size_t err_size);
/* The same, except that no source at all (no path, JWT_SECRET unset or blank)
 * is not an error: out is then empty (HS256 off, for a daemon that verifies
 * with public keys only) and the result is 1. Returns 0, 1 or -1. */
int secrets_load_if_any(secret_set *out, const char *path, char *err, size_t err_size);
void secrets_free(secret_set *s);

#endif
