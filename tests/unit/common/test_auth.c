/* test_auth.c — unit tests for secret loading (src/common/secrets.c) and JWT
 * verification/minting (src/common/auth.c) with HS256: shapes, alg, signature,
 * and the claims (exp, nbf, aud, iss, user, email). The public-key
 * algorithms are in test_jwt_keys.c.
 *
 * Most tokens are built here by hand with OpenSSL HMAC, so that the tests
 * do not depend on libjwt (which also mints) to agree with itself. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* setenv, mkstemp */
#endif

#include <check.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/common/secrets.h"
#include "tests/check_main.h"
#include "src/common/auth.h"

#define NOW ((time_t)1700000000)
#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* ---- helpers: files and secret sets ---- */

typedef struct {
    char path[64];
} temp_file;

static void temp_file_write(temp_file *t, const char *data, size_t len)
{
    snprintf(t->path, sizeof t->path, "/tmp/wsn_test_secrets_XXXXXX");
    int fd = mkstemp(t->path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(close(fd), 0);
}

static void temp_file_remove(const temp_file *t)
{
    ck_assert_int_eq(unlink(t->path), 0);
}

static int load_from_content(secret_set *s, const char *content, size_t len, char *err,
                             size_t err_size)
{
    temp_file t;
    temp_file_write(&t, content, len);
    int rc = secrets_load_file(s, t.path, err, err_size);
    temp_file_remove(&t);
    return rc;
}

static bool secret_is(const secret_set *s, size_t i, const char *expected)
{
    return i < s->count && s->item[i].len == strlen(expected) &&
           memcmp(s->item[i].data, expected, s->item[i].len) == 0;
}

/* A set from a NULL-terminated array of literal secrets; freed with
 * secrets_free. SET("a", "b") spells it briefly. */
static secret_set make_set(const char *const *keys)
{
    secret_set s;
    memset(&s, 0, sizeof s);
    for (size_t i = 0; keys[i] != NULL; i++) {
        size_t n = strlen(keys[i]);
        s.item[s.count].data = malloc(n ? n : 1);
        ck_assert_ptr_nonnull(s.item[s.count].data);
        memcpy(s.item[s.count].data, keys[i], n);
        s.item[s.count].len = n;
        s.count++;
    }
    return s;
}

#define SET(...) make_set((const char *const[]){ __VA_ARGS__, NULL })
#define EMPTY_SET() make_set((const char *const[]){ NULL })

/* ---- helpers: hand-made tokens ---- */

static char *b64url(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    ck_assert_ptr_nonnull(out);
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    ck_assert_int_ge(len, 0);
    size_t w = 0;
    for (int r = 0; r < len; r++) {
        char c = out[r];
        if (c == '=')
            continue;
        out[w++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[w] = '\0';
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

/* header.payload.signature, signed with HMAC-SHA256 under key (or with a
 * literal signature part when fake_sig is non-NULL). */
static char *make_token_sig(const char *header_json, const char *payload_json,
                            const char *key, const char *fake_sig)
{
    char *h = b64url_str(header_json);
    char *p = b64url_str(payload_json);
    size_t cap = strlen(h) + strlen(p) + 128 + (fake_sig ? strlen(fake_sig) : 0);
    char *tok = malloc(cap);
    ck_assert_ptr_nonnull(tok);
    snprintf(tok, cap, "%s.%s", h, p);
    free(h);
    free(p);
    if (fake_sig != NULL) {
        strcat(tok, ".");
        strcat(tok, fake_sig);
        return tok;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)tok,
                               strlen(tok), mac, &mac_len));
    char *sig = b64url(mac, mac_len);
    strcat(tok, ".");
    strcat(tok, sig);
    free(sig);
    return tok;
}

static char *make_token(const char *payload_json, const char *key)
{
    return make_token_sig(HS256_HEADER, payload_json, key, NULL);
}

static auth_result verify(const secret_set *s, const char *tok, auth_claims *c)
{
    return auth_verify_token(s, tok, strlen(tok), NOW, c);
}

/* Verify a hand-made HS256 token with the given payload under "k". */
static auth_result verify_payload(const char *payload_json, auth_claims *c)
{
    secret_set s = SET("k");
    char *tok = make_token(payload_json, "k");
    auth_result r = verify(&s, tok, c);
    free(tok);
    secrets_free(&s);
    return r;
}

/* ---- secrets ---- */

START_TEST(secrets_trailing_newline_not_part)
{
    secret_set s;
    char err[256] = "";
    ck_assert_int_eq(load_from_content(&s, "s3cret\n", 7, err, sizeof err), 0);
    ck_assert_uint_eq(s.count, 1);
    ck_assert(secret_is(&s, 0, "s3cret"));
    secrets_free(&s);
    ck_assert_uint_eq(s.count, 0);
    ck_assert_ptr_null(s.item[0].data);
}
END_TEST

START_TEST(secrets_crlf_and_multiple_lines)
{
    secret_set s;
    char err[256] = "";
    const char *content = "first\r\nsecond\r\nthird";
    ck_assert_int_eq(load_from_content(&s, content, strlen(content), err, sizeof err), 0);
    ck_assert_uint_eq(s.count, 3);
    ck_assert(secret_is(&s, 0, "first"));
    ck_assert(secret_is(&s, 1, "second"));
    ck_assert(secret_is(&s, 2, "third"));
    secrets_free(&s);
}
END_TEST

START_TEST(secrets_blank_lines_skipped_inner_space_kept)
{
    secret_set s;
    char err[256] = "";
    const char *content = "\n\r\n  \n\t\none\n two words \n\n";
    ck_assert_int_eq(load_from_content(&s, content, strlen(content), err, sizeof err), 0);
    ck_assert_uint_eq(s.count, 2);
    ck_assert(secret_is(&s, 0, "one"));
    ck_assert(secret_is(&s, 1, " two words "));
    secrets_free(&s);
}
END_TEST

START_TEST(secrets_all_blank_is_error)
{
    secret_set s;
    char err[256] = "";
    temp_file t;
    temp_file_write(&t, "\n \r\n\t\n", 6);
    ck_assert_int_eq(secrets_load_file(&s, t.path, err, sizeof err), -1);
    char expected[128];
    snprintf(expected, sizeof expected, "no secret in %s", t.path);
    ck_assert_str_eq(err, expected);
    ck_assert_uint_eq(s.count, 0);
    temp_file_remove(&t);

    ck_assert_int_eq(load_from_content(&s, "", 0, err, sizeof err), -1);
    ck_assert_uint_eq(s.count, 0);
}
END_TEST

START_TEST(secrets_missing_file_is_error)
{
    secret_set s;
    char err[256] = "";
    const char *path = "/nonexistent/wsnotify/secret";
    ck_assert_int_eq(secrets_load_file(&s, path, err, sizeof err), -1);
    char expected[256];
    snprintf(expected, sizeof expected, "cannot read %s: %s", path, strerror(ENOENT));
    ck_assert_str_eq(err, expected);
    ck_assert_uint_eq(s.count, 0);
    /* secrets_load with a path uses the file, not the environment. */
    ck_assert_int_eq(setenv("JWT_SECRET", "from-env", 1), 0);
    ck_assert_int_eq(secrets_load(&s, path, err, sizeof err), -1);
    ck_assert_str_eq(err, expected);
    ck_assert_int_eq(unsetenv("JWT_SECRET"), 0);
    /* A directory opens but cannot be read. */
    ck_assert_int_eq(secrets_load_file(&s, "/tmp", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot read /tmp: "));
}
END_TEST

START_TEST(secrets_length_limit_names_line)
{
    secret_set s;
    char err[256] = "";
    size_t n = SECRET_MAX_LEN;
    char *content = malloc(2 * n + 16);
    ck_assert_ptr_nonnull(content);
    /* Line 1: exactly the limit, CRLF-terminated: fine. */
    memset(content, 'a', n);
    memcpy(content + n, "\r\n", 2);
    ck_assert_int_eq(load_from_content(&s, content, n + 2, err, sizeof err), 0);
    ck_assert_uint_eq(s.count, 1);
    ck_assert_uint_eq(s.item[0].len, n);
    secrets_free(&s);
    /* Line 2: one byte over. */
    memcpy(content, "ok\n", 3);
    memset(content + 3, 'Q', n + 1);
    memcpy(content + 3 + n + 1, "\n", 1);
    ck_assert_int_eq(load_from_content(&s, content, n + 5, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, ":2: secret longer than 4096 bytes"));
    ck_assert_ptr_null(strstr(err, "QQQQ")); /* never the secret itself */
    ck_assert_uint_eq(s.count, 0);
    /* Same, as the unterminated last line. */
    ck_assert_int_eq(load_from_content(&s, content, n + 4, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, ":2: secret longer than"));
    free(content);
}
END_TEST

START_TEST(secrets_count_limit)
{
    secret_set s;
    char err[256] = "";
    char content[SECRETS_MAX * 8 + 16];
    size_t w = 0;
    for (int i = 0; i < SECRETS_MAX; i++)
        w += (size_t)snprintf(content + w, sizeof content - w, "k%d\n", i);
    ck_assert_int_eq(load_from_content(&s, content, w, err, sizeof err), 0);
    ck_assert_uint_eq(s.count, SECRETS_MAX);
    ck_assert(secret_is(&s, SECRETS_MAX - 1, "k15"));
    secrets_free(&s);
    w += (size_t)snprintf(content + w, sizeof content - w, "one-too-many\n");
    ck_assert_int_eq(load_from_content(&s, content, w, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, ":17: more than 16 secrets"));
    ck_assert_uint_eq(s.count, 0);
}
END_TEST

START_TEST(secrets_from_env)
{
    secret_set s;
    char err[256] = "";
    ck_assert_int_eq(setenv("JWT_SECRET", "env secret ", 1), 0);
    ck_assert_int_eq(secrets_load(&s, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(s.count, 1);
    ck_assert(secret_is(&s, 0, "env secret "));
    secrets_free(&s);

    ck_assert_int_eq(setenv("WSN_OTHER_SECRET", "other", 1), 0);
    ck_assert_int_eq(secrets_load_env(&s, "WSN_OTHER_SECRET", err, sizeof err), 0);
    ck_assert(secret_is(&s, 0, "other"));
    secrets_free(&s);
    ck_assert_int_eq(unsetenv("WSN_OTHER_SECRET"), 0);

    ck_assert_int_eq(setenv("JWT_SECRET", "", 1), 0);
    ck_assert_int_eq(secrets_load(&s, NULL, err, sizeof err), -1);
    ck_assert_str_eq(err, "JWT_SECRET is not set and no --jwt-secret-file given");
    ck_assert_int_eq(unsetenv("JWT_SECRET"), 0);
    err[0] = '\0';
    ck_assert_int_eq(secrets_load(&s, NULL, err, sizeof err), -1);
    ck_assert_str_eq(err, "JWT_SECRET is not set and no --jwt-secret-file given");
    ck_assert_uint_eq(s.count, 0);
    ck_assert_int_eq(secrets_load_env(&s, "JWT_SECRET", err, sizeof err), -1);
    ck_assert_str_eq(err, "JWT_SECRET is not set");
    secrets_free(&s); /* harmless on an empty set */
}
END_TEST

/* ---- tokens ---- */

START_TEST(token_valid_user_id)
{
    auth_claims c;
    ck_assert_int_eq(
        verify_payload("{\"user_id\":7,\"email\":\"u@example.com\",\"exp\":1700000100}", &c),
        AUTH_OK);
    ck_assert_int_eq(c.user_id, 7);
    ck_assert_int_eq(c.exp, 1700000100);
    ck_assert_str_eq(c.email, "u@example.com");
    /* Other header fields (kid, an unusual typ) do not matter. */
    secret_set s = SET("k");
    char *tok = make_token_sig("{\"typ\":\"at+jwt\",\"kid\":\"1\",\"alg\":\"HS256\"}",
                               "{\"user_id\":8,\"exp\":1700000100}", "k", NULL);
    ck_assert_int_eq(verify(&s, tok, &c), AUTH_OK);
    ck_assert_int_eq(c.user_id, 8);
    free(tok);
    secrets_free(&s);
}
END_TEST

START_TEST(token_sub_fallback)
{
    auth_claims c;
    ck_assert_int_eq(verify_payload("{\"sub\":\"42\",\"exp\":1700000100}", &c), AUTH_OK);
    ck_assert_int_eq(c.user_id, 42);
    ck_assert_str_eq(c.email, "");
    ck_assert_int_eq(verify_payload("{\"sub\":43,\"exp\":1700000100}", &c), AUTH_OK);
    ck_assert_int_eq(c.user_id, 43);
    ck_assert_int_eq(verify_payload("{\"sub\":\"9223372036854775807\",\"exp\":1700000100}", &c),
                     AUTH_OK);
    ck_assert_int_eq(c.user_id, INT64_MAX);
    const char *bad_subs[] = { "\"abc\"", "\"\"", "\"-5\"", "\"+5\"", "\" 5\"", "\"5 \"",
                               "\"0\"", "\"9223372036854775808\"", "\"5x\"", "0", "-3",
                               "5.5", "true", "null", "{}", "9223372036854775808" };
    for (size_t i = 0; i < sizeof bad_subs / sizeof bad_subs[0]; i++) {
        char payload[128];
        snprintf(payload, sizeof payload, "{\"sub\":%s,\"exp\":1700000100}", bad_subs[i]);
        ck_assert_msg(verify_payload(payload, &c) == AUTH_NO_USER, "sub %s", bad_subs[i]);
        ck_assert_int_eq(c.user_id, 0);
    }
    ck_assert_int_eq(verify_payload("{\"exp\":1700000100}", &c), AUTH_NO_USER);
}
END_TEST

START_TEST(token_bad_user_id)
{
    auth_claims c;
    const char *bad_ids[] = { "0", "-1", "\"5\"", "5.0", "null", "true", "[5]",
                              "99999999999999999999", "-99999999999999999999" };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        char payload[128];
        snprintf(payload, sizeof payload, "{\"user_id\":%s,\"exp\":1700000100}", bad_ids[i]);
        ck_assert_msg(verify_payload(payload, &c) == AUTH_NO_USER, "user_id %s", bad_ids[i]);
    }
    /* A present but bad user_id does not fall back to sub. */
    ck_assert_int_eq(verify_payload("{\"user_id\":0,\"sub\":\"5\",\"exp\":1700000100}", &c),
                     AUTH_NO_USER);
    ck_assert_int_eq(verify_payload("{\"user_id\":\"5\",\"sub\":5,\"exp\":1700000100}", &c),
                     AUTH_NO_USER);
    /* A good user_id wins over sub. */
    ck_assert_int_eq(verify_payload("{\"user_id\":3,\"sub\":\"5\",\"exp\":1700000100}", &c),
                     AUTH_OK);
    ck_assert_int_eq(c.user_id, 3);
}
END_TEST

START_TEST(token_exp_rules)
{
    auth_claims c;
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1700000000}", &c), AUTH_EXPIRED);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1699999999}", &c), AUTH_EXPIRED);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":-5}", &c), AUTH_EXPIRED);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1700000001}", &c), AUTH_OK);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1700000000.5}", &c), AUTH_OK);
    ck_assert_int_eq(c.exp, 1700000001);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1.7e9}", &c), AUTH_EXPIRED);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1e300}", &c), AUTH_OK);
    ck_assert_int_eq(c.exp, INT64_MAX);
    ck_assert_int_eq(verify_payload("{\"user_id\":1}", &c), AUTH_NO_EXP);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":\"1800000000\"}", &c), AUTH_NO_EXP);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":null}", &c), AUTH_NO_EXP);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":true}", &c), AUTH_NO_EXP);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1e400}", &c), AUTH_NO_EXP);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":NaN}", &c), AUTH_NO_EXP);
    /* exp is checked before the user. */
    ck_assert_int_eq(verify_payload("{\"exp\":1}", &c), AUTH_EXPIRED);
    ck_assert_int_eq(verify_payload("{}", &c), AUTH_NO_EXP);
}
END_TEST

