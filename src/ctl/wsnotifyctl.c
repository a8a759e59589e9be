/* wsnotifyctl.c — the operator's client: main, which hands its arguments to
 * one command. The commands live one a file: `token` (ctl_token.c) mints an
 * HS256 JWT with the daemon's secret, `send` (ctl_send.c) calls
 * SendNotification over gRPC, `status` (ctl_status.c) calls
 * GetNotificationStatus, `user` (ctl_user.c) hashes a password for
 * --users-file, `health` (ctl_health.c) fetches /health over plain HTTP. */
#include <stdio.h>
#include <string.h>

#include <config.h>
#include "src/ctl/ctl.h"
#include "src/ctl/ctl_health.h"
#include "src/ctl/ctl_send.h"
#include "src/ctl/ctl_status.h"
#include "src/ctl/ctl_token.h"
#include "src/ctl/ctl_user.h"

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
        return ctl_token_run(argc - 1, argv + 1);
    if (strcmp(cmd, "send") == 0)
        return ctl_send_run(argc - 1, argv + 1);
    if (strcmp(cmd, "health") == 0)
        return ctl_health_run(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return ctl_status_run(argc - 1, argv + 1);
    if (strcmp(cmd, "user") == 0)
        return ctl_user_run(argc - 1, argv + 1);
    fprintf(stderr, "wsnotifyctl: unknown command '%s' (see --help)\n", cmd);
    return 2;
}
