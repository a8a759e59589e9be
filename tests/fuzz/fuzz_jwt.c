/* fuzz_jwt.c — libFuzzer harness for JWT verification: HS256 against a fixed
 * set of two secrets, and RS256, ES256 and EdDSA against a key set (an RSA
 * 2048, a P-256 and an Ed25519 key made by OpenSSL when the harness starts,
 * loaded from a PEM file through jwt_keys_load). Raw tokens exercise the
 * shape, base64url and header checks; tokens the harness signs itself (header
 * and claims chosen by the fuzzer) get past the signature, so the claim
 * parsing is reached too; and tokens minted by auth_token_create (HS256) or
 * auth_token_mint (a private key) must verify to exactly what was minted.
 *
 * Input: bytes 0-7 = now (little-endian int64), byte 8 = mode:
 *   bits 0-1: 0 raw token = the rest;
 *             1 signed: rest = u16 header length, header JSON, claims JSON;
 *             2 signed: header {"alg":ALG,"typ":"JWT"} (ALG of bits 6-7), claims JSON = the rest;
 *             3 minted: rest = i64 user_id, i64 exp, email (up to a NUL);
 *   bits 2-3 (modes 1, 2): HMAC: sign with secret 0, secret 1, a secret not in the
 *             set, or leave the signature empty; a key: sign with the configured
 *             key, with another key of the same type, with HMAC keyed by the
 *             public key's PEM (the alg-confusion forgery), or (P-256) in DER;
 *   bit 4   (modes 1, 2): change one signature character (at the position byte 9 names);
 *   bit 5:    verify with out = NULL;
 *   bits 6-7: the signing family: 0 HMAC (HS256), 1 RSA (RS256), 2 P-256 (ES256),
 *             3 Ed25519 (EdDSA). */
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "src/common/auth.h"
#include "src/common/jwt_keys.h"
#include "src/common/utf8.h"
#include "tests/fuzz/fuzz.h"

#define FAMILY_HMAC 0

/* ---- the key set, made once per process ---------------------------------- */

typedef struct {
    EVP_PKEY *key;       /* configured: its public half is in keys */
    EVP_PKEY *other;     /* same type, not configured */
    unsigned char *pem;  /* the public key's PEM text (the alg-confusion HMAC key) */
    size_t pem_len;
    jwt_signer *signer;  /* the private key as wsnotifyctl loads it */
    const char *alg;
} family;

static family fam[4];          /* [1..3]: RSA, P-256, Ed25519 */
static jwt_keys *keys;         /* all three public keys */
static jwt_keys *only[4];      /* [f]: family f's public key alone */

static EVP_PKEY *new_key(int f)
{
    EVP_PKEY *k = f == 1   ? EVP_RSA_gen(2048)
                  : f == 2 ? EVP_EC_gen("P-256")
                           : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL)
        abort();
    return k;
}

