/* auth.c — HS256 JWT verification for connecting clients, and token minting.
 *
 * Verification does NOT go through libjwt; we check the token ourselves:
 *   1. shape: <= AUTH_MAX_TOKEN bytes, three base64url parts, header and
 *      payload non-empty (an empty signature is the "alg":"none" form and is
 *      refused by step 2 or 3, so that it is reported as what it is);
 *   2. the header's "alg" must be exactly "HS256" (pinned before any
 *      signature work, so "none", HS384, RS256 ... are refused outright);
 *   3. HMAC-SHA256 (OpenSSL) over "header.payload" with each secret,
 *      compared in constant time (CRYPTO_memcmp) with the signature part;
 *   4. only then is the payload parsed (json-c) for exp, user_id/sub, email.
 * Why not jwt_decode() from libjwt 1.10.2 (checked against the installed
 * library):
 *   - with a NULL key or a key length of 0 it silently downgrades an HS256
 *     token to alg "none" and returns success WITHOUT checking the signature
 *     (jwt_get_alg() then says JWT_ALG_NONE);
 *   - a token with alg "none" and no key is accepted whatever its signature;
 *   - it compares the signature with strcmp(), which leaks timing;
 *   - it rejects headers whose "typ" is not "JWT", which would surface as a
 *     misleading "bad_signature".
 * libjwt is still used to mint tokens (auth_token_create), where none of
 * that matters. */
#include "src/common/auth.h"

#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "src/common/decimal.h"

#define HS256_LEN 32
#define HS256_B64_LEN 43 /* unpadded base64url of 32 bytes */
/* JWT headers and claims are flat objects; anything deeper is hostile. */
#define JSON_MAX_DEPTH 8

typedef struct {
    const char *header;
    size_t header_len;
    const char *payload;
    size_t payload_len;
    const char *signature;
    size_t signature_len;
    size_t signing_input_len; /* "header.payload" */
} token_parts;

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Empty parts pass here; split_token decides where they are allowed. */
static bool is_b64url_part(const char *p, size_t n)
{
    if (n % 4 == 1) /* one leftover char cannot encode a byte */
        return false;
    for (size_t i = 0; i < n; i++) {
        if (b64url_value((unsigned char)p[i]) < 0)
            return false;
    }
    return true;
}

/* Strict unpadded base64url; the caller has checked the alphabet and the
 * length. Unused trailing bits must be zero so each byte string has exactly
 * one encoding. out must hold n * 3 / 4 bytes. */
static bool b64url_decode(const char *in, size_t n, unsigned char *out, size_t *out_len)
{
    size_t w = 0;
    unsigned long acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 6) | (unsigned long)b64url_value((unsigned char)in[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[w++] = (unsigned char)(acc >> bits);
            acc &= (1UL << bits) - 1;
        }
    }
    if (acc != 0)
        return false;
    *out_len = w;
    return true;
}

/* out must hold ceil(n * 4 / 3) chars; no padding, no NUL added. */
static size_t b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t w = 0;
    unsigned long acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[w++] = b64url_alphabet[(acc >> bits) & 63];
        }
        acc &= (1UL << bits) - 1;
    }
    if (bits > 0)
        out[w++] = b64url_alphabet[(acc << (6 - bits)) & 63];
    return w;
}

static bool split_token(const char *token, size_t len, token_parts *parts)
{
    const char *dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        return false;
    const char *rest = dot1 + 1;
    const char *dot2 = memchr(rest, '.', len - (size_t)(rest - token));
    if (dot2 == NULL)
        return false;
    parts->header = token;
    parts->header_len = (size_t)(dot1 - token);
    parts->payload = rest;
    parts->payload_len = (size_t)(dot2 - rest);
    parts->signature = dot2 + 1;
    parts->signature_len = len - (size_t)(parts->signature - token);
    parts->signing_input_len = (size_t)(dot2 - token);
    /* An empty signature is the unsecured-JWT form ("alg":"none", RFC 7519
     * §6): let the alg check name it, or the signature check refuse it.
     * A third '.' fails the alphabet check of the signature part. */
    if (parts->header_len == 0 || parts->payload_len == 0)
        return false;
    return is_b64url_part(parts->header, parts->header_len) &&
           is_b64url_part(parts->payload, parts->payload_len) &&
           is_b64url_part(parts->signature, parts->signature_len);
}

/* The whole buffer must be exactly one JSON object. json-c's "strict" mode
 * still accepts NaN and single quotes, so callers check types and values. */
