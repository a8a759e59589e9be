/* test_http_request.c — unit tests for the HTTP/1.x request-head parser and
 * its header, token-list, query-parameter and resume-position helpers
 * (workers/http_request.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check_main.h"
#include "workers/http_request.h"

static http_parse_status parse_str(const char *s, http_request *req, size_t *head_len)
{
    return http_request_parse(s, strlen(s), req, head_len);
}

static bool span_is(const char *p, size_t n, const char *expected)
{
    return p != NULL && n == strlen(expected) && memcmp(p, expected, n) == 0;
}

/* A head of exactly `total` bytes: a request line and one padding header
 * whose value is sized to land on the total. */
static char *make_head_of_size(size_t total)
{
    static const char prefix[] = "GET / HTTP/1.1\r\nX-Pad: ";
    static const char suffix[] = "\r\n\r\n";
    size_t fixed = strlen(prefix) + strlen(suffix);
    ck_assert_uint_gt(total, fixed);
    char *buf = malloc(total + 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, prefix, strlen(prefix));
    memset(buf + strlen(prefix), 'a', total - fixed);
    memcpy(buf + total - strlen(suffix), suffix, strlen(suffix));
    buf[total] = '\0';
    return buf;
}

START_TEST(valid_get_with_headers)
{
    const char *s = "GET /ws?token=abc&x=1 HTTP/1.1\r\n"
                    "Host: example.com\r\n"
                    "Upgrade:websocket\r\n"
                    "Connection:   keep-alive, Upgrade  \r\n"
                    "X-Empty:\r\n"
                    "\r\n"
                    "body bytes";
    http_request req;
    size_t head_len = 0;
    ck_assert_int_eq(parse_str(s, &req, &head_len), HTTP_PARSE_OK);
    ck_assert_uint_eq(head_len, strlen(s) - strlen("body bytes"));
    ck_assert(span_is(req.method, req.method_len, "GET"));
    ck_assert(span_is(req.target, req.target_len, "/ws?token=abc&x=1"));
    ck_assert(span_is(req.path, req.path_len, "/ws"));
    ck_assert(span_is(req.query, req.query_len, "token=abc&x=1"));
    ck_assert_int_eq(req.version_minor, 1);
    ck_assert_uint_eq(req.header_count, 4);
    ck_assert(span_is(req.headers[0].name, req.headers[0].name_len, "Host"));
    ck_assert(span_is(req.headers[0].value, req.headers[0].value_len, "example.com"));
    ck_assert(span_is(req.headers[1].value, req.headers[1].value_len, "websocket"));
    ck_assert(span_is(req.headers[2].value, req.headers[2].value_len, "keep-alive, Upgrade"));
    ck_assert_uint_eq(req.headers[3].value_len, 0);
}
END_TEST

START_TEST(no_query_and_http10_and_bare_lf)
{
    http_request req;
    size_t head_len = 0;
    const char *s = "GET /health HTTP/1.0\nHost: x\n\n";
    ck_assert_int_eq(parse_str(s, &req, &head_len), HTTP_PARSE_OK);
    ck_assert_uint_eq(head_len, strlen(s));
    ck_assert_int_eq(req.version_minor, 0);
    ck_assert(span_is(req.path, req.path_len, "/health"));
    ck_assert_ptr_null(req.query);

    /* An empty query is present but empty. */
    ck_assert_int_eq(parse_str("GET /a? HTTP/1.1\r\n\r\n", &req, &head_len), HTTP_PARSE_OK);
    ck_assert_ptr_nonnull(req.query);
    ck_assert_uint_eq(req.query_len, 0);
    ck_assert(span_is(req.path, req.path_len, "/a"));
}
END_TEST

START_TEST(every_prefix_is_incomplete)
{
    const char *s = "GET /ws?token=a%2Eb HTTP/1.1\r\n"
                    "Host: localhost:8080\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n"
                    "\r\n";
    size_t n = strlen(s);
    http_request req;
    size_t head_len = 99;
    for (size_t i = 0; i < n; i++) {
        /* A separate allocation per prefix lets ASan catch a read past it. */
        char *prefix = malloc(i + 1);
        ck_assert_ptr_nonnull(prefix);
        memcpy(prefix, s, i);
        ck_assert_msg(http_request_parse(prefix, i, &req, &head_len) == HTTP_PARSE_INCOMPLETE,
                      "prefix of %zu bytes", i);
        free(prefix);
    }
    ck_assert_int_eq(http_request_parse(s, n, &req, &head_len), HTTP_PARSE_OK);
    ck_assert_uint_eq(head_len, n);
    ck_assert_uint_eq(req.header_count, 5);
}
END_TEST

