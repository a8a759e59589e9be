/* auth.c — JWT verification for connecting clients, and token minting.
 *
 * Verification does NOT go through libjwt; we check the token ourselves:
 *   1. shape: <= AUTH_MAX_TOKEN bytes, three base64url parts, header and
 *      payload non-empty (an empty signature is the "alg":"none" form and is
 *      refused by step 2 or 3, so that it is reported as what it is);
 *   2. the header's "alg" must be exactly HS256, RS256, ES256 or EdDSA AND a
 *      key of that kind must be configured (a secret for HS256, an RSA, P-256
 *      or Ed25519 public key for the others); else bad_algorithm before any
 *      signature work. The token only says which kind of key to try: the
 *      verification is the key's own (an HMAC is only ever keyed with a
 *      secret, never with a public key's bytes, so the RS256→HS256 "alg
 *      confusion" forgery has nothing to work with). Header fields naming
 *      keys (kid, jku, jwk, x5u, x5c) are ignored: keys come from the
 *      operator only. A "crit" header is refused: we implement no extension;
 *   3. HS256: HMAC-SHA256 (OpenSSL) over "header.payload" with each secret,
 *      compared in constant time (CRYPTO_memcmp) with the signature part;
 *      the others: the signature decoded (strict base64url) and checked by
 *      jwt_keys_verify against each key of the kind (OpenSSL EVP);
 *   4. only then is the payload parsed (json-c): exp, nbf, iss, aud,
 *      user_id/sub, email.
 * Why not jwt_decode() from libjwt 1.10.2 (checked against the installed
 * library):
 *   - with a NULL key or a key length of 0 it silently downgrades an HS256
 *     token to alg "none" and returns success WITHOUT checking the signature
 *     (jwt_get_alg() then says JWT_ALG_NONE);
 *   - a token with alg "none" and no key is accepted whatever its signature;
 *   - it compares the signature with strcmp(), which leaks timing;
 *   - it rejects headers whose "typ" is not "JWT", which would surface as a
 *     misleading "bad_signature";
 *   - it has no EdDSA.
 * libjwt is still used to mint the login endpoint's tokens
 * (auth_token_create), where none of that matters. */
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
#include "src/common/jwt_keys.h"

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

typedef enum {
    ALG_HS256 = 0,
    ALG_RS256,
    ALG_ES256,
    ALG_EDDSA,
} token_alg;

/* The names are case-sensitive (RFC 7515 §4.1.1). */
static const struct {
    const char *name;
    token_alg alg;
} known_algs[] = {
    {"HS256", ALG_HS256},
    {"RS256", ALG_RS256},
    {"ES256", ALG_ES256},
    {"EdDSA", ALG_EDDSA},
};

static jwt_key_kind key_kind_of(token_alg alg)
{
    return alg == ALG_RS256 ? JWT_KEY_RSA : alg == ALG_ES256 ? JWT_KEY_P256 : JWT_KEY_ED25519;
}

/* The header's alg, which must be one we know of. */
static auth_result check_header(const token_parts *parts, token_alg *alg)
{
    json_object *header = decode_json_part(parts->header, parts->header_len);
    if (header == NULL)
        return AUTH_MALFORMED;
    auth_result r = AUTH_BAD_ALG;
    json_object *v = NULL;
    if (json_object_object_get_ex(header, "crit", NULL)) {
        /* RFC 7515 §4.1.11: extensions we do not implement must not be ignored. */
        r = AUTH_MALFORMED;
    } else if (json_object_object_get_ex(header, "alg", &v) &&
               json_object_is_type(v, json_type_string)) {
        const char *name = json_object_get_string(v);
        size_t n = (size_t)json_object_get_string_len(v);
        for (size_t i = 0; i < sizeof known_algs / sizeof known_algs[0]; i++) {
            if (n == strlen(known_algs[i].name) && memcmp(name, known_algs[i].name, n) == 0) {
                *alg = known_algs[i].alg;
                r = AUTH_OK;
            }
        }
    }
    json_object_put(header);
    return r;
}

