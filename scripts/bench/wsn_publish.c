/* wsn_publish.c — notification publisher for the wsnotify benchmark.
 *
 * gRPC mode (gRPC core C API + protobuf-c): one completion queue, --channels
 * channels used round-robin, --in-flight calls outstanding, each with a
 * deadline; unary SendNotification (--batch 1) or SendNotifications with B
 * requests per call. nchan mode (--nchan-url, libevent evhttp): HTTP POST of
 * the message body over a few keep-alive connections, same window and rate.
 *
 * Each message starts with t=<CLOCK_MONOTONIC ns> (so wsn_load, on the same
 * host, can measure delivery latency), n=<sequence number> and u=<user id>,
 * padded with 'x' to --message-bytes.
 *
 * --rate R schedules the k-th call at t0 + k*B/R: when the window is full the
 * backlog is sent as soon as slots free up and the call latency is measured
 * from the scheduled time (no coordinated omission); send_lag_us shows how far
 * behind schedule the sends were.
 *
 * Not part of the daemon; built as a noinst program for scripts/bench. */
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/notification.pb-c.h"
#include "scripts/bench/bench_common.h"

#define PROG "wsn_publish"
#define MAX_WAIT_FILES 64
#define MAX_CHANNELS 64
#define NS_PER_S 1000000000LL

