/* auth.h — JWT verification for connecting clients (HS256 against the
 * secrets; RS256, ES256 and EdDSA against the public keys of jwt_keys.h;
 * exp, nbf, aud, iss), and token minting for the login endpoint, wsnotifyctl
 * and the tests. */
#ifndef WSN_AUTH_H
#define WSN_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "src/common/jwt_keys.h"
#include "src/common/secrets.h"

#define AUTH_MAX_TOKEN 4096
#define AUTH_MAX_EMAIL 320

typedef struct {
    int64_t user_id;
    int64_t exp;
    char email[AUTH_MAX_EMAIL + 1];
} auth_claims;

/* The values are indexes of the shared auth-failure counters (shm/counters.h):
 * new reasons go at the end. */
typedef enum {
    AUTH_OK = 0,
    AUTH_MISSING,        /* no token given */
    AUTH_MALFORMED,      /* not three base64url parts, bad JSON, too long, a "crit" header */
    AUTH_BAD_ALG,        /* alg not HS256/RS256/ES256/EdDSA, or no key of that kind configured */
    AUTH_BAD_SIGNATURE,  /* no key of the token's algorithm verifies it */
    AUTH_NO_EXP,         /* exp missing or not a number */
    AUTH_EXPIRED,        /* exp <= now */
    AUTH_NO_USER,        /* neither user_id nor numeric sub, or not positive */
    AUTH_BAD_EMAIL,      /* email present but not a string, or too long */
    AUTH_NOT_YET_VALID,  /* nbf > now, or nbf not a number */
    AUTH_BAD_AUDIENCE,   /* an audience is required and aud does not name it */
    AUTH_BAD_ISSUER,     /* an issuer is required and iss is not it */
    AUTH_RESULT_COUNT
} auth_result;

/* What a token is checked against. The algorithm is always the one of a key
 * that exists here: a token only names which kind of key to try. */
typedef struct {
    const secret_set *secrets;  /* HS256; NULL or empty: HS256 tokens are bad_algorithm */
    const jwt_keys *keys;       /* RS256/ES256/EdDSA; NULL: all three are bad_algorithm */
    const char *audience;       /* NULL: aud is not checked */
    const char *issuer;         /* NULL: iss is not checked */
} auth_verifier;

/* Verify token (len bytes, not NUL-terminated) at time now. The checks, in
 * order: shape, alg (and a key of its kind), signature, exp, nbf, iss, aud,
 * user_id/sub, email; the first failure is the result. out (may be NULL) gets
 * the claims on AUTH_OK and is zeroed otherwise. */
auth_result auth_verify(const auth_verifier *v, const char *token, size_t len, time_t now,
                        auth_claims *out);

/* auth_verify with the secrets only: HS256, no aud/iss requirement. */
auth_result auth_verify_token(const secret_set *s, const char *token, size_t len, time_t now,
                              auth_claims *out);

/* Short reason, stable for logs, the 401 body and metric labels: "missing_token",
 * "malformed_token", "bad_algorithm", "bad_signature", "missing_exp", "token_expired",
 * "missing_user_id", "bad_email", "token_not_yet_valid", "bad_audience", "bad_issuer". */
const char *auth_result_reason(auth_result r);

/* HS256 token signed with the first secret, claims user_id, email, iat, exp
 * (the login endpoint's). Caller frees with free(). NULL on error. */
char *auth_token_create(const secret_set *s, int64_t user_id, const char *email, int64_t exp);

/* A token with more claims, for wsnotifyctl: signed by signer (its key's
 * algorithm) when non-NULL, else HS256 with the first secret of s. */
typedef struct {
    int64_t user_id;       /* > 0 */
    const char *email;     /* NULL: "" */
    int64_t exp;
    int64_t nbf;           /* 0: no nbf claim */
    const char *audience;  /* NULL: no aud claim */
    const char *issuer;    /* NULL: no iss claim */
} auth_mint;

char *auth_token_mint(const auth_mint *m, const secret_set *s, const jwt_signer *signer);

#endif
