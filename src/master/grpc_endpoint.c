/* grpc_endpoint.c — the master's gRPC server on the gRPC core C API: its
 * lifecycle, the completion-queue thread, each call's state machine and the
 * dispatch of calls to the message handlers (grpc_services.c for
 * SendNotification and health Check, grpc_reflection.c for server reflection).
 *
 * Thread model: one dedicated thread loops on grpc_completion_queue_next and
 * does all the work of every call (decode, router_send, encode, reply). The
 * router never blocks for long (a full worker queue gets a bounded wait, then
 * delivered=false: the router's policy), so one thread keeps up; what keeps
 * throughput is having many calls requested at once (method_defs' backlog), so
 * the server never waits for us to ask for the next call. The master's thread
 * only starts and stops the endpoint.
 *
 * Stop, in two steps. First a short lame-duck period: health answers
 * NOT_SERVING and new SendNotification calls get UNAVAILABLE ("shutting down"),
 * which clients and load balancers take as "go elsewhere, retry". Then
 * grpc_server_shutdown_and_notify: it sends GOAWAY and fails the requested
 * calls. Without the first step, every call that reaches the server after the
 * shutdown began (its client has not seen the GOAWAY yet) is cancelled by gRPC
 * core, and the client sees CANCELLED, which clients do not retry. Once our
 * in-flight calls are done (or GRPC_ENDPOINT_DRAIN_SECONDS passed),
 * grpc_server_cancel_all_calls closes the connections: gRPC would otherwise wait
 * for every idle client to hang up. Then the shutdown tag comes back on the
 * queue, which wakes the thread. No flag is polled on cq_next timeouts: under
 * load those never come.
 *
 * Signals: gRPC's threads and ours are started with every signal blocked, so
 * SIGTERM/SIGCHLD always reach the master's libevent loop.
 *
 * Bearer tokens (--grpc-token-file) are checked here, per call, as soon as it
 * arrives and before its handler runs, rather than by an auth metadata
 * processor (grpc_server_credentials_set_auth_metadata_processor). Why: the
 * processor is given the metadata but not the method, and Health/Check must
 * stay open (load balancers and systemd-style probes carry no token); here
 * the registered method is known exactly, by its tag. The processor also runs
 * on gRPC's own threads, asynchronously, where refusals could not be counted
 * with the call's outcome or logged with its method; here everything stays
 * on the one serving thread. The price: a unary request's payload (at most
 * GRPC_ENDPOINT_MAX_MESSAGE) has been received before it is refused; it is
 * never decoded. TLS, when on, is gRPC's (grpc_access.c). */
#include "src/master/grpc_endpoint.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/common/grpc_message.h"
#include "src/master/grpc_access.h"
#include "src/master/grpc_reflection.h"
#include "src/master/grpc_services.h"
#include "src/common/log.h"

/* ---------------------------------------------------------------- methods */

typedef enum {
    METHOD_SEND = 0,
    METHOD_SEND_BATCH,
    METHOD_BROADCAST,
    METHOD_STATUS,
    METHOD_HEALTH_CHECK,
    METHOD_REFLECTION_V1,
    METHOD_REFLECTION_V1ALPHA,
    METHOD_REGISTERED,                 /* number of registered methods */
    METHOD_OTHER = METHOD_REGISTERED,  /* the catch-all: answered UNIMPLEMENTED */
    METHOD_KINDS
} method_kind;

typedef struct {
    const char *path;
    bool streaming;   /* bidi: read messages ourselves, no initial payload */
    int backlog;      /* calls of this kind kept requested at once */
} method_def;

static const method_def method_defs[METHOD_KINDS] = {
    [METHOD_SEND] = {"/notification.NotificationService/SendNotification", false, 128},
    [METHOD_SEND_BATCH] = {"/notification.NotificationService/SendNotifications", false, 16},
    [METHOD_BROADCAST] = {"/notification.NotificationService/Broadcast", false, 8},
    [METHOD_STATUS] = {"/notification.NotificationService/GetNotificationStatus", false, 16},
    [METHOD_HEALTH_CHECK] = {"/grpc.health.v1.Health/Check", false, 8},
    [METHOD_REFLECTION_V1] = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true, 4},
    [METHOD_REFLECTION_V1ALPHA] = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                   true, 4},
    [METHOD_OTHER] = {NULL, false, 8},
};

/* --------------------------------------------------------------- contexts */

