/* password.c — crypt(3) hashes through libxcrypt's reentrant calls (see
 * password.h). */
#include "src/common/password.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int password_hash(const char *password, char out[PASSWORD_HASH_MAX], char *err,
                  size_t err_size)
{
    if (strlen(password) > PASSWORD_MAX) {
        snprintf(err, err_size, "the password is longer than %d bytes", PASSWORD_MAX);
        return -1;
    }
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    /* NULL random bytes: libxcrypt takes them from the kernel itself. */
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting) == NULL) {
        snprintf(err, err_size, "cannot make a yescrypt salt");
        return -1;
    }
    struct crypt_data *data = calloc(1, sizeof *data);
    if (data == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    const char *h = crypt_rn(password, setting, data, (int)sizeof *data);
    int rc = -1;
    if (h == NULL || h[0] == '*') {
        snprintf(err, err_size, "cannot hash the password");
    } else if (snprintf(out, PASSWORD_HASH_MAX, "%s", h) < PASSWORD_HASH_MAX) {
        rc = 0;
    }
    OPENSSL_cleanse(data, sizeof *data);
    free(data);
    return rc;
}

bool password_verify(const char *password, const char *hash)
{
    if (strlen(password) > PASSWORD_MAX)
        return false;
    struct crypt_data *data = calloc(1, sizeof *data);
    if (data == NULL)
        return false;
    const char *h = crypt_rn(password, hash, data, (int)sizeof *data);
    size_t n = strlen(hash);
    /* "*..." is libxcrypt's failure token: never equal to a real hash. */
    bool ok = h != NULL && h[0] != '*' && strlen(h) == n && CRYPTO_memcmp(h, hash, n) == 0;
    OPENSSL_cleanse(data, sizeof *data);
    free(data);
    return ok;
}

bool password_hash_valid(const char *hash)
{
    return hash[0] == '$' && crypt_checksalt(hash) == CRYPT_SALT_OK;
}
