/* wsnotifyctl.c — the operator's client. `token` mints an HS256 JWT with the
 * daemon's secret (JWT_SECRET or --jwt-secret-file), so a client can connect. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <config.h>
#include "src/secrets.h"
#include "workers/auth.h"

#define CTL_DEFAULT_TTL 3600

static void ctl_usage(FILE *out)
{
    fprintf(out,
            "Usage: wsnotifyctl COMMAND [OPTION]...\n"
            "\n"
            "Commands:\n"
            "  token --user-id N --email E [--ttl SECONDS] [--jwt-secret-file PATH]\n"
            "        print an HS256 JWT for user N, signed with the daemon's secret\n"
            "        (the first line of --jwt-secret-file, else JWT_SECRET); --ttl defaults to 3600\n"
            "\n"
            "Options:\n"
            "  -h, --help       print this help and exit\n"
            "  -V, --version    print the version and exit\n"
            "\n"
            "See wsnotifyctl(1).\n");
}

static int parse_i64(const char *s, long long min, long long max, long long *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

enum { OPT_USER_ID = 256, OPT_EMAIL, OPT_TTL, OPT_SECRET_FILE };

static int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user-id", required_argument, NULL, OPT_USER_ID},
        {"email", required_argument, NULL, OPT_EMAIL},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"jwt-secret-file", required_argument, NULL, OPT_SECRET_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long long user_id = 0;
    long long ttl = CTL_DEFAULT_TTL;
    const char *email = NULL;
    const char *secret_file = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_USER_ID:
            if (parse_i64(optarg, 1, INT64_MAX, &user_id) != 0) {
                fprintf(stderr, "wsnotifyctl: --user-id: invalid value '%s' (expected a positive integer)\n", optarg);
                return 2;
            }
            break;
        case OPT_EMAIL:
            email = optarg;
            break;
        case OPT_TTL:
            if (parse_i64(optarg, 1, 10LL * 365 * 24 * 3600, &ttl) != 0) {
                fprintf(stderr, "wsnotifyctl: --ttl: invalid value '%s' (expected 1..315360000 seconds)\n", optarg);
                return 2;
            }
            break;
        case OPT_SECRET_FILE:
            secret_file = optarg;
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "wsnotifyctl: %s: missing value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "wsnotifyctl: %s: unknown option (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsnotifyctl: %s: unexpected argument\n", argv[optind]);
        return 2;
    }
    if (user_id == 0 || email == NULL) {
        fprintf(stderr, "wsnotifyctl: token needs --user-id and --email\n");
        return 2;
    }
    secret_set secrets;
    char err[512];
    if (secrets_load(&secrets, secret_file, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyctl: %s\n", err);
        return 1;
    }
    char *token = auth_token_create(&secrets, (int64_t)user_id, email, (int64_t)time(NULL) + ttl);
    secrets_free(&secrets);
    if (token == NULL) {
        fprintf(stderr, "wsnotifyctl: cannot create the token\n");
        return 1;
    }
    printf("%s\n", token);
    free(token);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        ctl_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        ctl_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("wsnotifyctl %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    fprintf(stderr, "wsnotifyctl: unknown command '%s' (see --help)\n", cmd);
    return 2;
}
