/* fuzz_login_body.c — libFuzzer harness for the login request's body parser
 * (workers/login_body.h). Beyond "no crash, no leak":
 *   - the result is 0 or -1, and the same on a second parse of the same bytes;
 *   - on success: the body was at most LOGIN_BODY_MAX bytes; email and
 *     password are NUL-terminated inside their arrays, non-empty, within
 *     USERS_EMAIL_MAX / PASSWORD_MAX, hold no NUL, are valid UTF-8, and the
 *     arrays are zero after the terminator (no stale bytes); *why untouched;
 *   - on failure: a non-empty static reason, and the output all zero (no part
 *     of a password left behind), whatever it held before;
 *   - JSON whitespace after the body changes nothing while the body stays
 *     within LOGIN_BODY_MAX, and one byte more than that is refused (the
 *     "too large" path, which inputs of run-fuzz.sh's default -max_len of 4096
 *     cannot reach by themselves);
 *   - an accepted body without its last byte (the closing brace) is refused:
 *     an incomplete object is never taken for a whole one. */
#include <stdbool.h>
#include <string.h>

#include "src/common/utf8.h"
#include "tests/fuzz/fuzz.h"
#include "workers/login_body.h"

static void check_field(const char *field, size_t cap, size_t max)
{
    const char *nul = memchr(field, '\0', cap);
    FUZZ_ASSERT(nul != NULL);
    size_t n = (size_t)(nul - field);
    FUZZ_ASSERT(n >= 1 && n <= max);
    FUZZ_ASSERT(utf8_valid((const uint8_t *)field, n));
    for (size_t i = n; i < cap; i++)
        FUZZ_ASSERT(field[i] == '\0');
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != 0)
            return false;
    return true;
}

/* Parse into an output first filled with fill; check the invariants of one
 * result. Returns the parser's result. */
static int parse_checked(const uint8_t *data, size_t size, login_body *out, int fill,
                         const char **why)
{
    static const char *const untouched = "untouched";
    memset(out, fill, sizeof *out);
    *why = untouched;
    int rc = login_body_parse(data, size, out, why);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_ASSERT(size <= LOGIN_BODY_MAX);
        FUZZ_ASSERT(*why == untouched);
        check_field(out->email, sizeof out->email, USERS_EMAIL_MAX);
        check_field(out->password, sizeof out->password, PASSWORD_MAX);
    } else {
        FUZZ_ASSERT(*why != NULL && *why != untouched && (*why)[0] != '\0');
        FUZZ_ASSERT(all_zero(out, sizeof *out));
    }
    return rc;
}

/* data followed by pad bytes of JSON white space, in an exact-size buffer
 * (so that ASan sees any read past the end). */
static uint8_t *padded(const uint8_t *data, size_t size, size_t pad)
{
    static const char ws[] = " \t\r\n";
    uint8_t *buf = malloc(size + pad ? size + pad : 1);
    if (buf == NULL)
        abort();
    if (size)
        memcpy(buf, data, size);
    for (size_t i = 0; i < pad; i++)
        buf[size + i] = (uint8_t)ws[(size + i) % 4];
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: the parser must not read past len. */
    uint8_t *copy = padded(data, size, 0);
    login_body a, b;
    const char *why_a, *why_b;
    int ra = parse_checked(copy, size, &a, 0xA5, &why_a);
    int rb = parse_checked(copy, size, &b, 0x5A, &why_b);
    FUZZ_ASSERT(ra == rb);
    if (ra == 0)
        FUZZ_ASSERT(memcmp(&a, &b, sizeof a) == 0);
    else
        FUZZ_ASSERT(strcmp(why_a, why_b) == 0);

    /* Trailing white space: the same result up to LOGIN_BODY_MAX bytes... */
    if (size < LOGIN_BODY_MAX) {
        size_t pad = (size & 1) ? 1 : LOGIN_BODY_MAX - size;
        uint8_t *buf = padded(data, size, pad);
        login_body p;
        const char *why_p;
        int rp = parse_checked(buf, size + pad, &p, 0x33, &why_p);
        FUZZ_ASSERT(rp == ra);
        if (rp == 0)
            FUZZ_ASSERT(memcmp(&p, &a, sizeof a) == 0);
        free(buf);
    }
    /* ...and one byte over it is refused, even when the body was fine. */
    if (size <= LOGIN_BODY_MAX) {
        size_t pad = LOGIN_BODY_MAX + 1 - size;
        uint8_t *buf = padded(data, size, pad);
        login_body p;
        const char *why_p;
        FUZZ_ASSERT(parse_checked(buf, size + pad, &p, 0x77, &why_p) == -1);
        free(buf);
    }

    /* An accepted body cut before its last non-white-space byte is incomplete. */
    if (ra == 0) {
        size_t end = size;
        while (end > 0 && (copy[end - 1] == ' ' || copy[end - 1] == '\t' ||
                           copy[end - 1] == '\r' || copy[end - 1] == '\n'))
            end--;
        FUZZ_ASSERT(end > 0 && copy[end - 1] == '}');
        login_body p;
        const char *why_p;
        FUZZ_ASSERT(parse_checked(copy, end - 1, &p, 0x11, &why_p) == -1);
    }
    free(copy);
    return 0;
}
