/* grpc_services.c — SendNotification and the health Check, request message in,
 * status and response message out. */
#include "src/master/grpc_services.h"

#include <stdio.h>
#include <string.h>

#include "proto/health.pb-c.h"
#include "proto/notification.pb-c.h"
#include "src/common/grpc_message.h"
#include "src/common/log.h"

/* OK carrying m, or INTERNAL if it cannot be encoded. */
static grpc_status_code reply(const ProtobufCMessage *m, grpc_byte_buffer **response,
                              char *details, size_t details_size)
{
    *response = grpc_message_pack(m);
    if (*response != NULL)
        return GRPC_STATUS_OK;
    snprintf(details, details_size, "cannot encode the response");
    return GRPC_STATUS_INTERNAL;
}

/* The router's answer to a decoded request, as a gRPC status. */
static grpc_status_code route(router *r, const Notification__SendNotificationRequest *req,
                              grpc_byte_buffer **response, char *details, size_t details_size)
{
    notify_request nr = {
        .user_id = req->user_id,
        .type = req->type,
        .title = req->title,
        .message = req->message,
        .link = req->link,
        .send_push = req->send_push != 0,
        .id = req->id,
    };
    notify_result res;
    details[0] = '\0';
    switch (router_send(r, &nr, &res, details, details_size)) {
    case ROUTE_OK: {
        details[0] = '\0';
        Notification__SendNotificationResponse resp =
            NOTIFICATION__SEND_NOTIFICATION_RESPONSE__INIT;
        resp.notification_id = res.notification_id;
        resp.delivered = res.delivered;
        return reply(&resp.base, response, details, details_size);
    }
    case ROUTE_INVALID:
        log_debug("gRPC SendNotification: INVALID_ARGUMENT: %s", details);
        return GRPC_STATUS_INVALID_ARGUMENT;
    case ROUTE_INTERNAL:
    default:
        region_count_notification(r->shm, NOTIFY_INTERNAL);
        log_error("gRPC SendNotification: %s", details);
        if (details[0] == '\0')
            snprintf(details, details_size, "internal error");
        return GRPC_STATUS_INTERNAL;
    }
}

grpc_status_code grpc_services_send_notification(router *r, bool lame_duck,
                                                 grpc_byte_buffer *request,
                                                 grpc_byte_buffer **response, char *details,
                                                 size_t details_size)
{
    Notification__SendNotificationRequest *req =
        (Notification__SendNotificationRequest *)grpc_message_unpack(
            &notification__send_notification_request__descriptor, request);
    if (req == NULL) {
        region_count_notification(r->shm, NOTIFY_INVALID);
        snprintf(details, details_size,
                 "the request is not a valid notification.SendNotificationRequest");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    grpc_status_code code;
    if (lame_duck) {
        region_count_notification(r->shm, NOTIFY_UNAVAILABLE);
        snprintf(details, details_size, "the server is shutting down");
        code = GRPC_STATUS_UNAVAILABLE;
    } else {
        code = route(r, req, response, details, details_size);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return code;
}

grpc_status_code grpc_services_health_check(bool serving, grpc_byte_buffer *request,
                                            grpc_byte_buffer **response, char *details,
                                            size_t details_size)
{
    Grpc__Health__V1__HealthCheckRequest *req = (Grpc__Health__V1__HealthCheckRequest *)
        grpc_message_unpack(&grpc__health__v1__health_check_request__descriptor, request);
    if (req == NULL) {
        snprintf(details, details_size,
                 "the request is not a valid grpc.health.v1.HealthCheckRequest");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    grpc_status_code code;
    bool known = req->service[0] == '\0' ||
                 strcmp(req->service, "notification.NotificationService") == 0;
    if (known) {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = serving
                          ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                          : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
        code = reply(&resp.base, response, details, details_size);
    } else {
        snprintf(details, details_size, "unknown service \"%.150s\"", req->service);
        code = GRPC_STATUS_NOT_FOUND;
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return code;
}
