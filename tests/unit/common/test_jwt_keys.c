/* test_jwt_keys.c — unit tests for the JWT public keys (src/common/jwt_keys.c)
 * and for every verification branch of the RS256, ES256 and EdDSA tokens
 * through auth_verify (src/common/auth.c): valid, tampered payload and
 * signature, exp, nbf, aud (string, array, absent), iss, an algorithm with no
 * key, alg confusion (HS256 keyed with the RSA public key's PEM or DER), ES256
 * signatures in DER refused; loading: several keys in one file, short RSA
 * keys, other curves, private keys, garbage.
 *
 * The keys are made at test time with the openssl command in a temporary
 * directory (once, for all tests). Tokens are signed here with OpenSSL's EVP
 * directly, not with jwt_signer, so that the verifier is not checked only
 * against its own signing code (jwt_signer gets a round trip of its own). */
#include <check.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/auth.h"
#include "src/common/jwt_keys.h"
#include "tests/check_main.h"
#include "tests/scratch_dir.h"

#define NOW ((time_t)1700000000)
#define GOOD_CLAIMS "{\"user_id\":5,\"email\":\"e@x\",\"exp\":1700000100}"


static void write_file(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(scratch_path(name), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void setup_keys(void)
{
    scratch_make("wsn-test-jwt-keys");
    scratch_sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key");
    scratch_sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2.key");
    scratch_sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.key");
    scratch_sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key");
    scratch_sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384.key");
    scratch_sh("openssl genpkey -algorithm ed25519 -out ed.key");
    scratch_sh("openssl genpkey -algorithm ed25519 -out ed2.key");
    scratch_sh("openssl genpkey -algorithm ed448 -out ed448.key");
    const char *keys[] = {"rsa", "rsa2", "rsa1024", "ec", "ec384", "ed", "ed2", "ed448"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        scratch_sh("openssl pkey -in %s.key -pubout -out %s.pub", keys[i], keys[i]);
    scratch_sh("openssl pkey -in rsa.key -pubout -outform DER -out rsa.der");
    scratch_sh("openssl rsa -in rsa.key -RSAPublicKey_out -out rsa-pkcs1.pub");
    scratch_sh("openssl req -x509 -new -key ec.key -subj /CN=idp -days 2 -out ec-cert.pem");
    scratch_sh("openssl pkey -in rsa.key -aes128 -passout pass:pw -out rsa-enc.key");
    scratch_sh("cat rsa.pub ec.pub ed.pub > all.pem");
    scratch_sh("(echo '# our identity provider, 2026'; cat rsa.pub; echo; cat rsa2.pub ed.pub ed2.pub; "
       "echo trailing words) > several.pem");
    write_file("garbage.pem", "this is no key at all\n", 22);
    write_file("empty.pem", "", 0);
    scratch_sh("(cat rsa.pub; printf -- '-----BEGIN PUBLIC KEY-----\\nnot*base64\\n"
       "-----END PUBLIC KEY-----\\n') > broken.pem");
    scratch_sh("(cat rsa.pub; printf -- '-----BEGIN PUBLIC KEY-----\\nAAAA\\n"
       "-----END PUBLIC KEY-----\\n') > bad-der.pem");
    scratch_sh("(cat rsa.pub rsa.key) > with-private.pem");
    scratch_sh("(echo '-----BEGIN EC PARAMETERS-----'; echo 'BggqhkjOPQMBBw=='; "
       "echo '-----END EC PARAMETERS-----'; cat ec.pub) > ec-params.pem");
}

static void teardown_keys(void)
{
    scratch_remove();
}

/* ---- helpers: keys and tokens ---- */

static EVP_PKEY *private_key(const char *name)
{
    FILE *f = fopen(scratch_path(name), "r");
    ck_assert_ptr_nonnull(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(k);
    return k;
}

static jwt_keys *load_ok(const char *name)
{
    jwt_keys *k = NULL;
    char err[512] = "";
    ck_assert_msg(jwt_keys_load(&k, scratch_path(name), err, sizeof err) == 0, "%s: %s", name, err);
    ck_assert_ptr_nonnull(k);
    return k;
}

/* jwt_keys_load must fail with err naming the file and saying says. */
static void load_fails(const char *name, const char *says)
{
    jwt_keys *k = (jwt_keys *)1;
    char err[512] = "";
    ck_assert_int_eq(jwt_keys_load(&k, scratch_path(name), err, sizeof err), -1);
    ck_assert_ptr_null(k);
    ck_assert_msg(strstr(err, scratch_path(name)) != NULL, "'%s' does not name the file", err);
    ck_assert_msg(strstr(err, says) != NULL, "'%s' does not say '%s'", err, says);
}

static char *b64url(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    ck_assert_ptr_nonnull(out);
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    size_t w = 0;
    for (int r = 0; r < len; r++) {
        char c = out[r];
        if (c != '=')
            out[w++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[w] = '\0';
    return out;
}

/* "b64(header).b64(payload)" */
static char *signing_input(const char *header, const char *payload)
{
    char *h = b64url((const unsigned char *)header, strlen(header));
    char *p = b64url((const unsigned char *)payload, strlen(payload));
    char *s = malloc(strlen(h) + strlen(p) + 2);
    ck_assert_ptr_nonnull(s);
    sprintf(s, "%s.%s", h, p);
    free(h);
    free(p);
    return s;
}

static char *join(const char *input, const unsigned char *sig, size_t sig_len)
{
    char *b = b64url(sig, sig_len);
    char *tok = malloc(strlen(input) + strlen(b) + 2);
    ck_assert_ptr_nonnull(tok);
    sprintf(tok, "%s.%s", input, b);
    free(b);
    return tok;
}

typedef enum { SIG_JOSE, SIG_DER } sig_form;

/* The raw signature of input under key (ES256: DER, or converted to r||s). */
static size_t sign_raw(EVP_PKEY *key, const char *input, sig_form form, unsigned char *out)
{
    bool ed = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
    bool ec = EVP_PKEY_get_base_id(key) == EVP_PKEY_EC;
    unsigned char sig[1024];
    size_t n = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, ed ? NULL : EVP_sha256(), NULL, key), 1);
    ck_assert_int_eq(EVP_DigestSign(ctx, sig, &n, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    if (!ec || form == SIG_DER) {
        memcpy(out, sig, n);
        return n;
    }
    const unsigned char *p = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    ck_assert_ptr_nonnull(es);
    ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_r(es), out, 32), 32);
    ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_s(es), out + 32, 32), 32);
    ECDSA_SIG_free(es);
    return 64;
}

static char *sign_token(const char *alg, const char *payload, EVP_PKEY *key, sig_form form)
{
    char header[96];
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    char *input = signing_input(header, payload);
    unsigned char sig[1024];
    size_t n = sign_raw(key, input, form, sig);
    char *tok = join(input, sig, n);
    free(input);
    return tok;
}

static char *hs256_token(const char *payload, const unsigned char *key, size_t key_len)
{
    char *input = signing_input("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)key_len, (unsigned char *)input,
                               strlen(input), mac, &mac_len));
    char *tok = join(input, mac, mac_len);
    free(input);
    return tok;
}

static auth_result check(const auth_verifier *v, const char *tok, auth_claims *c)
{
    return auth_verify(v, tok, strlen(tok), NOW, c);
}

/* The three algorithms, each with its private key, and a verifier holding
 * all three public keys. */
static const struct {
    const char *alg;
    const char *key;
    jwt_key_kind kind;
} ALGS[] = {
    {"RS256", "rsa.key", JWT_KEY_RSA},
    {"ES256", "ec.key", JWT_KEY_P256},
    {"EdDSA", "ed.key", JWT_KEY_ED25519},
};
#define N_ALGS (sizeof ALGS / sizeof ALGS[0])

/* A token of alg i with payload, verified by all.pem with v's claims rules. */
static auth_result verify_alg(size_t i, const char *payload, const char *audience,
                              const char *issuer, auth_claims *c)
{
    jwt_keys *k = load_ok("all.pem");
    EVP_PKEY *key = private_key(ALGS[i].key);
    char *tok = sign_token(ALGS[i].alg, payload, key, SIG_JOSE);
    auth_verifier v = {.keys = k, .audience = audience, .issuer = issuer};
    auth_result r = check(&v, tok, c);
    free(tok);
    EVP_PKEY_free(key);
    jwt_keys_free(k);
    return r;
}

/* ---- loading ---- */

START_TEST(load_one_of_each)
{
    jwt_keys *k = load_ok("all.pem");
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_RSA), 1);
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_P256), 1);
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_ED25519), 1);
    char about[160];
    jwt_keys_describe(k, about, sizeof about);
    ck_assert_str_eq(about, "3 keys: 1 RSA (RS256), 1 P-256 (ES256), 1 Ed25519 (EdDSA)");
    jwt_keys_free(k);
    ck_assert_uint_eq(jwt_keys_count(NULL, JWT_KEY_RSA), 0);
    jwt_keys_free(NULL);
}
END_TEST

