/* ctl_user.c — `wsnotifyctl user --user-id N --email E`: read a password (the
 * first line of standard input, or asked for on the terminal without echo)
 * and print the --users-file line USER_ID:EMAIL:HASH with a salted yescrypt
 * hash. */
#include "src/ctl/ctl_user.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "src/common/decimal.h"
#include "src/common/password.h"
#include "src/ctl/ctl.h"

enum {
    OPT_USER_ID = 256,
    OPT_EMAIL,
};

/* The password without its line end. Returns 0, or -1 (said why). */
static int read_password(char *out, size_t out_size)
{
    bool tty = isatty(STDIN_FILENO) == 1;
    struct termios old, quiet;
    bool echo_off = false;
    if (tty && tcgetattr(STDIN_FILENO, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
        fprintf(stderr, "Password: ");
    }
    bool got = fgets(out, (int)out_size, stdin) != NULL;
    if (echo_off) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!got) {
        fprintf(stderr, "wsnotifyctl: user: no password on standard input\n");
        return -1;
    }
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] != '\n' && !feof(stdin)) {
        fprintf(stderr, "wsnotifyctl: user: the password is longer than %d bytes\n",
                PASSWORD_MAX);
        return -1;
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    if (n == 0) {
        fprintf(stderr, "wsnotifyctl: user: the password is empty\n");
        return -1;
    }
    return 0;
}

int ctl_user_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user-id", required_argument, NULL, OPT_USER_ID},
        {"email", required_argument, NULL, OPT_EMAIL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t user = 0;
    const char *email = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_USER_ID:
            if (!decimal_parse_range(optarg, 1, (UINT64_C(1) << 53) - 1, &user))
                return ctl_bad_value("--user-id", optarg, "1..2^53-1");
            break;
        case OPT_EMAIL:
            if (optarg[0] == '\0' || strchr(optarg, ':') != NULL || strchr(optarg, '\n') != NULL)
                return ctl_bad_value("--email", optarg, "an address without ':'");
            email = optarg;
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
    if (user == 0 || email == NULL) {
        fprintf(stderr, "wsnotifyctl: user needs --user-id and --email\n");
        return 2;
    }
    char password[PASSWORD_MAX + 2];
    char hash[PASSWORD_HASH_MAX];
    char err[256];
    int status = 1;
    if (read_password(password, sizeof password) != 0)
        goto out;
    if (password_hash(password, hash, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyctl: user: %s\n", err);
        goto out;
    }
    printf("%llu:%s:%s\n", (unsigned long long)user, email, hash);
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    memset(password, 0, sizeof password);
    return status;
}
