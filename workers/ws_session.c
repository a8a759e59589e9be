/* ws_session.c — the WebSocket session of an upgraded connection: registering
 * it, the client messages (connected, ping → pong, ack, error; see README),
 * control frames, the close handshake, eviction, and delivery of queued
 * notifications and broadcasts (through the hand-over while a session
 * replays its history: handover.h). */
#include "workers/ws_session.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>
#include <time.h>

#include "shm/counters.h"
#include "shm/queue.h"
#include "shm/store.h"
#include "src/common/clock.h"
#include "src/common/log.h"
#include "workers/handover.h"
#include "workers/marks.h"
#include "workers/worker-t.h"
#include "workers/ws_message.h"

#define RECONCILE_CHUNK 256      /* connections checked per directory pass step */

static const char pong_json[] = "{\"type\":\"pong\",\"data\":{\"status\":\"ok\"}}";
static const char invalid_json[] =
    "{\"type\":\"error\",\"data\":{\"message\":\"invalid JSON message\"}}";
static const char unknown_type_json[] =
    "{\"type\":\"error\",\"data\":{\"message\":\"unknown message type\"}}";
static const char binary_json[] =
    "{\"type\":\"error\",\"data\":{\"message\":\"binary messages are not supported\"}}";
/* An ack whose data.id is missing or not an integer 0..2^63-1 (ws_message.h). */
static const char bad_ack_json[] =
    "{\"type\":\"error\",\"data\":{\"message\":\"ack needs an integer id\"}}";

int ws_session_send(client *cl, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t header[10];
    size_t hlen = ws_frame_header_encode(header, opcode, len);
    struct iovec iov[2] = {
        {.iov_base = header, .iov_len = hlen},
        {.iov_base = (void *)payload, .iov_len = len},
    };
    int rc = conn_writev(&cl->io, iov, len ? 2 : 1);
    if (rc == 0)
        atomic_fetch_add_explicit(&client_worker(cl)->stats->frames_out, 1, memory_order_relaxed);
    return rc;
}

int ws_session_send_text(client *c, const void *json, size_t len)
{
    return ws_session_send(c, WS_OP_TEXT, json, len);
}

/* An answer to a client message: behind the replay while the session is in
 * its hand-over, so `connected` stays the first message. */
static int reply(client *c, const char *json, size_t len)
{
    if (c->in_handover) {
        handover_item it = {.kind = HANDOVER_REPLY, .data = (const uint8_t *)json,
                            .len = (uint32_t)len};
        if (handover_take(c, &it))
            return c->io.state == CONN_OPEN ? 0 : -1;
    }
    return ws_session_send_text(c, json, len);
}

int ws_session_write_notification(client *c, const void *json, size_t len, int64_t id,
                                  uint64_t seq, uint64_t accepted_ns)
{
    worker *w = client_worker(c);
    if (seq != 0)
        marks_expect(w);
    if (ws_session_send(c, WS_OP_TEXT, json, len) != 0)
        return -1;
    if (c->ack_credit < UINT32_MAX)
        c->ack_credit++;
    if (seq != 0)
        marks_put(w, c->user_id, id, STORE_SENT, 0);
    if (accepted_ns != 0)
        counters_observe_delivery(w->stats, accepted_ns);
    return 0;
}

int ws_session_send_connected(client *c, const char *email, int recovered)
{
    int64_t user_id = c->user_id;
    json_object *root = json_object_new_object();
    json_object *data = json_object_new_object();
    if (root == NULL || data == NULL) {
        json_object_put(root);
        json_object_put(data);
        conn_abort(&c->io, "out of memory building the connected message");
        return -1;
    }
    int bad = json_object_object_add(root, "type", json_object_new_string("connected"));
    bad |= json_object_object_add(root, "data", data);
    bad |= json_object_object_add(data, "user_id", json_object_new_int64(user_id));
    bad |= json_object_object_add(data, "email", json_object_new_string(email));
    bad |= json_object_object_add(data, "message",
                                  json_object_new_string("Connected to notifications"));
    if (recovered >= 0)
        bad |= json_object_object_add(data, "recovered", json_object_new_boolean(recovered));
    size_t len = 0;
    const char *text = bad ? NULL
                           : json_object_to_json_string_length(
                                 root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                 &len);
    int rc = -1;
    if (text == NULL)
        conn_abort(&c->io, "cannot build the connected message");
    else
        rc = ws_session_send_text(c, text, len);
    json_object_put(root);
    return rc;
}