/* path gets the PEM of k (public or private); returns its text. */
static unsigned char *write_pem(EVP_PKEY *k, bool private_key, char *path, size_t *len)
{
    BIO *mem = BIO_new(BIO_s_mem());
    int ok = private_key ? PEM_write_bio_PrivateKey(mem, k, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PUBKEY(mem, k);
    char *p = NULL;
    long n = BIO_get_mem_data(mem, &p);
    if (!ok || n <= 0)
        abort();
    unsigned char *copy = malloc((size_t)n);
    if (copy == NULL)
        abort();
    memcpy(copy, p, (size_t)n);
    BIO_free(mem);
    *len = (size_t)n;
    if (path != NULL) {
        strcpy(path, "/tmp/wsn-fuzz-jwt-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0 || write(fd, copy, *len) != (ssize_t)*len || close(fd) != 0)
            abort();
    }
    return copy;
}

static jwt_keys *load_keys(const unsigned char *pem, size_t len)
{
    char path[64];
    strcpy(path, "/tmp/wsn-fuzz-jwt-XXXXXX");
    int fd = mkstemp(path);
    jwt_keys *k = NULL;
    char err[256];
    if (fd < 0 || write(fd, pem, len) != (ssize_t)len || close(fd) != 0 ||
        jwt_keys_load(&k, path, err, sizeof err) != 0)
        abort();
    unlink(path);
    return k;
}

static void init_keys(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    static const char *const algs[4] = {"HS256", "RS256", "ES256", "EdDSA"};
    unsigned char all[8192];
    size_t all_len = 0;
    for (int f = 1; f <= 3; f++) {
        fam[f].alg = algs[f];
        fam[f].key = new_key(f);
        fam[f].other = new_key(f);
        fam[f].pem = write_pem(fam[f].key, false, NULL, &fam[f].pem_len);
        if (all_len + fam[f].pem_len > sizeof all)
            abort();
        memcpy(all + all_len, fam[f].pem, fam[f].pem_len);
        all_len += fam[f].pem_len;
        only[f] = load_keys(fam[f].pem, fam[f].pem_len);
        char path[64];
        size_t n = 0;
        unsigned char *priv = write_pem(fam[f].key, true, path, &n);
        OPENSSL_cleanse(priv, n);
        free(priv);
        char err[256];
        if (jwt_signer_load(&fam[f].signer, path, err, sizeof err) != 0)
            abort();
        unlink(path);
    }
    keys = load_keys(all, all_len);
}

/* The JWS signature of input[0..n) by key, as a token carries it (ES256 r||s,
 * or DER when der). Returns its length. */
static size_t key_sign(EVP_PKEY *key, const char *input, size_t n, bool der, unsigned char *out)
{
    bool ed = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
    bool ec = EVP_PKEY_get_base_id(key) == EVP_PKEY_EC;
    unsigned char sig[512];
    size_t len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, ed ? NULL : EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input, n) != 1)
        abort();
    EVP_MD_CTX_free(ctx);
    if (!ec || der) {
        memcpy(out, sig, len);
        return len;
    }
    const unsigned char *p = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (es == NULL || BN_bn2binpad(ECDSA_SIG_get0_r(es), out, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(es), out + 32, 32) != 32)
        abort();
    ECDSA_SIG_free(es);
    return 64;
}

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

static auth_result verify_with(const auth_verifier *v, const char *tok, size_t len, time_t now,
                               bool null_out)
{
    auth_claims c;
    memset(&c, 0x5A, sizeof c); /* garbage in, so "zeroed on failure" means something */
    auth_result r = auth_verify(v, tok, len, now, null_out ? NULL : &c);
    check_result(r, null_out ? NULL : &c, now);
    return r;
}

static auth_result verify(const secret_set *s, const char *tok, size_t len, time_t now,
                          bool null_out)
{
    auth_verifier v = {.secrets = s, .keys = keys};
    return verify_with(&v, tok, len, now, null_out);
}

/* The same token under every other verifier: fewer keys never accept more,
 * aud/iss requirements never turn a refusal into an acceptance, and a key
 * set alone never accepts an HS256 token. */
static void verify_variants(const char *tok, size_t n, time_t now, auth_result full)
{
    auth_verifier secrets_only = {.secrets = NULL};
    secret_set s = both_secrets();
    secrets_only.secrets = &s;
    auth_verifier keys_only = {.keys = keys};
    auth_verifier rsa = {.secrets = &s, .keys = only[1]};
    auth_verifier strict = {.secrets = &s, .keys = keys, .audience = "fuzz-aud",
                            .issuer = "fuzz-iss"};
    auth_result a = verify_with(&secrets_only, tok, n, now, false);
    auth_result b = verify_with(&keys_only, tok, n, now, false);
    auth_result c = verify_with(&rsa, tok, n, now, false);
    auth_result d = verify_with(&strict, tok, n, now, false);
    FUZZ_ASSERT(a != AUTH_OK || full == AUTH_OK);
    FUZZ_ASSERT(b != AUTH_OK || full == AUTH_OK);
    FUZZ_ASSERT(c != AUTH_OK || full == AUTH_OK);
    FUZZ_ASSERT(d != AUTH_OK || full == AUTH_OK);
    /* Exactly one of the two halves can accept a token: its alg decides. */
    FUZZ_ASSERT(!(a == AUTH_OK && b == AUTH_OK));
    /* A refusal before the claims is the same whatever aud/iss ask for. */
    if (full != AUTH_OK && full != AUTH_BAD_AUDIENCE && full != AUTH_BAD_ISSUER &&
        full != AUTH_NO_USER && full != AUTH_BAD_EMAIL)
        FUZZ_ASSERT(d == full);
}

