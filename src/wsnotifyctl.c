/* wsnotifyctl.c — the operator's client. `token` mints an HS256 JWT with the
 * daemon's secret (JWT_SECRET or --jwt-secret-file), so a client can connect;
 * `send` calls SendNotification (gRPC core C API, one unary call); `health`
 * fetches /health over plain HTTP. */
#include <errno.h>
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <config.h>
#include "proto/notification.pb-c.h"
#include "src/decimal.h"
#include "src/secrets.h"
#include "workers/auth.h"

#define CTL_DEFAULT_TTL 3600
#define CTL_DEFAULT_GRPC_SERVER "127.0.0.1:50056"
#define CTL_DEFAULT_HTTP_SERVER "127.0.0.1:8080"
#define CTL_TIMEOUT_SECONDS 10
#define CTL_HTTP_MAX (1024 * 1024)   /* a /health answer is far smaller */

static void ctl_usage(FILE *out)
{
    fprintf(out,
            "Usage: wsnotifyctl COMMAND [OPTION]...\n"
            "\n"
            "Commands:\n"
            "  token --user-id N --email E [--ttl SECONDS] [--jwt-secret-file PATH]\n"
            "        print an HS256 JWT for user N, signed with the daemon's secret\n"
            "        (the first line of --jwt-secret-file, else JWT_SECRET); --ttl defaults to 3600\n"
            "  send --user-id N --type T --title S --message S [--link L] [--id N]\n"
            "       [--no-push] [--server HOST:PORT]\n"
            "        call SendNotification on the daemon's gRPC port (default\n"
            "        " CTL_DEFAULT_GRPC_SERVER ") and print the response as JSON:\n"
            "        {\"notification_id\":N,\"delivered\":true|false}\n"
            "        --id N     the notification's id (default: the server numbers it)\n"
            "        --no-push  number it but do not push it to the user\n"
            "        a gRPC error prints STATUS_NAME: message on stderr, exit status 1\n"
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

enum {
    OPT_USER_ID = 256,
    OPT_EMAIL,
    OPT_TTL,
    OPT_SECRET_FILE,
    OPT_TYPE,
    OPT_TITLE,
    OPT_MESSAGE,
    OPT_LINK,
    OPT_ID,
    OPT_NO_PUSH,
    OPT_SERVER,
};

/* The common getopt failures. Returns the exit status. */
static int ctl_bad_option(int opt, char **argv)
{
    if (opt == ':')
        fprintf(stderr, "wsnotifyctl: %s: missing value\n", argv[optind - 1]);
    else
        fprintf(stderr, "wsnotifyctl: %s: unknown option (see --help)\n", argv[optind - 1]);
    return 2;
}

/* A flag's value that does not parse. Returns the exit status. */
static int ctl_bad_value(const char *flag, const char *value, const char *expected)
{
    fprintf(stderr, "wsnotifyctl: %s: invalid value '%s' (expected %s)\n", flag, value, expected);
    return 2;
}

/* No command takes operands: true (and said so) when one is left after the flags. */
static bool ctl_extra_operand(int argc, char **argv)
{
    if (optind >= argc)
        return false;
    fprintf(stderr, "wsnotifyctl: %s: unexpected argument\n", argv[optind]);
    return true;
}

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

/* ---- send ------------------------------------------------------------- */

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

static grpc_byte_buffer *ctl_pack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static Notification__SendNotificationResponse *ctl_unpack_response(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    Notification__SendNotificationResponse *resp = notification__send_notification_response__unpack(
        NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return resp;
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
    Notification__SendNotificationResponse *resp = ctl_unpack_response(rpc->response);
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
    grpc_byte_buffer *request = ctl_pack(&req->base);
    ctl_rpc rpc;
    ctl_unary(ch, cq, "/notification.NotificationService/SendNotification", request, &rpc);
    int status = ctl_report(&rpc);
    grpc_byte_buffer_destroy(request);
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

static int cmd_send(int argc, char **argv)
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

/* ---- health ----------------------------------------------------------- */

/* "host:port" or "[v6]:port" into its parts. Returns 0 or -1. */
static int split_host_port(const char *s, char *host, size_t host_size, char *port,
                           size_t port_size)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0' || strlen(colon + 1) >= port_size)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hl < 2 || h[hl - 1] != ']')
            return -1;
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_size)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, port_size, "%s", colon + 1);
    return 0;
}

