/* fuzz_jwt.c — libFuzzer harness for JWT (HS256) verification against a fixed
 * set of two secrets. Raw tokens exercise the shape, base64url and header
 * checks; tokens the harness signs itself (header and claims chosen by the
 * fuzzer) get past the signature, so the claim parsing is reached too; and
 * tokens minted by auth_token_create must verify to exactly what was minted.
 *
 * Input: bytes 0-7 = now (little-endian int64), byte 8 = mode:
 *   bits 0-1: 0 raw token = the rest;
 *             1 signed: rest = u16 header length, header JSON, claims JSON;
 *             2 signed: header {"alg":"HS256","typ":"JWT"}, claims JSON = the rest;
 *             3 minted: rest = i64 user_id, i64 exp, email (up to a NUL);
 *   bits 2-3 (modes 1, 2): sign with secret 0, secret 1, a secret not in the
 *             set, or leave the signature empty;
 *   bit 4   (modes 1, 2): change one signature character (at the position byte 9 names);
 *   bit 5:    verify with out = NULL. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <string.h>

#include "src/common/auth.h"
#include "src/common/utf8.h"
#include "tests/fuzz/fuzz.h"

static unsigned char secret0[] = "fuzz-secret-number-zero";
static unsigned char secret1[] = "an-older-fuzz-secret";
static unsigned char not_a_secret[] = "fuzz-secret-number-zerO";

static secret_set both_secrets(void)
{
    secret_set s = { .count = 2 };
    s.item[0].data = secret0;
    s.item[0].len = sizeof secret0 - 1;
    s.item[1].data = secret1;
    s.item[1].len = sizeof secret1 - 1;
    return s;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url; out must hold (n * 4 + 2) / 3 chars. */
static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    size_t w = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[w++] = b64url_alphabet[(acc >> bits) & 63];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[w++] = b64url_alphabet[(acc << (6 - bits)) & 63];
    return w;
}

static void check_result(auth_result r, const auth_claims *c, time_t now)
{
    FUZZ_ASSERT(r >= AUTH_OK && r < AUTH_RESULT_COUNT);
    const char *reason = auth_result_reason(r);
    FUZZ_ASSERT(reason != NULL && strcmp(reason, "unknown") != 0);
    if (c == NULL)
        return;
    if (r == AUTH_OK) {
        FUZZ_ASSERT(c->user_id > 0);
        FUZZ_ASSERT(c->exp > (int64_t)now);
        FUZZ_ASSERT(memchr(c->email, '\0', sizeof c->email) != NULL);
        FUZZ_ASSERT(strlen(c->email) <= AUTH_MAX_EMAIL);
    } else {
        /* Never half-checked claims on failure. */
        static const auth_claims zero;
        FUZZ_ASSERT(memcmp(c, &zero, sizeof zero) == 0);
    }
}

static auth_result verify(const secret_set *s, const char *tok, size_t len, time_t now,
                          bool null_out)
{
    auth_claims c;
    memset(&c, 0x5A, sizeof c); /* garbage in, so "zeroed on failure" means something */
    auth_result r = auth_verify_token(s, tok, len, now, null_out ? NULL : &c);
    check_result(r, null_out ? NULL : &c, now);
    return r;
}

/* base64url(header) "." base64url(claims) "." signature, in an exact-size
 * buffer so a read past the token is caught. */
static void signed_token(const uint8_t *header, size_t hlen, const uint8_t *claims, size_t clen,
                         unsigned mode, unsigned flip_at, time_t now)
{
    unsigned signer = (mode >> 2) & 3;
    bool flip = (mode & 0x10) != 0;
    size_t cap = (hlen * 4 + 2) / 3 + 1 + (clen * 4 + 2) / 3 + 1 + 43;
    char *tok = malloc(cap);
    if (tok == NULL)
        abort();
    size_t n = b64url(header, hlen, tok);
    tok[n++] = '.';
    n += b64url(claims, clen, tok + n);
    size_t signing_len = n;
    tok[n++] = '.';
    size_t sig_at = n;
    if (signer < 3) {
        const unsigned char *key = signer == 0 ? secret0 : signer == 1 ? secret1 : not_a_secret;
        size_t key_len = signer == 0   ? sizeof secret0 - 1
                         : signer == 1 ? sizeof secret1 - 1
                                       : sizeof not_a_secret - 1;
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)tok, signing_len, mac,
                 &mac_len) == NULL)
            abort();
        n += b64url(mac, mac_len, tok + n);
    }
    if (flip && n > sig_at) {
        size_t at = sig_at + flip_at % (n - sig_at);
        /* Another character of the alphabet: still well-formed, but not the MAC. */
        const char *p = strchr(b64url_alphabet, tok[at]);
        tok[at] = b64url_alphabet[(size_t)(p - b64url_alphabet + 1) % 64];
    }
    /* Shrink to fit, so the token ends exactly at the end of its allocation. */
    char *exact = malloc(n);
    if (exact == NULL)
        abort();
    memcpy(exact, tok, n);
    free(tok);

    secret_set s = both_secrets();
    auth_result r = verify(&s, exact, n, now, (mode & 0x20) != 0);
    bool genuine = (signer == 0 || signer == 1) && !flip;
    if (!genuine)
        FUZZ_ASSERT(r != AUTH_OK);
    if (genuine && n <= AUTH_MAX_TOKEN && hlen > 0 && clen > 0)
        FUZZ_ASSERT(r != AUTH_BAD_SIGNATURE && r != AUTH_MISSING);
    if (genuine && n <= AUTH_MAX_TOKEN && (mode & 3) == 2 && clen > 0)
        FUZZ_ASSERT(r != AUTH_BAD_ALG && r != AUTH_BAD_SIGNATURE);
    /* No secret, or a set of only the other secret: never accepted. */
    FUZZ_ASSERT(verify(NULL, exact, n, now, false) != AUTH_OK);
    secret_set other = { .count = 1 };
    other.item[0] = signer == 0 ? s.item[1] : s.item[0];
    FUZZ_ASSERT(signer == 2 || signer == 3 || verify(&other, exact, n, now, false) != AUTH_OK);
    /* An empty secret in the set must not make anything verify. */
    secret_set empty = { .count = 1 };
    empty.item[0].data = secret0;
    empty.item[0].len = 0;
    FUZZ_ASSERT(verify(&empty, exact, n, now, false) != AUTH_OK);
    free(exact);
}