START_TEST(token_signature_rules)
{
    auth_claims c;
    const char *payload = "{\"user_id\":5,\"exp\":1700000100}";
    secret_set one = SET("right");
    secret_set two = SET("old", "right");
    secret_set none = EMPTY_SET();
    char *tok = make_token(payload, "wrong");
    ck_assert_int_eq(verify(&one, tok, &c), AUTH_BAD_SIGNATURE);
    ck_assert_int_eq(c.user_id, 0);
    free(tok);

    tok = make_token(payload, "right");
    ck_assert_int_eq(verify(&one, tok, &c), AUTH_OK);
    ck_assert_int_eq(verify(&two, tok, &c), AUTH_OK); /* second secret verifies */
    ck_assert_int_eq(c.user_id, 5);
    /* No secret at all: HS256 is not an algorithm this server accepts. */
    ck_assert_int_eq(verify(&none, tok, &c), AUTH_BAD_ALG);
    ck_assert_int_eq(auth_verify_token(NULL, tok, strlen(tok), NOW, &c), AUTH_BAD_ALG);

    /* Tampered payload, original signature. */
    char *forged = make_token("{\"user_id\":6,\"exp\":1700000100}", "right");
    char *sig = strrchr(tok, '.');
    char *fsig = strrchr(forged, '.');
    ck_assert_uint_eq(strlen(sig), strlen(fsig));
    memcpy(fsig, sig, strlen(sig));
    ck_assert_int_eq(verify(&one, forged, &c), AUTH_BAD_SIGNATURE);
    free(forged);

    /* Tampered signature (last char changed, also non-canonical forms). */
    size_t n = strlen(tok);
    char last = tok[n - 1];
    for (const char *p = "AEIMQUYcgkosw048BFJ"; *p; p++) {
        if (*p == last)
            continue;
        tok[n - 1] = *p;
        ck_assert_int_eq(verify(&one, tok, &c), AUTH_BAD_SIGNATURE);
    }
    /* Truncated signature. */
    tok[n - 1] = '\0';
    ck_assert_int_eq(verify(&one, tok, &c), AUTH_BAD_SIGNATURE);
    tok[n - 1] = last;
    free(tok);

    /* HS256 header, empty signature. */
    tok = make_token_sig(HS256_HEADER, payload, NULL, "");
    ck_assert_int_eq(verify(&one, tok, &c), AUTH_BAD_SIGNATURE);
    free(tok);

    /* An empty secret never verifies (libjwt would treat it as alg none). */
    secret_set empty_key = SET("");
    tok = make_token(payload, "");
    ck_assert_int_eq(verify(&empty_key, tok, &c), AUTH_BAD_SIGNATURE);
    free(tok);

    secrets_free(&empty_key);
    secrets_free(&one);
    secrets_free(&two);
    secrets_free(&none);
}
END_TEST

