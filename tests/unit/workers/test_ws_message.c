/* test_ws_message.c — unit tests for the client message parser (ping, ack,
 * unknown, invalid). */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "tests/check_main.h"
#include "workers/ws_message.h"

/* Parse a string literal: its length comes from sizeof, so NUL bytes inside it
 * are part of the message. */
#define PARSE_LIT(lit, out) parse_n((const uint8_t *)(lit), sizeof(lit) - 1, (out))

static ws_message_type parse_n(const uint8_t *s, size_t n, ws_message *out)
{
    ck_assert_int_eq(ws_message_parse(s, n, out), 0);
    if (out->type != WS_MSG_ACK)
        ck_assert_int_eq(out->ack_id, 0);
    return out->type;
}

static ws_message_type type_of(const char *s)
{
    ws_message m;
    return parse_n((const uint8_t *)s, strlen(s), &m);
}

static int64_t acked_id(const char *s)
{
    ws_message m;
    ck_assert_int_eq(parse_n((const uint8_t *)s, strlen(s), &m), WS_MSG_ACK);
    return m.ack_id;
}

START_TEST(test_ping)
{
    ck_assert_int_eq(type_of("{\"type\":\"ping\"}"), WS_MSG_PING);
    /* Whitespace around the value is JSON; the e2e test sends exactly this. */
    ck_assert_int_eq(type_of("  {\"type\" : \"ping\"}\n"), WS_MSG_PING);
    ck_assert_int_eq(type_of("\t\r\n{\"type\":\"ping\"}\t\r\n "), WS_MSG_PING);
    /* An escaped spelling is the same string. */
    ck_assert_int_eq(type_of("{\"type\":\"\\u0070ing\"}"), WS_MSG_PING);
}
END_TEST

START_TEST(test_ack)
{
    ck_assert_int_eq(acked_id("{\"type\":\"ack\",\"data\":{\"id\":42}}"), 42);
    ck_assert_int_eq(acked_id("{\"type\":\"ack\",\"data\":{\"id\":0}}"), 0);
    /* -0 is the integer 0 in JSON (json-c reads it as int 0): accepted. */
    ck_assert_int_eq(acked_id("{\"type\":\"ack\",\"data\":{\"id\":-0}}"), 0);
    ck_assert_int_eq(acked_id("{\"type\":\"ack\",\"data\":{\"id\":9007199254740991}}"),
                     INT64_C(9007199254740991)); /* 2^53 - 1 */
    ck_assert_int_eq(acked_id("{\"type\":\"ack\",\"data\":{\"id\":9007199254740993}}"),
                     INT64_C(9007199254740993)); /* above 2^53, still exact as int64 */
    ck_assert_int_eq(acked_id("{\"type\":\"ack\",\"data\":{\"id\":9223372036854775807}}"),
                     INT64_MAX);
    /* Key order does not matter. */
    ck_assert_int_eq(acked_id("{\"data\":{\"id\":7},\"type\":\"ack\"}"), 7);
}
END_TEST

START_TEST(test_bad_ack)
{
    static const char *const bad[] = {
        "{\"type\":\"ack\"}",                                /* no data */
        "{\"type\":\"ack\",\"data\":null}",
        "{\"type\":\"ack\",\"data\":5}",                      /* data not an object */
        "{\"type\":\"ack\",\"data\":[1]}",
        "{\"type\":\"ack\",\"data\":\"x\"}",
        "{\"type\":\"ack\",\"data\":{}}",                     /* no id */
        "{\"type\":\"ack\",\"data\":{\"ID\":1}}",             /* keys are case-sensitive */
        "{\"type\":\"ack\",\"id\":1}",                        /* id outside data */
        "{\"type\":\"ack\",\"data\":{\"id\":\"1\"}}",         /* a string */
        "{\"type\":\"ack\",\"data\":{\"id\":true}}",          /* a bool */
        "{\"type\":\"ack\",\"data\":{\"id\":null}}",
        "{\"type\":\"ack\",\"data\":{\"id\":{}}}",
        "{\"type\":\"ack\",\"data\":{\"id\":[1]}}",
        "{\"type\":\"ack\",\"data\":{\"id\":1.0}}",           /* a float, even if integral */
        "{\"type\":\"ack\",\"data\":{\"id\":1.5}}",
        /* json-c reads any exponent as a double, so 1e3 is a float (BAD_ACK),
         * not the integer 1000: an id is never written that way. */
        "{\"type\":\"ack\",\"data\":{\"id\":1e3}}",
        "{\"type\":\"ack\",\"data\":{\"id\":1E3}}",
        "{\"type\":\"ack\",\"data\":{\"id\":0e0}}",
        "{\"type\":\"ack\",\"data\":{\"id\":1E400}}",         /* double overflow: inf */
        "{\"type\":\"ack\",\"data\":{\"id\":NaN}}",           /* json-c takes these even */
        "{\"type\":\"ack\",\"data\":{\"id\":Infinity}}",      /* in strict mode */
        "{\"type\":\"ack\",\"data\":{\"id\":-1}}",            /* negative */
        "{\"type\":\"ack\",\"data\":{\"id\":-9223372036854775808}}",
        "{\"type\":\"ack\",\"data\":{\"id\":-9223372036854775809}}",
        /* Beyond int64: json-c keeps 2^63.. as uint64 and clamps beyond 2^64-1;
         * none of them may come back as a clamped INT64_MAX. */
        "{\"type\":\"ack\",\"data\":{\"id\":9223372036854775808}}",
        "{\"type\":\"ack\",\"data\":{\"id\":18446744073709551615}}",
        "{\"type\":\"ack\",\"data\":{\"id\":18446744073709551616}}",
        "{\"type\":\"ack\",\"data\":{\"id\":123456789012345678901234567890}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ws_message m;
        ws_message_type t = parse_n((const uint8_t *)bad[i], strlen(bad[i]), &m);
        ck_assert_msg(t == WS_MSG_BAD_ACK, "%s -> %d", bad[i], (int)t);
    }
}
END_TEST

