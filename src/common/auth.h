/* auth.h — JWT (HS256 only) verification for connecting clients, and token
 * minting for wsnotifyctl and the tests. */
#ifndef WSN_AUTH_H
#define WSN_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "src/common/secrets.h"

#define AUTH_MAX_TOKEN 4096
#define AUTH_MAX_EMAIL 320

typedef struct {
    int64_t user_id;
    int64_t exp;
    char email[AUTH_MAX_EMAIL + 1];
} auth_claims;

typedef enum {
    AUTH_OK = 0,
    AUTH_MISSING,        /* no token given */
    AUTH_MALFORMED,      /* not three base64url parts, bad JSON, too long */
    AUTH_BAD_ALG,        /* header alg is not HS256 (none included) */
    AUTH_BAD_SIGNATURE,  /* no secret verifies it */
    AUTH_NO_EXP,         /* exp missing or not a number */
    AUTH_EXPIRED,        /* exp <= now */
    AUTH_NO_USER,        /* neither user_id nor numeric sub, or not positive */
    AUTH_BAD_EMAIL,      /* email present but not a string, or too long */
    AUTH_RESULT_COUNT
} auth_result;

/* Verify token against every secret in s (any one may have signed it). */
auth_result auth_verify_token(const secret_set *s, const char *token, size_t len, time_t now,
                              auth_claims *out);

/* Short reason, stable for logs, the 401 body and metric labels: "missing_token",
 * "malformed_token", "bad_algorithm", "bad_signature", "missing_exp", "token_expired",
 * "missing_user_id", "bad_email". */
const char *auth_result_reason(auth_result r);

/* HS256 token signed with the first secret. Caller frees with free(). NULL on error. */
char *auth_token_create(const secret_set *s, int64_t user_id, const char *email, int64_t exp);

#endif