typedef enum {
    CALL_REQUESTED,   /* waiting for a client to call */
    CALL_STREAMING,   /* reflection: a send and/or a receive in progress */
    CALL_FINISHING,   /* status sent, waiting for the close */
} call_state;

struct grpc_endpoint {
    router *router;
    grpc_server *server;
    grpc_completion_queue *cq;
    void *method_tag[METHOD_REGISTERED];
    uint16_t port;
    pthread_t thread;
    atomic_bool lame_duck;    /* stopping: refuse new work with UNAVAILABLE */
    atomic_bool stopping;     /* set before shutdown: requested calls are not replaced */
    atomic_bool server_down;  /* the shutdown tag came back */
    atomic_long calls;        /* live call contexts (a deferred answer may free one on
                               * the history thread) */
    atomic_long active;       /* calls that arrived and are not finished */
    atomic_bool queue_closed;
    _Atomic uint64_t beat_ms; /* CLOCK_MONOTONIC ms of the thread's last turn (watchdog) */
    atomic_bool finished;     /* the serving thread has returned */
    bool joined;
    char shutdown_tag;        /* its address is the tag of grpc_server_shutdown_and_notify */
    grpc_reflection *refl;
    uint64_t refused;         /* calls refused UNAUTHENTICATED (serving thread only) */
    uint64_t refused_logged;  /* refused when the last warning was logged */
    uint64_t refused_log_ms;  /* CLOCK_MONOTONIC ms of that warning */
};

typedef struct {
    grpc_endpoint *ep;
    method_kind kind;
    call_state state;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_md;
    grpc_call_details details;        /* METHOD_OTHER only */
    grpc_byte_buffer *recv;           /* the unary request, or the last stream message */
    grpc_byte_buffer *send;           /* the message being sent */
    grpc_slice status_details;
    bool has_status_details;
    bool sent_initial_metadata;
    bool arrived;                     /* counted in active */
    int cancelled;
} call_ctx;

/* ------------------------------------------------------------ call basics */

static void ep_maybe_close_queue(grpc_endpoint *e)
{
    /* Only once nothing can post on the queue any more. */
    if (atomic_load(&e->server_down) && atomic_load(&e->calls) == 0 &&
        !atomic_exchange(&e->queue_closed, true))
        grpc_completion_queue_shutdown(e->cq);
}

static void call_free(call_ctx *c)
{
    grpc_endpoint *e = c->ep;
    if (c->call != NULL)
        grpc_call_unref(c->call); /* cancels it if it is not finished */
    grpc_metadata_array_destroy(&c->request_md);
    if (c->kind == METHOD_OTHER)
        grpc_call_details_destroy(&c->details);
    if (c->recv != NULL)
        grpc_byte_buffer_destroy(c->recv);
    if (c->send != NULL)
        grpc_byte_buffer_destroy(c->send);
    if (c->has_status_details)
        grpc_slice_unref(c->status_details);
    if (c->arrived)
        atomic_fetch_sub(&e->active, 1);
    free(c);
    atomic_fetch_sub(&e->calls, 1);
    ep_maybe_close_queue(e);
}

/* Ask gRPC for the next call of this kind. Returns 0 or -1. */
static int ep_request(grpc_endpoint *e, method_kind kind)
{
    call_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        log_error("gRPC: out of memory requesting a call");
        return -1;
    }
    c->ep = e;
    c->kind = kind;
    c->state = CALL_REQUESTED;
    grpc_metadata_array_init(&c->request_md);
    atomic_fetch_add(&e->calls, 1);
    grpc_call_error rc;
    if (kind == METHOD_OTHER) {
        grpc_call_details_init(&c->details);
        rc = grpc_server_request_call(e->server, &c->call, &c->details, &c->request_md, e->cq,
                                      e->cq, c);
    } else {
        rc = grpc_server_request_registered_call(
            e->server, e->method_tag[kind], &c->call, &c->deadline, &c->request_md,
            method_defs[kind].streaming ? NULL : &c->recv, e->cq, e->cq, c);
    }
    if (rc != GRPC_CALL_OK) {
        if (!atomic_load(&e->stopping))
            log_error("gRPC: cannot request a call: error %d", (int)rc);
        call_free(c);
        return -1;
    }
    return 0;
}

static void call_start_batch(call_ctx *c, const grpc_op *ops, size_t n)
{
    grpc_call_error rc = grpc_call_start_batch(c->call, ops, n, c, NULL);
    if (rc != GRPC_CALL_OK) {
        log_error("gRPC: cannot start a batch: error %d", (int)rc);
        call_free(c);
    }
}