START_TEST(token_alg_pinned)
{
    auth_claims c;
    secret_set s = SET("k");
    const char *payload = "{\"user_id\":5,\"exp\":1700000100}";
    char *p64 = b64url_str(payload);
    char buf[512];

    /* The classic alg-none token: {"alg":"none"}, empty signature. */
    snprintf(buf, sizeof buf, "eyJhbGciOiJub25lIn0.%s.", p64);
    ck_assert_int_eq(verify(&s, buf, &c), AUTH_BAD_ALG);
    ck_assert_int_eq(c.user_id, 0);
    /* ... and with a made-up signature, and with a real HMAC under the key. */
    snprintf(buf, sizeof buf, "eyJhbGciOiJub25lIn0.%s.c2lnbmF0dXJl", p64);
    ck_assert_int_eq(verify(&s, buf, &c), AUTH_BAD_ALG);
    free(p64);

    const char *headers[] = { "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"None\"}",
                              "{\"alg\":\"HS384\",\"typ\":\"JWT\"}", "{\"alg\":\"HS512\"}",
                              "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"alg\":\"ES256\"}",
                              "{\"typ\":\"JWT\"}", "{\"alg\":\"hs256\"}",
                              "{\"alg\":\"HS256 \"}", "{\"alg\":null}", "{\"alg\":256}",
                              "{\"alg\":[\"HS256\"]}", "{}" };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *tok = make_token_sig(headers[i], payload, "k", NULL);
        ck_assert_msg(verify(&s, tok, &c) == AUTH_BAD_ALG, "header %s", headers[i]);
        free(tok);
    }
    /* The alg is checked before the signature. */
    char *tok = make_token_sig("{\"alg\":\"RS256\"}", payload, NULL, "AAAA");
    ck_assert_int_eq(verify(&s, tok, &c), AUTH_BAD_ALG);
    free(tok);
    secrets_free(&s);
}
END_TEST

