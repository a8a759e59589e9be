/* grpc_endpoint.h — the master's gRPC server (gRPC core C API + protobuf-c):
 * notification.NotificationService/SendNotification, grpc.health.v1.Health/Check
 * and server reflection (v1 and v1alpha). Everything runs on one dedicated
 * thread; notifications go through the router (router.h). Workers never call
 * anything here. */
#ifndef WSN_GRPC_ENDPOINT_H
#define WSN_GRPC_ENDPOINT_H

#include <stdatomic.h>
#include <stdbool.h>
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

#define GRPC_ENDPOINT_BEAT_MS 1000             /* the thread wakes at least this often */

/* The thread's last turn, CLOCK_MONOTONIC milliseconds: older than a few
 * GRPC_ENDPOINT_BEAT_MS means it is wedged (sd_service stops WATCHDOG=1). */
const _Atomic uint64_t *grpc_endpoint_beat(const grpc_endpoint *e);

/* The graceful stop, in steps the master's loop runs from timers (so none
 * blocks it): lame_duck (health NOT_SERVING, new notifications UNAVAILABLE);
 * GRPC_ENDPOINT_LAME_DUCK_MS later shutdown (no new calls; in-flight ones go
 * on); once active is 0 or GRPC_ENDPOINT_DRAIN_SECONDS passed, cancel_all;
 * once finished, destroy (joins the thread, frees, grpc_shutdown). */
void grpc_endpoint_lame_duck(grpc_endpoint *e);
void grpc_endpoint_shutdown(grpc_endpoint *e);
long grpc_endpoint_active(const grpc_endpoint *e);
void grpc_endpoint_cancel_all(grpc_endpoint *e);
bool grpc_endpoint_finished(const grpc_endpoint *e);
void grpc_endpoint_destroy(grpc_endpoint *e);

/* All the steps at once, sleeping in between, for a caller whose loop is not
 * running. Returns false when the thread did not finish in time: it was left
 * running, so whatever it uses (the shared region) must stay mapped. NULL is
 * a no-op (true). */
bool grpc_endpoint_stop(grpc_endpoint *e);

#endif
