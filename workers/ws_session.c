/* ws_session.c — the WebSocket session of an upgraded connection: registering
 * it, the messages of SPEC.md (connected, ping → pong, error), control frames,
 * the close handshake, eviction and delivery of queued notifications. */
#include <json-c/json.h>
#include <string.h>

#include "src/log.h"
#include "workers/conn.h"
#include "workers/metrics.h"

static const char pong_json[] = "{\"type\":\"pong\",\"data\":{\"status\":\"ok\"}}";
static const char invalid_json[] =
    "{\"type\":\"error\",\"data\":{\"message\":\"invalid JSON message\"}}";
static const char unknown_type_json[] =
    "{\"type\":\"error\",\"data\":{\"message\":\"unknown message type\"}}";
static const char binary_json[] =
    "{\"type\":\"error\",\"data\":{\"message\":\"binary messages are not supported\"}}";

static int send_text(conn *c, const char *json, size_t len)
{
    return conn_send_frame(c, WS_OP_TEXT, json, len);
}

static int send_connected(conn *c, int64_t user_id, const char *email)
{
    json_object *root = json_object_new_object();
    json_object *data = json_object_new_object();
    if (root == NULL || data == NULL) {
        json_object_put(root);
        json_object_put(data);
        conn_abort(c, "out of memory building the connected message");
        return -1;
    }
    int bad = json_object_object_add(root, "type", json_object_new_string("connected"));
    bad |= json_object_object_add(root, "data", data);
    bad |= json_object_object_add(data, "user_id", json_object_new_int64(user_id));
    bad |= json_object_object_add(data, "email", json_object_new_string(email));
    bad |= json_object_object_add(data, "message",
                                  json_object_new_string("Connected to notifications"));
    size_t len = 0;
    const char *text = bad ? NULL
                           : json_object_to_json_string_length(
                                 root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                 &len);
    int rc = -1;
    if (text == NULL)
        conn_abort(c, "cannot build the connected message");
    else
        rc = send_text(c, text, len);
    json_object_put(root);
    return rc;
}

void ws_session_open(conn *c, int64_t user_id, uint64_t generation, const char *email,
                     const char *response, size_t response_len)
{
    worker *w = c->w;
    c->user_id = user_id;
    c->generation = generation;
    c->since = w->now;
    if (user_map_put(&w->users, user_id, c) != 0) {
        directory_release(w->shm.dir, user_id, generation);
        conn_abort(c, "out of memory registering a user");
        return;
    }
    c->state = CONN_WS;
    if (c->list != NULL)
        conn_list_remove(c->list, c);
    conn_list_append(&w->open, c);
    atomic_fetch_add_explicit(&w->stats->connections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->stats->accepted, 1, memory_order_relaxed);
    log_info("Client connected: UserID=%lld, Total=%lld", (long long)user_id,
             (long long)region_total_connections(&w->shm));
    if (conn_write(c, response, response_len) != 0)
        return;
    send_connected(c, user_id, email);
}

void ws_session_end(conn *c)
{
    worker *w = c->w;
    c->state = CONN_CLOSING;
    user_map_remove(&w->users, c->user_id, c);
    directory_release(w->shm.dir, c->user_id, c->generation);
    atomic_fetch_sub_explicit(&w->stats->connections, 1, memory_order_relaxed);
    log_info("Client disconnected: UserID=%lld, Total=%lld", (long long)c->user_id,
             (long long)region_total_connections(&w->shm));
}

/* A client text message: only {"type":"ping"} is defined. */
static int on_client_text(conn *c, const uint8_t *data, size_t len)
{
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        conn_abort(c, "out of memory parsing a message");
        return -1;
    }
    json_object *msg = json_tokener_parse_ex(tok, (const char *)data, (int)len);
    bool complete = msg != NULL && json_tokener_get_error(tok) == json_tokener_success &&
                    json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    json_object *type = NULL;
    const char *reply = invalid_json;
    size_t reply_len = sizeof invalid_json - 1;
    if (complete && json_object_is_type(msg, json_type_object) &&
        json_object_object_get_ex(msg, "type", &type) &&
        json_object_is_type(type, json_type_string)) {
        if (strcmp(json_object_get_string(type), "ping") == 0) {
            reply = pong_json;
            reply_len = sizeof pong_json - 1;
        } else {
            reply = unknown_type_json;
            reply_len = sizeof unknown_type_json - 1;
        }
    }
    json_object_put(msg);
    return send_text(c, reply, reply_len);
}