START_TEST(token_malformed)
{
    auth_claims c;
    secret_set s = SET("k");
    const char *bad[] = { "abc", "abc.def", "..", "a..c", ".b.c", "eyJhbGciOiJIUzI1NiJ9..c",
                          "a*b.c.d", "abc.de$.fgh", "abcd.efgh.ij=", "abcd.efgh.ijkl.mnop",
                          "abcd.efgh.ij.", "a.efgh.ijkl", " abcd.efgh.ijkl",
                          "abcd.efgh.ijkl\n" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(verify(&s, bad[i], &c) == AUTH_MALFORMED, "token '%s'", bad[i]);

    /* Header that is base64url but not a JSON object. */
    const char *not_objects[] = { "hello", "[\"HS256\"]", "{\"alg\":\"HS256\"} x",
                                  "{\"alg\":\"HS256\",}", "" };
    for (size_t i = 0; i < sizeof not_objects / sizeof not_objects[0]; i++) {
        char *tok = make_token_sig(not_objects[i], "{\"user_id\":1,\"exp\":1700000100}", "k",
                                   NULL);
        ck_assert_msg(verify(&s, tok, &c) == AUTH_MALFORMED, "header '%s'", not_objects[i]);
        free(tok);
    }
    /* A correctly signed payload that is not a JSON object. */
    const char *payloads[] = { "not json", "[1,2]", "{\"user_id\":1", "42" };
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        char *tok = make_token(payloads[i], "k");
        ck_assert_msg(verify(&s, tok, &c) == AUTH_MALFORMED, "payload '%s'", payloads[i]);
        free(tok);
    }
    /* A NUL inside the given length. */
    char *tok = make_token("{\"user_id\":1,\"exp\":1700000100}", "k");
    size_t n = strlen(tok);
    tok[3] = '\0';
    ck_assert_int_eq(auth_verify_token(&s, tok, n, NOW, &c), AUTH_MALFORMED);
    free(tok);

    ck_assert_int_eq(auth_verify_token(&s, NULL, 0, NOW, &c), AUTH_MISSING);
    ck_assert_int_eq(auth_verify_token(&s, "", 0, NOW, &c), AUTH_MISSING);
    secrets_free(&s);
}
END_TEST