/* The transport is closing the session: leave the directory, the user map
 * and the counters (exactly once, whoever started the close). */
static void on_ws_close(conn *io, const char *why)
{
    client *c = client_of(io);
    worker *w = client_worker(c);
    if (why == conn_error_slow_reader)
        log_warn("slow client: over %u bytes unsent, dropping it (UserID=%lld)",
                 CONN_MAX_OUTPUT, (long long)c->user_id);
    else if (why == conn_error_loop_output)
        log_warn("dropping UserID=%lld: this worker's unsent output reached "
                 "--max-pending-output (%u MiB)",
                 (long long)c->user_id, w->cfg->max_pending_output);
    else if (why == conn_error_eof)
        log_debug("client closed without a close frame (UserID=%lld)", (long long)c->user_id);
    handover_forget(c);
    user_map_remove(&w->users, c->user_id, c);
    directory_release(w->shm.dir, c->user_id, c->generation);
    /* Cluster mode: after its SENT marks, so a new connection elsewhere that
     * sees it released sees them too. */
    if (w->link != NULL)
        marks_put(w, c->user_id, c->generation, QUEUE_MARK_RELEASE, 0);
    atomic_fetch_sub_explicit(&w->stats->connections, 1, memory_order_relaxed);
    log_info("Client disconnected: UserID=%lld, Total=%lld", (long long)c->user_id,
             (long long)region_total_connections(&w->shm));
}

static void on_ws_data(conn *io, uint8_t *data, size_t len);

/* Close a displaced session with 4000, counted. */
static void evict(worker *w, client *c)
{
    atomic_fetch_add_explicit(&w->stats->evictions, 1, memory_order_relaxed);
    log_info("evicting UserID=%lld: replaced by a newer connection", (long long)c->user_id);
    ws_session_close(c, WS_CLOSE_REPLACED, "replaced by a newer connection");
}

static const conn_ops ws_ops = {
    .on_data = on_ws_data,
    .on_close = on_ws_close,
    .on_free = client_free,
};

void ws_session_open(client *c, int64_t user_id, uint32_t generation, const char *email,
                     int64_t last_id, const char *response, size_t response_len)
{
    worker *w = client_worker(c);
    c->user_id = user_id;
    c->generation = generation;
    c->io.since = w->loop.now;
    /* An older session of this user here was displaced already (the claim
     * just made this one the holder), though its EVICT may still be on the
     * way, or lost: close it now, or it would stay open unrouted for ever. */
    client *older = user_map_get(&w->users, user_id);
    if (older != NULL)
        evict(w, older);
    if (user_map_put(&w->users, user_id, c) != 0) {
        directory_release(w->shm.dir, user_id, generation);
        conn_abort(&c->io, "out of memory registering a user");
        return;
    }
    client_start_ws(c);
    conn_set_ops(&c->io, &ws_ops);
    conn_list_move(&c->io, &w->open);
    atomic_fetch_add_explicit(&w->stats->connections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->stats->accepted, 1, memory_order_relaxed);
    log_info("Client connected: UserID=%lld, Total=%lld", (long long)user_id,
             (long long)region_total_connections(&w->shm));
    if (conn_write(&c->io, response, response_len) != 0)
        return;
    if (handover_enabled(w)) {
        handover_start(c, email, last_id);
        return;
    }
    /* No history: nothing to replay. recovered follows SPEC's definition for
     * an empty history: last_id 0 ("from its start") is fully recovered, any
     * other id is not in it. */
    ws_session_send_connected(c, email, last_id < 0 ? -1 : last_id == 0);
}