START_TEST(head_at_limit_and_one_over)
{
    http_request req;
    size_t head_len = 0;
    char *at = make_head_of_size(HTTP_MAX_HEAD);
    ck_assert_int_eq(http_request_parse(at, HTTP_MAX_HEAD, &req, &head_len), HTTP_PARSE_OK);
    ck_assert_uint_eq(head_len, HTTP_MAX_HEAD);
    free(at);

    char *over = make_head_of_size(HTTP_MAX_HEAD + 1);
    ck_assert_int_eq(http_request_parse(over, HTTP_MAX_HEAD + 1, &req, &head_len),
                     HTTP_PARSE_TOO_LARGE);
    /* Exactly HTTP_MAX_HEAD bytes of it: full window, no end → too large. */
    ck_assert_int_eq(http_request_parse(over, HTTP_MAX_HEAD, &req, &head_len),
                     HTTP_PARSE_TOO_LARGE);
    /* One byte short of the window: still waiting. */
    ck_assert_int_eq(http_request_parse(over, HTTP_MAX_HEAD - 1, &req, &head_len),
                     HTTP_PARSE_INCOMPLETE);
    free(over);
}
END_TEST

static char *make_head_with_headers(size_t count)
{
    size_t cap = 64 + count * 32;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t w = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < count; i++)
        w += (size_t)snprintf(buf + w, cap - w, "X-H%zu: v\r\n", i);
    snprintf(buf + w, cap - w, "\r\n");
    return buf;
}

START_TEST(header_count_limit)
{
    http_request req;
    size_t head_len = 0;
    char *ok = make_head_with_headers(HTTP_MAX_HEADERS);
    ck_assert_int_eq(parse_str(ok, &req, &head_len), HTTP_PARSE_OK);
    ck_assert_uint_eq(req.header_count, HTTP_MAX_HEADERS);
    free(ok);

    char *too_many = make_head_with_headers(HTTP_MAX_HEADERS + 1);
    ck_assert_int_eq(parse_str(too_many, &req, &head_len), HTTP_PARSE_TOO_LARGE);
    free(too_many);
}
END_TEST