/* A valid token of exactly `len` bytes, padded with an extra claim. */
static char *make_token_of_length(size_t len)
{
    for (size_t pad = 0; pad < AUTH_MAX_TOKEN; pad++) {
        char *payload = malloc(pad + 64);
        ck_assert_ptr_nonnull(payload);
        int w = snprintf(payload, pad + 64, "{\"user_id\":1,\"exp\":1700000100,\"p\":\"");
        memset(payload + w, 'x', pad);
        strcpy(payload + w + pad, "\"}");
        char *tok = make_token(payload, "k");
        free(payload);
        if (strlen(tok) == len)
            return tok;
        bool past = strlen(tok) > len;
        free(tok);
        if (past)
            break;
    }
    ck_abort_msg("no token of length %zu", len);
    return NULL;
}

START_TEST(token_length_limit)
{
    auth_claims c;
    secret_set s = SET("k");
    char *at = make_token_of_length(AUTH_MAX_TOKEN);
    ck_assert_int_eq(verify(&s, at, &c), AUTH_OK);
    free(at);
    char *over = make_token_of_length(AUTH_MAX_TOKEN + 1);
    ck_assert_int_eq(verify(&s, over, &c), AUTH_MALFORMED);
    free(over);
    secrets_free(&s);
}
END_TEST