static int ctl_connect(const char *host, const char *port, char *err, size_t err_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_size, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(err, err_size, "no address for %s", host);
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(err, err_size, "socket: %s", strerror(errno));
            continue;
        }
        /* Bounds connect, send and every recv (Linux honours them for connect too). */
        struct timeval tv = {CTL_TIMEOUT_SECONDS, 0};
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
            connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            snprintf(err, err_size, "cannot connect: %s", strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The whole answer (the server closes: Connection: close), NUL-terminated. */
static char *recv_all(int fd, size_t *len)
{
    char *buf = malloc(CTL_HTTP_MAX + 1);
    size_t n = 0;
    if (buf == NULL)
        return NULL;
    for (;;) {
        ssize_t r = recv(fd, buf + n, CTL_HTTP_MAX - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0 || (n += (size_t)r) == CTL_HTTP_MAX)
            break;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Print the body of a 200 answer. Returns the exit status. */
static int ctl_print_health(const char *server, char *resp, size_t len)
{
    int code = 0;
    char *body = strstr(resp, "\r\n\r\n");
    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1 || body == NULL) {
        fprintf(stderr, "wsnotifyctl: %s: not an HTTP answer\n", server);
        return 1;
    }
    body += 4;
    size_t body_len = len - (size_t)(body - resp);
    const char *cl = strcasestr(resp, "\r\nContent-Length:");
    if (cl != NULL && cl < body) {
        unsigned long long n = strtoull(cl + 17, NULL, 10);
        if (n < body_len)
            body_len = (size_t)n;
    }
    if (code != 200) {
        fprintf(stderr, "wsnotifyctl: %s: /health answered %d: %.*s\n", server, code,
                (int)body_len, body);
        return 1;
    }
    fwrite(body, 1, body_len, stdout);
    if (body_len == 0 || body[body_len - 1] != '\n')
        putchar('\n');
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_health(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *server = CTL_DEFAULT_HTTP_SERVER;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == OPT_SERVER) {
            server = optarg;
        } else if (opt == 'h') {
            ctl_usage(stdout);
            return 0;
        } else {
            return ctl_bad_option(opt, argv);
        }
    }
    if (ctl_extra_operand(argc, argv))
        return 2;
    char host[256];
    char port[16];
    if (split_host_port(server, host, sizeof host, port, sizeof port) != 0)
        return ctl_bad_value("--server", server, "HOST:PORT");
    char err[300];
    int fd = ctl_connect(host, port, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "wsnotifyctl: %s: %s\n", server, err);
        return 1;
    }
    char req[400];
    int n = snprintf(req, sizeof req,
                     "GET /health HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                     "Connection: close\r\n\r\n", server);
    size_t len = 0;
    char *resp = NULL;
    if (n > 0 && (size_t)n < sizeof req && send_all(fd, req, (size_t)n) == 0)
        resp = recv_all(fd, &len);
    int saved = errno;
    close(fd);
    if (resp == NULL) {
        fprintf(stderr, "wsnotifyctl: %s: no answer: %s\n", server, strerror(saved));
        return 1;
    }
    int status = ctl_print_health(server, resp, len);
    free(resp);
    return status;
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
    if (strcmp(cmd, "send") == 0)
        return cmd_send(argc - 1, argv + 1);
    if (strcmp(cmd, "health") == 0)
        return cmd_health(argc - 1, argv + 1);
    fprintf(stderr, "wsnotifyctl: unknown command '%s' (see --help)\n", cmd);
    return 2;
}