/* A token may only use an algorithm for which a key is configured. */
static bool alg_configured(const auth_verifier *v, token_alg alg)
{
    if (alg == ALG_HS256)
        return v->secrets != NULL && v->secrets->count > 0;
    return jwt_keys_count(v->keys, key_kind_of(alg)) > 0;
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

static auth_result check_hmac(const secret_set *s, const char *token, const token_parts *parts)
{
    for (size_t i = 0; i < s->count && i < SECRETS_MAX; i++) {
        if (signature_matches(s->item[i].data, s->item[i].len, token, parts))
            return AUTH_OK;
    }
    return AUTH_BAD_SIGNATURE;
}

static auth_result check_signature(const auth_verifier *v, token_alg alg, const char *token,
                                   const token_parts *parts)
{
    if (alg == ALG_HS256)
        return check_hmac(v->secrets, token, parts);
    /* split_token checked the alphabet; decoding also refuses non-zero
     * trailing bits, so each signature has exactly one accepted encoding. */
    unsigned char sig[AUTH_MAX_TOKEN / 4 * 3 + 3];
    size_t sig_len = 0;
    if (parts->signature_len == 0 || parts->signature_len / 4 * 3 + 3 > sizeof sig ||
        !b64url_decode(parts->signature, parts->signature_len, sig, &sig_len))
        return AUTH_BAD_SIGNATURE;
    return jwt_keys_verify(v->keys, key_kind_of(alg), (const unsigned char *)token,
                           parts->signing_input_len, sig, sig_len)
               ? AUTH_OK
               : AUTH_BAD_SIGNATURE;
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

/* nbf (RFC 7519 §4.1.5): absent is fine; present, it must be a number not
 * after now (no leeway, as for exp: keep the clocks in sync). */
static auth_result claim_nbf(json_object *claims, time_t now)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(claims, "nbf", &v))
        return AUTH_OK;
    if (v != NULL && json_object_is_type(v, json_type_int))
        return json_object_get_int64(v) <= (int64_t)now ? AUTH_OK : AUTH_NOT_YET_VALID;
    if (v != NULL && json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        return isfinite(d) && d <= (double)now ? AUTH_OK : AUTH_NOT_YET_VALID;
    }
    /* A validity bound we cannot read must not be taken as no bound. */
    return AUTH_NOT_YET_VALID;
}

static bool json_string_is(json_object *v, const char *want)
{
    size_t n = strlen(want);
    return v != NULL && json_object_is_type(v, json_type_string) &&
           (size_t)json_object_get_string_len(v) == n &&
           memcmp(json_object_get_string(v), want, n) == 0;
}

static auth_result claim_iss(json_object *claims, const char *issuer)
{
    if (issuer == NULL)
        return AUTH_OK;
    json_object *v = NULL;
    return json_object_object_get_ex(claims, "iss", &v) && json_string_is(v, issuer)
               ? AUTH_OK
               : AUTH_BAD_ISSUER;
}

/* aud (RFC 7519 §4.1.3): a string, or an array of strings one of which is ours. */
static auth_result claim_aud(json_object *claims, const char *audience)
{
    if (audience == NULL)
        return AUTH_OK;
    json_object *v = NULL;
    if (!json_object_object_get_ex(claims, "aud", &v) || v == NULL)
        return AUTH_BAD_AUDIENCE;
    if (json_string_is(v, audience))
        return AUTH_OK;
    if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++)
            if (json_string_is(json_object_array_get_idx(v, i), audience))
                return AUTH_OK;
    }
    return AUTH_BAD_AUDIENCE;
}

static auth_result check_claims(const auth_verifier *v, const token_parts *parts, time_t now,
                                auth_claims *out)
{
    json_object *claims = decode_json_part(parts->payload, parts->payload_len);
    if (claims == NULL)
        return AUTH_MALFORMED;
    auth_result r = claim_exp(claims, now, &out->exp);
    if (r == AUTH_OK)
        r = claim_nbf(claims, now);
    if (r == AUTH_OK)
        r = claim_iss(claims, v->issuer);
    if (r == AUTH_OK)
        r = claim_aud(claims, v->audience);
    if (r == AUTH_OK)
        r = claim_user(claims, &out->user_id);
    if (r == AUTH_OK)
        r = claim_email(claims, out->email, sizeof out->email);
    json_object_put(claims);
    return r;
}

auth_result auth_verify(const auth_verifier *v, const char *token, size_t len, time_t now,
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
    static const auth_verifier nothing = { 0 };
    if (v == NULL)
        v = &nothing;
    token_alg alg = ALG_HS256;
    auth_result r = check_header(&parts, &alg);
    if (r == AUTH_OK && !alg_configured(v, alg))
        r = AUTH_BAD_ALG;
    if (r == AUTH_OK)
        r = check_signature(v, alg, token, &parts);
    if (r == AUTH_OK)
        r = check_claims(v, &parts, now, claims);
    if (r != AUTH_OK)
        memset(claims, 0, sizeof *claims); /* never hand out half-checked claims */
    return r;
}

