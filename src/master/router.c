/* router.c — validate, number and route a notification (see router.h).
 *
 * Queue-full policy: a worker that does not drain its queue (stuck, or
 * respawning) must neither slow the gRPC endpoint for everybody else nor lose
 * a notification silently. The router never waits for room: a full queue is
 * answered delivered=false at once, counted as dropped, and logged (at most
 * once a second per worker, with the number since the last line). */
#include "src/master/router.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/queue.h"
#include "src/common/log.h"
#include "src/common/utf8.h"

static const char *or_empty(const char *s) { return s != NULL ? s : ""; }

static int check_utf8(const char *field, const char *s, char *err, size_t err_size)
{
    if (!utf8_valid((const uint8_t *)s, strlen(s))) {
        snprintf(err, err_size, "%s is not valid UTF-8", field);
        return -1;
    }
    return 0;
}

int notify_validate(const notify_request *req, char *err, size_t err_size)
{
    const char *type = or_empty(req->type);
    const char *title = or_empty(req->title);
    const char *message = or_empty(req->message);
    const char *link = or_empty(req->link);
    if (req->user_id <= 0) {
        snprintf(err, err_size, "user_id must be a positive integer");
        return -1;
    }
    if (type[0] == '\0') {
        snprintf(err, err_size, "type is required");
        return -1;
    }
    if (strlen(type) > NOTIFY_MAX_TYPE) {
        snprintf(err, err_size, "type is longer than %u bytes", NOTIFY_MAX_TYPE);
        return -1;
    }
    if (title[0] == '\0') {
        snprintf(err, err_size, "title is required");
        return -1;
    }
    size_t content = strlen(title) + strlen(message) + strlen(link);
    if (content > NOTIFY_MAX_CONTENT) {
        snprintf(err, err_size, "title+message+link is %zu bytes, over the %u-byte limit",
                 content, NOTIFY_MAX_CONTENT);
        return -1;
    }
    if (req->id < 0 || req->id > NOTIFY_ID_MAX) {
        /* Clients read ids as JavaScript numbers, exact only below 2^53. */
        snprintf(err, err_size, "id must be between 0 and 2^53-1");
        return -1;
    }
    if (check_utf8("type", type, err, err_size) != 0 ||
        check_utf8("title", title, err, err_size) != 0 ||
        check_utf8("message", message, err, err_size) != 0 ||
        check_utf8("link", link, err, err_size) != 0)
        return -1;
    return 0;
}

void notify_format_timestamp(int64_t unix_seconds, char out[21])
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 21, "1970-01-01T00:00:00Z");
}

static int add_string(json_object *obj, const char *key, const char *value)
{
    json_object *s = json_object_new_string(value);
    if (s == NULL)
        return -1;
    return json_object_object_add(obj, key, s);
}

char *notify_build_json(const notify_request *req, int64_t id, const char *timestamp,
                        size_t *len)
{
    json_object *root = json_object_new_object();
    json_object *data = json_object_new_object();
    json_object *jid = json_object_new_int64(id);
    char *out = NULL;
    if (root == NULL || data == NULL || jid == NULL)
        goto fail;
    if (add_string(root, "type", "notification") != 0)
        goto fail;
    if (json_object_object_add(root, "data", data) != 0)
        goto fail;
    json_object *owned_data = data;
    data = NULL; /* owned by root from here */
    if (json_object_object_add(owned_data, "id", jid) != 0)
        goto fail;
    jid = NULL;
    if (add_string(owned_data, "title", or_empty(req->title)) != 0 ||
        add_string(owned_data, "message", or_empty(req->message)) != 0 ||
        add_string(owned_data, "notification_type", or_empty(req->type)) != 0 ||
        add_string(owned_data, "link", or_empty(req->link)) != 0 ||
        add_string(owned_data, "timestamp", timestamp) != 0)
        goto fail;
    size_t n = 0;
    const char *text = json_object_to_json_string_length(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (text == NULL)
        goto fail;
    out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, text, n + 1);
        *len = n;
    }
fail:
    json_object_put(jid);
    json_object_put(data);
    json_object_put(root);
    return out;
}

/* One line per worker per second at most: a stuck worker must not flood the
 * log with a line per call. */
static void warn_dropped(router *r, int slot, int64_t id, int64_t user, int err)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    int64_t sec = (int64_t)now.tv_sec;
    atomic_fetch_add_explicit(&r->drop_quiet[slot], 1, memory_order_relaxed);
    int64_t last = atomic_load_explicit(&r->drop_logged_at[slot], memory_order_relaxed);
    if (last == sec || !atomic_compare_exchange_strong(&r->drop_logged_at[slot], &last, sec))
        return;
    uint64_t n = atomic_exchange_explicit(&r->drop_quiet[slot], 0, memory_order_relaxed);
    log_warn("notification %lld for UserID=%lld not delivered: the queue of worker %d is "
             "full (%s); %llu not delivered to it since the last such line",
             (long long)id, (long long)user, slot, strerror(err), (unsigned long long)n);
}

route_status router_send(router *r, const notify_request *req, notify_result *res, char *err,
                         size_t err_size)
{
    struct timespec accepted;
    clock_gettime(CLOCK_REALTIME, &accepted);
    res->notification_id = 0;
    res->delivered = false;
    if (notify_validate(req, err, err_size) != 0) {
        region_count_notification(r->shm, NOTIFY_INVALID);
        return ROUTE_INVALID;
    }
    int64_t id = req->id != 0 ? req->id : region_next_notification_id(r->shm);
    res->notification_id = id;
    if (!req->send_push) {
        region_count_notification(r->shm, NOTIFY_NOT_PUSHED);
        return ROUTE_OK;
    }
    dir_holder holder;
    if (!directory_lookup(r->shm->dir, req->user_id, &holder) || holder.slot < 0 ||
        holder.slot >= r->slots) {
        region_count_notification(r->shm, NOTIFY_OFFLINE);
        return ROUTE_OK;
    }
    char timestamp[21];
    notify_format_timestamp((int64_t)accepted.tv_sec, timestamp);
    size_t len = 0;
    char *json = notify_build_json(req, id, timestamp, &len);
    if (json == NULL) {
        snprintf(err, err_size, "out of memory building the notification");
        return ROUTE_INTERNAL;
    }
    queue_msg m = {
        .type = QMSG_NOTIFY,
        .user = req->user_id,
        .generation = holder.generation,
        .accepted_ns = (uint64_t)accepted.tv_sec * 1000000000u + (uint64_t)accepted.tv_nsec,
        .payload = (const uint8_t *)json,
        .payload_len = (uint32_t)len,
    };
    if (queue_send(r->queue_out[holder.slot], &m) != 0) {
        warn_dropped(r, holder.slot, id, req->user_id, errno);
        region_count_notification(r->shm, NOTIFY_DROPPED);
    } else {
        res->delivered = true;
        region_count_notification(r->shm, NOTIFY_DELIVERED);
    }
    free(json);
    return ROUTE_OK;
}