static const char *const status_names[] = {
    "OK",        "CANCELLED",          "UNKNOWN",   "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS",     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
    "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

typedef struct {
    bool busy;
    int n;           /* notifications in this call */
    int64_t t_sched; /* scheduled send time (rate mode), else = t_start */
    int64_t t_start;
    int64_t *users;
    int64_t *seqs;
    char **msgs;
    size_t *msg_lens;
    Notification__SendNotificationRequest *reqs;
    Notification__SendNotificationRequest **req_ptrs;
    /* gRPC */
    grpc_call *call;
    grpc_byte_buffer *req_bb;
    grpc_byte_buffer *resp_bb;
    grpc_metadata_array imd;
    grpc_metadata_array tmd;
    grpc_status_code status;
    grpc_slice details;
} slot;

static struct {
    /* options */
    const char *server;
    int64_t user_lo, user_hi;
    int64_t window;
    double rate;
    double duration;
    int64_t count;
    int64_t batch;
    const char *title;
    const char *type;
    const char *link;
    int64_t message_bytes;
    const char *record_path;
    const char *stats_file;
    const char *nchan_url;
    const char *wait_files[MAX_WAIT_FILES];
    int nwait;
    double wait_timeout;
    int64_t channels;
    int64_t deadline_ms;
    bool stamp_scheduled;
    bool no_push;
    int64_t wait_ack_ms;
    int64_t caller_id_base;
    uint64_t seed;
    bool quiet;
    bool broadcast;

    /* nchan target */
    char nchan_host[256];
    int nchan_port;
    char nchan_path[1024];

    /* state */
    slot *slots;
    int64_t *free_list;
    int64_t nfree;
    size_t msg_cap;
    uint64_t rng;
    int64_t t0;
    int64_t t_last_done;
    int64_t t_stop_sending;
    int64_t calls_launched; /* call index k */
    int64_t notifs_launched;
    int64_t inflight;
    int64_t max_backlog;
    bool stopping;
    FILE *rec;

    /* gRPC */
    grpc_channel *ch[MAX_CHANNELS];
    grpc_completion_queue *cq;
    grpc_slice method;
    int next_ch;

    /* nchan */
    struct event_base *base;
    struct evhttp_connection *http[MAX_CHANNELS];
    struct event *tick;
    struct event *sigs[2];

    /* stats */
    uint64_t calls_done;
    uint64_t start_errors;
    uint64_t answered, delivered, not_delivered, duplicate, acked, failed_notifs;
    uint64_t result_mismatch;
    uint64_t recipients; /* --broadcast: sum of BroadcastResponse.recipients */
    bench_counters status;
    bench_hist call_lat;
    bench_hist send_lag;
} g;

static volatile sig_atomic_t g_signalled;

/* gRPC mode runs two threads: the main one sends (sleeping until each
 * scheduled time with clock_nanosleep), cq_thread blocks in
 * grpc_completion_queue_next and handles the answers. g_mu guards the slots
 * and every counter both touch. nchan mode is one libevent thread. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv; /* a slot was freed (CLOCK_MONOTONIC) */

static void on_signal(int sig)
{
    g_signalled = sig;
}

/* ---------------------------------------------------------------- common */

static slot *slot_get(void)
{
    if (g.nfree == 0)
        return NULL;
    slot *s = &g.slots[g.free_list[--g.nfree]];
    s->busy = true;
    g.inflight++;
    return s;
}

static void slot_put(slot *s)
{
    s->busy = false;
    g.free_list[g.nfree++] = s - g.slots;
    g.inflight--;
}

/* Fill the slot's n messages; users uniform in [lo, hi]. */
static void fill_messages(slot *s, int n, int64_t stamp)
{
    s->n = n;
    uint64_t span = (uint64_t)(g.user_hi - g.user_lo) + 1;
    for (int i = 0; i < n; i++) {
        int64_t user = g.user_lo + (int64_t)bench_rand_below(&g.rng, span);
        int64_t seq = ++g.notifs_launched;
        s->users[i] = user;
        s->seqs[i] = seq;
        char *m = s->msgs[i];
        int len = snprintf(m, g.msg_cap, "t=%" PRId64 " n=%" PRId64 " u=%" PRId64 " ", stamp, seq,
                           user);
        size_t l = (size_t)len;
        if ((int64_t)l < g.message_bytes) {
            memset(m + l, 'x', (size_t)g.message_bytes - l);
            l = (size_t)g.message_bytes;
        }
        m[l] = '\0';
        s->msg_lens[i] = l;
    }
}

static void record_line(int64_t user, int64_t id, bool delivered)
{
    if (g.rec != NULL)
        fprintf(g.rec, "%" PRId64 " %" PRId64 " %d\n", user, id, delivered ? 1 : 0);
}

/* Call latency and counters for a finished call. */
static void account_call(slot *s, int64_t now, const char *status)
{
    g.calls_done++;
    g.t_last_done = now;
    bench_counters_add(&g.status, status, 1);
    bench_hist_add(&g.call_lat, now - s->t_sched);
}

/* Scheduled time of call k in rate mode. */
static int64_t sched_of(int64_t k)
{
    return g.t0 + (int64_t)((double)k * (double)g.batch * 1e9 / g.rate);
}

/* Rate mode, window full: how many calls are due but not sent. */
static void note_backlog(int64_t now)
{
    if (g.rate <= 0)
        return;
    int64_t due = (int64_t)((double)(now - g.t0) * g.rate / ((double)g.batch * 1e9)) + 1 -
                  g.calls_launched;
    if (due > g.max_backlog)
        g.max_backlog = due;
}

/* Whether sending should end now; sets g.stopping. */
static void check_end(int64_t now)
{
    if (g.stopping)
        return;
    if (g_signalled) {
        if (!g.quiet)
            fprintf(stderr, PROG ": signal %d, draining\n", (int)g_signalled);
        g.stopping = true;
    } else if (g.count > 0 && g.notifs_launched >= g.count) {
        g.stopping = true;
    } else if (g.duration > 0) {
        /* Rate mode: every call scheduled before the end is sent, late or not
         * (bounded by one deadline past the end). */
        int64_t end = g.t0 + (int64_t)(g.duration * 1e9);
        if (g.rate > 0 ? sched_of(g.calls_launched) >= end ||
                             now >= end + g.deadline_ms * 1000000LL
                       : now >= end)
            g.stopping = true;
    }
    if (g.stopping)
        g.t_stop_sending = now;
}

/* Notifications in the next call (the last call of --count may be short). */
static int next_call_size(void)
{
    int64_t n = g.batch;
    if (g.count > 0 && g.count - g.notifs_launched < n)
        n = g.count - g.notifs_launched;
    return (int)n;
}

/* ---------------------------------------------------------------- gRPC */

static grpc_byte_buffer *pack_message(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice sl = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(sl));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

static ProtobufCMessage *unpack_message(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return m;
}

static void grpc_launch(slot *s, int n, int64_t t_sched)
{
    int64_t now = bench_mono_ns();
    s->t_start = now;
    s->t_sched = t_sched;
    if (g.rate > 0)
        bench_hist_add(&g.send_lag, now - t_sched);
    fill_messages(s, n, g.stamp_scheduled ? t_sched : now);
    for (int i = 0; i < n; i++) {
        Notification__SendNotificationRequest *r = &s->reqs[i];
        notification__send_notification_request__init(r);
        r->user_id = s->users[i];
        r->type = (char *)g.type;
        r->title = (char *)g.title;
        r->message = s->msgs[i];
        r->link = (char *)g.link;
        r->send_push = !g.no_push;
        r->wait_ack_ms = (int32_t)g.wait_ack_ms;
        if (g.caller_id_base > 0)
            r->id = g.caller_id_base + s->seqs[i];
        s->req_ptrs[i] = r;
    }
    if (g.broadcast) {
        Notification__BroadcastRequest br = NOTIFICATION__BROADCAST_REQUEST__INIT;
        br.type = (char *)g.type;
        br.title = (char *)g.title;
        br.message = s->msgs[0];
        br.link = (char *)g.link;
        s->req_bb = pack_message(&br.base);
    } else if (g.batch > 1) {
        Notification__SendNotificationsRequest br = NOTIFICATION__SEND_NOTIFICATIONS_REQUEST__INIT;
        br.n_notifications = (size_t)n;
        br.notifications = s->req_ptrs;
        s->req_bb = pack_message(&br.base);
    } else {
        s->req_bb = pack_message(&s->reqs[0].base);
    }
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(g.deadline_ms, GPR_TIMESPAN));
    grpc_channel *ch = g.ch[g.next_ch];
    g.next_ch = (g.next_ch + 1) % (int)g.channels;
    s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, g.cq, g.method, NULL,
                                       deadline, NULL);
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    s->resp_bb = NULL;
    s->status = GRPC_STATUS_UNKNOWN;
    s->details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->resp_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->tmd;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    grpc_call_error err = s->call ? grpc_call_start_batch(s->call, ops, 6, s, NULL)
                                  : GRPC_CALL_ERROR;
    if (err != GRPC_CALL_OK) {
        pthread_mutex_lock(&g_mu);
        g.start_errors++;
        g.failed_notifs += (uint64_t)n;
        account_call(s, bench_mono_ns(), "START_BATCH_ERROR");
        if (s->call)
            grpc_call_unref(s->call);
        s->call = NULL;
        grpc_byte_buffer_destroy(s->req_bb);
        grpc_metadata_array_destroy(&s->imd);
        grpc_metadata_array_destroy(&s->tmd);
        slot_put(s);
        pthread_mutex_unlock(&g_mu);
    }
}

