/* grpc_endpoint.h — the master's gRPC server (gRPC core C API + protobuf-c):
 * notification.NotificationService/SendNotification, grpc.health.v1.Health/Check
 * and server reflection (v1 and v1alpha). Everything runs on one dedicated
 * thread; notifications go through the router (router.h). Workers never call
 * anything here. */
#ifndef WSN_GRPC_ENDPOINT_H
#define WSN_GRPC_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "src/master/router.h"

#define GRPC_ENDPOINT_MAX_MESSAGE (64 * 1024)  /* bigger requests: RESOURCE_EXHAUSTED */
#define GRPC_ENDPOINT_LAME_DUCK_MS 250         /* on stop: NOT_SERVING, UNAVAILABLE first */
#define GRPC_ENDPOINT_DRAIN_SECONDS 5          /* then in-flight calls get this long */

typedef struct grpc_endpoint grpc_endpoint;

/* grpc_init, bind bind_addr:port (IPv6 with or without brackets; port 0 = any),
 * and start serving on a new thread. r must outlive the endpoint.
 * NULL on failure with a message naming the address in err. */
grpc_endpoint *grpc_endpoint_start(const char *bind_addr, uint16_t port, router *r, char *err,
                                   size_t err_size);

/* The port actually bound (useful when 0 was asked for). */
uint16_t grpc_endpoint_port(const grpc_endpoint *e);

/* Graceful stop: for GRPC_ENDPOINT_LAME_DUCK_MS health says NOT_SERVING and new
 * notifications get UNAVAILABLE; then no new calls are taken and in-flight ones
 * finish (at most GRPC_ENDPOINT_DRAIN_SECONDS, then they are cancelled); the
 * thread is joined, everything freed, grpc_shutdown. Call it from the thread that
 * started the endpoint. NULL is a no-op. */
void grpc_endpoint_stop(grpc_endpoint *e);

#endif
