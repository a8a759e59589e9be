/* ctl_token.c — `wsnotifyctl token`: an HS256 JWT for a user, signed with the
 * daemon's current secret (the first line of --jwt-secret-file, else
 * JWT_SECRET), so a client can connect. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "src/ctl/ctl.h"
#include "src/ctl/ctl_token.h"
#include "src/common/decimal.h"
#include "src/common/secrets.h"
#include "src/common/auth.h"

#define CTL_DEFAULT_TTL 3600

enum {
    OPT_USER_ID = 256,
    OPT_EMAIL,
    OPT_TTL,
    OPT_SECRET_FILE,
};

int ctl_token_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user-id", required_argument, NULL, OPT_USER_ID},
        {"email", required_argument, NULL, OPT_EMAIL},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"jwt-secret-file", required_argument, NULL, OPT_SECRET_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t user_id = 0;
    uint64_t ttl = CTL_DEFAULT_TTL;
    const char *email = NULL;
    const char *secret_file = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_USER_ID:
            if (!decimal_parse_range(optarg, 1, INT64_MAX, &user_id))
                return ctl_bad_value("--user-id", optarg, "a positive integer");
            break;
        case OPT_EMAIL:
            email = optarg;
            break;
        case OPT_TTL:
            if (!decimal_parse_range(optarg, 1, 10ULL * 365 * 24 * 3600, &ttl))
                return ctl_bad_value("--ttl", optarg, "1..315360000 seconds");
            break;
        case OPT_SECRET_FILE:
            secret_file = optarg;
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            return ctl_bad_option(opt, argv);
        }
    }
    if (ctl_extra_operand(argc, argv))
        return 2;
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
    char *token =
        auth_token_create(&secrets, (int64_t)user_id, email, (int64_t)time(NULL) + (int64_t)ttl);
    secrets_free(&secrets);
    if (token == NULL) {
        fprintf(stderr, "wsnotifyctl: cannot create the token\n");
        return 1;
    }
    printf("%s\n", token);
    free(token);
    return fflush(stdout) == 0 ? 0 : 1;
}