static void answer(slot *s, int i, const Notification__SendNotificationResponse *r)
{
    g.answered++;
    if (r->delivered)
        g.delivered++;
    else
        g.not_delivered++;
    if (r->duplicate)
        g.duplicate++;
    if (r->acked)
        g.acked++;
    record_line(s->users[i], r->notification_id, r->delivered);
}

static void grpc_complete(slot *s, bool success)
{
    int64_t now = bench_mono_ns();
    const char *name;
    if (!success)
        name = "BATCH_FAILED";
    else if ((unsigned)s->status < sizeof status_names / sizeof status_names[0])
        name = status_names[s->status];
    else
        name = "UNKNOWN_CODE";
    account_call(s, now, name);
    if (success && s->status == GRPC_STATUS_OK) {
        if (g.broadcast) {
            Notification__BroadcastResponse *r = (Notification__BroadcastResponse *)unpack_message(
                &notification__broadcast_response__descriptor, s->resp_bb);
            if (r == NULL) {
                g.failed_notifs++;
                bench_counters_add(&g.status, "BAD_RESPONSE", 1);
            } else {
                g.answered++;
                if (r->recipients > 0)
                    g.delivered++;
                else
                    g.not_delivered++;
                g.recipients += (uint64_t)r->recipients;
                record_line(0, r->notification_id, r->recipients > 0);
                protobuf_c_message_free_unpacked(&r->base, NULL);
            }
        } else if (g.batch > 1) {
            Notification__SendNotificationsResponse *r = (Notification__SendNotificationsResponse *)
                unpack_message(&notification__send_notifications_response__descriptor, s->resp_bb);
            if (r == NULL) {
                g.failed_notifs += (uint64_t)s->n;
                bench_counters_add(&g.status, "BAD_RESPONSE", 1);
            } else {
                if ((int)r->n_results != s->n)
                    g.result_mismatch++;
                int m = (int)r->n_results < s->n ? (int)r->n_results : s->n;
                for (int i = 0; i < m; i++)
                    answer(s, i, r->results[i]);
                g.failed_notifs += (uint64_t)(s->n - m);
                protobuf_c_message_free_unpacked(&r->base, NULL);
            }
        } else {
            Notification__SendNotificationResponse *r = (Notification__SendNotificationResponse *)
                unpack_message(&notification__send_notification_response__descriptor, s->resp_bb);
            if (r == NULL) {
                g.failed_notifs++;
                bench_counters_add(&g.status, "BAD_RESPONSE", 1);
            } else {
                answer(s, 0, r);
                protobuf_c_message_free_unpacked(&r->base, NULL);
            }
        }
    } else {
        g.failed_notifs += (uint64_t)s->n;
        static int shown;
        if (success && !g.quiet && shown++ < 3) {
            /* The first few failures verbatim, to see why. */
            fprintf(stderr, PROG ": call failed: %s: %.*s\n", name,
                    (int)GRPC_SLICE_LENGTH(s->details), (const char *)GRPC_SLICE_START_PTR(s->details));
        }
    }
    if (s->resp_bb)
        grpc_byte_buffer_destroy(s->resp_bb);
    grpc_byte_buffer_destroy(s->req_bb);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    grpc_call_unref(s->call);
    s->call = NULL;
    s->resp_bb = s->req_bb = NULL;
    slot_put(s);
}

static void *cq_thread(void *arg)
{
    (void)arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(g.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE || ev.tag == NULL)
            continue;
        pthread_mutex_lock(&g_mu);
        grpc_complete((slot *)ev.tag, ev.success != 0);
        pthread_cond_signal(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

static struct timespec mono_ts(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / NS_PER_S), (long)(ns % NS_PER_S)};
    return ts;
}

/* Wait on g_cv (g_mu held) for at most ns. */
static void cv_wait_ns(int64_t ns)
{
    struct timespec ts = mono_ts(bench_mono_ns() + ns);
    pthread_cond_timedwait(&g_cv, &g_mu, &ts);
}