/* The ops every reply batch starts with: initial metadata (once per call) and
 * the message, if any. Takes ownership of response: c->send keeps it alive until
 * the batch completes. ops must have room for two. Returns how many it wrote. */
static size_t ops_send_prefix(call_ctx *c, grpc_op *ops, grpc_byte_buffer *response)
{
    size_t n = 0;
    if (!c->sent_initial_metadata) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->sent_initial_metadata = true;
    }
    if (c->send != NULL)
        grpc_byte_buffer_destroy(c->send);
    c->send = response;
    if (response != NULL) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = response;
    }
    return n;
}

/* Reply and end the call: [initial metadata], [message], status, then wait for
 * the close (RECV_CLOSE_ON_SERVER, never together with RECV_MESSAGE). Takes
 * ownership of response. */
static void call_finish(call_ctx *c, grpc_status_code code, const char *details,
                        grpc_byte_buffer *response)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = ops_send_prefix(c, ops, response);
    if (details != NULL && details[0] != '\0') {
        c->status_details = grpc_slice_from_copied_string(details);
        c->has_status_details = true;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details =
        c->has_status_details ? &c->status_details : NULL;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    c->state = CALL_FINISHING;
    call_start_batch(c, ops, n);
}

/* ------------------------------------------------------------- handlers */

/* A deferred answer (grpc_services.h, grpc_later), from the history thread:
 * the gRPC thread does not touch the call meanwhile, and the batch's
 * completion comes back on the queue as for any other answer. */
static void finish_later(void *call, grpc_status_code code, const char *details,
                         grpc_byte_buffer *response)
{
    call_finish(call, code, details, response);
}

/* A unary method: grpc_services.c answers, we reply (now or later). */
static void handle_unary(call_ctx *c)
{
    grpc_endpoint *e = c->ep;
    bool lame_duck = atomic_load(&e->lame_duck);
    char details[GRPC_MESSAGE_DETAILS_MAX] = "";
    grpc_byte_buffer *response = NULL;
    grpc_later later = {.finish = finish_later, .call = c};
    grpc_status_code code;
    switch (c->kind) {
    case METHOD_SEND:
        code = grpc_services_send_notification(e->router, lame_duck, c->recv, &later, &response,
                                               details, sizeof details);
        break;
    case METHOD_SEND_BATCH:
        code = grpc_services_send_notifications(e->router, lame_duck, c->recv, &later,
                                                &response, details, sizeof details);
        break;
    case METHOD_BROADCAST:
        code = grpc_services_broadcast(e->router, lame_duck, c->recv, &later, &response,
                                       details, sizeof details);
        break;
    case METHOD_STATUS:
        code = grpc_services_status(e->router, c->recv, &response, details, sizeof details);
        break;
    default:
        code = grpc_services_health_check(!lame_duck && region_ready_workers(e->router->shm) > 0,
                                          c->recv, &response, details, sizeof details);
        break;
    }
    if (code == GRPC_SERVICES_LATER) {
        c->state = CALL_FINISHING; /* from here the call is the history's until it answers */
        return;
    }
    call_finish(c, code, details, response);
}

