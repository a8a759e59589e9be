/* grpc_services.h — the daemon's unary gRPC methods at the message level:
 * notification.NotificationService/SendNotification, SendNotifications,
 * Broadcast and GetNotificationStatus (through the router), and
 * grpc.health.v1.Health/Check. Each decodes the request, answers, and returns
 * the status for grpc_endpoint.c to send (the contract is in grpc_message.h),
 * or GRPC_SERVICES_LATER when the answer waits for the history's commit: it
 * then comes through the caller's grpc_later, from the history thread.
 * lame_duck: the endpoint is stopping (new work UNAVAILABLE). Every request to
 * SendNotification(s) is counted in exactly one outcome
 * (wsnotify_notifications_total). Called on the gRPC thread only. */
#ifndef WSN_GRPC_SERVICES_H
#define WSN_GRPC_SERVICES_H

#include <grpc/byte_buffer.h>
#include <grpc/status.h>
#include <stdbool.h>
#include <stddef.h>

#include "src/master/router.h"

/* Not a gRPC status: "answered later, through grpc_later.finish". */
#define GRPC_SERVICES_LATER ((grpc_status_code)-1)

/* How a deferred answer reaches its call: finish(call, …) from any thread,
 * once; it takes ownership of response (NULL unless OK). */
typedef struct {
    void (*finish)(void *call, grpc_status_code code, const char *details,
                   grpc_byte_buffer *response);
    void *call;
} grpc_later;

/* OK with *response set, GRPC_SERVICES_LATER, or an error status with its
 * message in details. */
grpc_status_code grpc_services_send_notification(router *r, bool lame_duck,
                                                 grpc_byte_buffer *request,
                                                 const grpc_later *later,
                                                 grpc_byte_buffer **response, char *details,
                                                 size_t details_size);
grpc_status_code grpc_services_send_notifications(router *r, bool lame_duck,
                                                  grpc_byte_buffer *request,
                                                  const grpc_later *later,
                                                  grpc_byte_buffer **response, char *details,
                                                  size_t details_size);
grpc_status_code grpc_services_broadcast(router *r, bool lame_duck, grpc_byte_buffer *request,
                                         const grpc_later *later, grpc_byte_buffer **response,
                                         char *details, size_t details_size);
grpc_status_code grpc_services_status(router *r, grpc_byte_buffer *request,
                                      grpc_byte_buffer **response, char *details,
                                      size_t details_size);

/* serving: not stopping and at least one worker accepts connections. */
grpc_status_code grpc_services_health_check(bool serving, grpc_byte_buffer *request,
                                            grpc_byte_buffer **response, char *details,
                                            size_t details_size);

#endif
