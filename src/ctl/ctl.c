/* ctl.c — what every wsnotifyctl command shares: the usage text and the
 * answers to bad flags (see ctl.h). */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <config.h>
#include "src/ctl/ctl.h"

void ctl_usage(FILE *out)
{
    fprintf(out,
            "Usage: wsnotifyctl COMMAND [OPTION]...\n"
            "\n"
            "Commands:\n"
            "  token --user-id N --email E [--ttl SECONDS] [--jwt-secret-file PATH]\n"
            "        [--key-file PEM] [--audience AUD] [--issuer ISS] [--not-before SECONDS]\n"
            "        print an HS256 JWT for user N, signed with the daemon's secret\n"
            "        (the first line of --jwt-secret-file, else JWT_SECRET); --ttl defaults to 3600\n"
            "        --key-file PEM  sign with this private key instead: RS256 (RSA),\n"
            "                   ES256 (EC P-256) or EdDSA (Ed25519), by the key's type\n"
            "        --audience, --issuer  add the aud and iss claims\n"
            "        --not-before SECONDS  add nbf = now + SECONDS\n"
            "  send --user-id N --type T --title S --message S [--link L] [--id N]\n"
            "       [--no-push] [--wait-ack-ms MS] [--server HOST:PORT]\n"
            "       [--grpc-token-file PATH] [--tls] [--ca FILE]\n"
            "        call SendNotification on the daemon's gRPC port (default\n"
            "        " CTL_DEFAULT_GRPC_SERVER ") and print the response as JSON:\n"
            "        {\"notification_id\":N,\"delivered\":true|false}\n"
            "        (with \"acked\" after --wait-ack-ms, \"duplicate\":true for a retry)\n"
            "        --id N     the notification's id (default: the server numbers it)\n"
            "        --no-push  number and store it but do not push it to the user\n"
            "        --wait-ack-ms MS  answer once the client acks it, or after MS\n"
            "        a gRPC error prints STATUS_NAME: message on stderr, exit status 1\n"
            "  status --user-id N --id N [--server HOST:PORT]\n"
            "       [--grpc-token-file PATH] [--tls] [--ca FILE]\n"
            "        call GetNotificationStatus and print the answer as JSON:\n"
            "        {\"state\":\"STORED|SENT|ACKED\",\"timestamp\":T,\"acked_at\":T}\n"
            "        not in the user's history: NOT_FOUND on stderr, exit status 1\n"
            "        gRPC flags of send and status:\n"
            "        --grpc-token-file PATH  send the file's first line as\n"
            "                   authorization: Bearer TOKEN (daemon's --grpc-token-file)\n"
            "        --tls      TLS to the gRPC port, trusting the system's CAs\n"
            "        --ca FILE  TLS, trusting the CA certificates of FILE (implies --tls)\n"
            "  user --user-id N --email E\n"
            "        read a password (standard input, or asked for on a terminal) and\n"
            "        print a --users-file line USER_ID:EMAIL:HASH (salted yescrypt)\n"
            "  health [--server HOST:PORT]\n"
            "        print the daemon's /health JSON (plain HTTP; default\n"
            "        " CTL_DEFAULT_HTTP_SERVER "); not 200 or no answer: exit status 1\n"
            "\n"
            "Options:\n"
            "  -h, --help       print this help and exit\n"
            "  -V, --version    print the version and exit\n"
            "\n"
            "See wsnotifyctl(1).\n");
}

int ctl_bad_option(int opt, char **argv)
{
    if (opt == ':')
        fprintf(stderr, "wsnotifyctl: %s: missing value\n", argv[optind - 1]);
    else
        fprintf(stderr, "wsnotifyctl: %s: unknown option (see --help)\n", argv[optind - 1]);
    return 2;
}

int ctl_bad_value(const char *flag, const char *value, const char *expected)
{
    fprintf(stderr, "wsnotifyctl: %s: invalid value '%s' (expected %s)\n", flag, value, expected);
    return 2;
}

bool ctl_extra_operand(int argc, char **argv)
{
    if (optind >= argc)
        return false;
    fprintf(stderr, "wsnotifyctl: %s: unexpected argument\n", argv[optind]);
    return true;
}

int ctl_parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] == '\0' || s[0] == ' ' || errno != 0 || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}
