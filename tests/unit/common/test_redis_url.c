/* test_redis_url.c — unit tests for the --redis URL parser
 * (src/common/redis_url.c): TCP and unix forms, credentials and their %XX
 * escapes, IPv6, the database, every refusal (never echoing the password),
 * and redis_url_describe. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/redis_url.h"
#include "tests/check_main.h"

#define SECRET "s3cr3tPW"

static redis_url parse_ok(const char *s)
{
    redis_url u;
    char err[256] = "";
    ck_assert_msg(redis_url_parse(s, &u, err, sizeof err) == 0, "'%s' refused: %s", s, err);
    return u;
}

/* s is refused with a message holding says, and never the secret. */
static void expect_refused(const char *s, const char *says)
{
    redis_url u;
    char err[512] = "";
    ck_assert_msg(redis_url_parse(s, &u, err, sizeof err) == -1, "'%s' accepted", s);
    ck_assert_msg(err[0] != '\0', "'%s': no message", s);
    ck_assert_msg(says == NULL || strstr(err, says) != NULL, "'%s': '%s' does not say '%s'", s,
                  err, says);
    ck_assert_msg(strstr(err, SECRET) == NULL, "'%s': '%s' shows the password", s, err);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

START_TEST(host_and_port)
{
    redis_url u = parse_ok("redis://127.0.0.1:6380");
    ck_assert(!u.unix_socket);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "");
    ck_assert_int_eq(u.db, 0);

    u = parse_ok("redis://redis.example-1_a.internal");
    ck_assert_str_eq(u.host, "redis.example-1_a.internal");
    ck_assert_int_eq(u.port, 6379); /* the default */

    u = parse_ok("redis://localhost/");
    ck_assert_str_eq(u.host, "localhost");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);

    ck_assert_int_eq(parse_ok("redis://h:1").port, 1);
    ck_assert_int_eq(parse_ok("redis://h:65535").port, 65535);
}
END_TEST

START_TEST(credentials)
{
    redis_url u = parse_ok("redis://:" SECRET "@h:7000");
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, SECRET);
    ck_assert_str_eq(u.host, "h");
    ck_assert_int_eq(u.port, 7000);

    u = parse_ok("redis://alice:" SECRET "@h");
    ck_assert_str_eq(u.user, "alice");
    ck_assert_str_eq(u.password, SECRET);
    ck_assert_int_eq(u.port, 6379);

    /* The first ':' splits user and password; the last '@' ends them. */
    u = parse_ok("redis://bob:pa:ss@word@h:1234");
    ck_assert_str_eq(u.user, "bob");
    ck_assert_str_eq(u.password, "pa:ss@word");
    ck_assert_str_eq(u.host, "h");
    ck_assert_int_eq(u.port, 1234);
}
END_TEST

START_TEST(percent_decoding)
{
    redis_url u = parse_ok("redis://us%65r%3a:p%40ss%2F%25%3A%7e@h");
    ck_assert_str_eq(u.user, "user:");
    ck_assert_str_eq(u.password, "p@ss/%:~");

    u = parse_ok("redis://:%C3%A9t%c3%a9@h"); /* upper and lower hex */
    ck_assert_str_eq(u.password, "\xc3\xa9t\xc3\xa9");

    u = parse_ok("redis://:ab%41@h"); /* an escape ending the field */
    ck_assert_str_eq(u.password, "abA");

    expect_refused("redis://:" SECRET "%00@h", "bad or too long user or password");
    expect_refused("redis://%00:" SECRET "@h", "bad or too long user or password");
    expect_refused("redis://:" SECRET "%4g@h", "bad or too long user or password");
    expect_refused("redis://:" SECRET "%g4@h", "bad or too long user or password");
    expect_refused("redis://:" SECRET "%4@h", "bad or too long user or password");
    expect_refused("redis://:" SECRET "%@h", "bad or too long user or password");
    expect_refused("redis://:%" SECRET "@h", "bad or too long user or password");
}
END_TEST

START_TEST(credential_refusals)
{
    expect_refused("redis://" SECRET "@h", "credentials must be");
    expect_refused("redis://alice:@h", "empty password");
    expect_refused("redis://:@h", "empty password");
    /* What follows the credentials is checked too, still without the password. */
    expect_refused("redis://:" SECRET "@:6379", "missing or too long host");
    expect_refused("redis://:" SECRET "@h:0", "the port must be 1..65535");
    expect_refused("redis://:" SECRET "@h:65536", "the port must be 1..65535");
    expect_refused("redis://:" SECRET "@h/x", "the database must be a number");
    expect_refused("redis://u:" SECRET "@h!", "bad character in the host");
    expect_refused("redis://u:" SECRET "@[::1", "unclosed [");
    /* A '/' in an unescaped password ends the authority there. */
    expect_refused("redis://:" SECRET "/x@h", NULL);
}
END_TEST