/* --max-messages-per-second: counts complete data messages (a fragmented one
 * once), not control frames, so answering pings never trips it. Returns false
 * when the connection was closed for it. */
static bool message_rate_ok(conn *c)
{
    worker *w = c->w;
    uint32_t limit = w->cfg->max_messages_per_second;
    if (ratelimit_local_hit(&c->msg_rate, limit, RATELIMIT_MESSAGE_WINDOW_MS, w->now))
        return true;
    log_info("closing UserID=%lld with 1008: more than %u messages per second",
             (long long)c->user_id, limit);
    conn_close_ws(c, WS_CLOSE_POLICY, "rate limit exceeded");
    return false;
}

static int on_ws_event(void *ctx, const ws_event *ev)
{
    conn *c = ctx;
    atomic_fetch_add_explicit(&c->w->stats->frames_in, 1, memory_order_relaxed);
    if ((ev->type == WS_EV_TEXT || ev->type == WS_EV_BINARY) && !message_rate_ok(c))
        return 1;
    switch (ev->type) {
    case WS_EV_TEXT:
        on_client_text(c, ev->data, ev->len);
        break;
    case WS_EV_BINARY:
        send_text(c, binary_json, sizeof binary_json - 1);
        break;
    case WS_EV_PING:
        conn_send_frame(c, WS_OP_PONG, ev->data, ev->len);
        break;
    case WS_EV_PONG:
        break;
    case WS_EV_CLOSE:
        /* Echo the client's code (RFC 6455 5.5.1); no code → empty close. */
        conn_close_ws(c, ev->close_code, "");
        return 1;
    }
    return c->state == CONN_WS ? 0 : 1;
}

static const char *close_reason(int code)
{
    switch (code) {
    case WS_CLOSE_PROTOCOL_ERROR: return "protocol error";
    case WS_CLOSE_INVALID_DATA: return "invalid UTF-8";
    case WS_CLOSE_TOO_BIG: return "message too big";
    default: return "internal error";
    }
}

void ws_session_on_bytes(conn *c, uint8_t *data, size_t len)
{
    int rc = ws_reader_feed(&c->reader, data, len, on_ws_event, c);
    if (rc > 0 && c->state == CONN_WS) {
        log_info("closing UserID=%lld with %d: %s", (long long)c->user_id, rc, close_reason(rc));
        conn_close_ws(c, (uint16_t)rc, close_reason(rc));
    }
}

void ws_session_deliver(worker *w, int64_t user, uint64_t generation, const uint8_t *json,
                        size_t len, uint64_t accepted_ns)
{
    conn *c = user_map_get(&w->users, user);
    if (c == NULL || c->generation != generation || c->state != CONN_WS) {
        atomic_fetch_add_explicit(&w->stats->queue_dropped, 1, memory_order_relaxed);
        log_debug("dropping a notification for UserID=%lld: connection gone", (long long)user);
        return;
    }
    if (send_text(c, (const char *)json, len) == 0)
        metrics_observe_delivery(w->stats, accepted_ns);
}

void ws_session_evict(worker *w, int64_t user, uint64_t generation)
{
    conn *c = user_map_get(&w->users, user);
    if (c == NULL || c->generation != generation || c->state != CONN_WS)
        return; /* already gone */
    atomic_fetch_add_explicit(&w->stats->evictions, 1, memory_order_relaxed);
    log_info("evicting UserID=%lld: replaced by a newer connection", (long long)user);
    conn_close_ws(c, WS_CLOSE_REPLACED, "replaced by a newer connection");
}
