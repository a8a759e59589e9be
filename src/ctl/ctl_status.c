/* ctl_status.c — `wsnotifyctl status --user-id N --id N`: one
 * GetNotificationStatus call, printed as
 * {"state":"ACKED","timestamp":"…","acked_at":"…"}; NOT_FOUND (not in the
 * user's history) and every other error → the status on stderr, exit 1. */
#include "src/ctl/ctl_status.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "proto/notification.pb-c.h"
#include "src/ctl/ctl.h"
#include "src/ctl/ctl_grpc.h"

enum {
    OPT_USER_ID = 256,
    OPT_ID,
    OPT_SERVER,
};

static const char *state_name(Notification__NotificationStatus__State s)
{
    switch (s) {
    case NOTIFICATION__NOTIFICATION_STATUS__STATE__STORED: return "STORED";
    case NOTIFICATION__NOTIFICATION_STATUS__STATE__SENT: return "SENT";
    case NOTIFICATION__NOTIFICATION_STATUS__STATE__ACKED: return "ACKED";
    default: return "UNKNOWN";
    }
}

int ctl_status_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user-id", required_argument, NULL, OPT_USER_ID},
        {"id", required_argument, NULL, OPT_ID},
        {"server", required_argument, NULL, OPT_SERVER},
        CTL_GRPC_LONG_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ctl_grpc_opts grpc_opts = {0};
    Notification__GetNotificationStatusRequest req =
        NOTIFICATION__GET_NOTIFICATION_STATUS_REQUEST__INIT;
    bool have_user = false, have_id = false;
    const char *server = CTL_DEFAULT_GRPC_SERVER;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_USER_ID:
            if (ctl_parse_i64(optarg, &req.user_id) != 0)
                return ctl_bad_value("--user-id", optarg, "an integer");
            have_user = true;
            break;
        case OPT_ID:
            if (ctl_parse_i64(optarg, &req.notification_id) != 0)
                return ctl_bad_value("--id", optarg, "an integer");
            have_id = true;
            break;
        case OPT_SERVER:
            server = optarg;
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            if (ctl_grpc_take_option(&grpc_opts, opt, optarg))
                break;
            return ctl_bad_option(opt, argv);
        }
    }
    if (ctl_extra_operand(argc, argv))
        return 2;
    if (!have_user || !have_id) {
        fprintf(stderr, "wsnotifyctl: status needs --user-id and --id\n");
        return 2;
    }
    ctl_grpc g = {0};
    int status = 1;
    if (ctl_grpc_open(&g, server, &grpc_opts) == 0) {
        Notification__NotificationStatus *st = (Notification__NotificationStatus *)ctl_grpc_call(
            &g, "/notification.NotificationService/GetNotificationStatus", &req.base,
            &notification__notification_status__descriptor, CTL_TIMEOUT_SECONDS);
        if (st != NULL) {
            /* The strings are the server's RFC 3339 stamps: nothing to escape. */
            printf("{\"state\":\"%s\",\"timestamp\":\"%s\",\"acked_at\":\"%s\"}\n",
                   state_name(st->state), st->timestamp, st->acked_at);
            status = fflush(stdout) == 0 ? 0 : 1;
            protobuf_c_message_free_unpacked(&st->base, NULL);
        }
    }
    ctl_grpc_close(&g);
    return status;
}
