/* test_utf8.c — unit tests for the strict incremental UTF-8 validator. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check_main.h"
#include "src/common/utf8.h"

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

/* Feeding s in every two-piece split (and byte by byte) must give the same
 * verdict as feeding it whole: the state really carries partial characters. */
static bool valid_when_split(const uint8_t *s, size_t len)
{
    bool whole = utf8_valid(s, len);

    for (size_t cut = 0; cut <= len; cut++) {
        uint32_t st = utf8_validate_step(UTF8_ACCEPT, s, cut);
        st = utf8_validate_step(st, s + cut, len - cut);
        ck_assert_int_eq(st == UTF8_ACCEPT, whole);
    }
    uint32_t st = UTF8_ACCEPT;
    for (size_t i = 0; i < len; i++)
        st = utf8_validate_step(st, s + i, 1);
    ck_assert_int_eq(st == UTF8_ACCEPT, whole);
    return whole;
}

static bool valid(const uint8_t *s, size_t len)
{
    return valid_when_split(s, len);
}

static bool valid_str(const char *s)
{
    return valid_when_split((const uint8_t *)s, strlen(s));
}

START_TEST(test_valid_sequences)
{
    ck_assert(valid_str(""));
    ck_assert(valid_str("hello, world"));
    ck_assert(valid_str("{\"type\":\"ping\"}"));
    ck_assert(valid_str("\xc2\x80"));                   /* U+0080 */
    ck_assert(valid_str("\xdf\xbf"));                   /* U+07FF */
    ck_assert(valid_str("\xe0\xa0\x80"));               /* U+0800 */
    ck_assert(valid_str("\xed\x9f\xbf"));               /* U+D7FF */
    ck_assert(valid_str("\xee\x80\x80"));               /* U+E000 */
    ck_assert(valid_str("\xef\xbf\xbd"));               /* U+FFFD */
    ck_assert(valid_str("\xef\xbf\xbf"));               /* U+FFFF */
    ck_assert(valid_str("\xf0\x90\x80\x80"));           /* U+10000 */
    ck_assert(valid_str("\xf4\x8f\xbf\xbf"));           /* U+10FFFF */
    ck_assert(valid_str("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")); /* Kuhn's "kosme" */
    ck_assert(valid_str("caf\xc3\xa9 \xe2\x82\xac 5 \xf0\x9f\x98\x80 ok"));
    ck_assert(valid(BYTES(0x00)));                      /* NUL is a valid character */
    ck_assert(valid(BYTES(0x7f)));
}
END_TEST

START_TEST(test_long_ascii_with_multibyte_tail)
{
    /* Exercises the word-at-a-time ASCII skip and its hand-off to the DFA. */
    uint8_t buf[64];
    for (size_t pos = 0; pos + 2 <= sizeof(buf); pos++) {
        memset(buf, 'a', sizeof(buf));
        buf[pos] = 0xc3;
        buf[pos + 1] = 0xa9;
        ck_assert(valid(buf, sizeof(buf)));
        buf[pos + 1] = 'a';  /* lead byte without continuation */
        ck_assert(!valid(buf, sizeof(buf)));
    }
}
END_TEST

START_TEST(test_overlong)
{
    ck_assert(!valid(BYTES(0xc0, 0x80)));
    ck_assert(!valid(BYTES(0xc0, 0xaf)));
    ck_assert(!valid(BYTES(0xc1, 0xbf)));
    ck_assert(!valid(BYTES(0xe0, 0x80, 0x80)));
    ck_assert(!valid(BYTES(0xe0, 0x80, 0xaf)));
    ck_assert(!valid(BYTES(0xe0, 0x9f, 0xbf)));
    ck_assert(!valid(BYTES(0xf0, 0x80, 0x80, 0x80)));
    ck_assert(!valid(BYTES(0xf0, 0x80, 0x80, 0xaf)));
    ck_assert(!valid(BYTES(0xf0, 0x8f, 0xbf, 0xbf)));
    ck_assert(!valid(BYTES(0xf8, 0x80, 0x80, 0x80, 0xaf)));
    ck_assert(!valid(BYTES(0xfc, 0x80, 0x80, 0x80, 0x80, 0xaf)));
}
END_TEST

START_TEST(test_surrogates)
{
    ck_assert(!valid(BYTES(0xed, 0xa0, 0x80)));  /* U+D800 */
    ck_assert(!valid(BYTES(0xed, 0xad, 0xbf)));  /* U+DB7F */
    ck_assert(!valid(BYTES(0xed, 0xae, 0x80)));  /* U+DB80 */
    ck_assert(!valid(BYTES(0xed, 0xb0, 0x80)));  /* U+DC00 */
    ck_assert(!valid(BYTES(0xed, 0xbf, 0xbf)));  /* U+DFFF */
    ck_assert(!valid(BYTES(0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80)));  /* paired */
}
END_TEST

