/* test_grpc_access.c — unit tests for who may call the gRPC port
 * (src/master/grpc_access.c): the bearer check (scheme, blanks, wrong and
 * missing tokens, a reload that fails keeps the old tokens, one that works
 * replaces them), and the TLS files checked at start (each bad one named).
 * Certificates are made with the openssl command in a temporary directory. */
#include <check.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/common/config.h"
#include "src/master/grpc_access.h"
#include "tests/check_main.h"
#include "tests/scratch_dir.h"

#define TOKEN_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TOKEN_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"


static void setup_files(void)
{
    scratch_make("wsn-test-grpc-access");
    scratch_sh("printf '%%s\\n\\n%%s\\n' " TOKEN_A " " TOKEN_B " > tokens");
    scratch_sh("printf '%%s\\n' " TOKEN_B " > tokens-b");
    scratch_sh("printf 'short\\n' > tokens-bad");
    scratch_sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
       "-out ca.pem -subj /CN=ca -days 2");
    scratch_sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem "
       "-out cert.pem -subj /CN=localhost -days 2");
    scratch_sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other-key.pem");
    scratch_sh("echo 'not a certificate' > garbage.pem");
    scratch_sh("(cat ca.pem; printf -- '-----BEGIN CERTIFICATE-----\\nAAAA\\n"
       "-----END CERTIFICATE-----\\n') > broken-ca.pem");
}

static void teardown_files(void)
{
    scratch_remove();
}

static wsn_config cfg_with(const char *tokens, const char *cert, const char *key, const char *ca)
{
    wsn_config c;
    config_defaults(&c);
    c.grpc_token_file = tokens ? scratch_path(tokens) : NULL;
    c.grpc_tls_cert = cert ? scratch_path(cert) : NULL;
    c.grpc_tls_key = key ? scratch_path(key) : NULL;
    c.grpc_client_ca = ca ? scratch_path(ca) : NULL;
    return c;
}

static grpc_access_result bearer(const char *v)
{
    return grpc_access_check_bearer(v, strlen(v));
}

START_TEST(no_token_file_lets_everyone_in)
{
    wsn_config c = cfg_with(NULL, NULL, NULL, NULL);
    char err[512] = "";
    ck_assert_msg(grpc_access_load(&c, err, sizeof err) == 0, "%s", err);
    ck_assert(!grpc_access_tokens_required());
    ck_assert_int_eq(bearer("anything"), GRPC_ACCESS_OK);
    grpc_access_free();
}
END_TEST