START_TEST(ipv6)
{
    redis_url u = parse_ok("redis://[::1]:6380");
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6380);

    u = parse_ok("redis://:" SECRET "@[fe80::1:2]/3");
    ck_assert_str_eq(u.host, "fe80::1:2");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 3);
    ck_assert_str_eq(u.password, SECRET);

    expect_refused("redis://[::1", "unclosed [");
    expect_refused("redis://[]:6379", "bad IPv6 host");
    expect_refused("redis://[a b]:1", "bad IPv6 host");
    expect_refused("redis://[::1]x", "junk after the IPv6 host");
    expect_refused("redis://[::1]6379", "junk after the IPv6 host");
    expect_refused("redis://[::1]:", "bad port");
    expect_refused("redis://[::1]:0", "the port must be 1..65535");
    expect_refused("redis://::1:6379", "missing or too long host"); /* brackets needed */
}
END_TEST

START_TEST(database)
{
    ck_assert_int_eq(parse_ok("redis://h/0").db, 0);
    ck_assert_int_eq(parse_ok("redis://h:6379/15").db, 15);
    ck_assert_int_eq(parse_ok("redis://h/2147483647").db, 2147483647);
    expect_refused("redis://h/2147483648", "the database must be a number");
    expect_refused("redis://h/-1", "the database must be a number");
    expect_refused("redis://h/1x", "the database must be a number");
    expect_refused("redis://h/1/2", "the database must be a number");
    expect_refused("redis://h/ 1", "the database must be a number");
}
END_TEST

START_TEST(bad_ports)
{
    expect_refused("redis://h:0", "the port must be 1..65535");
    expect_refused("redis://h:65536", "the port must be 1..65535");
    expect_refused("redis://h:99999", "the port must be 1..65535");
    expect_refused("redis://h:abc", "the port must be 1..65535");
    expect_refused("redis://h:63a9", "the port must be 1..65535");
    expect_refused("redis://h:-1", "the port must be 1..65535");
    expect_refused("redis://h:+80", "the port must be 1..65535");
    expect_refused("redis://h:", "bad port");
    expect_refused("redis://h:/0", "bad port");
    expect_refused("redis://h:12345678", "bad port"); /* longer than any port */
    expect_refused("redis://h:1:2", "the port must be 1..65535");
}
END_TEST

START_TEST(hosts_and_schemes)
{
    expect_refused("redis://", "missing or too long host");
    expect_refused("redis://:6379", "missing or too long host");
    expect_refused("redis:///0", "missing or too long host");
    expect_refused("redis://ho st", "bad character in the host");
    expect_refused("redis://h%41", "bad character in the host");
    expect_refused("http://h:6379", "unknown scheme");
    expect_refused("rediss://h:6379", "unknown scheme"); /* TLS is not supported */
    expect_refused("REDIS://h", "unknown scheme");
    expect_refused("redis:/h", "unknown scheme");
    expect_refused("h:6379", "unknown scheme");
    expect_refused("", "unknown scheme");
    /* Every message shows the expected form. */
    expect_refused("nope", "redis://");
}
END_TEST

START_TEST(unix_sockets)
{
    redis_url u = parse_ok("unix:///run/redis/redis.sock");
    ck_assert(u.unix_socket);
    ck_assert_str_eq(u.path, "/run/redis/redis.sock");
    ck_assert_str_eq(u.host, "");
    ck_assert_str_eq(u.password, "");
    ck_assert_int_eq(u.db, 0);

    expect_refused("unix://run/redis.sock", "absolute path");
    expect_refused("unix://./redis.sock", "absolute path");
    expect_refused("unix://", "absolute path");
    expect_refused("unix:///", "the socket path is empty or too long");
    expect_refused("unix:/run/redis.sock", "unknown scheme");
}
END_TEST

