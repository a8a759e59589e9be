/* ctl_send.c — `wsnotifyctl send`: one unary SendNotification call (gRPC core
 * C API, its own completion queue, bounded by CTL_TIMEOUT_SECONDS), the
 * response printed as JSON, a gRPC error as STATUS_NAME: message. */
#include <errno.h>
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/notification.pb-c.h"
#include "src/ctl/ctl.h"
#include "src/ctl/ctl_send.h"
#include "src/common/grpc_message.h"

enum {
    OPT_USER_ID = 256,
    OPT_TYPE,
    OPT_TITLE,
    OPT_MESSAGE,
    OPT_LINK,
    OPT_ID,
    OPT_NO_PUSH,
    OPT_SERVER,
};

/* Any decimal int64, sign allowed: the server, not the client, judges the value. */
static int parse_any_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] == '\0' || s[0] == ' ' || errno != 0 || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

static const char *grpc_status_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((unsigned)code < sizeof names / sizeof names[0])
        return names[code];
    return "UNKNOWN";
}

typedef struct {
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *response;
    bool done;
} ctl_rpc;

/* One unary call on its own queue; fills rpc (status, details, response). */
static void ctl_unary(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
                      grpc_byte_buffer *request, ctl_rpc *rpc)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_seconds(CTL_TIMEOUT_SECONDS, GPR_TIMESPAN));
    grpc_slice path = grpc_slice_from_static_string(method);
    grpc_call *call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path, NULL, deadline, NULL);
    rpc->status = GRPC_STATUS_UNKNOWN;
    rpc->details = grpc_empty_slice();
    rpc->response = NULL;
    rpc->done = false;
    if (call == NULL)
        return;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &rpc->response;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &rpc->status;
    ops[5].data.recv_status_on_client.status_details = &rpc->details;
    if (grpc_call_start_batch(call, ops, 6, rpc, NULL) == GRPC_CALL_OK) {
        /* The call's own deadline ends it; this one only guards against a stuck queue. */
        gpr_timespec guard = gpr_time_add(deadline, gpr_time_from_seconds(5, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(cq, guard, NULL);
        rpc->done = ev.type == GRPC_OP_COMPLETE && ev.tag == rpc && ev.success;
        if (!rpc->done)
            grpc_call_cancel(call, NULL);
    }
    grpc_call_unref(call);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
}

/* Print the outcome of the call. Returns the exit status. */
static int ctl_report(ctl_rpc *rpc)
{
    if (!rpc->done) {
        fprintf(stderr, "wsnotifyctl: the call did not complete\n");
        return 1;
    }
    if (rpc->status != GRPC_STATUS_OK) {
        fprintf(stderr, "%s: %.*s\n", grpc_status_name(rpc->status),
                (int)GRPC_SLICE_LENGTH(rpc->details),
                (const char *)GRPC_SLICE_START_PTR(rpc->details));
        return 1;
    }
    Notification__SendNotificationResponse *resp =
        (Notification__SendNotificationResponse *)grpc_message_unpack(
            &notification__send_notification_response__descriptor, rpc->response);
    if (resp == NULL) {
        fprintf(stderr, "wsnotifyctl: the server's response does not decode\n");
        return 1;
    }
    printf("{\"notification_id\":%" PRId64 ",\"delivered\":%s}\n", resp->notification_id,
           resp->delivered ? "true" : "false");
    notification__send_notification_response__free_unpacked(resp, NULL);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int ctl_send_notification(const char *server,
                                 const Notification__SendNotificationRequest *req)
{
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(server, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_byte_buffer *request = grpc_message_pack(&req->base);
    ctl_rpc rpc = {GRPC_STATUS_UNKNOWN, grpc_empty_slice(), NULL, false};
    int status = 1;
    if (request == NULL) {
        fprintf(stderr, "wsnotifyctl: cannot encode the request\n");
    } else {
        ctl_unary(ch, cq, "/notification.NotificationService/SendNotification", request, &rpc);
        status = ctl_report(&rpc);
        grpc_byte_buffer_destroy(request);
    }
    if (rpc.response != NULL)
        grpc_byte_buffer_destroy(rpc.response);
    grpc_slice_unref(rpc.details);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(ch);
    grpc_shutdown();
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
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
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
            if (parse_any_i64(optarg, &req.user_id) != 0)
                return ctl_bad_value("--user-id", optarg, "an integer");
            have_user = true;
            break;
        case OPT_ID:
            if (parse_any_i64(optarg, &req.id) != 0)
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
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
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
    return ctl_send_notification(server, &req);
}