static int run_grpc(void)
{
    pthread_condattr_t ca_attr;
    pthread_condattr_init(&ca_attr);
    pthread_condattr_setclock(&ca_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cv, &ca_attr);
    pthread_condattr_destroy(&ca_attr);
    grpc_init();
    g.cq = grpc_completion_queue_create_for_next(NULL);
    g.method = grpc_slice_from_static_string(
        g.broadcast   ? "/notification.NotificationService/Broadcast"
        : g.batch > 1 ? "/notification.NotificationService/SendNotifications"
                      : "/notification.NotificationService/SendNotification");
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    for (int i = 0; i < g.channels; i++) {
        /* A local subchannel pool and a distinct arg per channel: one TCP connection each. */
        grpc_arg args[3];
        args[0].type = GRPC_ARG_INTEGER;
        args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
        args[0].value.integer = 1;
        args[1].type = GRPC_ARG_INTEGER;
        args[1].key = (char *)GRPC_ARG_ENABLE_HTTP_PROXY;
        args[1].value.integer = 0;
        args[2].type = GRPC_ARG_INTEGER;
        args[2].key = (char *)"wsn_publish.channel_index";
        args[2].value.integer = i;
        grpc_channel_args ca = {3, args};
        g.ch[i] = grpc_channel_create(g.server, creds, &ca);
    }
    grpc_channel_credentials_release(creds);

    /* Wait (bounded) for the channels to connect, so start-up is not measured. */
    int64_t connect_deadline = bench_mono_ns() + 10 * NS_PER_S;
    for (int i = 0; i < g.channels; i++) {
        for (;;) {
            grpc_connectivity_state st = grpc_channel_check_connectivity_state(g.ch[i], 1);
            if (st == GRPC_CHANNEL_READY || st == GRPC_CHANNEL_TRANSIENT_FAILURE ||
                st == GRPC_CHANNEL_SHUTDOWN || bench_mono_ns() > connect_deadline || g_signalled)
                break;
            grpc_channel_watch_connectivity_state(
                g.ch[i], st,
                gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(200, GPR_TIMESPAN)),
                g.cq, NULL);
            grpc_completion_queue_next(g.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        }
        if (grpc_channel_check_connectivity_state(g.ch[i], 0) != GRPC_CHANNEL_READY && !g.quiet)
            fprintf(stderr, PROG ": warning: channel %d to %s is not ready\n", i, g.server);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, cq_thread, NULL) != 0) {
        fprintf(stderr, PROG ": cannot start the completion thread\n");
        return 1;
    }

    pthread_mutex_lock(&g_mu);
    g.t0 = bench_mono_ns();
    for (;;) {
        int64_t now = bench_mono_ns();
        check_end(now);
        if (g.stopping)
            break;
        int64_t t_sched = now;
        if (g.rate > 0) {
            t_sched = sched_of(g.calls_launched);
            if (t_sched > now) {
                /* At most 50 ms at a time, to notice signals. */
                int64_t until = t_sched - now > 50000000 ? now + 50000000 : t_sched;
                struct timespec ts = mono_ts(until);
                pthread_mutex_unlock(&g_mu);
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
                pthread_mutex_lock(&g_mu);
                continue;
            }
        }
        slot *s = slot_get();
        if (s == NULL) {
            note_backlog(now);
            cv_wait_ns(50000000);
            continue;
        }
        int n = next_call_size();
        g.calls_launched++;
        pthread_mutex_unlock(&g_mu);
        grpc_launch(s, n, t_sched);
        pthread_mutex_lock(&g_mu);
    }
    /* Drain: every call has its deadline; cancel what is still there after it. */
    int64_t guard = bench_mono_ns() + (g.deadline_ms + 3000) * 1000000LL;
    bool cancelled = false;
    while (g.inflight > 0) {
        cv_wait_ns(50000000);
        if (!cancelled && bench_mono_ns() > guard) {
            for (int64_t i = 0; i < g.window; i++)
                if (g.slots[i].busy && g.slots[i].call)
                    grpc_call_cancel(g.slots[i].call, NULL);
            cancelled = true;
            guard = bench_mono_ns() + 5 * NS_PER_S;
        } else if (cancelled && bench_mono_ns() > guard) {
            fprintf(stderr, PROG ": %" PRId64 " calls never completed\n", g.inflight);
            break;
        }
    }
    pthread_mutex_unlock(&g_mu);
    grpc_completion_queue_shutdown(g.cq);
    pthread_join(th, NULL);
    grpc_completion_queue_destroy(g.cq);
    for (int i = 0; i < g.channels; i++)
        grpc_channel_destroy(g.ch[i]);
    grpc_shutdown();
    pthread_cond_destroy(&g_cv);
    return 0;
}

/* ---------------------------------------------------------------- nchan */

static void nchan_pump(void);

static void nchan_done(struct evhttp_request *req, void *arg)
{
    slot *s = arg;
    int64_t now = bench_mono_ns();
    int code = req ? evhttp_request_get_response_code(req) : 0;
    char name[32];
    if (code == 0)
        snprintf(name, sizeof name, "connection_error");
    else
        snprintf(name, sizeof name, "http_%d", code);
    account_call(s, now, name);
    if (code >= 200 && code < 300) {
        /* nchan: 201 Created = published to subscribers (at least one), 202
         * Accepted = stored, nobody subscribed. */
        Notification__SendNotificationResponse r = NOTIFICATION__SEND_NOTIFICATION_RESPONSE__INIT;
        r.notification_id = s->seqs[0];
        r.delivered = code == 201;
        answer(s, 0, &r);
    } else {
        g.failed_notifs += (uint64_t)s->n;
    }
    slot_put(s);
    nchan_pump();
}

static int nchan_launch(slot *s, int64_t t_sched)
{
    int64_t now = bench_mono_ns();
    s->t_start = now;
    s->t_sched = t_sched;
    if (g.rate > 0)
        bench_hist_add(&g.send_lag, now - t_sched);
    fill_messages(s, 1, g.stamp_scheduled ? t_sched : now);
    char uid[32];
    char path[1100];
    snprintf(uid, sizeof uid, "%" PRId64, s->users[0]);
    if (bench_subst(g.nchan_path, "%lld", uid, path, sizeof path) < 0)
        return -1;
    struct evhttp_request *req = evhttp_request_new(nchan_done, s);
    if (req == NULL)
        return -1;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char hostport[300];
    snprintf(hostport, sizeof hostport, "%s:%d", g.nchan_host, g.nchan_port);
    evhttp_add_header(h, "Host", hostport);
    evhttp_add_header(h, "Content-Type", "text/plain");
    evbuffer_add(evhttp_request_get_output_buffer(req), s->msgs[0], s->msg_lens[0]);
    struct evhttp_connection *conn = g.http[g.next_ch];
    g.next_ch = (g.next_ch + 1) % (int)g.channels;
    if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, path) != 0)
        return -1; /* libevent freed req */
    return 0;
}