static void handle_unknown_method(call_ctx *c)
{
    char msg[300];
    const grpc_slice m = c->details.method;
    size_t len = GRPC_SLICE_LENGTH(m) > 200 ? 200 : GRPC_SLICE_LENGTH(m);
    snprintf(msg, sizeof msg, "unknown method %.*s", (int)len,
             (const char *)GRPC_SLICE_START_PTR(m));
    log_debug("gRPC: %s", msg);
    call_finish(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
}

/* ------------------------------------------------------- bearer tokens */

static uint64_t monotonic_ms(void);

/* The call's "authorization" metadata against --grpc-token-file. Any entry
 * that carries an accepted token admits the call. */
static grpc_access_result call_access(const call_ctx *c)
{
    grpc_access_result r = GRPC_ACCESS_NO_TOKEN;
    for (size_t i = 0; i < c->request_md.count; i++) {
        const grpc_metadata *md = &c->request_md.metadata[i];
        if (grpc_slice_str_cmp(md->key, "authorization") != 0)
            continue;
        r = grpc_access_check_bearer((const char *)GRPC_SLICE_START_PTR(md->value),
                                     GRPC_SLICE_LENGTH(md->value));
        if (r == GRPC_ACCESS_OK)
            break;
    }
    return r;
}

static const char *method_path(const call_ctx *c, char *buf, size_t size)
{
    if (c->kind != METHOD_OTHER)
        return method_defs[c->kind].path;
    const grpc_slice m = c->details.method;
    size_t len = GRPC_SLICE_LENGTH(m) > 200 ? 200 : GRPC_SLICE_LENGTH(m);
    snprintf(buf, size, "%.*s", (int)len, (const char *)GRPC_SLICE_START_PTR(m));
    return buf;
}

/* Refuse with UNAUTHENTICATED. Counted as an outcome for SendNotification(s)
 * (once per call: the request is not read), logged at warn at most once a
 * second with the count (a flood must not flood the log), else at debug. The
 * token itself is never logged. */
static void refuse_unauthenticated(call_ctx *c, grpc_access_result why)
{
    grpc_endpoint *e = c->ep;
    if (c->kind == METHOD_SEND || c->kind == METHOD_SEND_BATCH)
        region_count_notification(e->router->shm, NOTIFY_UNAUTHENTICATED);
    e->refused++;
    char path[256];
    char *peer = grpc_call_get_peer(c->call);
    uint64_t now = monotonic_ms();
    if (e->refused_logged == 0 || now - e->refused_log_ms >= 1000) {
        log_warn("gRPC: refused %s from %s: %s (UNAUTHENTICATED; %llu refused since start)",
                 method_path(c, path, sizeof path), peer ? peer : "?", grpc_access_reason(why),
                 (unsigned long long)e->refused);
        e->refused_logged = e->refused;
        e->refused_log_ms = now;
    } else {
        log_debug("gRPC: refused %s from %s: %s", method_path(c, path, sizeof path),
                  peer ? peer : "?", grpc_access_reason(why));
    }
    gpr_free(peer);
    call_finish(c, GRPC_STATUS_UNAUTHENTICATED, grpc_access_reason(why), NULL);
}

/* ---------------------------------------------------- reflection stream */

/* Send response (if any) and wait for the client's next message. */
static void stream_continue(call_ctx *c, grpc_byte_buffer *response)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = ops_send_prefix(c, ops, response);
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->recv;
    c->state = CALL_STREAMING;
    call_start_batch(c, ops, n);
}

/* A reflection stream's send/receive step completed. */
static void stream_on_step(call_ctx *c, bool ok)
{
    if (!ok) { /* cancelled, deadline, or the server is going away */
        call_free(c);
        return;
    }
    if (c->recv == NULL) { /* the client half-closed: end the stream */
        call_finish(c, GRPC_STATUS_OK, NULL, NULL);
        return;
    }
    char details[GRPC_MESSAGE_DETAILS_MAX] = "";
    grpc_byte_buffer *answer = NULL;
    grpc_status_code code =
        grpc_reflection_answer(c->ep->refl, c->recv, &answer, details, sizeof details);
    grpc_byte_buffer_destroy(c->recv);
    c->recv = NULL;
    if (code == GRPC_STATUS_OK)
        stream_continue(c, answer);
    else
        call_finish(c, code, details, NULL);
}

/* ------------------------------------------------------------ dispatch */

static void call_on_arrival(call_ctx *c, bool ok)
{
    grpc_endpoint *e = c->ep;
    if (!ok) { /* the request was cancelled: the server is shutting down */
        call_free(c);
        return;
    }
    c->arrived = true;
    atomic_fetch_add(&e->active, 1);
    /* Keep the backlog full before the work on this call. */
    if (!atomic_load(&e->stopping))
        (void)ep_request(e, c->kind); /* logged; one fewer in the backlog at worst */
    /* Health/Check stays open to probes; everything else, unknown methods
     * included (no probing for names), needs the token first. */
    if (c->kind != METHOD_HEALTH_CHECK && grpc_access_tokens_required()) {
        grpc_access_result why = call_access(c);
        if (why != GRPC_ACCESS_OK) {
            refuse_unauthenticated(c, why);
            return;
        }
    }
    switch (c->kind) {
    case METHOD_SEND:
    case METHOD_SEND_BATCH:
    case METHOD_BROADCAST:
    case METHOD_STATUS:
    case METHOD_HEALTH_CHECK:
        handle_unary(c);
        break;
    case METHOD_REFLECTION_V1:
    case METHOD_REFLECTION_V1ALPHA:
        stream_continue(c, NULL);
        break;
    case METHOD_OTHER:
    default:
        handle_unknown_method(c);
        break;
    }
}