static void minted_token(const uint8_t *rest, size_t len, time_t now)
{
    int64_t user_id = (int64_t)fuzz_le(rest, len, 8);
    int64_t exp = (int64_t)fuzz_le(len > 8 ? rest + 8 : rest, len > 8 ? len - 8 : 0, 8);
    char email[AUTH_MAX_EMAIL + 16];
    size_t elen = 0;
    for (size_t i = 16; i < len && rest[i] != '\0' && elen < sizeof email - 1; i++)
        email[elen++] = (char)rest[i];
    email[elen] = '\0';

    secret_set s = both_secrets();
    char *tok = auth_token_create(&s, user_id, email, exp);
    bool mintable = user_id > 0 && elen <= AUTH_MAX_EMAIL &&
                    utf8_valid((const uint8_t *)email, elen);
    if (tok == NULL) {
        FUZZ_ASSERT(!mintable);
        return;
    }
    FUZZ_ASSERT(user_id > 0 && elen <= AUTH_MAX_EMAIL);
    size_t n = strlen(tok);
    auth_claims c;
    auth_result r = auth_verify_token(&s, tok, n, now, &c);
    check_result(r, &c, now);
    if (exp > (int64_t)now) {
        /* What was minted comes back exactly. */
        FUZZ_ASSERT(r == AUTH_OK);
        FUZZ_ASSERT(c.user_id == user_id && c.exp == exp && strcmp(c.email, email) == 0);
    } else {
        FUZZ_ASSERT(r == AUTH_EXPIRED);
    }
    /* Verified by the set that lists the signing secret second, too. */
    secret_set rotated = { .count = 2 };
    rotated.item[0] = s.item[1];
    rotated.item[1] = s.item[0];
    FUZZ_ASSERT(auth_verify_token(&rotated, tok, n, now, NULL) == r);
    secret_set old_only = { .count = 1 };
    old_only.item[0] = s.item[1];
    FUZZ_ASSERT(auth_verify_token(&old_only, tok, n, now, NULL) == AUTH_BAD_SIGNATURE);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    time_t now = (time_t)(int64_t)fuzz_le(data, size, 8);
    unsigned mode = size > 8 ? data[8] : 0;
    const uint8_t *rest = size > 9 ? data + 9 : data + size;
    size_t len = size > 9 ? size - 9 : 0;
    secret_set s = both_secrets();

    switch (mode & 3) {
    case 0: {
        /* The token in an exact-size copy, as it would sit in a request. */
        /* calloc: gcc would call the empty token's one spare byte uninitialised. */
        char *tok = calloc(1, len ? len : 1);
        if (tok == NULL)
            abort();
        if (len)
            memcpy(tok, rest, len);
        auth_result r = verify(&s, tok, len, now, (mode & 0x20) != 0);
        if (len == 0)
            FUZZ_ASSERT(r == AUTH_MISSING);
        if (len > AUTH_MAX_TOKEN)
            FUZZ_ASSERT(r == AUTH_MALFORMED);
        free(tok);
        break;
    }
    case 1: {
        size_t hlen = (size_t)fuzz_le(rest, len, 2);
        const uint8_t *body = len >= 2 ? rest + 2 : rest + len;
        size_t blen = len >= 2 ? len - 2 : 0;
        if (hlen > blen)
            hlen = blen;
        signed_token(body, hlen, body + hlen, blen - hlen, mode, size > 9 ? data[9] : 0, now);
        break;
    }
    case 2: {
        static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
        signed_token((const uint8_t *)header, sizeof header - 1, rest, len, mode,
                     size > 9 ? data[9] : 0, now);
        break;
    }
    default:
        minted_token(rest, len, now);
        break;
    }
    return 0;
}
