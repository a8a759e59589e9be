/* grpc_services.c — the daemon's unary methods, request message in, status and
 * response message out (see grpc_services.h): SendNotification,
 * SendNotifications, Broadcast, GetNotificationStatus and the health Check.
 *
 * With history, a SendNotification(s) answer waits for its commit: the call
 * is parked in a pending_call, whose done() (run on the history thread) packs
 * the response and finishes the call through the endpoint's `later`. */
#include "src/master/grpc_services.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/health.pb-c.h"
#include "proto/notification.pb-c.h"
#include "shm/store.h"
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

/* A string field holding a NUL byte (grpc_message_unpack_checked named it):
 * INVALID_ARGUMENT, with counted notifications counted as invalid. */
static grpc_status_code refuse_nul(router *r, size_t counted, const char *field, char *details,
                                   size_t details_size)
{
    for (size_t i = 0; i < counted; i++)
        region_count_notification(r->shm, NOTIFY_INVALID);
    snprintf(details, details_size, "%s holds a NUL byte", field);
    log_debug("gRPC: %s", details);
    return GRPC_STATUS_INVALID_ARGUMENT;
}

static notify_request request_of(const Notification__SendNotificationRequest *req)
{
    return (notify_request){
        .user_id = req->user_id,
        .type = req->type,
        .title = req->title,
        .message = req->message,
        .link = req->link,
        .send_push = req->send_push != 0,
        .id = req->id,
        .wait_ack_ms = req->wait_ack_ms,
    };
}

/* ---- SendNotification(s): the answer, now or later -------------------------- */

typedef struct {
    notify_reply base;   /* first: the router's done() gets &base */
    grpc_later later;
    bool batch;
    notify_result results[];
} pending_call;

static grpc_byte_buffer *pack_results(const notify_result *res, size_t n, bool batch)
{
    Notification__SendNotificationResponse one[1];
    Notification__SendNotificationResponse *each = n <= 1 ? one : calloc(n, sizeof *each);
    Notification__SendNotificationResponse **ptrs = batch ? calloc(n, sizeof *ptrs) : NULL;
    grpc_byte_buffer *bb = NULL;
    if (each == NULL || (batch && ptrs == NULL))
        goto out;
    for (size_t i = 0; i < n; i++) {
        Notification__SendNotificationResponse r = NOTIFICATION__SEND_NOTIFICATION_RESPONSE__INIT;
        r.notification_id = res[i].notification_id;
        r.delivered = res[i].delivered;
        r.acked = res[i].acked;
        r.duplicate = res[i].duplicate;
        each[i] = r;
        if (batch)
            ptrs[i] = &each[i];
    }
    if (batch) {
        Notification__SendNotificationsResponse all =
            NOTIFICATION__SEND_NOTIFICATIONS_RESPONSE__INIT;
        all.n_results = n;
        all.results = ptrs;
        bb = grpc_message_pack(&all.base);
    } else {
        bb = grpc_message_pack(&each[0].base);
    }
out:
    if (each != one)
        free(each);
    free(ptrs);
    return bb;
}

static grpc_status_code status_of(route_status st)
{
    switch (st) {
    case ROUTE_OK: return GRPC_STATUS_OK;
    case ROUTE_INVALID: return GRPC_STATUS_INVALID_ARGUMENT;
    case ROUTE_EXHAUSTED: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case ROUTE_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
    default: return GRPC_STATUS_INTERNAL;
    }
}

/* The history thread: every result of the call is final. */
static void on_results(notify_reply *r)
{
    pending_call *p = (pending_call *)r;
    grpc_status_code code = status_of(r->status);
    grpc_byte_buffer *bb = NULL;
    if (code == GRPC_STATUS_OK && (bb = pack_results(p->results, r->count, p->batch)) == NULL) {
        code = GRPC_STATUS_INTERNAL;
        snprintf(r->details, sizeof r->details, "cannot encode the response");
    }
    p->later.finish(p->later.call, code, code == GRPC_STATUS_OK ? "" : r->details, bb);
    free(p);
}

/* Route n requests; answer now (returns the status, *response on OK) or later
 * (GRPC_SERVICES_LATER: the pending call finishes it). */