START_TEST(too_long_fields)
{
    char url[1024];
    /* Host: REDIS_URL_HOST_MAX - 1 characters fit, one more does not. */
    char *host = repeat('a', REDIS_URL_HOST_MAX - 1);
    snprintf(url, sizeof url, "redis://%s:1", host);
    ck_assert_str_eq(parse_ok(url).host, host);
    snprintf(url, sizeof url, "redis://%sa:1", host);
    expect_refused(url, "missing or too long host");
    snprintf(url, sizeof url, "redis://[%s]:1", host);
    ck_assert_str_eq(parse_ok(url).host, host);
    snprintf(url, sizeof url, "redis://[%sa]:1", host);
    expect_refused(url, "bad IPv6 host");
    free(host);

    /* User and password: REDIS_URL_SECRET_MAX - 1 decoded bytes. */
    char *pw = repeat('p', REDIS_URL_SECRET_MAX - 1);
    snprintf(url, sizeof url, "redis://:%s@h", pw);
    ck_assert_str_eq(parse_ok(url).password, pw);
    snprintf(url, sizeof url, "redis://:%sp@h", pw);
    expect_refused(url, "bad or too long user or password");
    snprintf(url, sizeof url, "redis://%s:x@h", pw);
    ck_assert_str_eq(parse_ok(url).user, pw);
    snprintf(url, sizeof url, "redis://%sp:x@h", pw);
    expect_refused(url, "bad or too long user or password");
    /* The limit is on decoded bytes: 254 + one escape = 255 fits. */
    pw[REDIS_URL_SECRET_MAX - 2] = '\0';
    snprintf(url, sizeof url, "redis://:%s%%41@h", pw);
    redis_url u = parse_ok(url);
    ck_assert_uint_eq(strlen(u.password), REDIS_URL_SECRET_MAX - 1);
    ck_assert_int_eq(u.password[REDIS_URL_SECRET_MAX - 2], 'A');
    snprintf(url, sizeof url, "redis://:%s%%41%%41@h", pw);
    expect_refused(url, "bad or too long user or password");
    free(pw);

    /* Path: REDIS_URL_PATH_MAX - 1 bytes with the leading '/'. */
    char *path = repeat('s', REDIS_URL_PATH_MAX - 2);
    snprintf(url, sizeof url, "unix:///%s", path);
    u = parse_ok(url);
    ck_assert_uint_eq(strlen(u.path), REDIS_URL_PATH_MAX - 1);
    ck_assert_str_eq(u.path + 1, path);
    snprintf(url, sizeof url, "unix:///%ss", path);
    expect_refused(url, "the socket path is empty or too long");
    free(path);
}
END_TEST

START_TEST(parse_resets_output)
{
    redis_url u;
    char err[256];
    ck_assert_int_eq(redis_url_parse("redis://alice:" SECRET "@h:1/5", &u, err, sizeof err), 0);
    ck_assert_int_eq(redis_url_parse("redis://other", &u, err, sizeof err), 0);
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    ck_assert_int_eq(redis_url_parse("unix:///x.sock", &u, err, sizeof err), 0);
    ck_assert_int_eq(redis_url_parse("redis://h", &u, err, sizeof err), 0);
    ck_assert(!u.unix_socket);
    ck_assert_str_eq(u.path, "");
}
END_TEST

START_TEST(describe)
{
    char out[512];
    redis_url u = parse_ok("redis://alice:" SECRET "@127.0.0.1/4");
    redis_url_describe(&u, out, sizeof out);
    ck_assert_str_eq(out, "127.0.0.1:6379");

    u = parse_ok("redis://:" SECRET "@[::1]:6380");
    redis_url_describe(&u, out, sizeof out);
    ck_assert_str_eq(out, "[::1]:6380");

    u = parse_ok("redis://redis.internal:7001");
    redis_url_describe(&u, out, sizeof out);
    ck_assert_str_eq(out, "redis.internal:7001");

    u = parse_ok("unix:///run/redis.sock");
    redis_url_describe(&u, out, sizeof out);
    ck_assert_str_eq(out, "unix:/run/redis.sock");

    /* A short buffer is truncated, still terminated. */
    u = parse_ok("redis://127.0.0.1:6379");
    char small[6];
    memset(small, 'x', sizeof small);
    redis_url_describe(&u, small, sizeof small);
    ck_assert_str_eq(small, "127.0");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis_url");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, host_and_port);
    tcase_add_test(tc, credentials);
    tcase_add_test(tc, percent_decoding);
    tcase_add_test(tc, credential_refusals);
    tcase_add_test(tc, ipv6);
    tcase_add_test(tc, database);
    tcase_add_test(tc, bad_ports);
    tcase_add_test(tc, hosts_and_schemes);
    tcase_add_test(tc, unix_sockets);
    tcase_add_test(tc, too_long_fields);
    tcase_add_test(tc, parse_resets_output);
    tcase_add_test(tc, describe);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