START_TEST(token_email_rules)
{
    auth_claims c;
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1700000100}", &c), AUTH_OK);
    ck_assert_str_eq(c.email, "");
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1700000100,\"email\":\"\"}", &c),
                     AUTH_OK);
    ck_assert_str_eq(c.email, "");

    char email[AUTH_MAX_EMAIL + 2];
    char payload[AUTH_MAX_EMAIL + 128];
    memset(email, 'e', AUTH_MAX_EMAIL);
    email[AUTH_MAX_EMAIL] = '\0';
    snprintf(payload, sizeof payload, "{\"user_id\":1,\"exp\":1700000100,\"email\":\"%s\"}",
             email);
    ck_assert_int_eq(verify_payload(payload, &c), AUTH_OK);
    ck_assert_str_eq(c.email, email);

    email[AUTH_MAX_EMAIL] = 'e';
    email[AUTH_MAX_EMAIL + 1] = '\0';
    snprintf(payload, sizeof payload, "{\"user_id\":1,\"exp\":1700000100,\"email\":\"%s\"}",
             email);
    ck_assert_int_eq(verify_payload(payload, &c), AUTH_BAD_EMAIL);
    ck_assert_str_eq(c.email, "");

    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1700000100,\"email\":5}", &c),
                     AUTH_BAD_EMAIL);
    ck_assert_int_eq(verify_payload("{\"user_id\":1,\"exp\":1700000100,\"email\":null}", &c),
                     AUTH_BAD_EMAIL);
    ck_assert_int_eq(
        verify_payload("{\"user_id\":1,\"exp\":1700000100,\"email\":\"a\\u0000b\"}", &c),
        AUTH_BAD_EMAIL);
    /* The user is checked before the email. */
    ck_assert_int_eq(verify_payload("{\"user_id\":0,\"exp\":1700000100,\"email\":5}", &c),
                     AUTH_NO_USER);
}
END_TEST

/* An HS256 token with payload under "k", checked with the claim rules. */
static auth_result verify_rules(const char *payload, const char *audience, const char *issuer)
{
    secret_set s = SET("k");
    auth_verifier v = {.secrets = &s, .audience = audience, .issuer = issuer};
    char *tok = make_token(payload, "k");
    auth_claims c;
    auth_result r = auth_verify(&v, tok, strlen(tok), NOW, &c);
    if (r != AUTH_OK)
        ck_assert_int_eq(c.user_id, 0);
    free(tok);
    secrets_free(&s);
    return r;
}

START_TEST(token_nbf)
{
    ck_assert_int_eq(verify_rules("{\"user_id\":1,\"exp\":1700000100,\"nbf\":1700000000}", NULL, NULL),
                     AUTH_OK);
    ck_assert_int_eq(verify_rules("{\"user_id\":1,\"exp\":1700000100,\"nbf\":1}", NULL, NULL),
                     AUTH_OK);
    ck_assert_int_eq(verify_rules("{\"user_id\":1,\"exp\":1700000100,\"nbf\":1700000001}", NULL, NULL),
                     AUTH_NOT_YET_VALID);
    ck_assert_int_eq(verify_rules("{\"user_id\":1,\"exp\":1700000100,\"nbf\":1700000000.5}", NULL,
                                  NULL),
                     AUTH_NOT_YET_VALID);
    ck_assert_int_eq(verify_rules("{\"user_id\":1,\"exp\":1700000100,\"nbf\":1.6e9}", NULL, NULL),
                     AUTH_OK);
    const char *unreadable[] = {"\"1\"", "null", "true", "[1]", "{}", "1e400"};
    for (size_t i = 0; i < sizeof unreadable / sizeof unreadable[0]; i++) {
        char payload[128];
        snprintf(payload, sizeof payload, "{\"user_id\":1,\"exp\":1700000100,\"nbf\":%s}",
                 unreadable[i]);
        ck_assert_msg(verify_rules(payload, NULL, NULL) == AUTH_NOT_YET_VALID, "nbf %s",
                      unreadable[i]);
    }
    /* exp first: an expired token is token_expired whatever its nbf. */
    ck_assert_int_eq(verify_rules("{\"user_id\":1,\"exp\":5,\"nbf\":1800000000}", NULL, NULL),
                     AUTH_EXPIRED);
}
END_TEST

START_TEST(token_audience_and_issuer)
{
    const char *p_none = "{\"user_id\":1,\"exp\":1700000100}";
    const char *p_both = "{\"user_id\":1,\"exp\":1700000100,\"aud\":\"wsn\",\"iss\":\"idp\"}";
    const char *p_arr = "{\"user_id\":1,\"exp\":1700000100,\"aud\":[\"x\",\"wsn\"],\"iss\":\"idp\"}";
    ck_assert_int_eq(verify_rules(p_none, NULL, NULL), AUTH_OK);
    ck_assert_int_eq(verify_rules(p_both, NULL, NULL), AUTH_OK);
    ck_assert_int_eq(verify_rules(p_both, "wsn", "idp"), AUTH_OK);
    ck_assert_int_eq(verify_rules(p_arr, "wsn", "idp"), AUTH_OK);
    ck_assert_int_eq(verify_rules(p_none, "wsn", NULL), AUTH_BAD_AUDIENCE);
    ck_assert_int_eq(verify_rules(p_none, NULL, "idp"), AUTH_BAD_ISSUER);
    ck_assert_int_eq(verify_rules(p_both, "other", NULL), AUTH_BAD_AUDIENCE);
    ck_assert_int_eq(verify_rules(p_both, NULL, "IDP"), AUTH_BAD_ISSUER);
    ck_assert_int_eq(verify_rules(p_arr, "x2", "idp"), AUTH_BAD_AUDIENCE);
    /* An embedded NUL does not make "wsn\u0000x" equal to "wsn". */
    ck_assert_int_eq(
        verify_rules("{\"user_id\":1,\"exp\":1700000100,\"aud\":\"wsn\\u0000x\"}", "wsn", NULL),
        AUTH_BAD_AUDIENCE);
    ck_assert_int_eq(
        verify_rules("{\"user_id\":1,\"exp\":1700000100,\"iss\":\"idp\\u0000\"}", NULL, "idp"),
        AUTH_BAD_ISSUER);
    /* The issuer is checked before the audience, both before the user. */
    ck_assert_int_eq(verify_rules("{\"exp\":1700000100}", "wsn", "idp"), AUTH_BAD_ISSUER);
    ck_assert_int_eq(verify_rules("{\"exp\":1700000100,\"iss\":\"idp\"}", "wsn", "idp"),
                     AUTH_BAD_AUDIENCE);
    ck_assert_int_eq(verify_rules("{\"exp\":1700000100,\"iss\":\"idp\",\"aud\":\"wsn\"}", "wsn",
                                  "idp"),
                     AUTH_NO_USER);
}
END_TEST

