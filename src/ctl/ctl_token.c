/* ctl_token.c — `wsnotifyctl token`: a JWT for a user, so a client can
 * connect. HS256, signed with the daemon's current secret (the first line of
 * --jwt-secret-file, else JWT_SECRET); or, with --key-file, signed with that
 * PEM private key (RS256, ES256 or EdDSA by the key's type), for demos and
 * tests of a daemon that verifies with --jwt-public-key-file. */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/ctl/ctl.h"
#include "src/ctl/ctl_token.h"
#include "src/common/decimal.h"
#include "src/common/secrets.h"
#include "src/common/auth.h"
#include "src/common/jwt_keys.h"

#define CTL_DEFAULT_TTL 3600

enum {
    OPT_USER_ID = 256,
    OPT_EMAIL,
    OPT_TTL,
    OPT_SECRET_FILE,
    OPT_KEY_FILE,
    OPT_AUDIENCE,
    OPT_ISSUER,
    OPT_NOT_BEFORE,
};

/* The token of m, signed with key_file's key or else the secret. Printed;
 * returns the exit status. */
static int print_token(const auth_mint *m, const char *key_file, const char *secret_file)
{
    char err[512];
    jwt_signer *signer = NULL;
    secret_set secrets;
    memset(&secrets, 0, sizeof secrets);
    if (key_file != NULL) {
        if (jwt_signer_load(&signer, key_file, err, sizeof err) != 0) {
            fprintf(stderr, "wsnotifyctl: --key-file: %s\n", err);
            return 1;
        }
    } else if (secrets_load(&secrets, secret_file, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyctl: %s\n", err);
        return 1;
    }
    char *token = auth_token_mint(m, &secrets, signer);
    secrets_free(&secrets);
    jwt_signer_free(signer);
    if (token == NULL) {
        fprintf(stderr, "wsnotifyctl: cannot create the token\n");
        return 1;
    }
    printf("%s\n", token);
    free(token);
    return fflush(stdout) == 0 ? 0 : 1;
}

int ctl_token_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user-id", required_argument, NULL, OPT_USER_ID},
        {"email", required_argument, NULL, OPT_EMAIL},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"jwt-secret-file", required_argument, NULL, OPT_SECRET_FILE},
        {"key-file", required_argument, NULL, OPT_KEY_FILE},
        {"audience", required_argument, NULL, OPT_AUDIENCE},
        {"issuer", required_argument, NULL, OPT_ISSUER},
        {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t user_id = 0;
    uint64_t ttl = CTL_DEFAULT_TTL;
    const char *email = NULL;
    const char *secret_file = NULL;
    const char *key_file = NULL;
    const char *audience = NULL;
    const char *issuer = NULL;
    int64_t not_before = 0;
    bool have_not_before = false;
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
        case OPT_KEY_FILE:
            key_file = optarg;
            break;
        case OPT_AUDIENCE:
            audience = optarg;
            break;
        case OPT_ISSUER:
            issuer = optarg;
            break;
        case OPT_NOT_BEFORE:
            if (ctl_parse_i64(optarg, &not_before) != 0 || not_before < -315360000 ||
                not_before > 315360000)
                return ctl_bad_value("--not-before", optarg,
                                     "seconds from now, -315360000..315360000");
            have_not_before = true;
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
    int64_t now = (int64_t)time(NULL);
    auth_mint m = {
        .user_id = (int64_t)user_id,
        .email = email,
        .exp = now + (int64_t)ttl,
        .nbf = have_not_before ? now + not_before : 0,
        .audience = audience,
        .issuer = issuer,
    };
    return print_token(&m, key_file, secret_file);
}
