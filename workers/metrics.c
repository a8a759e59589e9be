/* metrics.c — render GET /metrics (Prometheus text format 0.0.4) from the
 * counters of the shared region (shm/counters.h; see metrics.h).
 *
 * Counters are per worker slot and summed here, at scrape time, so a worker only
 * ever touches its own cache lines. Every family and every label value is always
 * written, zero or not, so a series never appears or vanishes between scrapes. */
#include "workers/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "shm/counters.h"
#include "src/common/auth.h"

/* ---- snapshot: every value summed over the slots, read once */

typedef struct {
    uint64_t accepted;
    uint64_t evictions;
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t queue_dropped;
    uint64_t restarts;
    uint64_t auth_failures[AUTH_RESULT_COUNT];
    uint64_t latency_bucket[REGION_LATENCY_BUCKETS];
    uint64_t latency_sum_ns;
    uint64_t replayed;
    uint64_t acks;
    uint64_t marks_lost;
} metrics_totals;

/* The labels of wsnotify_history_total, by history_counter (counters-t.h). */
static const char *const history_label[HISTORY_COUNTERS] = {
    [HISTORY_STORED] = "stored",       [HISTORY_DUPLICATES] = "duplicates",
    [HISTORY_TRIMMED] = "trimmed",     [HISTORY_EXPIRED] = "expired",
    [HISTORY_EVICTED] = "evicted",     [HISTORY_COMMIT_FAILED] = "commit_failed",
};

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void sum_slots(const region_header *hdr, metrics_totals *t)
{
    *t = (metrics_totals){0};
    for (uint32_t i = 0; i < hdr->slots && i < REGION_MAX_SLOTS; i++) {
        const region_slot *s = &hdr->slot[i];
        t->accepted += load(&s->accepted);
        t->evictions += load(&s->evictions);
        t->frames_in += load(&s->frames_in);
        t->frames_out += load(&s->frames_out);
        t->queue_dropped += load(&s->queue_dropped);
        t->restarts += load(&s->restarts);
        for (int r = 0; r < AUTH_RESULT_COUNT; r++)
            t->auth_failures[r] += load(&s->auth_failures[r]);
        for (unsigned b = 0; b < REGION_LATENCY_BUCKETS; b++)
            t->latency_bucket[b] += load(&s->latency_bucket[b]);
        t->latency_sum_ns += load(&s->latency_sum_ns);
        t->replayed += load(&s->replayed);
        t->acks += load(&s->acks);
        t->marks_lost += load(&s->marks_lost);
    }
}

/* ---- text output into a bounded buffer */

typedef struct {
    char *buf;
    size_t size;
    size_t len;
    bool overflow;
} text_out;

__attribute__((format(printf, 2, 3))) static void emit(text_out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->size - o->len) {
        o->overflow = true;
        return;
    }
    o->len += (size_t)n;
}

