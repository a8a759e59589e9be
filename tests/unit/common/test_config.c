/* test_config.c — wsnotifyd's flag parsing: defaults, every flag, bad values
 * naming their flag, unknown flags, --help/--version. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/config.h"
#include "tests/check_main.h"

static config_status parse(wsn_config *cfg, char *err, size_t err_size, int argc, char **argv)
{
    config_defaults(cfg);
    FILE *out = fopen("/dev/null", "w");
    ck_assert_ptr_nonnull(out);
    config_status st = config_parse(cfg, argc, argv, out, err, err_size);
    fclose(out);
    return st;
}

#define PARSE(cfg, err, ...)                                                              \
    ({                                                                                    \
        char *argv_[] = {"wsnotifyd", __VA_ARGS__, NULL};                                 \
        parse(cfg, err, sizeof err, (int)(sizeof argv_ / sizeof argv_[0]) - 1, argv_);    \
    })

START_TEST(test_defaults)
{
    wsn_config cfg;
    char err[256] = "";
    char *argv[] = {"wsnotifyd", NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, 1, argv), CONFIG_OK);
    ck_assert_int_eq(cfg.port, 8080);
    ck_assert_int_eq(cfg.grpc_port, 50056);
    ck_assert_str_eq(cfg.bind, "0.0.0.0");
    ck_assert_str_eq(cfg.grpc_bind, "127.0.0.1");
    ck_assert_uint_eq(cfg.max_connections, 100000);
    ck_assert_uint_eq(cfg.heartbeat, 50);
    ck_assert_int_eq(cfg.log_level, LOG_INFO);
    ck_assert_int_ge(cfg.workers, 1);
    ck_assert_ptr_null(cfg.jwt_secret_file);
}
END_TEST

START_TEST(test_all_flags)
{
    wsn_config cfg;
    char err[256] = "";
    ck_assert_int_eq(PARSE(&cfg, err, "--workers", "4", "--port=9000", "--bind", "127.0.0.1",
                           "--grpc-port", "50057", "--grpc-bind", "::1", "--jwt-secret-file",
                           "/etc/x", "--max-connections", "10", "--heartbeat", "5",
                           "--log-level", "debug"),
                     CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 4);
    ck_assert_int_eq(cfg.port, 9000);
    ck_assert_str_eq(cfg.bind, "127.0.0.1");
    ck_assert_int_eq(cfg.grpc_port, 50057);
    ck_assert_str_eq(cfg.grpc_bind, "::1");
    ck_assert_str_eq(cfg.jwt_secret_file, "/etc/x");
    ck_assert_uint_eq(cfg.max_connections, 10);
    ck_assert_uint_eq(cfg.heartbeat, 5);
    ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
}
END_TEST

START_TEST(test_short_flags)
{
    wsn_config cfg;
    char err[256] = "";
    ck_assert_int_eq(PARSE(&cfg, err, "-w", "2", "-p", "81", "-l", "warn"), CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 2);
    ck_assert_int_eq(cfg.port, 81);
    ck_assert_int_eq(cfg.log_level, LOG_WARN);
}
END_TEST

static void expect_usage(const char *flag, const char *value)
{
    wsn_config cfg;
    char err[256] = "";
    char *argv[] = {"wsnotifyd", (char *)flag, (char *)value, NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, 3, argv), CONFIG_USAGE);
    ck_assert_msg(strstr(err, flag) != NULL, "error '%s' does not name %s", err, flag);
    ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(test_bad_values)
{
    expect_usage("--workers", "0");
    expect_usage("--workers", "257");
    expect_usage("--workers", "two");
    expect_usage("--workers", "-1");
    expect_usage("--port", "0");
    expect_usage("--port", "65536");
    expect_usage("--port", "80x");
    expect_usage("--port", "");
    expect_usage("--grpc-port", "0");
    expect_usage("--grpc-port", "70000");
    expect_usage("--bind", "localhost");
    expect_usage("--grpc-bind", "1.2.3");
    expect_usage("--max-connections", "0");
    expect_usage("--heartbeat", "0");
    expect_usage("--log-level", "verbose");
    expect_usage("--jwt-secret-file", "");
}
END_TEST

START_TEST(test_rate_limits)
{
    wsn_config cfg;
    char err[256] = "";
    char *argv[] = {"wsnotifyd", NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, 1, argv), CONFIG_OK);
    ck_assert_uint_eq(cfg.max_connects_per_minute, 5);
    ck_assert_uint_eq(cfg.max_messages_per_second, 10);
    ck_assert_int_eq(PARSE(&cfg, err, "--max-connects-per-minute", "0",
                           "--max-messages-per-second=0"),
                     CONFIG_OK);
    ck_assert_uint_eq(cfg.max_connects_per_minute, 0);
    ck_assert_uint_eq(cfg.max_messages_per_second, 0);
    ck_assert_int_eq(PARSE(&cfg, err, "--max-connects-per-minute", "1000",
                           "--max-messages-per-second", "10000"),
                     CONFIG_OK);
    ck_assert_uint_eq(cfg.max_connects_per_minute, 1000);
    ck_assert_uint_eq(cfg.max_messages_per_second, 10000);
    expect_usage("--max-connects-per-minute", "1001");
    expect_usage("--max-connects-per-minute", "-1");
    expect_usage("--max-connects-per-minute", "5/min");
    expect_usage("--max-connects-per-minute", "");
    expect_usage("--max-messages-per-second", "10001");
    expect_usage("--max-messages-per-second", "ten");
}
END_TEST

START_TEST(test_tls_and_log_level_file)
{
    wsn_config cfg;
    char err[256] = "";
    ck_assert_int_eq(PARSE(&cfg, err, "--log-level", "warn"), CONFIG_OK);
    ck_assert_ptr_null(cfg.log_level_file);
    ck_assert_ptr_null(cfg.tls_cert);
    ck_assert_ptr_null(cfg.tls_key);
    ck_assert_int_eq(PARSE(&cfg, err, "--tls-cert", "/c.pem", "--tls-key=/k.pem",
                           "--log-level-file", "/etc/level"),
                     CONFIG_OK);
    ck_assert_str_eq(cfg.tls_cert, "/c.pem");
    ck_assert_str_eq(cfg.tls_key, "/k.pem");
    ck_assert_str_eq(cfg.log_level_file, "/etc/level");
    /* Both or neither: a one-line usage error naming the missing flag. */
    ck_assert_int_eq(PARSE(&cfg, err, "--tls-cert", "/c.pem"), CONFIG_USAGE);
    ck_assert_msg(strstr(err, "--tls-key") != NULL, "%s", err);
    ck_assert_int_eq(PARSE(&cfg, err, "--tls-key", "/k.pem"), CONFIG_USAGE);
    ck_assert_msg(strstr(err, "--tls-cert") != NULL, "%s", err);
    ck_assert_int_eq(PARSE(&cfg, err, "--tls-cert", "", "--tls-key", "/k.pem"), CONFIG_USAGE);
    ck_assert_msg(strstr(err, "--tls-cert") != NULL, "%s", err);
    ck_assert_int_eq(PARSE(&cfg, err, "--log-level-file", ""), CONFIG_USAGE);
    ck_assert_msg(strstr(err, "--log-level-file") != NULL, "%s", err);
}
END_TEST