START_TEST(test_above_max)
{
    ck_assert(!valid(BYTES(0xf4, 0x90, 0x80, 0x80)));  /* U+110000 */
    ck_assert(!valid(BYTES(0xf4, 0xbf, 0xbf, 0xbf)));
    ck_assert(!valid(BYTES(0xf7, 0xbf, 0xbf, 0xbf)));
    for (unsigned b = 0xf5; b <= 0xff; b++) {
        uint8_t s[4] = { (uint8_t)b, 0x80, 0x80, 0x80 };
        ck_assert(!valid(s, sizeof(s)));
        ck_assert(!valid(s, 1));
    }
}
END_TEST

START_TEST(test_truncated)
{
    ck_assert(!valid(BYTES(0xc2)));
    ck_assert(!valid(BYTES(0xe2, 0x82)));
    ck_assert(!valid(BYTES(0xf0, 0x9f, 0x98)));
    ck_assert(!valid(BYTES('a', 0xe2, 0x82, 'b')));  /* interrupted by ASCII */

    /* Incomplete but so far valid: neither accepted nor rejected. */
    uint32_t st = utf8_validate_step(UTF8_ACCEPT, BYTES(0xf0, 0x9f, 0x98));
    ck_assert_uint_ne(st, UTF8_ACCEPT);
    ck_assert_uint_ne(st, UTF8_REJECT);
    ck_assert_uint_eq(utf8_validate_step(st, BYTES(0x80)), UTF8_ACCEPT);
}
END_TEST

START_TEST(test_stray_continuation)
{
    ck_assert(!valid(BYTES(0x80)));
    ck_assert(!valid(BYTES(0xbf)));
    ck_assert(!valid(BYTES('a', 0x80, 'b')));
    ck_assert(!valid(BYTES(0xc3, 0xa9, 0xa9)));  /* one continuation too many */
    for (unsigned b = 0x80; b <= 0xbf; b++) {
        uint8_t s[1] = { (uint8_t)b };
        ck_assert(!valid(s, 1));
    }
}
END_TEST

START_TEST(test_reject_is_sticky)
{
    uint32_t st = utf8_validate_step(UTF8_ACCEPT, BYTES(0xff));
    ck_assert_uint_eq(st, UTF8_REJECT);
    ck_assert_uint_eq(utf8_validate_step(st, BYTES('a')), UTF8_REJECT);
    ck_assert_uint_eq(utf8_validate_step(st, BYTES(0xc3, 0xa9)), UTF8_REJECT);
    ck_assert_uint_eq(utf8_validate_step(st, NULL, 0), UTF8_REJECT);
}
END_TEST

START_TEST(test_every_two_byte_pair)
{
    /* Cross-check the DFA against a direct decode for all lead/second pairs. */
    for (unsigned a = 0xc0; a <= 0xff; a++) {
        for (unsigned b = 0x00; b <= 0xff; b++) {
            uint8_t s[2] = { (uint8_t)a, (uint8_t)b };
            uint32_t st = utf8_validate_step(UTF8_ACCEPT, s, 2);
            bool cont = b >= 0x80 && b <= 0xbf;
            bool expect_reject;
            if (a < 0xc2 || a > 0xf4 || !cont)
                expect_reject = true;
            else if (a == 0xe0)
                expect_reject = b < 0xa0;
            else if (a == 0xed)
                expect_reject = b > 0x9f;
            else if (a == 0xf0)
                expect_reject = b < 0x90;
            else if (a == 0xf4)
                expect_reject = b > 0x8f;
            else
                expect_reject = false;
            ck_assert_msg((st == UTF8_REJECT) == expect_reject, "%02x %02x", a, b);
            if (!expect_reject)
                ck_assert_int_eq(st == UTF8_ACCEPT, a < 0xe0);
        }
    }
}
END_TEST

static Suite *utf8_suite(void)
{
    Suite *s = suite_create("utf8");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_valid_sequences);
    tcase_add_test(tc, test_long_ascii_with_multibyte_tail);
    tcase_add_test(tc, test_overlong);
    tcase_add_test(tc, test_surrogates);
    tcase_add_test(tc, test_above_max);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_stray_continuation);
    tcase_add_test(tc, test_reject_is_sticky);
    tcase_add_test(tc, test_every_two_byte_pair);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(utf8_suite());
}