static void family(text_out *o, const char *name, const char *type, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(text_out *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, "counter", help);
    emit(o, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(text_out *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, "gauge", help);
    emit(o, "%s %llu\n", name, (unsigned long long)v);
}

static void render_connections(text_out *o, const region_header *hdr)
{
    family(o, "wsnotify_connections", "gauge",
           "Open WebSocket connections, per worker slot (sum them for the server).");
    for (uint32_t i = 0; i < hdr->slots && i < REGION_MAX_SLOTS; i++) {
        int64_t n = atomic_load_explicit(&hdr->slot[i].connections, memory_order_relaxed);
        emit(o, "wsnotify_connections{worker=\"%u\"} %lld\n", (unsigned)i,
             (long long)(n < 0 ? 0 : n));
    }
}

static void render_auth_failures(text_out *o, const metrics_totals *t)
{
    family(o, "wsnotify_auth_failures_total", "counter",
           "WebSocket upgrades refused with 401, by reason.");
    for (int r = AUTH_OK + 1; r < AUTH_RESULT_COUNT; r++)
        emit(o, "wsnotify_auth_failures_total{reason=\"%s\"} %llu\n",
             auth_result_reason((auth_result)r), (unsigned long long)t->auth_failures[r]);
}

static void render_notifications(text_out *o, const region_header *hdr)
{
    family(o, "wsnotify_notifications_total", "counter",
           "SendNotification calls, by outcome (exactly one outcome per call).");
    for (int k = 0; k < NOTIFY_OUTCOMES; k++)
        emit(o, "wsnotify_notifications_total{outcome=\"%s\"} %llu\n", counters_outcome_label[k],
             (unsigned long long)load(&hdr->notifications[k]));
}

static void render_frames(text_out *o, const metrics_totals *t)
{
    family(o, "wsnotify_frames_total", "counter",
           "WebSocket frames received from and sent to clients.");
    emit(o, "wsnotify_frames_total{direction=\"in\"} %llu\n", (unsigned long long)t->frames_in);
    emit(o, "wsnotify_frames_total{direction=\"out\"} %llu\n",
         (unsigned long long)t->frames_out);
}

/* A histogram from per-bucket (not cumulative) counts, the last one being
 * everything over the largest bound. _count is the sum of the buckets read,
 * not a separate counter, so the +Inf bucket equals _count in every scrape
 * even while they are being counted. */
static void histogram(text_out *o, const char *name, const char *help,
                      const uint64_t bucket[COUNTERS_LATENCY_BUCKETS], uint64_t sum_ns)
{
    family(o, name, "histogram", help);
    uint64_t cumulative = 0;
    for (unsigned b = 0; b < COUNTERS_LATENCY_BOUNDS; b++) {
        cumulative += bucket[b];
        emit(o, "%s_bucket{le=\"%s\"} %llu\n", name, counters_latency_bounds[b].le,
             (unsigned long long)cumulative);
    }
    cumulative += bucket[COUNTERS_LATENCY_BOUNDS];
    emit(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    emit(o, "%s_sum %llu.%09llu\n", name, (unsigned long long)(sum_ns / 1000000000u),
         (unsigned long long)(sum_ns % 1000000000u));
    emit(o, "%s_count %llu\n", name, (unsigned long long)cumulative);
}

static void render_latency(text_out *o, const metrics_totals *t)
{
    histogram(o, "wsnotify_delivery_latency_seconds",
              "Time from the gRPC call's acceptance to the notification frame being written "
              "to the client's socket.",
              t->latency_bucket, t->latency_sum_ns);
}

static void render_history(text_out *o, const region_header *hdr, const metrics_totals *t)
{
    family(o, "wsnotify_history_total", "counter",
           "What happened to stored notifications: committed (stored), caller-id retries "
           "not stored again (duplicates), dropped past --history-size (trimmed), past "
           "--history-ttl (expired), or because the store was full (evicted), and batches "
           "the store could not commit (commit_failed).");
    for (int k = 0; k < HISTORY_COUNTERS; k++)
        emit(o, "wsnotify_history_total{event=\"%s\"} %llu\n", history_label[k],
             (unsigned long long)load(&hdr->history[k]));
    counter(o, "wsnotify_replayed_total",
            "Stored notifications written again to a connecting client (resume with last_id, "
            "or the ones never sent).",
            t->replayed);
    counter(o, "wsnotify_acks_total", "Acks received from clients.", t->acks);
    counter(o, "wsnotify_marks_lost_total",
            "SENT/ACKED reports that workers dropped because the master's queue was full.",
            t->marks_lost);
    gauge(o, "wsnotify_store_bytes", "Bytes of the history store in use.",
          load(&hdr->store_bytes));
    gauge(o, "wsnotify_store_entries", "Notifications in the history store.",
          load(&hdr->store_entries));
    gauge(o, "wsnotify_ack_waiters", "SendNotification calls waiting for an ack (wait_ack_ms).",
          load(&hdr->ack_waiters));
    uint64_t bucket[COUNTERS_LATENCY_BUCKETS];
    for (unsigned b = 0; b < COUNTERS_LATENCY_BUCKETS; b++)
        bucket[b] = load(&hdr->commit_bucket[b]);
    histogram(o, "wsnotify_store_commit_seconds",
              "Time one group commit of the history store took (write and sync).", bucket,
              load(&hdr->commit_sum_ns));
}

/* Cluster mode (README "Cluster"): this node's name, its connections to
 * Redis (the master's; and each worker's own link), and the traffic between
 * the nodes. */
static void render_cluster(text_out *o, const region_header *hdr, const char *node_id)
{
    family(o, "wsnotify_node_info", "gauge", "This node's --node-id (always 1).");
    emit(o, "wsnotify_node_info{node=\"%s\"} 1\n", node_id);
    uint32_t links_up = 1;
    for (uint32_t i = 0; i < hdr->slots && i < REGION_MAX_SLOTS; i++)
        if (atomic_load_explicit(&hdr->slot[i].ready, memory_order_relaxed) != 0 &&
            atomic_load_explicit(&hdr->slot[i].redis_up, memory_order_relaxed) == 0)
            links_up = 0;
    uint32_t up = atomic_load_explicit(&hdr->redis_up, memory_order_relaxed) != 0 && links_up;
    gauge(o, "wsnotify_redis_up",
          "1 while the master's connections to Redis and every worker's link are up.", up);
    counter(o, "wsnotify_redis_reconnects_total",
            "Times the master's connections to Redis came back after a loss.",
            load(&hdr->redis_reconnects));
    family(o, "wsnotify_redis_pubsub_lag_seconds", "gauge",
           "Trip of this node's last ping (once a second) through Redis pub/sub.");
    emit(o, "wsnotify_redis_pubsub_lag_seconds %.6f\n",
         (double)load(&hdr->pubsub_lag_ns) / 1e9);
    counter(o, "wsnotify_cluster_forwarded_total",
            "Notifications handed to the node holding their user.",
            load(&hdr->cluster_forwarded));
    counter(o, "wsnotify_cluster_received_total",
            "Notifications from other nodes queued to a worker of this node.",
            load(&hdr->cluster_received));
}

size_t metrics_render(const shm_region *r, const char *node_id, char *out, size_t out_size)
{
    const region_header *hdr = r->hdr;
    metrics_totals t;
    sum_slots(hdr, &t);
    text_out o = {.buf = out, .size = out_size};
    if (out_size == 0)
        return 0;
    render_connections(&o, hdr);
    counter(&o, "wsnotify_connections_accepted_total", "WebSocket upgrades completed.",
            t.accepted);
    render_auth_failures(&o, &t);
    counter(&o, "wsnotify_evictions_total",
            "Connections closed with 4000 because their user connected again.", t.evictions);
    render_notifications(&o, hdr);
    counter(&o, "wsnotify_queue_dropped_total",
            "Notifications counted as delivered whose connection had closed by the time "
            "its worker read them, so they were never written.",
            t.queue_dropped);
    render_frames(&o, &t);
    counter(&o, "wsnotify_worker_restarts_total", "Worker processes started again after dying.",
            t.restarts);
    render_latency(&o, &t);
    render_history(&o, hdr, &t);
    if (node_id != NULL)
        render_cluster(&o, hdr, node_id);
    return o.overflow ? 0 : o.len;
}