START_TEST(test_unknown_and_missing)
{
    wsn_config cfg;
    char err[256] = "";
    ck_assert_int_eq(PARSE(&cfg, err, "--frobnicate"), CONFIG_USAGE);
    ck_assert_ptr_nonnull(strstr(err, "--frobnicate"));
    ck_assert_int_eq(PARSE(&cfg, err, "--port"), CONFIG_USAGE);
    ck_assert_ptr_nonnull(strstr(err, "--port"));
    ck_assert_int_eq(PARSE(&cfg, err, "stray"), CONFIG_USAGE);
    ck_assert_ptr_nonnull(strstr(err, "stray"));
}
END_TEST

START_TEST(test_help_version)
{
    wsn_config cfg;
    char err[256] = "";
    ck_assert_int_eq(PARSE(&cfg, err, "--help"), CONFIG_EXIT_OK);
    ck_assert_int_eq(PARSE(&cfg, err, "--version"), CONFIG_EXIT_OK);
    ck_assert_int_eq(PARSE(&cfg, err, "-V"), CONFIG_EXIT_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("flags");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_all_flags);
    tcase_add_test(tc, test_short_flags);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_rate_limits);
    tcase_add_test(tc, test_tls_and_log_level_file);
    tcase_add_test(tc, test_unknown_and_missing);
    tcase_add_test(tc, test_help_version);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