/* base64url(header) "." base64url(claims) "." signature, in an exact-size
 * buffer so a read past the token is caught. */
static void signed_token(const uint8_t *header, size_t hlen, const uint8_t *claims, size_t clen,
                         unsigned mode, unsigned flip_at, time_t now)
{
    unsigned signer = (mode >> 2) & 3;
    unsigned f = (mode >> 6) & 3;
    bool flip = (mode & 0x10) != 0;
    size_t cap = (hlen * 4 + 2) / 3 + 1 + (clen * 4 + 2) / 3 + 1 + 1024;
    char *tok = malloc(cap);
    if (tok == NULL)
        abort();
    size_t n = b64url(header, hlen, tok);
    tok[n++] = '.';
    n += b64url(claims, clen, tok + n);
    size_t signing_len = n;
    tok[n++] = '.';
    size_t sig_at = n;
    if (f != FAMILY_HMAC) {
        unsigned char sig[512];
        size_t sig_len = 0;
        unsigned int mac_len = 0;
        switch (signer) {
        case 0: sig_len = key_sign(fam[f].key, tok, signing_len, false, sig); break;
        case 1: sig_len = key_sign(fam[f].other, tok, signing_len, false, sig); break;
        case 2: /* HS256 keyed with the public key's PEM: what an alg-confused verifier takes */
            if (HMAC(EVP_sha256(), fam[f].pem, (int)fam[f].pem_len, (const unsigned char *)tok,
                     signing_len, sig, &mac_len) == NULL)
                abort();
            sig_len = mac_len;
            break;
        default: sig_len = key_sign(fam[f].key, tok, signing_len, true, sig); break;
        }
        n += b64url(sig, sig_len, tok + n);
    } else if (signer < 3) {
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
    verify_variants(exact, n, now, r);
    /* With a key: only the configured key's own signature is genuine (a DER
     * ES256 signature is not; Ed25519 and RSA have no DER form, so case 3
     * is the configured key's signature there). */
    bool genuine = f == FAMILY_HMAC ? (signer == 0 || signer == 1) && !flip
                                    : (signer == 0 || (signer == 3 && f != 2)) && !flip;
    if (!genuine)
        FUZZ_ASSERT(r != AUTH_OK);
    if (genuine && n <= AUTH_MAX_TOKEN && hlen > 0 && clen > 0) {
        /* Checked by the signer's kind of key alone, a genuine signature is
         * never "bad": at worst its header names another algorithm. */
        auth_verifier own = {.secrets = f == FAMILY_HMAC ? &s : NULL,
                             .keys = f == FAMILY_HMAC ? NULL : only[f]};
        auth_result r_own = verify_with(&own, exact, n, now, false);
        FUZZ_ASSERT(r_own != AUTH_BAD_SIGNATURE && r_own != AUTH_MISSING);
    }
    if (genuine && n <= AUTH_MAX_TOKEN && (mode & 3) == 2 && clen > 0)
        FUZZ_ASSERT(r != AUTH_BAD_ALG && r != AUTH_BAD_SIGNATURE);
    if (f != FAMILY_HMAC) {
        /* Signed by a key: no secret ever makes it verify, and the alg
         * confusion forgery never passes, whatever its header says. */
        auth_verifier secrets_only = {.secrets = &s};
        FUZZ_ASSERT(verify_with(&secrets_only, exact, n, now, false) != AUTH_OK);
        free(exact);
        return;
    }
    /* No secret, or a set of only the other secret: never accepted. */
    auth_verifier nothing = {.secrets = NULL};
    FUZZ_ASSERT(verify_with(&nothing, exact, n, now, false) != AUTH_OK);
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

/* auth_token_mint with family f's private key: verifies exactly, by that key only. */
static void minted_with_key(unsigned f, int64_t user_id, int64_t exp, const char *email,
                            size_t elen, time_t now)
{
    auth_mint m = {.user_id = user_id, .email = email, .exp = exp, .audience = "fuzz-aud",
                   .issuer = "fuzz-iss", .nbf = (int64_t)now};
    char *tok = auth_token_mint(&m, NULL, fam[f].signer);
    if (tok == NULL) {
        FUZZ_ASSERT(!(user_id > 0 && elen <= AUTH_MAX_EMAIL));
        return;
    }
    FUZZ_ASSERT(user_id > 0 && elen <= AUTH_MAX_EMAIL);
    size_t n = strlen(tok);
    secret_set s = both_secrets();
    auth_verifier strict = {.secrets = &s, .keys = keys, .audience = "fuzz-aud",
                            .issuer = "fuzz-iss"};
    auth_claims c;
    auth_result r = auth_verify(&strict, tok, n, now, &c);
    check_result(r, &c, now);
    bool utf8 = utf8_valid((const uint8_t *)email, elen);
    if (exp > (int64_t)now && utf8) {
        FUZZ_ASSERT(r == AUTH_OK);
        FUZZ_ASSERT(c.user_id == user_id && c.exp == exp && strcmp(c.email, email) == 0);
    } else if (exp <= (int64_t)now) {
        FUZZ_ASSERT(r == AUTH_EXPIRED);
    }
    auth_verifier other_aud = {.keys = keys, .audience = "fuzz-aud2"};
    FUZZ_ASSERT(r != AUTH_OK || auth_verify(&other_aud, tok, n, now, NULL) == AUTH_BAD_AUDIENCE);
    auth_verifier secrets_only = {.secrets = &s};
    FUZZ_ASSERT(auth_verify(&secrets_only, tok, n, now, NULL) == AUTH_BAD_ALG);
    auth_verifier rsa = {.keys = only[1], .audience = "fuzz-aud", .issuer = "fuzz-iss"};
    FUZZ_ASSERT(auth_verify(&rsa, tok, n, now, NULL) == (f == 1 ? r : AUTH_BAD_ALG));
    free(tok);
}

static void minted_token(const uint8_t *rest, size_t len, time_t now, unsigned f)
{
    int64_t user_id = (int64_t)fuzz_le(rest, len, 8);
    int64_t exp = (int64_t)fuzz_le(len > 8 ? rest + 8 : rest, len > 8 ? len - 8 : 0, 8);
    char email[AUTH_MAX_EMAIL + 16];
    size_t elen = 0;
    for (size_t i = 16; i < len && rest[i] != '\0' && elen < sizeof email - 1; i++)
        email[elen++] = (char)rest[i];
    email[elen] = '\0';
    if (f != FAMILY_HMAC) {
        minted_with_key(f, user_id, exp, email, elen, now);
        return;
    }

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
    init_keys();
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
        verify_variants(tok, len, now, r);
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
        static const char *const headers[4] = {
            "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
            "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}"};
        const char *header = headers[(mode >> 6) & 3];
        /* The alg-confusion forgery under the key's own alg is just a bad
         * signature; under HS256 it is the attack itself. */
        if (((mode >> 2) & 3) == 2 && (mode >> 6) != 0)
            header = headers[0];
        signed_token((const uint8_t *)header, strlen(header), rest, len, mode,
                     size > 9 ? data[9] : 0, now);
        break;
    }
    default:
        minted_token(rest, len, now, (mode >> 6) & 3);
        break;
    }
    return 0;
}
