/* ctl.h — what wsnotifyctl's commands share: the defaults its --help names,
 * the usage text and the answers to bad flags. Each command (ctl_*.h) gets its
 * argv from the command name on and returns the exit status: 0 done, 1 failed,
 * 2 bad usage. */
#ifndef WSN_CTL_H
#define WSN_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_DEFAULT_GRPC_SERVER "127.0.0.1:50056"
#define CTL_DEFAULT_HTTP_SERVER "127.0.0.1:8080"
#define CTL_TIMEOUT_SECONDS 10

void ctl_usage(FILE *out);

/* The common getopt failures. Returns the exit status. */
int ctl_bad_option(int opt, char **argv);

/* A flag's value that does not parse. Returns the exit status. */
int ctl_bad_value(const char *flag, const char *value, const char *expected);

/* Any decimal int64, sign allowed: the server, not the client, judges the
 * value. Returns 0 or -1. */
int ctl_parse_i64(const char *s, int64_t *out);

/* No command takes operands: true (and said so) when one is left after the flags. */
bool ctl_extra_operand(int argc, char **argv);

#endif