static void nchan_arm_tick(int64_t wait_ns)
{
    struct timeval tv = {(time_t)(wait_ns / NS_PER_S), (suseconds_t)(wait_ns % NS_PER_S / 1000)};
    evtimer_add(g.tick, &tv);
}

static void nchan_pump(void)
{
    int64_t now = bench_mono_ns();
    check_end(now);
    while (!g.stopping) {
        int64_t t_sched = now;
        if (g.rate > 0) {
            t_sched = sched_of(g.calls_launched);
            if (t_sched > now)
                break;
        }
        slot *s = slot_get();
        if (s == NULL) {
            note_backlog(now);
            break;
        }
        g.calls_launched++;
        if (nchan_launch(s, t_sched) != 0) {
            g.start_errors++;
            g.failed_notifs++;
            account_call(s, bench_mono_ns(), "request_error");
            slot_put(s);
        }
        check_end(now);
    }
    if (g.stopping && g.inflight == 0) {
        event_base_loopbreak(g.base);
        return;
    }
    int64_t wait_ns = 50000000;
    if (!g.stopping && g.rate > 0 && g.nfree > 0) {
        int64_t until = sched_of(g.calls_launched) - bench_mono_ns();
        if (until < wait_ns)
            wait_ns = until > 0 ? until : 0;
    }
    if (g.stopping) {
        /* Draining: the per-request timeout ends stuck requests; guard anyway. */
        int64_t left = g.t_stop_sending + (g.deadline_ms + 3000) * 1000000LL - now;
        if (left <= 0) {
            event_base_loopbreak(g.base);
            return;
        }
    }
    nchan_arm_tick(wait_ns);
}

static void nchan_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    nchan_pump();
}

static void nchan_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    g_signalled = (int)sig;
    nchan_pump();
}

static bool parse_nchan_url(const char *url)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0)
        return false;
    p += 7;
    const char *slash = strchr(p, '/');
    if (slash == NULL)
        return false;
    const char *colon = memchr(p, ':', (size_t)(slash - p));
    const char *host_end = colon ? colon : slash;
    size_t hl = (size_t)(host_end - p);
    if (hl == 0 || hl >= sizeof g.nchan_host)
        return false;
    memcpy(g.nchan_host, p, hl);
    g.nchan_host[hl] = '\0';
    g.nchan_port = 80;
    if (colon) {
        char port[8];
        size_t pl = (size_t)(slash - colon - 1);
        int64_t v;
        if (pl == 0 || pl >= sizeof port)
            return false;
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
        if (!bench_parse_i64(port, 1, 65535, &v))
            return false;
        g.nchan_port = (int)v;
    }
    if (strlen(slash) >= sizeof g.nchan_path)
        return false;
    strcpy(g.nchan_path, slash);
    return bench_template_check(g.nchan_path, "%lld") == 1;
}

static int run_nchan(void)
{
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    g.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (g.base == NULL) {
        fprintf(stderr, PROG ": event_base_new failed\n");
        return 1;
    }
    for (int i = 0; i < g.channels; i++) {
        g.http[i] = evhttp_connection_base_new(g.base, NULL, g.nchan_host, (uint16_t)g.nchan_port);
        if (g.http[i] == NULL) {
            fprintf(stderr, PROG ": cannot create an HTTP connection\n");
            return 1;
        }
        struct timeval tv = {(time_t)(g.deadline_ms / 1000), (suseconds_t)(g.deadline_ms % 1000 * 1000)};
        evhttp_connection_set_timeout_tv(g.http[i], &tv);
        evhttp_connection_set_retries(g.http[i], 0);
    }
    g.tick = evtimer_new(g.base, nchan_on_tick, NULL);
    g.sigs[0] = evsignal_new(g.base, SIGINT, nchan_on_signal, NULL);
    g.sigs[1] = evsignal_new(g.base, SIGTERM, nchan_on_signal, NULL);
    evsignal_add(g.sigs[0], NULL);
    evsignal_add(g.sigs[1], NULL);
    g.t0 = bench_mono_ns();
    nchan_pump();
    event_base_dispatch(g.base);
    if (g.inflight > 0)
        bench_counters_add(&g.status, "abandoned", (uint64_t)g.inflight);
    for (int i = 0; i < g.channels; i++)
        evhttp_connection_free(g.http[i]);
    event_free(g.tick);
    event_free(g.sigs[0]);
    event_free(g.sigs[1]);
    event_base_free(g.base);
    return 0;
}

/* ---------------------------------------------------------------- stats */

