/* ctl_grpc.h — wsnotifyctl's gRPC client: a channel to the daemon and one
 * unary call at a time on its own completion queue, every call bounded by a
 * deadline; errors are printed as STATUS_NAME: message (the exit status is
 * the caller's). */
#ifndef WSN_CTL_GRPC_H
#define WSN_CTL_GRPC_H

#include <protobuf-c/protobuf-c.h>

struct grpc_channel;
struct grpc_completion_queue;

typedef struct {
    struct grpc_channel *ch;
    struct grpc_completion_queue *cq;
} ctl_grpc;

/* grpc_init and a channel to server ("HOST:PORT"). Returns 0 or -1 (printed). */
int ctl_grpc_open(ctl_grpc *g, const char *server);
void ctl_grpc_close(ctl_grpc *g);

/* Call method with req and wait at most timeout_s seconds. The decoded
 * response (free with protobuf_c_message_free_unpacked), or NULL after
 * printing why (a gRPC status and its message, or a failure to encode or
 * decode). */
ProtobufCMessage *ctl_grpc_call(ctl_grpc *g, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *response_type,
                                int timeout_s);

#endif