START_TEST(test_unknown)
{
    ck_assert_int_eq(type_of("{\"type\":\"subscribe\"}"), WS_MSG_UNKNOWN);
    ck_assert_int_eq(type_of("{\"type\":\"\"}"), WS_MSG_UNKNOWN);
    ck_assert_int_eq(type_of("{\"type\":\"PING\"}"), WS_MSG_UNKNOWN); /* case-sensitive */
    ck_assert_int_eq(type_of("{\"type\":\"ping \"}"), WS_MSG_UNKNOWN);
    ck_assert_int_eq(type_of("{\"type\":\"acks\",\"data\":{\"id\":1}}"), WS_MSG_UNKNOWN);
    /* An escaped NUL makes a longer string, not "ping" (compared with its length). */
    ck_assert_int_eq(type_of("{\"type\":\"ping\\u0000\"}"), WS_MSG_UNKNOWN);
    ck_assert_int_eq(type_of("{\"type\":\"ack\\u0000\",\"data\":{\"id\":1}}"), WS_MSG_UNKNOWN);
}
END_TEST

START_TEST(test_invalid)
{
    static const char *const bad[] = {
        "", " ", "\n",
        "not json", "ping", "\"ping\"", "42", "null", "true",
        "[]", "[{\"type\":\"ping\"}]",
        "{}",                                       /* no type */
        "{\"Type\":\"ping\"}",
        "{\"type\":5}", "{\"type\":null}", "{\"type\":true}", "{\"type\":[\"ping\"]}",
        "{\"type\":{\"type\":\"ping\"}}",
        "{\"type\":",                               /* truncated */
        "{\"type\":\"ping\"",
        "{\"type\":\"ping\"} x",                    /* trailing garbage */
        "{\"type\":\"ping\"}{}",
        "{\"type\":\"ping\"},",
        "{\"type\":\"ping\"}\f",                    /* not JSON whitespace */
        "\xef\xbb\xbf{\"type\":\"ping\"}",          /* a BOM is not JSON whitespace */
        /* Strict JSON only (json-c's lax mode would take these). */
        "{'type':'ping'}",
        "{\"type\":\"ping\",}",
        "{\"type\":\"ping\"} /* c */",
        "{\"type\":\"ack\",\"data\":{\"id\":01}}",  /* leading zero */
        "{type:\"ping\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ws_message m;
        ws_message_type t = parse_n((const uint8_t *)bad[i], strlen(bad[i]), &m);
        ck_assert_msg(t == WS_MSG_INVALID, "%s -> %d", bad[i], (int)t);
    }
    /* A NULL buffer is an empty message, not a crash. */
    ws_message m;
    ck_assert_int_eq(ws_message_parse(NULL, 0, &m), 0);
    ck_assert_int_eq(m.type, WS_MSG_INVALID);
}
END_TEST

START_TEST(test_extra_fields_ignored)
{
    ck_assert_int_eq(type_of("{\"type\":\"ping\",\"data\":{\"x\":[1,2,{\"y\":null}]},\"z\":1.5}"),
                     WS_MSG_PING);
    ck_assert_int_eq(acked_id("{\"v\":2,\"type\":\"ack\",\"data\":{\"id\":3,\"at\":\"now\"},"
                              "\"extra\":[true,false]}"),
                     3);
    /* NaN elsewhere in the message does not spoil it. */
    ck_assert_int_eq(type_of("{\"type\":\"ping\",\"n\":NaN}"), WS_MSG_PING);
}
END_TEST

