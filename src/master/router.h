/* router.h — a notification's path from the gRPC endpoint to a worker:
 * validate the request, number and timestamp it, build the client JSON once,
 * find the user's holder in the directory, and queue one datagram to that slot.
 * Thread-safe: called from the master's gRPC thread(s); it touches only the
 * shared region (atomics, process-shared lock) and the queue sockets. */
#ifndef WSN_ROUTER_H
#define WSN_ROUTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"

#define NOTIFY_MAX_CONTENT (16u * 1024u)  /* title + message + link, bytes */
#define NOTIFY_MAX_TYPE 128u
#define NOTIFY_ID_MAX ((INT64_C(1) << 53) - 1) /* exact in JavaScript numbers */

typedef struct {
    int64_t user_id;
    const char *type;     /* NUL-terminated, as protobuf-c gives strings */
    const char *title;
    const char *message;
    const char *link;
    bool send_push;
    int64_t id;           /* 0: the server assigns one */
} notify_request;

typedef enum {
    ROUTE_OK = 0,         /* result filled; gRPC OK */
    ROUTE_INVALID,        /* error names the field; gRPC INVALID_ARGUMENT */
    ROUTE_INTERNAL,       /* error says what failed; gRPC INTERNAL */
} route_status;

typedef struct {
    int64_t notification_id;
    bool delivered;
} notify_result;

typedef struct {
    shm_region *shm;
    int slots;
    const int *queue_out;   /* sender end of each slot's queue */
    /* Per slot: the second of the last "queue full" line, and calls since. */
    _Atomic int64_t drop_logged_at[REGION_MAX_SLOTS];
    _Atomic uint64_t drop_quiet[REGION_MAX_SLOTS];
} router;

/* Check a request against SPEC.md. Returns 0, or -1 with a message naming the field. */
int notify_validate(const notify_request *req, char *err, size_t err_size);

/* The client message {"type":"notification","data":{...}}, malloc'd, NUL-terminated.
 * timestamp is RFC 3339 UTC ("2026-01-15T20:00:00Z"). NULL on allocation failure. */
char *notify_build_json(const notify_request *req, int64_t id, const char *timestamp,
                        size_t *len);

/* RFC 3339 UTC with a Z, seconds precision. out must hold 21 bytes. */
void notify_format_timestamp(int64_t unix_seconds, char out[21]);

/* Validate, number, route. */
route_status router_send(router *r, const notify_request *req, notify_result *res, char *err,
                         size_t err_size);

#endif