static void stats_json(bench_buf *b)
{
    int64_t end = g.t_last_done > g.t0 ? g.t_last_done : bench_mono_ns();
    double elapsed = (double)(end - g.t0) / 1e9;
    double send_s = (double)((g.t_stop_sending ? g.t_stop_sending : end) - g.t0) / 1e9;
    const char *mode = g.nchan_url     ? "nchan"
                       : g.broadcast ? "grpc_broadcast"
                       : g.batch > 1 ? "grpc_batch"
                                     : "grpc_unary";
    bench_buf_printf(b, "{\"program\":\"wsn_publish\",\"pid\":%ld,\"mode\":\"%s\",\"target\":",
                     (long)getpid(), mode);
    bench_buf_json_str(b, g.nchan_url ? g.nchan_url : g.server);
    bench_buf_printf(b,
                     ",\"rate_target\":%.1f,\"in_flight\":%" PRId64 ",\"batch\":%" PRId64
                     ",\"channels\":%" PRId64 ",\"message_bytes\":%" PRId64
                     ",\"users\":[%" PRId64 ",%" PRId64 "],\"elapsed_s\":%.3f,\"sending_s\":%.3f,",
                     g.rate, g.window, g.batch, g.channels, g.message_bytes, g.user_lo, g.user_hi,
                     elapsed, send_s);
    bench_buf_printf(b, "\"calls\":{\"started\":%" PRId64 ",\"completed\":%" PRIu64
                        ",\"start_errors\":%" PRIu64 ",\"max_backlog\":%" PRId64 ",\"status\":",
                     g.calls_launched, g.calls_done, g.start_errors, g.max_backlog);
    bench_buf_counters_json(b, &g.status);
    bench_buf_printf(b,
                     "},\"notifications\":{\"sent\":%" PRId64 ",\"answered\":%" PRIu64
                     ",\"delivered\":%" PRIu64 ",\"not_delivered\":%" PRIu64
                     ",\"duplicate\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64
                     ",\"result_count_mismatch\":%" PRIu64 "},",
                     g.notifs_launched, g.answered, g.delivered, g.not_delivered, g.duplicate,
                     g.acked, g.failed_notifs, g.result_mismatch);
    bench_buf_printf(b, "\"rate\":{\"answered_per_s\":%.1f,\"delivered_per_s\":%.1f,"
                        "\"calls_per_s\":%.1f},",
                     elapsed > 0 ? (double)g.answered / elapsed : 0.0,
                     elapsed > 0 ? (double)g.delivered / elapsed : 0.0,
                     elapsed > 0 ? (double)g.calls_done / elapsed : 0.0);
    bench_buf_add(b, "\"call_latency_us\":", 18);
    bench_buf_hist_json(b, &g.call_lat);
    bench_buf_add(b, ",\"send_lag_us\":", 15);
    bench_buf_hist_json(b, &g.send_lag);
    /* CLOCK_MONOTONIC of the first send and of the last answer, for a driver
     * that compares them with wsn_load's receive times. */
    bench_buf_printf(b,
                     ",\"t0_mono_ns\":%" PRId64 ",\"t_last_done_mono_ns\":%" PRId64
                     ",\"broadcast_recipients\":%" PRIu64 ",\"rss_kb\":%ld}\n",
                     g.t0, g.t_last_done, g.recipients, bench_rss_kb());
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " [options]\n"
            "Publishes notifications to wsnotifyd over gRPC (or to nginx+nchan over HTTP)\n"
            "with t=<CLOCK_MONOTONIC ns> in each message, for wsn_load to time delivery.\n\n"
            "  --server HOST:PORT     gRPC target (127.0.0.1:50056)\n"
            "  --users A-B            recipient user ids, uniform at random (1-1000)\n"
            "  --in-flight W          calls outstanding (64)\n"
            "  --rate R               notifications per second, 0 = as fast as possible (0)\n"
            "  --duration S           send for S seconds (10 unless --count)\n"
            "  --count N              send N notifications, then stop\n"
            "  --batch B              B > 1: SendNotifications with B requests per call (1)\n"
            "  --broadcast            Broadcast calls instead (every open connection gets\n"
            "                         the message; --count 1 unless --count or --duration);\n"
            "                         the stats sum the answers' recipients\n"
            "  --channels C           gRPC channels (1) / HTTP connections with --nchan-url (4)\n"
            "  --deadline-ms MS       per-call deadline (5000)\n"
            "  --title T, --type T, --link L   notification fields (Benchmark, bench, \"\")\n"
            "  --message-bytes M      pad the message with 'x' to M bytes (100)\n"
            "  --no-push              send_push = false (stored, not pushed)\n"
            "  --wait-ack-ms MS       wait_ack_ms of each request (0)\n"
            "  --caller-id-base B     request id = B + sequence number (0: server assigns)\n"
            "  --stamp send|scheduled t= is the actual send time (default) or, with --rate,\n"
            "                         the scheduled one (delivery latency then includes backlog)\n"
            "  --record PATH          one line per answered notification:\n"
            "                         user notification_id delivered(1/0)\n"
            "  --stats-file PATH      JSON stats (also printed on stdout)\n"
            "  --nchan-url URL        HTTP POST the message to URL instead of gRPC; URL has one\n"
            "                         %%lld for the user id: http://127.0.0.1:8081/pub/%%lld\n"
            "                         (201 = delivered; the id recorded is the sequence number)\n"
            "  --wait-ready FILE      wait until FILE exists before starting (repeatable)\n"
            "  --wait-timeout S       give up waiting after S seconds (600)\n"
            "  --seed N               random seed for the user choice\n"
            "  --quiet                no progress messages on stderr\n"
            "  --help\n");
}