START_TEST(garbage_is_bad)
{
    http_request req;
    size_t head_len = 0;
    /* Binary and TLS: rejected on the first bytes, without waiting. */
    ck_assert_int_eq(http_request_parse("\x00\x01\x02", 3, &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(http_request_parse("\x16\x03\x01", 3, &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(http_request_parse("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11,
                                        &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(http_request_parse("G\xff", 2, &req, &head_len), HTTP_PARSE_BAD);
    /* Missing version (HTTP/0.9 style). */
    ck_assert_int_eq(parse_str("GET /\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / \r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    /* Bad targets. */
    ck_assert_int_eq(parse_str("GET ws HTTP/1.1\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET http://x/ HTTP/1.1\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET /a\x01z HTTP/1.1\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET  / HTTP/1.1\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET x", &req, &head_len), HTTP_PARSE_BAD); /* early */
    /* Broken version strings are garbage, not a version we lack. */
    ck_assert_int_eq(parse_str("GET / HTTX/1.1\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1x\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/11\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / http/1.1\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    /* Headers. */
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nHost : x\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\n: x\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nX: a\r\n\tfolded\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\n\rX", &req, &head_len), HTTP_PARSE_BAD);
    ck_assert_int_eq(parse_str("\r\nGET / HTTP/1.1\r\n\r\n", &req, &head_len), HTTP_PARSE_BAD);
    /* An obviously overlong method is not HTTP. */
    ck_assert_int_eq(parse_str("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &req, &head_len),
                     HTTP_PARSE_BAD);
}
END_TEST

START_TEST(unsupported_version)
{
    http_request req;
    size_t head_len = 0;
    ck_assert_int_eq(parse_str("GET / HTTP/2.0\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD_VERSION);
    ck_assert_int_eq(parse_str("GET / HTTP/1.2\r\nHost: x\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD_VERSION);
    ck_assert_int_eq(parse_str("GET / HTTP/0.9\r\n\r\n", &req, &head_len),
                     HTTP_PARSE_BAD_VERSION);
}
END_TEST

START_TEST(header_lookup_is_case_insensitive)
{
    const char *s = "GET / HTTP/1.1\r\nSec-WebSocket-Key: k1\r\nsec-websocket-key: k2\r\n"
                    "Authorization: Bearer abc\r\n\r\n";
    http_request req;
    size_t head_len = 0;
    ck_assert_int_eq(parse_str(s, &req, &head_len), HTTP_PARSE_OK);
    const http_header *h = http_request_header(&req, "SEC-WEBSOCKET-KEY");
    ck_assert_ptr_nonnull(h);
    ck_assert(span_is(h->value, h->value_len, "k1")); /* the first one */
    h = http_request_header(&req, "authorization");
    ck_assert_ptr_nonnull(h);
    ck_assert(span_is(h->value, h->value_len, "Bearer abc"));
    ck_assert_ptr_null(http_request_header(&req, "Authorizatio"));
    ck_assert_ptr_null(http_request_header(&req, "Upgrade"));
}
END_TEST

START_TEST(token_lists)
{
    const char *v = "keep-alive, Upgrade";
    ck_assert(http_token_list_has(v, strlen(v), "upgrade"));
    ck_assert(http_token_list_has(v, strlen(v), "KEEP-ALIVE"));
    ck_assert(!http_token_list_has(v, strlen(v), "close"));
    ck_assert(!http_token_list_has(v, strlen(v), "Upgrad"));
    ck_assert(!http_token_list_has(v, strlen(v), "keep-alive, Upgrade"));
    const char *w = " ,\tUpgrade\t,, x ";
    ck_assert(http_token_list_has(w, strlen(w), "upgrade"));
    ck_assert(http_token_list_has(w, strlen(w), "x"));
    ck_assert(!http_token_list_has(w, strlen(w), ""));
    ck_assert(http_token_list_has("Upgrade", 7, "upgrade"));
    /* Only len bytes count. */
    ck_assert(!http_token_list_has("Upgrade", 6, "upgrade"));
    ck_assert(!http_token_list_has("", 0, "upgrade"));
}
END_TEST

static long query(const char *q, const char *name, char *out, size_t out_size)
{
    return http_query_param(q, strlen(q), name, out, out_size);
}

START_TEST(query_param_decoding)
{
    char out[16];
    ck_assert_int_eq(query("token=a%2Eb", "token", out, sizeof out), 3);
    ck_assert_str_eq(out, "a.b");
    ck_assert_int_eq(query("x=1&token=a+b%20c&y=2", "token", out, sizeof out), 5);
    ck_assert_str_eq(out, "a b c");
    ck_assert_int_eq(query("x=1&y=2", "token", out, sizeof out), -1);
    ck_assert_int_eq(http_query_param(NULL, 0, "token", out, sizeof out), -1);
    ck_assert_int_eq(query("token=%G1", "token", out, sizeof out), -2);
    ck_assert_int_eq(query("token=%2", "token", out, sizeof out), -2);
    ck_assert_int_eq(query("token=%", "token", out, sizeof out), -2);
    ck_assert_int_eq(query("token=a%00b", "token", out, sizeof out), -2);
    ck_assert_str_eq(out, "");
    /* 15 chars fit in 16 bytes with the NUL; 16 do not. */
    ck_assert_int_eq(query("token=123456789012345", "token", out, sizeof out), 15);
    ck_assert_int_eq(query("token=1234567890123456", "token", out, sizeof out), -2);
    ck_assert_str_eq(out, "");
    /* Name as a suffix or prefix of another name must not match. */
    ck_assert_int_eq(query("xtoken=1&token=2", "token", out, sizeof out), 1);
    ck_assert_str_eq(out, "2");
    ck_assert_int_eq(query("tokens=1&token=3", "token", out, sizeof out), 1);
    ck_assert_str_eq(out, "3");
    ck_assert_int_eq(query("xtoken=1", "token", out, sizeof out), -1);
    /* First occurrence wins; empty and bare names are present and empty. */
    ck_assert_int_eq(query("token=a&token=b", "token", out, sizeof out), 1);
    ck_assert_str_eq(out, "a");
    ck_assert_int_eq(query("token=&x=1", "token", out, sizeof out), 0);
    ck_assert_int_eq(query("x=1&token", "token", out, sizeof out), 0);
    /* '=' inside a value is data. */
    ck_assert_int_eq(query("token=a=b", "token", out, sizeof out), 3);
    ck_assert_str_eq(out, "a=b");
    /* Only query_len bytes count. */
    ck_assert_int_eq(http_query_param("token=abcdef", 8, "token", out, sizeof out), 2);
    ck_assert_str_eq(out, "ab");
    ck_assert_int_eq(query("token=a", "token", out, 0), -2);
}
END_TEST

/* A head fed a byte at a time is parsed once per line, not once per byte,
 * and ends exactly as a whole one does. */
START_TEST(head_append_byte_at_a_time)
{
    char req_text[HTTP_MAX_HEAD];
    int n = snprintf(req_text, sizeof req_text, "GET /ws?token=abc HTTP/1.1\r\nHost: x\r\n");
    int lines = 2;
    while (n < 7000) {
        n += snprintf(req_text + n, sizeof req_text - (size_t)n, "X-Pad-%d: %0100d\r\n", lines, 7);
        lines++;
    }
    n += snprintf(req_text + n, sizeof req_text - (size_t)n, "\r\n");
    lines++;
    char *buf = malloc(HTTP_MAX_HEAD + 1);
    ck_assert_ptr_nonnull(buf);
    uint32_t len = 0;
    unsigned parses = 0;
    http_request req;
    size_t head_len = 0;
    http_parse_status st = HTTP_PARSE_INCOMPLETE;
    for (int i = 0; i < n; i++) {
        st = http_head_append(buf, &len, (const uint8_t *)req_text + i, 1, &req, &head_len,
                              &parses);
        if (i + 1 < n)
            ck_assert_int_eq(st, HTTP_PARSE_INCOMPLETE);
    }
    ck_assert_int_eq(st, HTTP_PARSE_OK);
    ck_assert_uint_eq(head_len, (size_t)n);
    ck_assert_uint_eq(parses, (unsigned)lines);
    ck_assert_ptr_nonnull(http_request_header(&req, "X-Pad-2"));
    /* Over the limit with no line end: too large without a parse per byte. */
    len = 0;
    parses = 0;
    static const char target[] = "GET /";
    for (size_t i = 0; i < sizeof target - 1; i++)
        st = http_head_append(buf, &len, (const uint8_t *)target + i, 1, &req, &head_len,
                              &parses);
    static const uint8_t a = 'a';
    for (int i = 0; i < HTTP_MAX_HEAD + 10 && st == HTTP_PARSE_INCOMPLETE; i++)
        st = http_head_append(buf, &len, &a, 1, &req, &head_len, &parses);
    ck_assert_int_eq(st, HTTP_PARSE_TOO_LARGE);
    ck_assert_uint_eq(len, HTTP_MAX_HEAD + 1);
    ck_assert_uint_eq(parses, 1);
    free(buf);
}
END_TEST

/* last_id of a request head given as a string. */
static int last_id_of(const char *head, int64_t *out)
{
    http_request req;
    size_t head_len = 0;
    ck_assert_int_eq(parse_str(head, &req, &head_len), HTTP_PARSE_OK);
    return http_request_last_id(&req, out);
}

START_TEST(last_id_query_and_header)
{
    int64_t v = -7;
    ck_assert_int_eq(last_id_of("GET /ws?token=t HTTP/1.1\r\n\r\n", &v), 0);
    ck_assert_int_eq(last_id_of("GET /ws HTTP/1.1\r\n\r\n", &v), 0);
    ck_assert_int_eq(v, -7); /* untouched when absent */
    ck_assert_int_eq(last_id_of("GET /ws?last_id=0 HTTP/1.1\r\n\r\n", &v), 1);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(last_id_of("GET /ws?token=t&last_id=123 HTTP/1.1\r\n\r\n", &v), 1);
    ck_assert_int_eq(v, 123);
    ck_assert_int_eq(last_id_of("GET /ws?last_id=%3442 HTTP/1.1\r\n\r\n", &v), 1);
    ck_assert_int_eq(v, 442); /* URL-decoded like the token */
    ck_assert_int_eq(last_id_of("GET /ws HTTP/1.1\r\nLast-Event-ID: 77\r\n\r\n", &v), 1);
    ck_assert_int_eq(v, 77);
    ck_assert_int_eq(last_id_of("GET /ws HTTP/1.1\r\nlast-event-id:   9  \r\n\r\n", &v), 1);
    ck_assert_int_eq(v, 9);
    /* The query wins over the header, even over a malformed one. */
    ck_assert_int_eq(
        last_id_of("GET /ws?last_id=5 HTTP/1.1\r\nLast-Event-ID: 6\r\n\r\n", &v), 1);
    ck_assert_int_eq(v, 5);
    ck_assert_int_eq(
        last_id_of("GET /ws?last_id=5 HTTP/1.1\r\nLast-Event-ID: x\r\n\r\n", &v), 1);
    ck_assert_int_eq(v, 5);
    ck_assert_int_eq(
        last_id_of("GET /ws?last_id=x HTTP/1.1\r\nLast-Event-ID: 6\r\n\r\n", &v), -1);
}
END_TEST

START_TEST(last_id_bounds_and_junk)
{
    int64_t v = 0;
    ck_assert_int_eq(last_id_of("GET /ws?last_id=9007199254740991 HTTP/1.1\r\n\r\n", &v), 1);
    ck_assert_int_eq(v, HTTP_LAST_ID_MAX);
    ck_assert_int_eq(v, (INT64_C(1) << 53) - 1);
    static const char *const bad[] = {
        "GET /ws?last_id=9007199254740992 HTTP/1.1\r\n\r\n",     /* 2^53 */
        "GET /ws?last_id=18446744073709551616 HTTP/1.1\r\n\r\n", /* 2^64 */
        "GET /ws?last_id=99999999999999999999999 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id= HTTP/1.1\r\n\r\n",
        "GET /ws?last_id HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=-1 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=+1 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=0x10 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=1.0 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=1e3 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=%201 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=1%00 HTTP/1.1\r\n\r\n",
        "GET /ws?last_id=%zz HTTP/1.1\r\n\r\n",
        "GET /ws HTTP/1.1\r\nLast-Event-ID:\r\n\r\n",
        "GET /ws HTTP/1.1\r\nLast-Event-ID: 1 2\r\n\r\n",
        "GET /ws HTTP/1.1\r\nLast-Event-ID: abc\r\n\r\n",
        "GET /ws HTTP/1.1\r\nLast-Event-ID: 1\r\nLast-Event-ID: 1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(last_id_of(bad[i], &v) == -1, "accepted: %s", bad[i]);
}
END_TEST

static Suite *http_request_suite(void)
{
    Suite *s = suite_create("http_request");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, valid_get_with_headers);
    tcase_add_test(tc, no_query_and_http10_and_bare_lf);
    tcase_add_test(tc, every_prefix_is_incomplete);
    tcase_add_test(tc, head_at_limit_and_one_over);
    tcase_add_test(tc, header_count_limit);
    tcase_add_test(tc, garbage_is_bad);
    tcase_add_test(tc, unsupported_version);
    tcase_add_test(tc, head_append_byte_at_a_time);
    suite_add_tcase(s, tc);
    TCase *helpers = tcase_create("helpers");
    tcase_add_test(helpers, header_lookup_is_case_insensitive);
    tcase_add_test(helpers, token_lists);
    tcase_add_test(helpers, query_param_decoding);
    tcase_add_test(helpers, last_id_query_and_header);
    tcase_add_test(helpers, last_id_bounds_and_junk);
    suite_add_tcase(s, helpers);
    return s;
}

int main(void)
{
    return check_run_suite(http_request_suite());
}
