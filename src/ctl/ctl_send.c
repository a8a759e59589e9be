/* ctl_send.c — `wsnotifyctl send`: one unary SendNotification call (bounded by
 * CTL_TIMEOUT_SECONDS, plus --wait-ack-ms), the response printed as JSON, a
 * gRPC error as STATUS_NAME: message. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/notification.pb-c.h"
#include "src/ctl/ctl.h"
#include "src/ctl/ctl_grpc.h"
#include "src/ctl/ctl_send.h"

enum {
    OPT_USER_ID = 256,
    OPT_TYPE,
    OPT_TITLE,
    OPT_MESSAGE,
    OPT_LINK,
    OPT_ID,
    OPT_NO_PUSH,
    OPT_SERVER,
    OPT_WAIT_ACK_MS,
};

/* Print the answer as JSON. Returns the exit status. */
static int ctl_send_notification(const char *server, const ctl_grpc_opts *opts,
                                 const Notification__SendNotificationRequest *req)
{
    ctl_grpc g = {0};
    int status = 1;
    if (ctl_grpc_open(&g, server, opts) == 0) {
        int timeout = CTL_TIMEOUT_SECONDS + (req->wait_ack_ms + 999) / 1000;
        Notification__SendNotificationResponse *resp =
            (Notification__SendNotificationResponse *)ctl_grpc_call(
                &g, "/notification.NotificationService/SendNotification", &req->base,
                &notification__send_notification_response__descriptor, timeout);
        if (resp != NULL) {
            printf("{\"notification_id\":%" PRId64 ",\"delivered\":%s", resp->notification_id,
                   resp->delivered ? "true" : "false");
            if (req->wait_ack_ms > 0)
                printf(",\"acked\":%s", resp->acked ? "true" : "false");
            if (resp->duplicate)
                printf(",\"duplicate\":true");
            printf("}\n");
            status = fflush(stdout) == 0 ? 0 : 1;
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
    }
    ctl_grpc_close(&g);
    return status;
}

int ctl_send_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user-id", required_argument, NULL, OPT_USER_ID},
        {"type", required_argument, NULL, OPT_TYPE},
        {"title", required_argument, NULL, OPT_TITLE},
        {"message", required_argument, NULL, OPT_MESSAGE},
        {"link", required_argument, NULL, OPT_LINK},
        {"id", required_argument, NULL, OPT_ID},
        {"no-push", no_argument, NULL, OPT_NO_PUSH},
        {"server", required_argument, NULL, OPT_SERVER},
        {"wait-ack-ms", required_argument, NULL, OPT_WAIT_ACK_MS},
        CTL_GRPC_LONG_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ctl_grpc_opts grpc_opts = {0};
    Notification__SendNotificationRequest req = NOTIFICATION__SEND_NOTIFICATION_REQUEST__INIT;
    req.send_push = 1;
    bool have_user = false;
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
            if (ctl_parse_i64(optarg, &req.id) != 0)
                return ctl_bad_value("--id", optarg, "an integer");
            break;
        case OPT_TYPE:
            req.type = optarg;
            break;
        case OPT_TITLE:
            req.title = optarg;
            break;
        case OPT_MESSAGE:
            req.message = optarg;
            break;
        case OPT_LINK:
            req.link = optarg;
            break;
        case OPT_NO_PUSH:
            req.send_push = 0;
            break;
        case OPT_SERVER:
            server = optarg;
            break;
        case OPT_WAIT_ACK_MS: {
            int64_t ms;
            if (ctl_parse_i64(optarg, &ms) != 0 || ms < INT32_MIN || ms > INT32_MAX)
                return ctl_bad_value("--wait-ack-ms", optarg, "an integer (0..60000)");
            req.wait_ack_ms = (int32_t)ms;
            break;
        }
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
    /* Presence is checked here; values (empty, too long, user_id <= 0) by the server. */
    if (!have_user || req.type == protobuf_c_empty_string || req.title == protobuf_c_empty_string ||
        req.message == protobuf_c_empty_string) {
        fprintf(stderr, "wsnotifyctl: send needs --user-id, --type, --title and --message\n");
        return 2;
    }
    return ctl_send_notification(server, &grpc_opts, &req);
}
