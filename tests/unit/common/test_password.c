/* test_password.c — crypt(3) hashes (password.c) and the users file
 * (users_file.c): yescrypt by default, bcrypt and SHA-512 accepted, wrong
 * passwords and malformed hashes never match; the file's format, its errors
 * named with the line, case-insensitive emails, and a file writable by others
 * refused. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/password.h"
#include "src/common/users_file.h"
#include "tests/check_main.h"

START_TEST(test_hash_and_verify)
{
    char h[PASSWORD_HASH_MAX], h2[PASSWORD_HASH_MAX], err[256];
    ck_assert_int_eq(password_hash("password123", h, err, sizeof err), 0);
    ck_assert_msg(strncmp(h, "$y$", 3) == 0, "not yescrypt: %s", h);
    ck_assert(password_hash_valid(h));
    ck_assert(password_verify("password123", h));
    ck_assert(!password_verify("password124", h));
    ck_assert(!password_verify("", h));
    /* Salted: the same password hashes differently. */
    ck_assert_int_eq(password_hash("password123", h2, err, sizeof err), 0);
    ck_assert_str_ne(h, h2);
    ck_assert(password_verify("password123", h2));
}
END_TEST

START_TEST(test_other_methods)
{
    /* bcrypt of "password123" (cost 4) and SHA-512 crypt of "hunter2", made
     * by another implementation (Python's crypt module). */
    const char *bcrypt = "$2b$04$KBF4lyLIlxXcXyb1IUMHaOCZzE/LLPL4OEUXsiA/dtX1Rl5CnZYVa";
    ck_assert(password_hash_valid(bcrypt));
    ck_assert(password_verify("password123", bcrypt));
    ck_assert(!password_verify("wrong", bcrypt));
    const char *sha = "$6$rounds=5000$salt$wAH.7/lcHCMJGFjRlqUqFxcc7YA/UTYSAsXRVlygbexkXyhkV2uwiJtwTlie0Eo8qerF9f.eK6LEsR.Tlhp/k0";
    ck_assert(password_hash_valid(sha));
    ck_assert(password_verify("hunter2", sha));
    ck_assert(!password_verify("hunter2x", sha));
}
END_TEST

START_TEST(test_malformed_hashes)
{
    ck_assert(!password_hash_valid(""));
    ck_assert(!password_hash_valid("plaintext"));
    ck_assert(!password_hash_valid("$zz$unknown"));
    ck_assert(!password_verify("x", ""));
    ck_assert(!password_verify("x", "*0"));
    char long_pw[PASSWORD_MAX + 2];
    memset(long_pw, 'a', sizeof long_pw - 1);
    long_pw[sizeof long_pw - 1] = '\0';
    char h[PASSWORD_HASH_MAX], err[256];
    ck_assert_int_eq(password_hash(long_pw, h, err, sizeof err), -1);
}
END_TEST

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(test_users_file)
{
    char dir[] = "/tmp/wsn-users-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/users", dir);
    char h[PASSWORD_HASH_MAX], err[256], text[2048];
    ck_assert_int_eq(password_hash("password123", h, err, sizeof err), 0);
    snprintf(text, sizeof text,
             "# demo accounts\n\n1:test@example.com:%s\n  2:Other@Example.COM:%s\r\n", h, h);
    write_file(path, text, 0600);
    users_file u;
    ck_assert_msg(users_file_load(&u, path, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(u.count, 2);
    const users_entry *e = users_file_find(&u, "TEST@example.com");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->user_id, 1);
    ck_assert(password_verify("password123", e->hash));
    e = users_file_find(&u, "other@example.com");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->user_id, 2);
    ck_assert_ptr_null(users_file_find(&u, "nobody@example.com"));
    users_file_free(&u);

    /* Writable by others: refused, whatever it holds. */
    write_file(path, text, 0622);
    ck_assert_int_eq(users_file_load(&u, path, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "writable by group or others"));

    const char *bad[][2] = {
        {"1:a@b\n", ":2: not USER_ID"},
        {"0:a@b:$y$x\n", "user id"},
        {"x:a@b:$y$x\n", "user id"},
        {"1::$6$salt$abc\n", "bad email"},
        {"1:a@b:plain\n", "crypt(3)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char t[512];
        snprintf(t, sizeof t, "%s%s", i == 0 ? "# first\n" : "", bad[i][0]);
        write_file(path, t, 0600);
        ck_assert_int_eq(users_file_load(&u, path, err, sizeof err), -1);
        ck_assert_msg(strstr(err, bad[i][1]) != NULL, "case %zu: %s", i, err);
    }
    snprintf(text, sizeof text, "1:a@b.c:%s\n2:A@B.C:%s\n", h, h);
    write_file(path, text, 0600);
    ck_assert_int_eq(users_file_load(&u, path, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "twice"));
    unlink(path);
    ck_assert_int_eq(users_file_load(&u, path, err, sizeof err), -1);
    rmdir(dir);
}
END_TEST

static Suite *password_suite(void)
{
    Suite *s = suite_create("password");
    TCase *tc = tcase_create("hashes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_hash_and_verify);
    tcase_add_test(tc, test_other_methods);
    tcase_add_test(tc, test_malformed_hashes);
    tcase_add_test(tc, test_users_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run_suite(password_suite());
}
