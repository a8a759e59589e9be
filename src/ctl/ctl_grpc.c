/* ctl_grpc.c — wsnotifyctl's unary gRPC calls (see ctl_grpc.h), on the gRPC
 * core C API. The bearer token goes as plain "authorization" metadata of each
 * call (not as call credentials, which gRPC sends over TLS only: the daemon's
 * port may be plaintext on loopback and still ask for a token). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero */
#endif

#include "src/ctl/ctl_grpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/grpc_message.h"
#include "src/common/rfile.h"
#include "src/common/tls_ctx.h"
#include "src/common/token_file.h"

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
static void ctl_unary(const ctl_grpc *g, const char *method, grpc_byte_buffer *request,
                      int timeout_s, ctl_rpc *rpc)
{
    grpc_channel *ch = g->ch;
    grpc_completion_queue *cq = g->cq;
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_seconds(timeout_s, GPR_TIMESPAN));
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
    grpc_metadata auth;
    memset(&auth, 0, sizeof auth);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (g->authorization != NULL) {
        auth.key = grpc_slice_from_static_string("authorization");
        auth.value = grpc_slice_from_static_buffer(g->authorization, g->authorization_len);
        ops[0].data.send_initial_metadata.count = 1;
        ops[0].data.send_initial_metadata.metadata = &auth;
    }
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

bool ctl_grpc_take_option(ctl_grpc_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case CTL_OPT_GRPC_TOKEN_FILE:
        o->token_file = arg;
        return true;
    case CTL_OPT_TLS:
        o->tls = true;
        return true;
    case CTL_OPT_CA:
        o->ca_file = arg;
        o->tls = true;
        return true;
    default:
        return false;
    }
}

/* "Bearer " + the file's first token. */
static int load_authorization(ctl_grpc *g, const char *path)
{
    token_set t;
    char err[512];
    if (token_file_load(&t, path, err, sizeof err) != 0) {
        fprintf(stderr, "wsnotifyctl: --grpc-token-file: %s\n", err);
        return -1;
    }
    size_t n = 7 + t.item[0].len;
    g->authorization = malloc(n + 1);
    if (g->authorization != NULL) {
        memcpy(g->authorization, "Bearer ", 7);
        memcpy(g->authorization + 7, t.item[0].text, t.item[0].len + 1);
        g->authorization_len = n;
    }
    token_file_free(&t);
    if (g->authorization == NULL) {
        fprintf(stderr, "wsnotifyctl: out of memory\n");
        return -1;
    }
    return 0;
}

/* TLS credentials: the CA of --ca, else the system's roots (gRPC's default). */
static grpc_channel_credentials *tls_credentials(const char *ca_file)
{
    if (ca_file == NULL)
        return grpc_ssl_credentials_create(NULL, NULL, NULL, NULL);
    unsigned char *pem = NULL;
    size_t len = 0;
    const char *why = NULL;
    if (rfile_read_all(ca_file, TLS_PEM_FILE_MAX, &pem, &len, &why) != 0) {
        fprintf(stderr, "wsnotifyctl: --ca: cannot read %s: %s\n", ca_file, why);
        return NULL;
    }
    grpc_channel_credentials *creds =
        grpc_ssl_credentials_create((const char *)pem, NULL, NULL, NULL);
    free(pem);
    return creds;
}

int ctl_grpc_open(ctl_grpc *g, const char *server, const ctl_grpc_opts *opts)
{
    static const ctl_grpc_opts plain = {0};
    if (opts == NULL)
        opts = &plain;
    grpc_init();
    if (opts->token_file != NULL && load_authorization(g, opts->token_file) != 0)
        return -1;
    grpc_channel_credentials *creds =
        opts->tls ? tls_credentials(opts->ca_file) : grpc_insecure_credentials_create();
    if (creds == NULL)
        return -1;
    g->ch = grpc_channel_create(server, creds, NULL);
    grpc_channel_credentials_release(creds);
    g->cq = grpc_completion_queue_create_for_next(NULL);
    if (g->ch == NULL || g->cq == NULL) {
        fprintf(stderr, "wsnotifyctl: cannot create a gRPC channel to %s\n", server);
        return -1;
    }
    return 0;
}

void ctl_grpc_close(ctl_grpc *g)
{
    if (g->cq != NULL) {
        grpc_completion_queue_shutdown(g->cq);
        while (grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(g->cq);
    }
    if (g->ch != NULL)
        grpc_channel_destroy(g->ch);
    if (g->authorization != NULL)
        explicit_bzero(g->authorization, g->authorization_len);
    free(g->authorization);
    g->authorization = NULL;
    grpc_shutdown();
}

ProtobufCMessage *ctl_grpc_call(ctl_grpc *g, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *response_type, int timeout_s)
{
    grpc_byte_buffer *request = grpc_message_pack(req);
    if (request == NULL) {
        fprintf(stderr, "wsnotifyctl: cannot encode the request\n");
        return NULL;
    }
    ctl_rpc rpc = {GRPC_STATUS_UNKNOWN, grpc_empty_slice(), NULL, false};
    ctl_unary(g, method, request, timeout_s, &rpc);
    grpc_byte_buffer_destroy(request);
    ProtobufCMessage *resp = NULL;
    if (!rpc.done) {
        fprintf(stderr, "wsnotifyctl: the call did not complete\n");
    } else if (rpc.status != GRPC_STATUS_OK) {
        fprintf(stderr, "%s: %.*s\n", grpc_status_name(rpc.status),
                (int)GRPC_SLICE_LENGTH(rpc.details),
                (const char *)GRPC_SLICE_START_PTR(rpc.details));
    } else if ((resp = grpc_message_unpack(response_type, rpc.response)) == NULL) {
        fprintf(stderr, "wsnotifyctl: the server's response does not decode\n");
    }
    if (rpc.response != NULL)
        grpc_byte_buffer_destroy(rpc.response);
    grpc_slice_unref(rpc.details);
    return resp;
}