START_TEST(token_crit_header_refused)
{
    auth_claims c;
    secret_set s = SET("k");
    char *tok = make_token_sig("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
                               "{\"user_id\":1,\"exp\":1700000100}", "k", NULL);
    ck_assert_int_eq(verify(&s, tok, &c), AUTH_MALFORMED);
    free(tok);
    /* Key-naming headers are ignored: keys come from the operator only. */
    tok = make_token_sig("{\"alg\":\"HS256\",\"jku\":\"https://evil/\",\"jwk\":{\"kty\":\"oct\"},"
                         "\"x5u\":\"https://evil/\",\"kid\":\"../../x\"}",
                         "{\"user_id\":1,\"exp\":1700000100}", "k", NULL);
    ck_assert_int_eq(verify(&s, tok, &c), AUTH_OK);
    free(tok);
    secrets_free(&s);
}
END_TEST

START_TEST(mint_hs256_with_claims)
{
    secret_set s = SET("signing", "older");
    auth_mint m = {.user_id = 9, .email = "n@x", .exp = NOW + 100, .nbf = NOW - 5,
                   .audience = "wsn", .issuer = "me"};
    char *tok = auth_token_mint(&m, &s, NULL);
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(strncmp(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37), 0);
    auth_verifier v = {.secrets = &s, .audience = "wsn", .issuer = "me"};
    auth_claims c;
    ck_assert_int_eq(auth_verify(&v, tok, strlen(tok), NOW, &c), AUTH_OK);
    ck_assert_int_eq(c.user_id, 9);
    ck_assert_str_eq(c.email, "n@x");
    secret_set older = SET("older");
    ck_assert_int_eq(verify(&older, tok, &c), AUTH_BAD_SIGNATURE);
    free(tok);
    m.nbf = 0;
    m.audience = NULL;
    tok = auth_token_mint(&m, &s, NULL);
    ck_assert_int_eq(auth_verify(&v, tok, strlen(tok), NOW, &c), AUTH_BAD_AUDIENCE);
    free(tok);
    m.user_id = 0;
    ck_assert_ptr_null(auth_token_mint(&m, &s, NULL));
    m.user_id = 1;
    secret_set none = EMPTY_SET();
    ck_assert_ptr_null(auth_token_mint(&m, &none, NULL));
    ck_assert_ptr_null(auth_token_mint(&m, NULL, NULL));
    ck_assert_ptr_null(auth_token_mint(NULL, &s, NULL));
    secrets_free(&older);
    secrets_free(&s);
}
END_TEST