enum {
    OPT_SERVER = 256,
    OPT_USERS,
    OPT_IN_FLIGHT,
    OPT_RATE,
    OPT_DURATION,
    OPT_COUNT,
    OPT_BATCH,
    OPT_CHANNELS,
    OPT_DEADLINE,
    OPT_TITLE,
    OPT_TYPE,
    OPT_LINK,
    OPT_MESSAGE_BYTES,
    OPT_NO_PUSH,
    OPT_WAIT_ACK,
    OPT_CALLER_ID_BASE,
    OPT_STAMP,
    OPT_RECORD,
    OPT_STATS_FILE,
    OPT_NCHAN_URL,
    OPT_WAIT_READY,
    OPT_WAIT_TIMEOUT,
    OPT_SEED,
    OPT_QUIET,
    OPT_BROADCAST,
};

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"users", required_argument, NULL, OPT_USERS},
        {"in-flight", required_argument, NULL, OPT_IN_FLIGHT},
        {"rate", required_argument, NULL, OPT_RATE},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"count", required_argument, NULL, OPT_COUNT},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"channels", required_argument, NULL, OPT_CHANNELS},
        {"deadline-ms", required_argument, NULL, OPT_DEADLINE},
        {"title", required_argument, NULL, OPT_TITLE},
        {"type", required_argument, NULL, OPT_TYPE},
        {"link", required_argument, NULL, OPT_LINK},
        {"message-bytes", required_argument, NULL, OPT_MESSAGE_BYTES},
        {"no-push", no_argument, NULL, OPT_NO_PUSH},
        {"wait-ack-ms", required_argument, NULL, OPT_WAIT_ACK},
        {"caller-id-base", required_argument, NULL, OPT_CALLER_ID_BASE},
        {"stamp", required_argument, NULL, OPT_STAMP},
        {"record", required_argument, NULL, OPT_RECORD},
        {"stats-file", required_argument, NULL, OPT_STATS_FILE},
        {"nchan-url", required_argument, NULL, OPT_NCHAN_URL},
        {"wait-ready", required_argument, NULL, OPT_WAIT_READY},
        {"wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"broadcast", no_argument, NULL, OPT_BROADCAST},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t v;
    int opt;
    bool have_duration = false;
    g.server = "127.0.0.1:50056";
    g.user_lo = 1;
    g.user_hi = 1000;
    g.window = 64;
    g.batch = 1;
    g.title = "Benchmark";
    g.type = "bench";
    g.link = "";
    g.message_bytes = 100;
    g.deadline_ms = 5000;
    g.wait_timeout = 600;
    g.seed = bench_rand_seed();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_SERVER:
            g.server = optarg;
            break;
        case OPT_USERS:
            if (!bench_parse_range(optarg, 1, INT64_MAX / 2, &g.user_lo, &g.user_hi))
                bench_die_usage(PROG, "--users: A-B with 1 <= A <= B, not '%s'", optarg);
            break;
        case OPT_IN_FLIGHT:
            if (!bench_parse_i64(optarg, 1, 100000, &g.window))
                bench_die_usage(PROG, "--in-flight: 1..100000, not '%s'", optarg);
            break;
        case OPT_RATE:
            if (!bench_parse_double(optarg, 0, 1e8, &g.rate))
                bench_die_usage(PROG, "--rate: notifications/s >= 0, not '%s'", optarg);
            break;
        case OPT_DURATION:
            if (!bench_parse_double(optarg, 0.001, 1e7, &g.duration))
                bench_die_usage(PROG, "--duration: seconds > 0, not '%s'", optarg);
            have_duration = true;
            break;
        case OPT_COUNT:
            if (!bench_parse_i64(optarg, 1, INT64_MAX / 4, &g.count))
                bench_die_usage(PROG, "--count: a positive integer, not '%s'", optarg);
            break;
        case OPT_BATCH:
            if (!bench_parse_i64(optarg, 1, 100000, &g.batch))
                bench_die_usage(PROG, "--batch: 1..100000, not '%s'", optarg);
            break;
        case OPT_CHANNELS:
            if (!bench_parse_i64(optarg, 1, MAX_CHANNELS, &g.channels))
                bench_die_usage(PROG, "--channels: 1..%d, not '%s'", MAX_CHANNELS, optarg);
            break;
        case OPT_DEADLINE:
            if (!bench_parse_i64(optarg, 1, 3600000, &g.deadline_ms))
                bench_die_usage(PROG, "--deadline-ms: 1..3600000, not '%s'", optarg);
            break;
        case OPT_TITLE:
            g.title = optarg;
            break;
        case OPT_TYPE:
            g.type = optarg;
            break;
        case OPT_LINK:
            g.link = optarg;
            break;
        case OPT_MESSAGE_BYTES:
            if (!bench_parse_i64(optarg, 0, 1 << 20, &g.message_bytes))
                bench_die_usage(PROG, "--message-bytes: 0..1048576, not '%s'", optarg);
            break;
        case OPT_NO_PUSH:
            g.no_push = true;
            break;
        case OPT_WAIT_ACK:
            if (!bench_parse_i64(optarg, 0, INT32_MAX, &g.wait_ack_ms))
                bench_die_usage(PROG, "--wait-ack-ms: 0..2147483647, not '%s'", optarg);
            break;
        case OPT_CALLER_ID_BASE:
            if (!bench_parse_i64(optarg, 0, (1LL << 53) - (1LL << 40), &g.caller_id_base))
                bench_die_usage(PROG, "--caller-id-base: 0..2^53-2^40, not '%s'", optarg);
            break;
        case OPT_STAMP:
            if (strcmp(optarg, "send") == 0)
                g.stamp_scheduled = false;
            else if (strcmp(optarg, "scheduled") == 0)
                g.stamp_scheduled = true;
            else
                bench_die_usage(PROG, "--stamp: send or scheduled, not '%s'", optarg);
            break;
        case OPT_RECORD:
            g.record_path = optarg;
            break;
        case OPT_STATS_FILE:
            g.stats_file = optarg;
            break;
        case OPT_NCHAN_URL:
            g.nchan_url = optarg;
            break;
        case OPT_WAIT_READY:
            if (g.nwait == MAX_WAIT_FILES)
                bench_die_usage(PROG, "at most %d --wait-ready files", MAX_WAIT_FILES);
            g.wait_files[g.nwait++] = optarg;
            break;
        case OPT_WAIT_TIMEOUT:
            if (!bench_parse_double(optarg, 0, 1e7, &g.wait_timeout))
                bench_die_usage(PROG, "--wait-timeout: seconds >= 0, not '%s'", optarg);
            break;
        case OPT_SEED:
            if (!bench_parse_i64(optarg, 0, INT64_MAX, &v))
                bench_die_usage(PROG, "--seed: a non-negative integer, not '%s'", optarg);
            g.seed = (uint64_t)v;
            break;
        case OPT_QUIET:
            g.quiet = true;
            break;
        case OPT_BROADCAST:
            g.broadcast = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "Try '" PROG " --help'.\n");
            exit(2);
        }
    }
    if (optind < argc)
        bench_die_usage(PROG, "unexpected argument '%s'", argv[optind]);
    if (g.broadcast && g.batch > 1)
        bench_die_usage(PROG, "--broadcast and --batch do not go together");
    if (g.broadcast && g.nchan_url != NULL)
        bench_die_usage(PROG, "--broadcast is gRPC only (nchan: publish to a channel that every "
                              "subscriber has)");
    if (g.broadcast && !have_duration && g.count == 0)
        g.count = 1;
    if (!have_duration && g.count == 0)
        g.duration = 10;
    if (g.channels == 0)
        g.channels = g.nchan_url ? 4 : 1;
    if (g.nchan_url != NULL) {
        if (!parse_nchan_url(g.nchan_url))
            bench_die_usage(PROG, "--nchan-url: http://HOST[:PORT]/PATH with one %%lld, not '%s'",
                            g.nchan_url);
        if (g.batch > 1)
            bench_die_usage(PROG, "--batch > 1 is gRPC only");
    }
    if (g.stamp_scheduled && g.rate == 0)
        bench_die_usage(PROG, "--stamp scheduled needs --rate");
}

