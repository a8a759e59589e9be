/* notify.h — a notification as the master handles it: the request as the gRPC
 * services decode it, the checks of README "Sending notifications" (each
 * failure naming the field), the client JSON built once, the timestamps, and
 * what a call is answered (notify_result, notify_reply). Shared by the router,
 * the history and the gRPC services. */
#ifndef WSN_NOTIFY_H
#define WSN_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/counters-t.h"

#define NOTIFY_MAX_CONTENT (16u * 1024u)  /* title + message + link, bytes */
#define NOTIFY_MAX_TYPE 128u
#define NOTIFY_ID_MAX ((INT64_C(1) << 53) - 1) /* exact in JavaScript numbers */
#define NOTIFY_MAX_WAIT_ACK_MS 60000
#define NOTIFY_MAX_BATCH 1000u            /* SendNotifications requests per call */

typedef struct {
    int64_t user_id;
    const char *type;     /* NUL-terminated, as protobuf-c gives strings */
    const char *title;
    const char *message;
    const char *link;
    bool send_push;
    int64_t id;           /* 0: the server assigns one */
    int32_t wait_ack_ms;  /* > 0: answer on the client's ack, or after this long */
} notify_request;

typedef enum {
    ROUTE_OK = 0,         /* results filled; gRPC OK */
    ROUTE_INVALID,        /* error names the field; gRPC INVALID_ARGUMENT */
    ROUTE_INTERNAL,       /* error says what failed; gRPC INTERNAL */
    ROUTE_EXHAUSTED,      /* too many calls waiting for an ack; gRPC RESOURCE_EXHAUSTED */
    ROUTE_DEFERRED,       /* the results come later, through notify_reply.done */
    ROUTE_UNAVAILABLE,    /* cluster mode: Redis is needed and out of reach; gRPC UNAVAILABLE */
} route_status;

typedef struct {
    int64_t notification_id;
    bool delivered;
    bool acked;
    bool duplicate;
} notify_result;

/* The answer of one SendNotification(s) call that waits for the history. The
 * caller fills count, results and done; done is called exactly once, when
 * every result is final (status ROUTE_OK, or ROUTE_INTERNAL with details). */
typedef struct notify_reply {
    void (*done)(struct notify_reply *r);
    size_t count;
    notify_result *results;
    route_status status;
    char details[256];
    size_t pending;       /* the history's: results not final yet */
} notify_reply;

/* A Broadcast answered later (cluster mode: once every node has counted its
 * connections, or after CLUSTER_BROADCAST_WAIT_MS). done runs on the
 * history thread. */
typedef struct notify_broadcast_reply {
    void (*done)(struct notify_broadcast_reply *r);
    int64_t id;
    int64_t recipients;
    route_status status;     /* ROUTE_OK, or ROUTE_UNAVAILABLE with details */
    char details[256];
} notify_broadcast_reply;

/* GetNotificationStatus's answer. */
typedef struct {
    uint8_t state;            /* STORE_STORED, STORE_SENT, STORE_ACKED */
    char timestamp[21];       /* when it was accepted */
    char acked_at[25];        /* "" unless acked */
} notify_status;

/* Check a request. Returns 0, or -1 with a message naming the field. */
int notify_validate(const notify_request *req, char *err, size_t err_size);

/* The client message {"type":"notification","data":{...}}, malloc'd, NUL-terminated.
 * timestamp is RFC 3339 UTC ("2026-01-15T20:00:00Z"). NULL on allocation failure. */
char *notify_build_json(const notify_request *req, int64_t id, const char *timestamp,
                        size_t *len);

/* RFC 3339 UTC with a Z, seconds precision. out must hold 21 bytes. */
void notify_format_timestamp(int64_t unix_seconds, char out[21]);

/* RFC 3339 UTC with milliseconds ("2026-01-15T20:00:01.250Z"); 25 bytes. */
void notify_format_timestamp_ms(uint64_t unix_ms, char out[25]);

#endif