START_TEST(load_several_keys_with_text_around)
{
    jwt_keys *k = load_ok("several.pem");
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_RSA), 2);
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_P256), 0);
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_ED25519), 2);
    /* Any key of the kind verifies: the second RSA and the second Ed25519 key too. */
    const char *signers[][2] = {{"RS256", "rsa2.key"}, {"EdDSA", "ed2.key"},
                                {"RS256", "rsa.key"}, {"EdDSA", "ed.key"}};
    for (size_t i = 0; i < 4; i++) {
        EVP_PKEY *key = private_key(signers[i][1]);
        char *tok = sign_token(signers[i][0], GOOD_CLAIMS, key, SIG_JOSE);
        auth_verifier v = {.keys = k};
        auth_claims c;
        ck_assert_msg(check(&v, tok, &c) == AUTH_OK, "%s", signers[i][1]);
        ck_assert_int_eq(c.user_id, 5);
        free(tok);
        EVP_PKEY_free(key);
    }
    /* No P-256 key in this file: ES256 is not an algorithm it accepts. */
    EVP_PKEY *ec = private_key("ec.key");
    char *tok = sign_token("ES256", GOOD_CLAIMS, ec, SIG_JOSE);
    auth_verifier v = {.keys = k};
    ck_assert_int_eq(check(&v, tok, NULL), AUTH_BAD_ALG);
    free(tok);
    EVP_PKEY_free(ec);
    jwt_keys_free(k);
}
END_TEST