static json_object *parse_json_object(const unsigned char *buf, size_t len)
{
    if (len > INT_MAX)
        return NULL;
    struct json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
    if (tok == NULL)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
    bool ok = obj != NULL && json_tokener_get_error(tok) == json_tokener_success &&
              json_tokener_get_parse_end(tok) == len && json_object_is_type(obj, json_type_object);
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

static json_object *decode_json_part(const char *part, size_t part_len)
{
    unsigned char buf[AUTH_MAX_TOKEN];
    size_t n = 0;
    if (part_len / 4 * 3 + 3 > sizeof buf || !b64url_decode(part, part_len, buf, &n))
        return NULL;
    return parse_json_object(buf, n);
}

static auth_result check_header(const token_parts *parts)
{
    json_object *header = decode_json_part(parts->header, parts->header_len);
    if (header == NULL)
        return AUTH_MALFORMED;
    json_object *alg = NULL;
    bool hs256 = json_object_object_get_ex(header, "alg", &alg) &&
                 json_object_is_type(alg, json_type_string) &&
                 json_object_get_string_len(alg) == 5 &&
                 memcmp(json_object_get_string(alg), "HS256", 5) == 0;
    json_object_put(header);
    return hs256 ? AUTH_OK : AUTH_BAD_ALG;
}

static bool signature_matches(const unsigned char *key, size_t key_len, const char *token,
                              const token_parts *parts)
{
    /* An empty key would make the MAC forgeable by anyone. */
    if (key == NULL || key_len == 0 || key_len > INT_MAX)
        return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)token,
             parts->signing_input_len, mac, &mac_len) == NULL ||
        mac_len != HS256_LEN) {
        OPENSSL_cleanse(mac, sizeof mac);
        return false;
    }
    /* Comparing the encodings also refuses non-canonical base64url. */
    char expected[HS256_B64_LEN + 1];
    size_t n = b64url_encode(mac, HS256_LEN, expected);
    bool same = n == HS256_B64_LEN && parts->signature_len == HS256_B64_LEN &&
                CRYPTO_memcmp(expected, parts->signature, HS256_B64_LEN) == 0;
    /* The MAC of attacker-chosen input is exactly what a forger wants. */
    OPENSSL_cleanse(mac, sizeof mac);
    OPENSSL_cleanse(expected, sizeof expected);
    return same;
}

static auth_result check_signature(const secret_set *s, const char *token,
                                   const token_parts *parts)
{
    if (s == NULL)
        return AUTH_BAD_SIGNATURE;
    for (size_t i = 0; i < s->count && i < SECRETS_MAX; i++) {
        if (signature_matches(s->item[i].data, s->item[i].len, token, parts))
            return AUTH_OK;
    }
    return AUTH_BAD_SIGNATURE;
}

/* json-c parks integers above INT64_MAX in a uint64 and clamps the int64
 * view to INT64_MAX; tell that apart from a real INT64_MAX. */
static bool json_int64_exact(json_object *v, int64_t *out)
{
    int64_t i = json_object_get_int64(v);
    if (i == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX)
        return false;
    if (i == INT64_MIN) /* may be a clamped, more negative number */
        return false;
    *out = i;
    return true;
}

static auth_result claim_exp(json_object *claims, time_t now, int64_t *exp)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(claims, "exp", &v) || v == NULL)
        return AUTH_NO_EXP;
    if (json_object_is_type(v, json_type_int)) {
        int64_t e = json_object_get_int64(v); /* clamping is harmless here */
        if (e <= (int64_t)now)
            return AUTH_EXPIRED;
        *exp = e;
        return AUTH_OK;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!isfinite(d))
            return AUTH_NO_EXP;
        if (!(d > (double)now))
            return AUTH_EXPIRED;
        if (d >= 9223372036854775807.0) {
            *exp = INT64_MAX;
            return AUTH_OK;
        }
        int64_t e = (int64_t)d;
        if ((double)e < d) /* round up so that *exp > now still holds */
            e++;
        *exp = e;
        return AUTH_OK;
    }
    return AUTH_NO_EXP;
}