START_TEST(bearer_rules)
{
    wsn_config c = cfg_with("tokens", NULL, NULL, NULL);
    char err[512] = "";
    ck_assert_msg(grpc_access_load(&c, err, sizeof err) == 0, "%s", err);
    ck_assert(grpc_access_tokens_required());
    ck_assert_int_eq(bearer("Bearer " TOKEN_A), GRPC_ACCESS_OK);
    ck_assert_int_eq(bearer("Bearer " TOKEN_B), GRPC_ACCESS_OK);
    ck_assert_int_eq(bearer("bearer " TOKEN_A), GRPC_ACCESS_OK);
    ck_assert_int_eq(bearer("BEARER \t " TOKEN_A "  "), GRPC_ACCESS_OK);
    ck_assert_int_eq(bearer("Bearer " TOKEN_A "a"), GRPC_ACCESS_WRONG_TOKEN);
    ck_assert_int_eq(bearer("Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), GRPC_ACCESS_WRONG_TOKEN);
    ck_assert_int_eq(bearer("Bearer " TOKEN_A " " TOKEN_B), GRPC_ACCESS_WRONG_TOKEN);
    ck_assert_int_eq(bearer(TOKEN_A), GRPC_ACCESS_NOT_BEARER);
    ck_assert_int_eq(bearer("Basic " TOKEN_A), GRPC_ACCESS_NOT_BEARER);
    ck_assert_int_eq(bearer("Bearer"), GRPC_ACCESS_NOT_BEARER);
    ck_assert_int_eq(bearer("Bearer    "), GRPC_ACCESS_NOT_BEARER);
    ck_assert_int_eq(bearer("Bearer:" TOKEN_A), GRPC_ACCESS_NOT_BEARER);
    ck_assert_int_eq(bearer(""), GRPC_ACCESS_NOT_BEARER);
    /* The value is not NUL-terminated in gRPC's slices: only len counts. */
    ck_assert_int_eq(grpc_access_check_bearer("Bearer " TOKEN_A "zzz", 7 + 32), GRPC_ACCESS_OK);
    ck_assert_ptr_null(strstr(grpc_access_reason(GRPC_ACCESS_WRONG_TOKEN), TOKEN_A));
    ck_assert_str_ne(grpc_access_reason(GRPC_ACCESS_NO_TOKEN), "");
    grpc_access_free();
    ck_assert(!grpc_access_tokens_required());
}
END_TEST

START_TEST(token_reload)
{
    wsn_config c = cfg_with("tokens", NULL, NULL, NULL);
    char err[512] = "";
    ck_assert_msg(grpc_access_load(&c, err, sizeof err) == 0, "%s", err);
    /* A broken file: the old tokens stay. */
    c.grpc_token_file = scratch_path("tokens-bad");
    grpc_access_reload(&c);
    ck_assert_int_eq(bearer("Bearer " TOKEN_A), GRPC_ACCESS_OK);
    c.grpc_token_file = scratch_path("missing");
    grpc_access_reload(&c);
    ck_assert_int_eq(bearer("Bearer " TOKEN_A), GRPC_ACCESS_OK);
    /* A good one replaces them all. */
    c.grpc_token_file = scratch_path("tokens-b");
    grpc_access_reload(&c);
    ck_assert_int_eq(bearer("Bearer " TOKEN_A), GRPC_ACCESS_WRONG_TOKEN);
    ck_assert_int_eq(bearer("Bearer " TOKEN_B), GRPC_ACCESS_OK);
    grpc_access_free();
}
END_TEST

static void load_fails(wsn_config c, const char *names, const char *says)
{
    char err[768] = "";
    ck_assert_int_eq(grpc_access_load(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, names) != NULL, "'%s' does not name %s", err, names);
    ck_assert_msg(says == NULL || strstr(err, says) != NULL, "'%s' does not say %s", err, says);
    ck_assert(!grpc_access_tokens_required());
}

START_TEST(bad_files_named_at_start)
{
    load_fails(cfg_with("tokens-bad", NULL, NULL, NULL), "--grpc-token-file", "tokens-bad:1");
    load_fails(cfg_with("missing", NULL, NULL, NULL), "--grpc-token-file", "missing");
    load_fails(cfg_with(NULL, "garbage.pem", "key.pem", NULL), "garbage.pem", NULL);
    load_fails(cfg_with(NULL, "missing.pem", "key.pem", NULL), "missing.pem", NULL);
    load_fails(cfg_with(NULL, "cert.pem", "other-key.pem", NULL), "other-key.pem",
               "does not match");
    load_fails(cfg_with(NULL, "cert.pem", "garbage.pem", NULL), "garbage.pem", NULL);
    load_fails(cfg_with(NULL, "cert.pem", "key.pem", "garbage.pem"), "--grpc-client-ca",
               "garbage.pem");
    load_fails(cfg_with(NULL, "cert.pem", "key.pem", "broken-ca.pem"), "broken-ca.pem",
               "certificate 2");
    load_fails(cfg_with(NULL, "cert.pem", "key.pem", "missing-ca.pem"), "missing-ca.pem", NULL);
    /* A token file that is fine does not hide a bad certificate. */
    load_fails(cfg_with("tokens", "cert.pem", "other-key.pem", NULL), "other-key.pem", NULL);
}
END_TEST

START_TEST(tls_credentials)
{
    grpc_init();
    wsn_config c = cfg_with(NULL, "cert.pem", "key.pem", "ca.pem");
    char err[768] = "";
    ck_assert_msg(grpc_access_load(&c, err, sizeof err) == 0, "%s", err);
    grpc_server_credentials *creds = grpc_access_server_credentials();
    ck_assert_ptr_nonnull(creds);
    grpc_server_credentials_release(creds);
    /* A reload with a mismatched key keeps the old files (logged), a good one is taken. */
    c.grpc_tls_key = scratch_path("other-key.pem");
    grpc_access_reload(&c);
    c.grpc_tls_key = scratch_path("key.pem");
    grpc_access_reload(&c);
    grpc_access_free();
    c = cfg_with(NULL, NULL, NULL, NULL);
    ck_assert_int_eq(grpc_access_load(&c, err, sizeof err), 0);
    creds = grpc_access_server_credentials();
    ck_assert_ptr_nonnull(creds);
    grpc_server_credentials_release(creds);
    grpc_access_free();
    grpc_shutdown();
}
END_TEST

static Suite *grpc_access_suite(void)
{
    Suite *s = suite_create("grpc_access");
    TCase *tc = tcase_create("grpc_access");
    tcase_add_unchecked_fixture(tc, setup_files, teardown_files);
    tcase_add_test(tc, no_token_file_lets_everyone_in);
    tcase_add_test(tc, bearer_rules);
    tcase_add_test(tc, token_reload);
    tcase_add_test(tc, bad_files_named_at_start);
    tcase_add_test(tc, tls_credentials);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(grpc_access_suite());
}