void ws_session_close(client *c, uint16_t code, const char *reason)
{
    if (c->phase != CLIENT_WS || c->io.state != CONN_OPEN)
        return;
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t len = code == WS_CLOSE_NO_STATUS ? 0 : ws_close_payload(payload, code, reason);
    if (ws_session_send(c, WS_OP_CLOSE, payload, len) != 0)
        return;
    conn_close_after_output(&c->io);
}

/* --max-messages-per-second: counts complete data messages (a fragmented one
 * once) other than acks, not control frames, so answering pings never trips
 * it. Returns false when the connection was closed for it. */
static bool message_rate_ok(client *c)
{
    worker *w = client_worker(c);
    uint32_t limit = w->cfg->max_messages_per_second;
    if (ratelimit_local_hit(&c->u.ws.msg_rate, limit, RATELIMIT_MESSAGE_WINDOW_MS, w->loop.now))
        return true;
    log_info("closing UserID=%lld with 1008: more than %u messages per second",
             (long long)c->user_id, limit);
    ws_session_close(c, WS_CLOSE_POLICY, "rate limit exceeded");
    return false;
}


/* {"type":"ack","data":{"id":N}}: no reply. Acks are outside the message
 * rate (a client acks every notification, and a replay can bring hundreds at
 * once) but bounded by what was written to it (ack_credit). Unknown ids, or
 * another user's, are the master's to ignore; without history none is sent. */
static int on_ack(client *c, int64_t id)
{
    worker *w = client_worker(c);
    if (c->ack_credit == 0) {
        log_info("closing UserID=%lld with 1008: more acks than notifications written to it",
                 (long long)c->user_id);
        ws_session_close(c, WS_CLOSE_POLICY, "ack flood");
        return -1;
    }
    c->ack_credit--;
    atomic_fetch_add_explicit(&w->stats->acks, 1, memory_order_relaxed);
    if (id > 0 && id <= STORE_MAX_ID)
        marks_put(w, c->user_id, id, STORE_ACKED, clock_realtime_ms());
    return 0;
}

/* A client text message (ws_message.h): ping → pong, ack, or an error. */
static int on_client_text(client *c, const uint8_t *data, size_t len)
{
    ws_message msg;
    if (ws_message_parse(data, len, &msg) != 0) {
        conn_abort(&c->io, "out of memory parsing a message");
        return -1;
    }
    if (msg.type == WS_MSG_ACK)
        return on_ack(c, msg.ack_id);
    if (!message_rate_ok(c))
        return -1;
    switch (msg.type) {
    case WS_MSG_PING:
        return reply(c, pong_json, sizeof pong_json - 1);
    case WS_MSG_BAD_ACK:
        return reply(c, bad_ack_json, sizeof bad_ack_json - 1);
    case WS_MSG_UNKNOWN:
        return reply(c, unknown_type_json, sizeof unknown_type_json - 1);
    default:
        return reply(c, invalid_json, sizeof invalid_json - 1);
    }
}

/* What one feed of bytes leaves to do once every frame in it was read. */
typedef struct {
    client *c;
    bool pong_due;
    uint8_t pong_len;
    uint8_t pong[WS_MAX_CONTROL_PAYLOAD];
} feed_ctx;

/* Pings and pongs: at most WS_SESSION_CONTROL_PER_SECOND in a fixed second
 * (they do not count as messages); a flood is closed with 1008. */
