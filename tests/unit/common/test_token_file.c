/* test_token_file.c — unit tests for the bearer tokens of --grpc-token-file
 * (src/common/token_file.c): line rules, refusals naming the file and line
 * but never the token, and the match. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/token_file.h"
#include "tests/check_main.h"

#define T1 "0123456789abcdef0123456789abcdef"
#define T2 "Zm9vYmFy-._~+/Zm9vYmFyCg=="

static char path[64];

static void write_tokens(const char *content)
{
    snprintf(path, sizeof path, "/tmp/wsn-test-tokens-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t n = strlen(content);
    ck_assert_int_eq(write(fd, content, n), (ssize_t)n);
    ck_assert_int_eq(close(fd), 0);
}

static int load(token_set *t, const char *content, char *err, size_t err_size)
{
    write_tokens(content);
    int rc = token_file_load(t, path, err, err_size);
    ck_assert_int_eq(unlink(path), 0);
    return rc;
}

static void expect_refused(const char *content, const char *says, const char *secret)
{
    token_set t;
    char err[512] = "";
    ck_assert_int_eq(load(&t, content, err, sizeof err), -1);
    ck_assert_uint_eq(t.count, 0);
    ck_assert_msg(strstr(err, path) != NULL, "'%s' does not name the file", err);
    ck_assert_msg(strstr(err, says) != NULL, "'%s' does not say '%s'", err, says);
    ck_assert_msg(secret == NULL || strstr(err, secret) == NULL, "'%s' shows the token", err);
}

START_TEST(lines_and_blanks)
{
    token_set t;
    char err[256] = "";
    ck_assert_int_eq(load(&t, "\n" T1 "\r\n  \n\t\n" T2, err, sizeof err), 0);
    ck_assert_uint_eq(t.count, 2);
    ck_assert_str_eq(t.item[0].text, T1);
    ck_assert_uint_eq(t.item[0].len, strlen(T1));
    ck_assert_str_eq(t.item[1].text, T2);
    ck_assert(token_file_match(&t, T1, strlen(T1)));
    ck_assert(token_file_match(&t, T2, strlen(T2)));
    ck_assert(!token_file_match(&t, T1, strlen(T1) - 1));  /* a prefix */
    ck_assert(!token_file_match(&t, T1 "0", strlen(T1) + 1));
    ck_assert(!token_file_match(&t, "0123456789abcdef0123456789abcdeF", strlen(T1)));
    ck_assert(!token_file_match(&t, "", 0));
    ck_assert(!token_file_match(&t, NULL, 5));
    ck_assert(!token_file_match(NULL, T1, strlen(T1)));
    token_file_free(&t);
    ck_assert_uint_eq(t.count, 0);
    ck_assert(!token_file_match(&t, T1, strlen(T1)));
}
END_TEST

START_TEST(refusals_name_the_line_never_the_token)
{
    expect_refused("", "no token", NULL);
    expect_refused("\n\n  \n", "no token", NULL);
    expect_refused(T1 "\nshort\n", ":2: a token must be", "short");
    expect_refused(T1 " \n", ":1: a token holds a space", T1);
    expect_refused(" " T1 "\n", ":1: a token holds a space", T1);
    expect_refused("ab\tcdefghijklmnopqrstu\n", ":1: a token holds", "cdefghij");
    expect_refused("\xc3\xa9" T1 "\n", ":1: a token holds", T1);
    expect_refused(T1 "\r\r\n", ":1: a token holds", T1);
    char big[TOKEN_MAX_LEN + 3];
    memset(big, 'x', TOKEN_MAX_LEN + 1);
    big[TOKEN_MAX_LEN + 1] = '\n';
    big[TOKEN_MAX_LEN + 2] = '\0';
    expect_refused(big, ":1: a token must be", NULL);
    char many[(TOKEN_FILE_MAX + 1) * 34 + 1];
    size_t w = 0;
    for (int i = 0; i <= TOKEN_FILE_MAX; i++)
        w += (size_t)sprintf(many + w, "%032d\n", i);
    expect_refused(many, "more than", NULL);
}
END_TEST

START_TEST(files_that_are_not_regular)
{
    token_set t;
    char err[256] = "";
    ck_assert_int_eq(token_file_load(&t, "/nonexistent/tokens", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/nonexistent/tokens") != NULL, "%s", err);
    ck_assert_int_eq(token_file_load(&t, "/tmp", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/wsn-test-tokens-fifo-%d", (int)getpid());
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(token_file_load(&t, fifo, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(unlink(fifo), 0);
    ck_assert_int_eq(token_file_load(&t, NULL, err, sizeof err), -1);
}
END_TEST

static Suite *token_file_suite(void)
{
    Suite *s = suite_create("token_file");
    TCase *tc = tcase_create("token_file");
    tcase_add_test(tc, lines_and_blanks);
    tcase_add_test(tc, refusals_name_the_line_never_the_token);
    tcase_add_test(tc, files_that_are_not_regular);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(token_file_suite());
}
