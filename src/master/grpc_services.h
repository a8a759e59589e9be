/* grpc_services.h — the daemon's unary gRPC methods at the message level:
 * notification.NotificationService/SendNotification (through the router) and
 * grpc.health.v1.Health/Check. Each decodes the request, answers, and returns
 * the status for grpc_endpoint.c to send (the contract is in grpc_message.h).
 * lame_duck: the endpoint is stopping (SendNotification UNAVAILABLE). Every
 * SendNotification call is counted in exactly one outcome
 * (wsnotify_notifications_total). Called on the gRPC thread only. */
#ifndef WSN_GRPC_SERVICES_H
#define WSN_GRPC_SERVICES_H

#include <grpc/byte_buffer.h>
#include <grpc/status.h>
#include <stdbool.h>
#include <stddef.h>

#include "src/master/router.h"

/* OK with *response set, or an error status with its message in details. */
grpc_status_code grpc_services_send_notification(router *r, bool lame_duck,
                                                 grpc_byte_buffer *request,
                                                 grpc_byte_buffer **response, char *details,
                                                 size_t details_size);

/* serving: not stopping and at least one worker accepts connections. */
grpc_status_code grpc_services_health_check(bool serving, grpc_byte_buffer *request,
                                            grpc_byte_buffer **response, char *details,
                                            size_t details_size);

#endif