/* Digits only: no sign, no space, no empty string; must fit int64. */
static bool parse_decimal_id(const char *s, size_t n, int64_t *out)
{
    uint64_t v;
    if (!decimal_parse_n(s, n, &v) || v > INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

static bool positive_int_claim(json_object *v, int64_t *out)
{
    int64_t id = 0;
    if (v == NULL || !json_object_is_type(v, json_type_int) || !json_int64_exact(v, &id) ||
        id <= 0)
        return false;
    *out = id;
    return true;
}

static auth_result claim_user(json_object *claims, int64_t *user_id)
{
    json_object *v = NULL;
    /* A present but unusable user_id is an error, not a cue to try sub:
     * the issuer meant user_id, and guessing could pick the wrong user. */
    if (json_object_object_get_ex(claims, "user_id", &v))
        return positive_int_claim(v, user_id) ? AUTH_OK : AUTH_NO_USER;
    if (!json_object_object_get_ex(claims, "sub", &v) || v == NULL)
        return AUTH_NO_USER;
    if (json_object_is_type(v, json_type_string)) {
        int64_t id = 0;
        if (!parse_decimal_id(json_object_get_string(v), (size_t)json_object_get_string_len(v),
                              &id) ||
            id <= 0)
            return AUTH_NO_USER;
        *user_id = id;
        return AUTH_OK;
    }
    return positive_int_claim(v, user_id) ? AUTH_OK : AUTH_NO_USER;
}

static auth_result claim_email(json_object *claims, char *email, size_t email_size)
{
    json_object *v = NULL;
    email[0] = '\0';
    if (!json_object_object_get_ex(claims, "email", &v))
        return AUTH_OK;
    if (v == NULL || !json_object_is_type(v, json_type_string))
        return AUTH_BAD_EMAIL;
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    /* An embedded NUL would silently shorten it everywhere downstream. */
    if (n >= email_size || memchr(s, '\0', n) != NULL)
        return AUTH_BAD_EMAIL;
    memcpy(email, s, n);
    email[n] = '\0';
    return AUTH_OK;
}

static auth_result check_claims(const token_parts *parts, time_t now, auth_claims *out)
{
    json_object *claims = decode_json_part(parts->payload, parts->payload_len);
    if (claims == NULL)
        return AUTH_MALFORMED;
    auth_result r = claim_exp(claims, now, &out->exp);
    if (r == AUTH_OK)
        r = claim_user(claims, &out->user_id);
    if (r == AUTH_OK)
        r = claim_email(claims, out->email, sizeof out->email);
    json_object_put(claims);
    return r;
}

auth_result auth_verify_token(const secret_set *s, const char *token, size_t len, time_t now,
                              auth_claims *out)
{
    auth_claims scratch = { 0 };
    auth_claims *claims = out ? out : &scratch;
    memset(claims, 0, sizeof *claims);
    if (token == NULL || len == 0)
        return AUTH_MISSING;
    token_parts parts;
    if (len > AUTH_MAX_TOKEN || !split_token(token, len, &parts))
        return AUTH_MALFORMED;
    auth_result r = check_header(&parts);
    if (r == AUTH_OK)
        r = check_signature(s, token, &parts);
    if (r == AUTH_OK)
        r = check_claims(&parts, now, claims);
    if (r != AUTH_OK)
        memset(claims, 0, sizeof *claims); /* never hand out half-checked claims */
    return r;
}

const char *auth_result_reason(auth_result r)
{
    switch (r) {
    case AUTH_OK:
        return "ok";
    case AUTH_MISSING:
        return "missing_token";
    case AUTH_MALFORMED:
        return "malformed_token";
    case AUTH_BAD_ALG:
        return "bad_algorithm";
    case AUTH_BAD_SIGNATURE:
        return "bad_signature";
    case AUTH_NO_EXP:
        return "missing_exp";
    case AUTH_EXPIRED:
        return "token_expired";
    case AUTH_NO_USER:
        return "missing_user_id";
    case AUTH_BAD_EMAIL:
        return "bad_email";
    case AUTH_RESULT_COUNT:
        break;
    }
    return "unknown";
}

static int add_claims(jwt_t *jwt, int64_t user_id, const char *email, int64_t exp)
{
    if (jwt_add_grant_int(jwt, "user_id", (long)user_id) != 0)
        return -1;
    if (jwt_add_grant(jwt, "email", email) != 0)
        return -1;
    /* iat: when it was issued (the login endpoint's tokens carry it, SPEC). */
    if (jwt_add_grant_int(jwt, "iat", (long)time(NULL)) != 0)
        return -1;
    if (jwt_add_grant_int(jwt, "exp", (long)exp) != 0)
        return -1;
    return 0;
}

char *auth_token_create(const secret_set *s, int64_t user_id, const char *email, int64_t exp)
{
    if (s == NULL || s->count == 0 || s->item[0].data == NULL || s->item[0].len == 0 ||
        s->item[0].len > INT_MAX)
        return NULL;
    /* Mint only what auth_verify_token would accept. */
    if (user_id <= 0 || user_id > LONG_MAX || exp > LONG_MAX || exp < LONG_MIN)
        return NULL;
    if (email == NULL)
        email = "";
    if (strlen(email) > AUTH_MAX_EMAIL)
        return NULL;

    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0 || jwt == NULL)
        return NULL;
    char *token = NULL;
    if (add_claims(jwt, user_id, email, exp) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, s->item[0].data, (int)s->item[0].len) == 0)
        token = jwt_encode_str(jwt);
    jwt_free(jwt);
    return token;
}
