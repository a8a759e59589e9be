/* ctl_grpc.h — wsnotifyctl's gRPC client: a channel to the daemon (plaintext
 * or TLS, with or without a bearer token) and one unary call at a time on its
 * own completion queue, every call bounded by a deadline; errors are printed
 * as STATUS_NAME: message (the exit status is the caller's). */
#ifndef WSN_CTL_GRPC_H
#define WSN_CTL_GRPC_H

#include <protobuf-c/protobuf-c.h>

#include <stdbool.h>
#include <stddef.h>

struct grpc_channel;
struct grpc_completion_queue;

/* How to reach the daemon's gRPC port: the flags every command that talks
 * gRPC takes. */
typedef struct {
    const char *token_file;   /* --grpc-token-file: its first token is sent */
    bool tls;                 /* --tls: TLS, the system's trusted CAs */
    const char *ca_file;      /* --ca FILE: trust this CA instead (implies --tls) */
} ctl_grpc_opts;

/* getopt codes of those flags, apart from each command's own (256 and up). */
enum {
    CTL_OPT_GRPC_TOKEN_FILE = 1000,
    CTL_OPT_TLS,
    CTL_OPT_CA,
};

#define CTL_GRPC_LONG_OPTIONS                                                   \
    {"grpc-token-file", required_argument, NULL, CTL_OPT_GRPC_TOKEN_FILE},      \
        {"tls", no_argument, NULL, CTL_OPT_TLS},                                \
        {"ca", required_argument, NULL, CTL_OPT_CA}

/* true when opt is one of CTL_GRPC_LONG_OPTIONS (then taken into o). */
bool ctl_grpc_take_option(ctl_grpc_opts *o, int opt, const char *arg);

typedef struct {
    struct grpc_channel *ch;
    struct grpc_completion_queue *cq;
    char *authorization;      /* "Bearer TOKEN", sent with every call; NULL: none */
    size_t authorization_len;
} ctl_grpc;

/* grpc_init and a channel to server ("HOST:PORT"), plaintext or TLS, with the
 * token of opts (may be NULL: plaintext, no token). Returns 0 or -1 (printed;
 * call ctl_grpc_close either way). */
int ctl_grpc_open(ctl_grpc *g, const char *server, const ctl_grpc_opts *opts);
void ctl_grpc_close(ctl_grpc *g);

/* Call method with req and wait at most timeout_s seconds. The decoded
 * response (free with protobuf_c_message_free_unpacked), or NULL after
 * printing why (a gRPC status and its message, or a failure to encode or
 * decode). */
ProtobufCMessage *ctl_grpc_call(ctl_grpc *g, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *response_type,
                                int timeout_s);

#endif
