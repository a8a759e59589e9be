/* test_ws_handshake.c — unit tests for Sec-WebSocket-Key checks and the accept value. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check_main.h"
#include "workers/ws_handshake.h"

static bool key_ok(const char *key)
{
    return ws_key_valid(key, strlen(key));
}

/* RFC 6455 section 1.3 (checked with openssl sha1 -binary | base64). */
START_TEST(test_rfc6455_sample)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    char out[WS_ACCEPT_LEN + 1];

    memset(out, 'X', sizeof(out));
    ck_assert(key_ok(key));
    ck_assert_int_eq(ws_accept_value(key, strlen(key), out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_uint_eq(strlen(out), WS_ACCEPT_LEN);
}
END_TEST

START_TEST(test_accept_uses_only_len_bytes)
{
    /* The key need not be NUL-terminated: it is usually a slice of the request. */
    const char *request = "dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: x";
    char out[WS_ACCEPT_LEN + 1];

    ck_assert_int_eq(ws_accept_value(request, 24, out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

START_TEST(test_accept_other_key)
{
    /* Computed independently: printf '%s' 'AQIDBAUGBwgJCgsMDQ4PEA==258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
     * | openssl sha1 -binary | base64 */
    const char *key = "AQIDBAUGBwgJCgsMDQ4PEA==";
    char out[WS_ACCEPT_LEN + 1];

    ck_assert(key_ok(key));
    ck_assert_int_eq(ws_accept_value(key, strlen(key), out), 0);
    ck_assert_str_eq(out, "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=");
}
END_TEST

START_TEST(test_key_valid_shapes)
{
    ck_assert(key_ok("AAAAAAAAAAAAAAAAAAAAAA=="));
    ck_assert(key_ok("+/+/+/+/+/+/+/+/+/+/+w=="));
    ck_assert(key_ok("x3JJHMbDL1EzLkh9GBhXDw=="));
}
END_TEST

START_TEST(test_key_wrong_length)
{
    ck_assert(!key_ok(""));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ="));    /* 23 */
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ==="));  /* 25 */
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ"));     /* padding missing */
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ== "));  /* trailing space */
    ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 23));
    ck_assert(!ws_key_valid(NULL, 24));
}
END_TEST

START_TEST(test_key_bad_characters)
{
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZ!=="));
    ck_assert(!key_ok("dGhlIHNhbXBs ZSBub25jZQ="));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25j-_=="));  /* base64url alphabet */
    ck_assert(!key_ok("dGhlIHNh=XBsZSBub25jZQ=="));  /* padding inside */
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ\r\n"));

    char key[25];
    memcpy(key, "dGhlIHNhbXBsZSBub25jZQ==", 25);
    key[5] = '\0';
    ck_assert(!ws_key_valid(key, 24));
    key[5] = (char)0xC3;
    ck_assert(!ws_key_valid(key, 24));
}
END_TEST

START_TEST(test_key_wrong_decoded_size)
{
    ck_assert(!key_ok("AAAAAAAAAAAAAAAAAAAA"));      /* 15 bytes: 20 chars */
    ck_assert(!key_ok("AAAAAAAAAAAAAAAAAAAAAAA="));  /* 17 bytes: one '=' */
    ck_assert(!key_ok("AAAAAAAAAAAAAAAAAAAAAAAA"));  /* 18 bytes: no padding */
    ck_assert(!key_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
}
END_TEST

static Suite *ws_handshake_suite(void)
{
    Suite *s = suite_create("ws_handshake");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_rfc6455_sample);
    tcase_add_test(tc, test_accept_uses_only_len_bytes);
    tcase_add_test(tc, test_accept_other_key);
    tcase_add_test(tc, test_key_valid_shapes);
    tcase_add_test(tc, test_key_wrong_length);
    tcase_add_test(tc, test_key_bad_characters);
    tcase_add_test(tc, test_key_wrong_decoded_size);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(ws_handshake_suite());
}