START_TEST(test_duplicate_keys_last_wins)
{
    /* json-c keeps the last of duplicate keys; we rely on nothing more. */
    ck_assert_int_eq(type_of("{\"type\":\"ack\",\"type\":\"ping\"}"), WS_MSG_PING);
    ck_assert_int_eq(type_of("{\"type\":\"ping\",\"type\":\"bye\"}"), WS_MSG_UNKNOWN);
    ck_assert_int_eq(type_of("{\"type\":\"ping\",\"type\":5}"), WS_MSG_INVALID);
    ck_assert_int_eq(acked_id("{\"type\":\"ack\",\"data\":{\"id\":1,\"id\":2}}"), 2);
    ck_assert_int_eq(type_of("{\"type\":\"ack\",\"data\":{\"id\":1},\"data\":{}}"),
                     WS_MSG_BAD_ACK);
}
END_TEST

START_TEST(test_nul_bytes)
{
    ws_message m;
    /* A raw NUL anywhere (json-c stops at it) is never valid JSON text. */
    ck_assert_int_eq(PARSE_LIT("{\"type\":\"ping\"}\0", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("{\"type\":\"ping\"\0}", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("{\"type\":\"pi\0ng\"}", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("{\"type\":\"ping\0\"}", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("\0{\"type\":\"ping\"}", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("{\"type\":\"ack\",\"data\":{\"id\":1\0}}", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("\0", &m), WS_MSG_INVALID);
    /* json-c cuts object keys at an escaped NUL (keys are C strings there), so
     * "type\u0000x" reads as "type". Harmless: the client could have written
     * "type"; pinned here so a json-c change is noticed. */
    ck_assert_int_eq(type_of("{\"type\\u0000x\":\"ping\"}"), WS_MSG_PING);
}
END_TEST

START_TEST(test_depth_bounded)
{
    /* Depth 16 (the object and 15 nested arrays) is fine, 17 is not. */
    char ok[256];
    char deep[256];
    strcpy(ok, "{\"type\":\"ping\",\"d\":");
    strcpy(deep, ok);
    for (int i = 0; i < 15; i++)
        strcat(ok, "[");
    for (int i = 0; i < 15; i++)
        strcat(ok, "]");
    strcat(ok, "}");
    for (int i = 0; i < 16; i++)
        strcat(deep, "[");
    for (int i = 0; i < 16; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    ck_assert_int_eq(type_of(ok), WS_MSG_PING);
    ck_assert_int_eq(type_of(deep), WS_MSG_INVALID);
}
END_TEST

START_TEST(test_not_nul_terminated)
{
    /* The parser reads len bytes, not up to a NUL: the "}" past len is unseen. */
    static const char full[] = "{\"type\":\"ping\"}";
    ws_message m;
    ck_assert_int_eq(parse_n((const uint8_t *)full, sizeof full - 2, &m), WS_MSG_INVALID);
    ck_assert_int_eq(parse_n((const uint8_t *)full, sizeof full - 1, &m), WS_MSG_PING);
}
END_TEST

START_TEST(test_fresh_state_per_call)
{
    ws_message m;
    /* A truncated message must not leave anything that completes the next. */
    ck_assert_int_eq(PARSE_LIT("{\"type\":", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("\"ping\"}", &m), WS_MSG_INVALID);
    ck_assert_int_eq(PARSE_LIT("{\"type\":\"ack\",\"data\":{\"id\":9}}", &m), WS_MSG_ACK);
    ck_assert_int_eq(m.ack_id, 9);
    ck_assert_int_eq(PARSE_LIT("{\"type\":\"ping\"}", &m), WS_MSG_PING);
    ck_assert_int_eq(m.ack_id, 0); /* reset, not left over from the ack */
}
END_TEST

static Suite *ws_message_suite(void)
{
    Suite *s = suite_create("ws_message");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_ping);
    tcase_add_test(tc, test_ack);
    tcase_add_test(tc, test_bad_ack);
    tcase_add_test(tc, test_unknown);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_extra_fields_ignored);
    tcase_add_test(tc, test_duplicate_keys_last_wins);
    tcase_add_test(tc, test_nul_bytes);
    tcase_add_test(tc, test_depth_bounded);
    tcase_add_test(tc, test_not_nul_terminated);
    tcase_add_test(tc, test_fresh_state_per_call);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(ws_message_suite());
}