static grpc_status_code submit(router *r, const notify_request *reqs, size_t n, bool batch,
                               const grpc_later *later, grpc_byte_buffer **response,
                               char *details, size_t details_size)
{
    pending_call *p = calloc(1, sizeof *p + n * sizeof p->results[0]);
    if (p == NULL) {
        snprintf(details, details_size, "out of memory");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    p->base = (notify_reply){.done = on_results, .count = n, .results = p->results};
    p->later = *later;
    p->batch = batch;
    details[0] = '\0';
    route_status st = router_submit(r, reqs, n, batch, &p->base, details, details_size);
    if (st == ROUTE_DEFERRED)
        return GRPC_SERVICES_LATER; /* p belongs to the history now */
    grpc_status_code code = status_of(st);
    if (code == GRPC_STATUS_OK) {
        details[0] = '\0';
        *response = pack_results(p->results, n, batch);
        if (*response == NULL) {
            snprintf(details, details_size, "cannot encode the response");
            code = GRPC_STATUS_INTERNAL;
        }
    } else if (code == GRPC_STATUS_INTERNAL) {
        log_error("gRPC SendNotification: %s", details);
    } else {
        log_debug("gRPC SendNotification: %s", details);
    }
    free(p);
    return code;
}

grpc_status_code grpc_services_send_notification(router *r, bool lame_duck,
                                                 grpc_byte_buffer *request,
                                                 const grpc_later *later,
                                                 grpc_byte_buffer **response, char *details,
                                                 size_t details_size)
{
    char nul_field[128];
    Notification__SendNotificationRequest *req =
        (Notification__SendNotificationRequest *)grpc_message_unpack_checked(
            &notification__send_notification_request__descriptor, request, nul_field,
            sizeof nul_field);
    if (req == NULL) {
        region_count_notification(r->shm, NOTIFY_INVALID);
        snprintf(details, details_size,
                 "the request is not a valid notification.SendNotificationRequest");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    grpc_status_code code;
    if (nul_field[0] != '\0') {
        code = refuse_nul(r, 1, nul_field, details, details_size);
    } else if (lame_duck) {
        region_count_notification(r->shm, NOTIFY_UNAVAILABLE);
        snprintf(details, details_size, "the server is shutting down");
        code = GRPC_STATUS_UNAVAILABLE;
    } else {
        notify_request nr = request_of(req);
        code = submit(r, &nr, 1, false, later, response, details, details_size);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return code;
}

grpc_status_code grpc_services_send_notifications(router *r, bool lame_duck,
                                                  grpc_byte_buffer *request,
                                                  const grpc_later *later,
                                                  grpc_byte_buffer **response, char *details,
                                                  size_t details_size)
{
    char nul_field[128];
    Notification__SendNotificationsRequest *req =
        (Notification__SendNotificationsRequest *)grpc_message_unpack_checked(
            &notification__send_notifications_request__descriptor, request, nul_field,
            sizeof nul_field);
    if (req == NULL) {
        region_count_notification(r->shm, NOTIFY_INVALID);
        snprintf(details, details_size,
                 "the request is not a valid notification.SendNotificationsRequest");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    grpc_status_code code;
    size_t n = req->n_notifications;
    notify_request *reqs = NULL;
    if (nul_field[0] != '\0') {
        code = refuse_nul(r, n > 0 && n <= NOTIFY_MAX_BATCH ? n : 1, nul_field, details,
                          details_size);
    } else if (lame_duck) {
        for (size_t i = 0; i < (n > 0 ? n : 1); i++)
            region_count_notification(r->shm, NOTIFY_UNAVAILABLE);
        snprintf(details, details_size, "the server is shutting down");
        code = GRPC_STATUS_UNAVAILABLE;
    } else if (n == 0 || n > NOTIFY_MAX_BATCH) {
        region_count_notification(r->shm, NOTIFY_INVALID);
        snprintf(details, details_size, "notifications: between 1 and %u requests, got %zu",
                 NOTIFY_MAX_BATCH, n);
        code = GRPC_STATUS_INVALID_ARGUMENT;
    } else if ((reqs = calloc(n, sizeof *reqs)) == NULL) {
        snprintf(details, details_size, "out of memory");
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    } else {
        for (size_t i = 0; i < n; i++)
            reqs[i] = request_of(req->notifications[i]);
        code = submit(r, reqs, n, true, later, response, details, details_size);
    }
    free(reqs);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return code;
}

/* ---- Broadcast: the answer, now or (cluster mode) once every node counted -- */

typedef struct {
    notify_broadcast_reply base;   /* first: the router's done() gets &base */
    grpc_later later;
} pending_broadcast;

static grpc_status_code pack_broadcast(const notify_broadcast_reply *b,
                                       grpc_byte_buffer **response, char *details,
                                       size_t details_size)
{
    Notification__BroadcastResponse resp = NOTIFICATION__BROADCAST_RESPONSE__INIT;
    resp.notification_id = b->id;
    resp.recipients = b->recipients;
    log_info("broadcast %lld handed to %lld connections", (long long)b->id,
             (long long)b->recipients);
    return reply(&resp.base, response, details, details_size);
}

/* The history thread: the other nodes have counted. */
static void on_broadcast_counted(notify_broadcast_reply *b)
{
    pending_broadcast *p = (pending_broadcast *)b;
    grpc_status_code code = status_of(b->status);
    grpc_byte_buffer *bb = NULL;
    if (code == GRPC_STATUS_OK)
        code = pack_broadcast(b, &bb, b->details, sizeof b->details);
    else
        log_warn("broadcast %lld: %s", (long long)b->id, b->details);
    p->later.finish(p->later.call, code, code == GRPC_STATUS_OK ? "" : b->details, bb);
    free(p);
}

grpc_status_code grpc_services_broadcast(router *r, bool lame_duck, grpc_byte_buffer *request,
                                         const grpc_later *later, grpc_byte_buffer **response,
                                         char *details, size_t details_size)
{
    char nul_field[128];
    Notification__BroadcastRequest *req =
        (Notification__BroadcastRequest *)grpc_message_unpack_checked(
            &notification__broadcast_request__descriptor, request, nul_field, sizeof nul_field);
    if (req == NULL) {
        snprintf(details, details_size, "the request is not a valid notification.BroadcastRequest");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    grpc_status_code code;
    if (nul_field[0] != '\0') {
        code = refuse_nul(NULL, 0, nul_field, details, details_size);
    } else if (lame_duck) {
        snprintf(details, details_size, "the server is shutting down");
        code = GRPC_STATUS_UNAVAILABLE;
    } else {
        notify_request nr = {.type = req->type, .title = req->title, .message = req->message,
                             .link = req->link, .send_push = true};
        pending_broadcast *p = calloc(1, sizeof *p);
        if (p == NULL) {
            snprintf(details, details_size, "out of memory");
            code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        } else {
            p->base.done = on_broadcast_counted;
            p->later = *later;
            route_status st = router_broadcast(r, &nr, &p->base, details, details_size);
            if (st == ROUTE_DEFERRED) {
                p = NULL; /* the history's now */
                code = GRPC_SERVICES_LATER;
            } else if ((code = status_of(st)) == GRPC_STATUS_OK) {
                details[0] = '\0';
                code = pack_broadcast(&p->base, response, details, details_size);
            }
            free(p);
        }
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return code;
}

grpc_status_code grpc_services_status(router *r, grpc_byte_buffer *request,
                                      grpc_byte_buffer **response, char *details,
                                      size_t details_size)
{
    Notification__GetNotificationStatusRequest *req =
        (Notification__GetNotificationStatusRequest *)grpc_message_unpack(
            &notification__get_notification_status_request__descriptor, request);
    if (req == NULL) {
        snprintf(details, details_size,
                 "the request is not a valid notification.GetNotificationStatusRequest");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    notify_status st;
    grpc_status_code code;
    int rc = router_status(r, req->user_id, req->notification_id, &st);
    if (rc == 2) {
        snprintf(details, details_size, "Redis is out of reach: the history cannot be read; "
                                        "retry");
        code = GRPC_STATUS_UNAVAILABLE;
    } else if (rc == 1) {
        snprintf(details, details_size, "notification %lld of user %lld is not in the history",
                 (long long)req->notification_id, (long long)req->user_id);
        code = GRPC_STATUS_NOT_FOUND;
    } else if (rc != 0) {
        snprintf(details, details_size, "cannot read the history");
        code = GRPC_STATUS_INTERNAL;
    } else {
        Notification__NotificationStatus resp = NOTIFICATION__NOTIFICATION_STATUS__INIT;
        resp.state = st.state == STORE_ACKED   ? NOTIFICATION__NOTIFICATION_STATUS__STATE__ACKED
                     : st.state == STORE_SENT  ? NOTIFICATION__NOTIFICATION_STATUS__STATE__SENT
                                               : NOTIFICATION__NOTIFICATION_STATUS__STATE__STORED;
        resp.timestamp = st.timestamp;
        resp.acked_at = st.acked_at;
        code = reply(&resp.base, response, details, details_size);
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