static bool control_rate_ok(client *c)
{
    worker *w = client_worker(c);
    if (w->loop.now - c->ctl_window >= 1000u) {
        c->ctl_window = w->loop.now;
        c->ctl_count = 0;
    }
    if (++c->ctl_count <= WS_SESSION_CONTROL_PER_SECOND)
        return true;
    log_info("closing UserID=%lld with 1008: more than %u ping/pong frames per second",
             (long long)c->user_id, WS_SESSION_CONTROL_PER_SECOND);
    ws_session_close(c, WS_CLOSE_POLICY, "control frame flood");
    return false;
}

static int on_ws_event(void *ctx, const ws_event *ev)
{
    feed_ctx *f = ctx;
    client *c = f->c;
    atomic_fetch_add_explicit(&client_worker(c)->stats->frames_in, 1, memory_order_relaxed);
    /* Text is rated once parsed: acks do not count (on_client_text). */
    if (ev->type == WS_EV_BINARY && !message_rate_ok(c))
        return 1;
    if ((ev->type == WS_EV_PING || ev->type == WS_EV_PONG) && !control_rate_ok(c))
        return 1;
    /* A due pong goes before any reply to a later message, keeping the order
     * the client sent them in; only pings in a row share one pong. */
    if (f->pong_due && (ev->type == WS_EV_TEXT || ev->type == WS_EV_BINARY)) {
        f->pong_due = false;
        if (ws_session_send(c, WS_OP_PONG, f->pong, f->pong_len) != 0)
            return 1;
    }
    switch (ev->type) {
    case WS_EV_TEXT:
        on_client_text(c, ev->data, ev->len);
        break;
    case WS_EV_BINARY:
        reply(c, binary_json, sizeof binary_json - 1);
        break;
    case WS_EV_PING:
        /* Answered once the whole read is parsed, for the latest ping only
         * (RFC 6455 5.5.3): a burst of pings costs one write, not one each. */
        f->pong_due = true;
        f->pong_len = (uint8_t)ev->len;
        memcpy(f->pong, ev->data, ev->len);
        break;
    case WS_EV_PONG:
        break;
    case WS_EV_CLOSE:
        /* Echo the client's code (RFC 6455 5.5.1); no code → empty close. */
        ws_session_close(c, ev->close_code, "");
        return 1;
    }
    return c->io.state == CONN_OPEN ? 0 : 1;
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

void ws_session_feed(client *c, uint8_t *data, size_t len)
{
    feed_ctx f = {.c = c};
    int rc = ws_reader_feed(&c->u.ws.reader, data, len, on_ws_event, &f);
    if (f.pong_due && c->io.state == CONN_OPEN)
        ws_session_send(c, WS_OP_PONG, f.pong, f.pong_len);
    if (rc > 0 && c->io.state == CONN_OPEN) {
        log_info("closing UserID=%lld with %d: %s", (long long)c->user_id, rc, close_reason(rc));
        ws_session_close(c, (uint16_t)rc, close_reason(rc));
    }
}

/* Bytes from the client: they keep the open list ordered by last activity,
 * which is what the silent-client sweep reads. */
static void on_ws_data(conn *io, uint8_t *data, size_t len)
{
    client *c = client_of(io);
    worker *w = client_worker(c);
    io->since = w->loop.now;
    conn_list_move(io, &w->open);
    ws_session_feed(c, data, len);
}

void ws_session_deliver(worker *w, const queue_msg *m)
{
    client *c = user_map_get(&w->users, m->user);
    if (c == NULL || c->generation != m->generation || c->io.state != CONN_OPEN) {
        atomic_fetch_add_explicit(&w->stats->queue_dropped, 1, memory_order_relaxed);
        log_debug("dropping a notification for UserID=%lld: connection gone",
                  (long long)m->user);
        return;
    }
    if (c->in_handover) {
        handover_item it = {.kind = m->type == QMSG_ROUTED ? HANDOVER_ROUTED : HANDOVER_LIVE,
                            .seq = m->seq, .id = m->id,
                            .accepted_ns = m->accepted_ns, .data = m->payload,
                            .len = m->payload_len};
        if (handover_take(c, &it))
            return;
    }
    ws_session_write_notification(c, m->payload, m->payload_len, m->id, m->seq,
                                  m->accepted_ns);
}

/* n frames of one broadcast written now: one latency, counted n times (a
 * clock read per session would cost more than the writes). */
static void observe_broadcast(worker *w, uint64_t accepted_ns, uint64_t n)
{
    struct timespec now;
    if (n == 0 || accepted_ns == 0 || clock_gettime(CLOCK_REALTIME, &now) != 0)
        return;
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    uint64_t ns = now_ns > accepted_ns ? now_ns - accepted_ns : 0;
    atomic_fetch_add_explicit(&w->stats->latency_bucket[counters_latency_bucket(ns)], n,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&w->stats->latency_sum_ns, ns * n, memory_order_relaxed);
}

void ws_session_broadcast(worker *w, const queue_msg *m)
{
    handover_item it = {.kind = HANDOVER_BROADCAST, .id = m->id, .accepted_ns = m->accepted_ns,
                        .data = m->payload, .len = m->payload_len};
    uint64_t written = 0;
    /* A write that fails takes only its own session off the list. */
    for (conn *io = w->open.head, *next; io != NULL; io = next) {
        next = io->next;
        client *c = client_of(io);
        if (c->in_handover && handover_take(c, &it))
            continue; /* written after its replay */
        if (ws_session_write_notification(c, m->payload, m->payload_len, m->id, 0, 0) == 0)
            written++;
    }
    observe_broadcast(w, m->accepted_ns, written);
}

void ws_session_evict(worker *w, int64_t user, uint64_t generation)
{
    client *c = user_map_get(&w->users, user);
    if (c == NULL || c->generation != generation || c->io.state != CONN_OPEN)
        return; /* already gone */
    evict(w, c);
}

int ws_session_send_evict(worker *w, int slot, int64_t user, uint64_t generation)
{
    queue_msg m = {.type = QMSG_EVICT, .user = user, .generation = generation};
    /* Never wait for a stuck worker: that would stall this loop. A lost EVICT
     * is repaired by the other worker itself, which checks its sessions
     * against the directory (at once when asked here, else in its slow pass). */
    if (queue_send(w->h.queue_out[slot], &m) != 0) {
        atomic_store_explicit(&w->shm.hdr->slot[slot].reconcile_requested, 1,
                              memory_order_release);
        log_warn("cannot queue the eviction of UserID=%lld to worker %d (%s): it will find "
                 "the newer connection in the directory",
                 (long long)user, slot, strerror(errno));
        return -1;
    }
    return 0;
}

/* A session the directory no longer names as its user's holder. */
static bool displaced(worker *w, const client *c)
{
    dir_holder h;
    return !directory_lookup(w->shm.dir, c->user_id, &h) || h.slot != w->h.slot ||
           h.epoch != w->epoch || h.generation != c->generation;
}

size_t ws_session_reconcile(worker *w, size_t *pos, size_t max)
{
    size_t evicted = 0;
    size_t checked = 0;
    void *batch[RECONCILE_CHUNK];
    while (checked < max) {
        size_t want = max - checked < RECONCILE_CHUNK ? max - checked : RECONCILE_CHUNK;
        /* Collected first: closing a session changes the map being walked. */
        size_t n = user_map_scan(&w->users, pos, want, batch);
        if (n == 0 && *pos == 0)
            n = user_map_scan(&w->users, pos, want, batch); /* the walk wrapped around */
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            client *c = batch[i];
            if (c->io.state == CONN_OPEN && displaced(w, c)) {
                log_info("UserID=%lld has a newer connection elsewhere (its eviction was lost)",
                         (long long)c->user_id);
                evict(w, c);
                evicted++;
            }
        }
        checked += n;
    }
    return evicted;
}