auth_result auth_verify_token(const secret_set *s, const char *token, size_t len, time_t now,
                              auth_claims *out)
{
    auth_verifier v = { .secrets = s };
    return auth_verify(&v, token, len, now, out);
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
    case AUTH_NOT_YET_VALID:
        return "token_not_yet_valid";
    case AUTH_BAD_AUDIENCE:
        return "bad_audience";
    case AUTH_BAD_ISSUER:
        return "bad_issuer";
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

/* ---- auth_token_mint: tokens with every claim we check, any algorithm ---- */

static int add_int(json_object *o, const char *key, int64_t v)
{
    json_object *j = json_object_new_int64(v);
    if (j == NULL || json_object_object_add(o, key, j) != 0) {
        json_object_put(j);
        return -1;
    }
    return 0;
}

static int add_str(json_object *o, const char *key, const char *v)
{
    json_object *j = json_object_new_string(v);
    if (j == NULL || json_object_object_add(o, key, j) != 0) {
        json_object_put(j);
        return -1;
    }
    return 0;
}

/* The JSON text of o, base64url-encoded at out + *n. */
static int append_b64_json(json_object *o, char *out, size_t cap, size_t *n)
{
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text == NULL || (len + 2) / 3 * 4 > cap - *n)
        return -1;
    *n += b64url_encode((const unsigned char *)text, len, out + *n);
    return 0;
}

static json_object *mint_claims(const auth_mint *m)
{
    json_object *c = json_object_new_object();
    if (c == NULL)
        return NULL;
    int rc = add_int(c, "user_id", m->user_id) | add_str(c, "email", m->email ? m->email : "") |
             add_int(c, "iat", (int64_t)time(NULL)) | add_int(c, "exp", m->exp);
    if (m->nbf != 0)
        rc |= add_int(c, "nbf", m->nbf);
    if (m->issuer != NULL)
        rc |= add_str(c, "iss", m->issuer);
    if (m->audience != NULL)
        rc |= add_str(c, "aud", m->audience);
    if (rc != 0) {
        json_object_put(c);
        return NULL;
    }
    return c;
}

/* header.payload, then "." and the signature, in one malloc'd string. */
char *auth_token_mint(const auth_mint *m, const secret_set *s, const jwt_signer *signer)
{
    if (m == NULL || m->user_id <= 0 ||
        (m->email != NULL && strlen(m->email) > AUTH_MAX_EMAIL))
        return NULL;
    if (signer == NULL && (s == NULL || s->count == 0 || s->item[0].data == NULL ||
                           s->item[0].len == 0 || s->item[0].len > INT_MAX))
        return NULL;
    const char *alg = signer != NULL ? jwt_key_alg(jwt_signer_kind(signer)) : "HS256";
    json_object *header = json_object_new_object();
    json_object *claims = mint_claims(m);
    char *tok = malloc(AUTH_MAX_TOKEN + 1);
    size_t n = 0;
    bool ok = header != NULL && claims != NULL && tok != NULL &&
              add_str(header, "alg", alg) == 0 && add_str(header, "typ", "JWT") == 0 &&
              append_b64_json(header, tok, AUTH_MAX_TOKEN, &n) == 0 && n < AUTH_MAX_TOKEN;
    if (ok) {
        tok[n++] = '.';
        ok = append_b64_json(claims, tok, AUTH_MAX_TOKEN, &n) == 0;
    }
    unsigned char sig[JWT_SIG_MAX];
    size_t sig_len = 0;
    if (ok && signer != NULL) {
        sig_len = jwt_signer_sign(signer, (const unsigned char *)tok, n, sig);
    } else if (ok) {
        unsigned int mac_len = 0;
        if (HMAC(EVP_sha256(), s->item[0].data, (int)s->item[0].len, (const unsigned char *)tok,
                 n, sig, &mac_len) != NULL)
            sig_len = mac_len;
    }
    ok = ok && sig_len > 0 && n + 1 + (sig_len + 2) / 3 * 4 <= AUTH_MAX_TOKEN;
    if (ok) {
        tok[n++] = '.';
        n += b64url_encode(sig, sig_len, tok + n);
        tok[n] = '\0';
    }
    OPENSSL_cleanse(sig, sizeof sig);
    json_object_put(header);
    json_object_put(claims);
    if (!ok) {
        free(tok);
        return NULL;
    }
    return tok;
}