static int wait_ready(void)
{
    int64_t deadline = bench_mono_ns() + (int64_t)(g.wait_timeout * 1e9);
    for (int i = 0; i < g.nwait; i++) {
        while (access(g.wait_files[i], F_OK) != 0) {
            if (g_signalled || bench_mono_ns() > deadline) {
                fprintf(stderr, PROG ": %s did not appear%s\n", g.wait_files[i],
                        g_signalled ? "" : " in time");
                return -1;
            }
            struct timespec ts = {0, 50 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

static void alloc_slots(void)
{
    g.msg_cap = (size_t)g.message_bytes + 96;
    g.slots = calloc((size_t)g.window, sizeof *g.slots);
    g.free_list = calloc((size_t)g.window, sizeof *g.free_list);
    if (g.slots == NULL || g.free_list == NULL)
        abort();
    for (int64_t i = 0; i < g.window; i++) {
        slot *s = &g.slots[i];
        size_t b = (size_t)g.batch;
        s->users = calloc(b, sizeof *s->users);
        s->seqs = calloc(b, sizeof *s->seqs);
        s->msgs = calloc(b, sizeof *s->msgs);
        s->msg_lens = calloc(b, sizeof *s->msg_lens);
        s->reqs = calloc(b, sizeof *s->reqs);
        s->req_ptrs = calloc(b, sizeof *s->req_ptrs);
        if (!s->users || !s->seqs || !s->msgs || !s->msg_lens || !s->reqs || !s->req_ptrs)
            abort();
        for (size_t j = 0; j < b; j++) {
            s->msgs[j] = malloc(g.msg_cap);
            if (s->msgs[j] == NULL)
                abort();
        }
        g.free_list[g.nfree++] = g.window - 1 - i;
    }
}

static void free_slots(void)
{
    for (int64_t i = 0; i < g.window; i++) {
        slot *s = &g.slots[i];
        for (int64_t j = 0; j < g.batch; j++)
            free(s->msgs[j]);
        free(s->users);
        free(s->seqs);
        free(s->msgs);
        free(s->msg_lens);
        free(s->reqs);
        free(s->req_ptrs);
    }
    free(g.slots);
    free(g.free_list);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    g.rng = g.seed;
    /* Fixed-rate sleeps would overshoot by the default 50 µs timer slack. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
    bench_hist_init(&g.call_lat);
    bench_hist_init(&g.send_lag);
    if (wait_ready() != 0)
        return 1;
    if (g.record_path != NULL) {
        g.rec = fopen(g.record_path, "w");
        if (g.rec == NULL) {
            fprintf(stderr, PROG ": cannot open %s: %s\n", g.record_path, strerror(errno));
            return 1;
        }
        setvbuf(g.rec, NULL, _IOFBF, 1 << 20);
    }
    alloc_slots();
    int rc = g.nchan_url ? run_nchan() : run_grpc();
    bench_buf b;
    bench_buf_init(&b);
    stats_json(&b);
    fwrite(b.p, 1, b.len, stdout);
    fflush(stdout);
    if (g.stats_file != NULL && bench_write_atomic(g.stats_file, b.p, b.len) != 0) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", g.stats_file, strerror(errno));
        rc = 1;
    }
    bench_buf_free(&b);
    if (g.rec != NULL && fclose(g.rec) != 0) {
        fprintf(stderr, PROG ": writing %s: %s\n", g.record_path, strerror(errno));
        rc = 1;
    }
    free_slots();
    return rc;
}