static void call_on_event(call_ctx *c, bool ok)
{
    switch (c->state) {
    case CALL_REQUESTED:
        call_on_arrival(c, ok);
        break;
    case CALL_STREAMING:
        stream_on_step(c, ok);
        break;
    case CALL_FINISHING:
        call_free(c);
        break;
    }
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The gRPC thread: every event of every call, until the queue is shut down.
 * It wakes at least every GRPC_ENDPOINT_BEAT_MS, so a stale beat means it is
 * wedged, not idle (the master's watchdog reads it). */
static void *ep_thread_main(void *arg)
{
    grpc_endpoint *e = arg;
    /* A name for top -H, perf and bench-profile.sh; without one it is only unnamed. */
    (void)pthread_setname_np(pthread_self(), "wsn-grpc");
    for (;;) {
        atomic_store_explicit(&e->beat_ms, monotonic_ms(), memory_order_relaxed);
        gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(GRPC_ENDPOINT_BEAT_MS,
                                                               GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(e->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &e->shutdown_tag) {
            atomic_store(&e->server_down, true);
            ep_maybe_close_queue(e);
            continue;
        }
        call_on_event(ev.tag, ev.success != 0);
    }
    atomic_store(&e->finished, true);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static void format_target(const char *addr, uint16_t port, char *out, size_t size)
{
    bool bare_v6 = strchr(addr, ':') != NULL && addr[0] != '[';
    snprintf(out, size, bare_v6 ? "[%s]:%u" : "%s:%u", addr, (unsigned)port);
}

static int ep_create_server(grpc_endpoint *e, const char *target, char *err, size_t err_size)
{
    grpc_arg args[2];
    memset(args, 0, sizeof args);
    /* Two daemons on one port must fail loudly, not share the calls. */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[0].value.integer = 0;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = GRPC_ENDPOINT_MAX_MESSAGE;
    grpc_channel_args channel_args = {2, args};
    e->cq = grpc_completion_queue_create_for_next(NULL);
    e->server = grpc_server_create(&channel_args, NULL);
    if (e->cq == NULL || e->server == NULL) {
        snprintf(err, err_size, "cannot create the gRPC server");
        return -1;
    }
    grpc_server_register_completion_queue(e->server, e->cq, NULL);
    for (int k = 0; k < METHOD_REGISTERED; k++) {
        e->method_tag[k] = grpc_server_register_method(
            e->server, method_defs[k].path, NULL,
            method_defs[k].streaming ? GRPC_SRM_PAYLOAD_NONE
                                     : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
        if (e->method_tag[k] == NULL) {
            snprintf(err, err_size, "cannot register %s", method_defs[k].path);
            return -1;
        }
    }
    /* Insecure, or TLS only (grpc_access.c; the files were checked at start). */
    grpc_server_credentials *creds = grpc_access_server_credentials();
    if (creds == NULL) {
        snprintf(err, err_size, "cannot create the gRPC TLS credentials");
        return -1;
    }
    int bound = grpc_server_add_http2_port(e->server, target, creds);
    grpc_server_credentials_release(creds);
    if (bound <= 0 || bound > 65535) {
        snprintf(err, err_size, "cannot listen on %s (address in use or not available)", target);
        return -1;
    }
    e->port = (uint16_t)bound;
    return 0;
}

/* Wait until the server's shutdown completes on this thread (no serving thread). */
static void ep_drain_here(grpc_endpoint *e)
{
    atomic_store(&e->stopping, true);
    grpc_server_shutdown_and_notify(e->server, e->cq, &e->shutdown_tag);
    grpc_server_cancel_all_calls(e->server);
    (void)ep_thread_main(e);
}

static void ep_destroy(grpc_endpoint *e)
{
    if (e->server != NULL)
        grpc_server_destroy(e->server);
    if (e->cq != NULL)
        grpc_completion_queue_destroy(e->cq);
    grpc_reflection_free(e->refl);
    free(e);
    grpc_shutdown();
}

/* Started server, full backlog, serving thread. On failure the server is
 * drained here, so ep_destroy is safe. */
static int ep_serve(grpc_endpoint *e, char *err, size_t err_size)
{
    grpc_server_start(e->server);
    for (int k = 0; k < METHOD_KINDS; k++)
        for (int i = 0; i < method_defs[k].backlog; i++)
            if (ep_request(e, (method_kind)k) != 0) {
                snprintf(err, err_size, "cannot request gRPC calls");
                ep_drain_here(e);
                return -1;
            }
    int rc = pthread_create(&e->thread, NULL, ep_thread_main, e);
    if (rc != 0) {
        snprintf(err, err_size, "cannot start the gRPC thread: %s", strerror(rc));
        ep_drain_here(e);
        return -1;
    }
    return 0;
}

grpc_endpoint *grpc_endpoint_start(const char *bind_addr, uint16_t port, router *r, char *err,
                                   size_t err_size)
{
    char target[300];
    format_target(bind_addr, port, target, sizeof target);
    grpc_endpoint *e = calloc(1, sizeof *e);
    if (e == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    e->router = r;
    atomic_init(&e->lame_duck, false);
    atomic_init(&e->stopping, false);
    atomic_init(&e->active, 0);
    atomic_init(&e->calls, 0);
    atomic_init(&e->server_down, false);
    atomic_init(&e->queue_closed, false);
    atomic_init(&e->beat_ms, monotonic_ms());
    atomic_init(&e->finished, false);
    e->refl = grpc_reflection_create();
    if (e->refl == NULL) {
        snprintf(err, err_size, "the embedded descriptor set is malformed");
        free(e);
        return NULL;
    }
    /* gRPC's threads (started by grpc_init and later by its own threads) and ours
     * inherit this mask: every signal stays with the master's loop. */
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    int mrc = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (mrc != 0)
        log_warn("pthread_sigmask: %s", strerror(mrc));
    grpc_init();
    int rc = ep_create_server(e, target, err, err_size);
    if (rc == 0)
        rc = ep_serve(e, err, err_size);
    if (mrc == 0 && (mrc = pthread_sigmask(SIG_SETMASK, &old, NULL)) != 0)
        log_warn("pthread_sigmask: %s", strerror(mrc));
    if (rc != 0) {
        ep_destroy(e);
        return NULL;
    }
    return e;
}

uint16_t grpc_endpoint_port(const grpc_endpoint *e)
{
    return e->port;
}

const _Atomic uint64_t *grpc_endpoint_beat(const grpc_endpoint *e)
{
    return &e->beat_ms;
}

void grpc_endpoint_lame_duck(grpc_endpoint *e)
{
    atomic_store(&e->lame_duck, true);
}

void grpc_endpoint_shutdown(grpc_endpoint *e)
{
    if (atomic_exchange(&e->stopping, true))
        return;
    grpc_server_shutdown_and_notify(e->server, e->cq, &e->shutdown_tag);
}

long grpc_endpoint_active(const grpc_endpoint *e)
{
    return atomic_load(&e->active);
}

void grpc_endpoint_cancel_all(grpc_endpoint *e)
{
    /* Cancels what is left and closes the connections, so the shutdown tag
     * comes back now rather than when the last idle client hangs up. */
    grpc_server_cancel_all_calls(e->server);
}

bool grpc_endpoint_finished(const grpc_endpoint *e)
{
    return atomic_load(&e->finished);
}

void grpc_endpoint_destroy(grpc_endpoint *e)
{
    if (e == NULL)
        return;
    int rc = pthread_join(e->thread, NULL);
    if (rc != 0)
        log_error("gRPC thread join: %s", strerror(rc));
    ep_destroy(e);
    log_info("gRPC endpoint stopped");
}

/* Sleep ms milliseconds on this thread. */
static void ep_sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
}

bool grpc_endpoint_stop(grpc_endpoint *e)
{
    if (e == NULL)
        return true;
    grpc_endpoint_lame_duck(e);
    ep_sleep_ms(GRPC_ENDPOINT_LAME_DUCK_MS);
    grpc_endpoint_shutdown(e);
    for (long waited = 0; grpc_endpoint_active(e) > 0; waited += 10) {
        if (waited >= GRPC_ENDPOINT_DRAIN_SECONDS * 1000L) {
            log_warn("%ld gRPC calls still running after %d s: cancelling them",
                     grpc_endpoint_active(e), GRPC_ENDPOINT_DRAIN_SECONDS);
            break;
        }
        ep_sleep_ms(10);
    }
    grpc_endpoint_cancel_all(e);
    for (long waited = 0; !grpc_endpoint_finished(e); waited += 10) {
        if (waited >= GRPC_ENDPOINT_DRAIN_SECONDS * 1000L) {
            /* Never hang the master's stop: leave gRPC as it is (the process is exiting). */
            log_error("the gRPC thread did not finish; leaving it");
            return false;
        }
        ep_sleep_ms(10);
    }
    grpc_endpoint_destroy(e);
    return true;
}