START_TEST(secrets_optional_with_keys)
{
    secret_set s;
    char err[256] = "";
    ck_assert_int_eq(unsetenv("JWT_SECRET"), 0);
    ck_assert_int_eq(secrets_load_if_any(&s, NULL, err, sizeof err), 1);
    ck_assert_uint_eq(s.count, 0);
    ck_assert_int_eq(setenv("JWT_SECRET", "  ", 1), 0);
    ck_assert_int_eq(secrets_load_if_any(&s, NULL, err, sizeof err), 1);
    ck_assert_int_eq(setenv("JWT_SECRET", "x", 1), 0);
    ck_assert_int_eq(secrets_load_if_any(&s, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(s.count, 1);
    secrets_free(&s);
    /* A secret file that was asked for must load. */
    ck_assert_int_eq(secrets_load_if_any(&s, "/nonexistent/secret", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/nonexistent/secret") != NULL, "%s", err);
    ck_assert_int_eq(unsetenv("JWT_SECRET"), 0);
}
END_TEST

START_TEST(reasons)
{
    ck_assert_str_eq(auth_result_reason(AUTH_MISSING), "missing_token");
    ck_assert_str_eq(auth_result_reason(AUTH_MALFORMED), "malformed_token");
    ck_assert_str_eq(auth_result_reason(AUTH_BAD_ALG), "bad_algorithm");
    ck_assert_str_eq(auth_result_reason(AUTH_BAD_SIGNATURE), "bad_signature");
    ck_assert_str_eq(auth_result_reason(AUTH_NO_EXP), "missing_exp");
    ck_assert_str_eq(auth_result_reason(AUTH_EXPIRED), "token_expired");
    ck_assert_str_eq(auth_result_reason(AUTH_NO_USER), "missing_user_id");
    ck_assert_str_eq(auth_result_reason(AUTH_BAD_EMAIL), "bad_email");
    ck_assert_str_eq(auth_result_reason(AUTH_NOT_YET_VALID), "token_not_yet_valid");
    ck_assert_str_eq(auth_result_reason(AUTH_BAD_AUDIENCE), "bad_audience");
    ck_assert_str_eq(auth_result_reason(AUTH_BAD_ISSUER), "bad_issuer");
    ck_assert_str_eq(auth_result_reason(AUTH_OK), "ok");
    ck_assert_str_eq(auth_result_reason(AUTH_RESULT_COUNT), "unknown");
}
END_TEST

START_TEST(create_round_trip)
{
    auth_claims c;
    secret_set s = SET("signing", "older");
    char *tok = auth_token_create(&s, 12345, "a@example.com", 1700003600);
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(verify(&s, tok, &c), AUTH_OK);
    ck_assert_int_eq(c.user_id, 12345);
    ck_assert_int_eq(c.exp, 1700003600);
    ck_assert_str_eq(c.email, "a@example.com");
    /* Signed with the first secret only. */
    secret_set older = SET("older");
    ck_assert_int_eq(verify(&older, tok, &c), AUTH_BAD_SIGNATURE);
    secrets_free(&older);
    /* The header libjwt writes is one we accept. */
    ck_assert_int_eq(strncmp(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37), 0);
    free(tok);

    tok = auth_token_create(&s, 1, NULL, 1700003600);
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(verify(&s, tok, &c), AUTH_OK);
    ck_assert_str_eq(c.email, "");
    free(tok);

    ck_assert_ptr_null(auth_token_create(&s, 0, "a@b", 1700003600));
    ck_assert_ptr_null(auth_token_create(&s, -1, "a@b", 1700003600));
    char long_email[AUTH_MAX_EMAIL + 2];
    memset(long_email, 'e', sizeof long_email - 1);
    long_email[sizeof long_email - 1] = '\0';
    ck_assert_ptr_null(auth_token_create(&s, 1, long_email, 1700003600));
    secret_set none = EMPTY_SET();
    ck_assert_ptr_null(auth_token_create(&none, 1, "a@b", 1700003600));
    ck_assert_ptr_null(auth_token_create(NULL, 1, "a@b", 1700003600));
    secret_set empty_key = SET("");
    ck_assert_ptr_null(auth_token_create(&empty_key, 1, "a@b", 1700003600));
    secrets_free(&empty_key);
    secrets_free(&s);
}
END_TEST

START_TEST(secret_file_to_token)
{
    /* End to end: the trailing newline of the file is not part of the key. */
    secret_set s;
    char err[256] = "";
    ck_assert_int_eq(load_from_content(&s, "topsecret\n", 10, err, sizeof err), 0);
    char *tok = make_token("{\"user_id\":9,\"exp\":1700000100}", "topsecret");
    auth_claims c;
    ck_assert_int_eq(verify(&s, tok, &c), AUTH_OK);
    ck_assert_int_eq(c.user_id, 9);
    free(tok);
    secrets_free(&s);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *secrets = tcase_create("secrets");
    tcase_add_test(secrets, secrets_trailing_newline_not_part);
    tcase_add_test(secrets, secrets_crlf_and_multiple_lines);
    tcase_add_test(secrets, secrets_blank_lines_skipped_inner_space_kept);
    tcase_add_test(secrets, secrets_all_blank_is_error);
    tcase_add_test(secrets, secrets_missing_file_is_error);
    tcase_add_test(secrets, secrets_length_limit_names_line);
    tcase_add_test(secrets, secrets_count_limit);
    tcase_add_test(secrets, secrets_from_env);
    suite_add_tcase(s, secrets);

    TCase *tokens = tcase_create("tokens");
    tcase_add_test(tokens, token_valid_user_id);
    tcase_add_test(tokens, token_sub_fallback);
    tcase_add_test(tokens, token_bad_user_id);
    tcase_add_test(tokens, token_exp_rules);
    tcase_add_test(tokens, token_signature_rules);
    tcase_add_test(tokens, token_alg_pinned);
    tcase_add_test(tokens, token_malformed);
    tcase_add_test(tokens, token_length_limit);
    tcase_add_test(tokens, token_email_rules);
    tcase_add_test(tokens, token_nbf);
    tcase_add_test(tokens, token_audience_and_issuer);
    tcase_add_test(tokens, token_crit_header_refused);
    tcase_add_test(tokens, mint_hs256_with_claims);
    tcase_add_test(secrets, secrets_optional_with_keys);
    tcase_add_test(tokens, reasons);
    tcase_add_test(tokens, create_round_trip);
    tcase_add_test(tokens, secret_file_to_token);
    suite_add_tcase(s, tokens);
    return s;
}

int main(void)
{
    return check_run_suite(auth_suite());
}