START_TEST(load_other_forms)
{
    /* PKCS#1 "RSA PUBLIC KEY", a certificate's key, EC parameters skipped. */
    jwt_keys *k = load_ok("rsa-pkcs1.pub");
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_RSA), 1);
    jwt_keys_free(k);
    k = load_ok("ec-cert.pem");
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_P256), 1);
    EVP_PKEY *ec = private_key("ec.key");
    char *tok = sign_token("ES256", GOOD_CLAIMS, ec, SIG_JOSE);
    auth_verifier v = {.keys = k};
    ck_assert_int_eq(check(&v, tok, NULL), AUTH_OK);
    free(tok);
    EVP_PKEY_free(ec);
    jwt_keys_free(k);
    k = load_ok("ec-params.pem");
    ck_assert_uint_eq(jwt_keys_count(k, JWT_KEY_P256), 1);
    jwt_keys_free(k);
}
END_TEST

START_TEST(load_refusals_name_the_file)
{
    load_fails("rsa1024.pub", "1024 bits");
    load_fails("ec384.pub", "P-256");
    load_fails("ed448.pub", "Ed448");
    load_fails("garbage.pem", "no PEM public key");
    load_fails("empty.pem", "no PEM public key");
    load_fails("broken.pem", "block 2");
    load_fails("bad-der.pem", "block 2");
    load_fails("with-private.pem", "private key");
    load_fails("rsa.key", "private key");
    load_fails("rsa.der", "no PEM public key"); /* DER is not PEM */
    load_fails("no-such-file.pem", "No such file");
    /* A directory (or a FIFO) is refused without reading. */
    char err[512];
    jwt_keys *k = NULL;
    ck_assert_int_eq(jwt_keys_load(&k, scratch_dir, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(mkfifo(scratch_path("fifo"), 0600), 0);
    ck_assert_int_eq(jwt_keys_load(&k, scratch_path("fifo"), err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(unlink(scratch_path("fifo")), 0);
    ck_assert_int_eq(jwt_keys_load(&k, NULL, err, sizeof err), -1);
}
END_TEST

/* ---- each algorithm through auth_verify ---- */

START_TEST(alg_valid)
{
    for (size_t i = 0; i < N_ALGS; i++) {
        auth_claims c;
        ck_assert_msg(verify_alg(i, GOOD_CLAIMS, NULL, NULL, &c) == AUTH_OK, "%s", ALGS[i].alg);
        ck_assert_int_eq(c.user_id, 5);
        ck_assert_int_eq(c.exp, 1700000100);
        ck_assert_str_eq(c.email, "e@x");
    }
}
END_TEST

START_TEST(alg_tampered_payload_and_signature)
{
    jwt_keys *k = load_ok("all.pem");
    auth_verifier v = {.keys = k};
    for (size_t i = 0; i < N_ALGS; i++) {
        EVP_PKEY *key = private_key(ALGS[i].key);
        char header[64];
        snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", ALGS[i].alg);
        char *input = signing_input(header, GOOD_CLAIMS);
        unsigned char sig[1024];
        size_t n = sign_raw(key, input, SIG_JOSE, sig);
        char *tok = join(input, sig, n);
        auth_claims c;
        ck_assert_int_eq(check(&v, tok, &c), AUTH_OK);
        /* Another user, the original signature. */
        char *other = signing_input(header, "{\"user_id\":6,\"email\":\"e@x\",\"exp\":1700000100}");
        char *forged = join(other, sig, n);
        ck_assert_msg(check(&v, forged, &c) == AUTH_BAD_SIGNATURE, "%s payload", ALGS[i].alg);
        ck_assert_int_eq(c.user_id, 0);
        /* Each byte of the signature flipped in turn (sampled), and a short one. */
        for (size_t at = 0; at < n; at += 7) {
            sig[at] ^= 0x01;
            char *bad = join(input, sig, n);
            ck_assert_msg(check(&v, bad, NULL) == AUTH_BAD_SIGNATURE, "%s byte %zu", ALGS[i].alg,
                          at);
            free(bad);
            sig[at] ^= 0x01;
        }
        char *cut = join(input, sig, n - 1);
        ck_assert_int_eq(check(&v, cut, NULL), AUTH_BAD_SIGNATURE);
        /* An empty signature, and one padded with a zero byte. */
        char *empty = join(input, sig, 0);
        ck_assert_int_eq(check(&v, empty, NULL), AUTH_BAD_SIGNATURE);
        unsigned char longer[1025];
        memcpy(longer, sig, n);
        longer[n] = 0;
        char *padded = join(input, longer, n + 1);
        ck_assert_int_eq(check(&v, padded, NULL), AUTH_BAD_SIGNATURE);
        /* A non-canonical base64url form of the right signature (non-zero unused bits). */
        size_t len = strlen(tok);
        if (n % 3 != 0) {
            char last = tok[len - 1];
            const char *alphabet =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            tok[len - 1] = alphabet[(strchr(alphabet, last) - alphabet) | 1];
            ck_assert_int_eq(check(&v, tok, NULL), AUTH_BAD_SIGNATURE);
        }
        free(padded);
        free(empty);
        free(cut);
        free(forged);
        free(other);
        free(tok);
        free(input);
        EVP_PKEY_free(key);
    }
    jwt_keys_free(k);
}
END_TEST

START_TEST(alg_exp_and_nbf)
{
    for (size_t i = 0; i < N_ALGS; i++) {
        auth_claims c;
        ck_assert_int_eq(verify_alg(i, "{\"user_id\":5,\"exp\":1700000000}", NULL, NULL, &c),
                         AUTH_EXPIRED);
        ck_assert_int_eq(verify_alg(i, "{\"user_id\":5}", NULL, NULL, &c), AUTH_NO_EXP);
        ck_assert_int_eq(
            verify_alg(i, "{\"user_id\":5,\"exp\":1700000100,\"nbf\":1700000001}", NULL, NULL, &c),
            AUTH_NOT_YET_VALID);
        ck_assert_int_eq(c.user_id, 0);
        ck_assert_int_eq(
            verify_alg(i, "{\"user_id\":5,\"exp\":1700000100,\"nbf\":1700000000}", NULL, NULL, &c),
            AUTH_OK);
        ck_assert_int_eq(
            verify_alg(i, "{\"user_id\":5,\"exp\":1700000100,\"nbf\":\"0\"}", NULL, NULL, &c),
            AUTH_NOT_YET_VALID);
    }
}
END_TEST

START_TEST(alg_audience)
{
    const char *ok[] = {"\"wsn\"", "[\"other\",\"wsn\"]", "[\"wsn\"]"};
    const char *bad[] = {"\"other\"", "\"WSN\"", "\"wsn \"", "[\"other\"]", "[]", "5",
                         "[[\"wsn\"]]", "null", "{\"wsn\":1}"};
    for (size_t i = 0; i < N_ALGS; i++) {
        char payload[160];
        for (size_t j = 0; j < sizeof ok / sizeof ok[0]; j++) {
            snprintf(payload, sizeof payload, "{\"user_id\":5,\"exp\":1700000100,\"aud\":%s}",
                     ok[j]);
            ck_assert_msg(verify_alg(i, payload, "wsn", NULL, NULL) == AUTH_OK, "%s aud %s",
                          ALGS[i].alg, ok[j]);
            /* Not asked for: whatever aud says. */
            ck_assert_int_eq(verify_alg(i, payload, NULL, NULL, NULL), AUTH_OK);
        }
        for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
            snprintf(payload, sizeof payload, "{\"user_id\":5,\"exp\":1700000100,\"aud\":%s}",
                     bad[j]);
            ck_assert_msg(verify_alg(i, payload, "wsn", NULL, NULL) == AUTH_BAD_AUDIENCE,
                          "%s aud %s", ALGS[i].alg, bad[j]);
        }
        ck_assert_int_eq(verify_alg(i, GOOD_CLAIMS, "wsn", NULL, NULL), AUTH_BAD_AUDIENCE);
    }
}
END_TEST

START_TEST(alg_issuer)
{
    for (size_t i = 0; i < N_ALGS; i++) {
        const char *iss = "https://idp.example.com/";
        ck_assert_int_eq(verify_alg(i,
                                    "{\"user_id\":5,\"exp\":1700000100,"
                                    "\"iss\":\"https://idp.example.com/\"}",
                                    NULL, iss, NULL),
                         AUTH_OK);
        ck_assert_int_eq(verify_alg(i,
                                    "{\"user_id\":5,\"exp\":1700000100,"
                                    "\"iss\":\"https://idp.example.com\"}",
                                    NULL, iss, NULL),
                         AUTH_BAD_ISSUER);
        ck_assert_int_eq(verify_alg(i, GOOD_CLAIMS, NULL, iss, NULL), AUTH_BAD_ISSUER);
        ck_assert_int_eq(
            verify_alg(i, "{\"user_id\":5,\"exp\":1700000100,\"iss\":[\"https://idp.example.com/\"]}",
                       NULL, iss, NULL),
            AUTH_BAD_ISSUER);
        /* The order: exp, nbf, iss, aud, then the user. */
        ck_assert_int_eq(verify_alg(i, "{\"user_id\":0,\"exp\":1700000100}", "a", iss, NULL),
                         AUTH_BAD_ISSUER);
        ck_assert_int_eq(verify_alg(i,
                                    "{\"user_id\":0,\"exp\":1700000100,"
                                    "\"iss\":\"https://idp.example.com/\"}",
                                    "a", iss, NULL),
                         AUTH_BAD_AUDIENCE);
        ck_assert_int_eq(verify_alg(i, "{\"exp\":1,\"nbf\":2000000000}", "a", iss, NULL),
                         AUTH_EXPIRED);
    }
}
END_TEST

START_TEST(alg_without_a_key_is_bad_algorithm)
{
    /* Only an RSA key: ES256 and EdDSA tokens, however well signed, name an
     * algorithm nothing here verifies; HS256 with no secret neither. */
    jwt_keys *rsa = load_ok("rsa.pub");
    auth_verifier v = {.keys = rsa};
    for (size_t i = 1; i < N_ALGS; i++) {
        EVP_PKEY *key = private_key(ALGS[i].key);
        char *tok = sign_token(ALGS[i].alg, GOOD_CLAIMS, key, SIG_JOSE);
        ck_assert_msg(check(&v, tok, NULL) == AUTH_BAD_ALG, "%s", ALGS[i].alg);
        free(tok);
        EVP_PKEY_free(key);
    }
    char *hs = hs256_token(GOOD_CLAIMS, (const unsigned char *)"k", 1);
    ck_assert_int_eq(check(&v, hs, NULL), AUTH_BAD_ALG);
    secret_set none = {0};
    v.secrets = &none;
    ck_assert_int_eq(check(&v, hs, NULL), AUTH_BAD_ALG);
    free(hs);
    /* Secrets only: RS256 is bad_algorithm, not bad_signature. */
    EVP_PKEY *rkey = private_key("rsa.key");
    char *rs = sign_token("RS256", GOOD_CLAIMS, rkey, SIG_JOSE);
    unsigned char k[] = "k";
    secret_set s = {.count = 1};
    s.item[0].data = k;
    s.item[0].len = 1;
    auth_verifier hs_only = {.secrets = &s};
    ck_assert_int_eq(check(&hs_only, rs, NULL), AUTH_BAD_ALG);
    ck_assert_int_eq(auth_verify(NULL, rs, strlen(rs), NOW, NULL), AUTH_BAD_ALG);
    /* A key of the kind, but not the one that signed: bad_signature. */
    jwt_keys *rsa2 = load_ok("rsa2.pub");
    auth_verifier other = {.keys = rsa2};
    ck_assert_int_eq(check(&other, rs, NULL), AUTH_BAD_SIGNATURE);
    /* The header's alg picks the kind of key: an EdDSA signature under an
     * "RS256" header is checked as RS256, and fails. */
    jwt_keys *all = load_ok("all.pem");
    EVP_PKEY *ed = private_key("ed.key");
    char *input = signing_input("{\"alg\":\"RS256\"}", GOOD_CLAIMS);
    unsigned char sig[128];
    size_t n = sign_raw(ed, input, SIG_JOSE, sig);
    char *mixed = join(input, sig, n);
    auth_verifier everything = {.keys = all};
    ck_assert_int_eq(check(&everything, mixed, NULL), AUTH_BAD_SIGNATURE);
    /* Names we do not implement, whatever keys there are. */
    const char *names[] = {"RS384", "RS512", "PS256", "ES384", "ES512", "Ed25519", "rs256",
                           "EDDSA", "none"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *t = sign_token(names[i], GOOD_CLAIMS, rkey, SIG_JOSE);
        ck_assert_msg(check(&everything, t, NULL) == AUTH_BAD_ALG, "%s", names[i]);
        free(t);
    }
    free(mixed);
    free(input);
    EVP_PKEY_free(ed);
    jwt_keys_free(all);
    jwt_keys_free(rsa2);
    free(rs);
    EVP_PKEY_free(rkey);
    jwt_keys_free(rsa);
}
END_TEST

START_TEST(alg_confusion_refused)
{
    /* The classic forgery: take the server's RSA public key, which is no
     * secret, and use its bytes as the HMAC key of an HS256 token. */
    FILE *f = fopen(scratch_path("rsa.pub"), "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char pem[4096];
    size_t pem_len = fread(pem, 1, sizeof pem, f);
    fclose(f);
    f = fopen(scratch_path("rsa.der"), "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char der[4096];
    size_t der_len = fread(der, 1, sizeof der, f);
    fclose(f);
    ck_assert_uint_gt(pem_len, 100);
    ck_assert_uint_gt(der_len, 100);

    jwt_keys *k = load_ok("rsa.pub");
    char *with_pem = hs256_token(GOOD_CLAIMS, pem, pem_len);
    char *with_pem_nonl = hs256_token(GOOD_CLAIMS, pem, pem_len - 1);
    char *with_der = hs256_token(GOOD_CLAIMS, der, der_len);
    /* Keys only: HS256 is not an algorithm of this server at all. */
    auth_verifier keys_only = {.keys = k};
    ck_assert_int_eq(check(&keys_only, with_pem, NULL), AUTH_BAD_ALG);
    ck_assert_int_eq(check(&keys_only, with_der, NULL), AUTH_BAD_ALG);
    /* Keys and a secret: HS256 is checked against the secret only. */
    unsigned char real[] = "the real HS256 secret";
    secret_set s = {.count = 1};
    s.item[0].data = real;
    s.item[0].len = sizeof real - 1;
    auth_verifier both = {.secrets = &s, .keys = k};
    ck_assert_int_eq(check(&both, with_pem, NULL), AUTH_BAD_SIGNATURE);
    ck_assert_int_eq(check(&both, with_pem_nonl, NULL), AUTH_BAD_SIGNATURE);
    ck_assert_int_eq(check(&both, with_der, NULL), AUTH_BAD_SIGNATURE);
    /* The forged tokens are well formed: keyed with a secret of those very
     * bytes they would verify, so only the key choice refuses them. */
    secret_set pem_secret = {.count = 1};
    pem_secret.item[0].data = pem;
    pem_secret.item[0].len = pem_len;
    auth_verifier careless = {.secrets = &pem_secret};
    ck_assert_int_eq(check(&careless, with_pem, NULL), AUTH_OK);
    free(with_pem);
    free(with_pem_nonl);
    free(with_der);
    jwt_keys_free(k);
}
END_TEST

START_TEST(es256_der_signature_refused)
{
    jwt_keys *k = load_ok("ec.pub");
    auth_verifier v = {.keys = k};
    EVP_PKEY *key = private_key("ec.key");
    for (int round = 0; round < 8; round++) { /* DER lengths vary: 70..72 bytes */
        char *input = signing_input("{\"alg\":\"ES256\"}", GOOD_CLAIMS);
        unsigned char der[128];
        size_t n = sign_raw(key, input, SIG_DER, der);
        ck_assert_uint_ne(n, 64);
        char *tok = join(input, der, n);
        ck_assert_int_eq(check(&v, tok, NULL), AUTH_BAD_SIGNATURE);
        /* The same signature as r||s verifies. */
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
        unsigned char jose[64];
        ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_r(es), jose, 32), 32);
        ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_s(es), jose + 32, 32), 32);
        ECDSA_SIG_free(es);
        char *good = join(input, jose, 64);
        ck_assert_int_eq(check(&v, good, NULL), AUTH_OK);
        /* r||s of zeros, and r = s = n: not signatures. */
        memset(jose, 0, sizeof jose);
        char *zeros = join(input, jose, 64);
        ck_assert_int_eq(check(&v, zeros, NULL), AUTH_BAD_SIGNATURE);
        free(zeros);
        free(good);
        free(tok);
        free(input);
    }
    EVP_PKEY_free(key);
    jwt_keys_free(k);
}
END_TEST

START_TEST(verify_primitive_lengths)
{
    jwt_keys *k = load_ok("all.pem");
    const unsigned char msg[] = "a.b";
    unsigned char sig[512] = {0};
    for (size_t n = 0; n < sizeof sig; n += 13)
        for (int kind = 0; kind < JWT_KEY_KINDS; kind++)
            ck_assert(!jwt_keys_verify(k, (jwt_key_kind)kind, msg, 3, sig, n));
    ck_assert(!jwt_keys_verify(NULL, JWT_KEY_RSA, msg, 3, sig, 256));
    ck_assert(!jwt_keys_verify(k, JWT_KEY_KINDS, msg, 3, sig, 64));
    jwt_keys_free(k);
    ck_assert_str_eq(jwt_key_alg(JWT_KEY_RSA), "RS256");
    ck_assert_str_eq(jwt_key_alg(JWT_KEY_P256), "ES256");
    ck_assert_str_eq(jwt_key_alg(JWT_KEY_ED25519), "EdDSA");
}
END_TEST

/* ---- signing (wsnotifyctl token --key-file) ---- */

START_TEST(signer_round_trip)
{
    jwt_keys *k = load_ok("all.pem");
    auth_verifier v = {.keys = k, .audience = "wsn", .issuer = "me"};
    for (size_t i = 0; i < N_ALGS; i++) {
        jwt_signer *s = NULL;
        char err[512] = "";
        ck_assert_msg(jwt_signer_load(&s, scratch_path(ALGS[i].key), err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(jwt_signer_kind(s), ALGS[i].kind);
        auth_mint m = {.user_id = 77, .email = "m@x", .exp = NOW + 60, .nbf = NOW - 1,
                       .audience = "wsn", .issuer = "me"};
        char *tok = auth_token_mint(&m, NULL, s);
        ck_assert_ptr_nonnull(tok);
        auth_claims c;
        ck_assert_msg(check(&v, tok, &c) == AUTH_OK, "%s: %s", ALGS[i].alg, tok);
        ck_assert_int_eq(c.user_id, 77);
        ck_assert_str_eq(c.email, "m@x");
        /* The header names the key's algorithm. */
        char want[64];
        snprintf(want, sizeof want, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", ALGS[i].alg);
        char *h = b64url((const unsigned char *)want, strlen(want));
        ck_assert_int_eq(strncmp(tok, h, strlen(h)), 0);
        free(h);
        m.nbf = NOW + 10;
        char *later = auth_token_mint(&m, NULL, s);
        ck_assert_int_eq(check(&v, later, NULL), AUTH_NOT_YET_VALID);
        free(later);
        free(tok);
        jwt_signer_free(s);
    }
    const char *refused[][2] = {{"rsa.pub", "private key"},   {"rsa1024.key", "1024 bits"},
                                {"ec384.key", "P-256"},       {"rsa-enc.key", "private key"},
                                {"garbage.pem", "private key"}, {"nope", "No such file"}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        jwt_signer *s = (jwt_signer *)1;
        char err[512] = "";
        ck_assert_int_eq(jwt_signer_load(&s, scratch_path(refused[i][0]), err, sizeof err), -1);
        ck_assert_ptr_null(s);
        ck_assert_msg(strstr(err, refused[i][0]) && strstr(err, refused[i][1]), "%s", err);
    }
    jwt_keys_free(k);
}
END_TEST

static Suite *jwt_keys_suite(void)
{
    Suite *s = suite_create("jwt_keys");
    TCase *load = tcase_create("load");
    tcase_add_unchecked_fixture(load, setup_keys, teardown_keys);
    tcase_set_timeout(load, 60);
    tcase_add_test(load, load_one_of_each);
    tcase_add_test(load, load_several_keys_with_text_around);
    tcase_add_test(load, load_other_forms);
    tcase_add_test(load, load_refusals_name_the_file);
    tcase_add_test(load, alg_valid);
    tcase_add_test(load, alg_tampered_payload_and_signature);
    tcase_add_test(load, alg_exp_and_nbf);
    tcase_add_test(load, alg_audience);
    tcase_add_test(load, alg_issuer);
    tcase_add_test(load, alg_without_a_key_is_bad_algorithm);
    tcase_add_test(load, alg_confusion_refused);
    tcase_add_test(load, es256_der_signature_refused);
    tcase_add_test(load, verify_primitive_lengths);
    tcase_add_test(load, signer_round_trip);
    suite_add_tcase(s, load);
    return s;
}

int main(void)
{
    return check_run_suite(jwt_keys_suite());
}
