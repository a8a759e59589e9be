/* password.h — password hashes in crypt(3) format (libxcrypt): new hashes are
 * yescrypt ($y$, the library's default cost); any method libxcrypt verifies is
 * accepted ($2b$ bcrypt, $6$ SHA-512 ...). Used by the login endpoint and by
 * `wsnotifyctl user`. Hashing takes tens of milliseconds by design: never call
 * these on an event loop thread. */
#ifndef WSN_PASSWORD_H
#define WSN_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_HASH_MAX 384      /* CRYPT_OUTPUT_SIZE */
#define PASSWORD_MAX 1024          /* longer passwords are refused, not hashed */

/* A new salted yescrypt hash of password into out. Returns 0, or -1 with a
 * one-line message in err. */
int password_hash(const char *password, char out[PASSWORD_HASH_MAX], char *err,
                  size_t err_size);

/* The password matches hash (compared in constant time). A malformed hash
 * never matches. */
bool password_verify(const char *password, const char *hash);

/* Usable as a stored hash: a crypt(3) setting libxcrypt knows. */
bool password_hash_valid(const char *hash);

#endif
