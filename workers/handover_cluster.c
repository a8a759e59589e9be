/* handover_cluster.c — a new session's hand-over in cluster mode (README
 * "Cluster"; the single-node steps are in handover.c).
 *
 * Steps. CLAIMING: the CLAIM script makes the session its user's holder in
 * Redis (evicting the previous one on another node) — from its answer on,
 * every node routes the user's notifications here, and only then does the
 * client get `connected`. WAITING: this node's notifications that may have
 * missed the session (accepted before its local claim, so with a local seq
 * up to local_seq) must be in Redis first (committed_seq), and for a
 * never-sent replay the SENT marks still on their way too: this node's (the
 * marks barrier) and, after an eviction on another node, that node's (its
 * RELEASED signal, sent once the evicted session's marks are applied;
 * awaited RELEASE_WAIT_MS at most). REPLAYING: REPLAY chunks; the first
 * takes the snapshot S (the cluster seq everything replayed is at most).
 *
 * Exactly once. A routed notification (QMSG_ROUTED: from another node, or
 * checked for a duplicate first) carries its cluster seq: seq <= S means the
 * replay read it, so it is dropped; the barrier the first chunk publishes
 * arrives after every routed one published before it, so once it came no
 * covered one can still come. A notification of this node's (QMSG_NOTIFY)
 * is pushed before it is stored, so its cluster seq is unknown here: it is
 * dropped when the replay wrote its id; any that could be covered was queued
 * before the replay began, so the queue read empty once ends that. */
#include <stdio.h>
#include <stdlib.h>

#include "src/common/log.h"
#include "workers/client.h"
#include "workers/cluster_link.h"
#include "workers/handover-t.h"
#include "workers/worker-t.h"
#include "workers/ws_session.h"

#define RELEASE_WAIT_MS 2000u   /* for the other node's RELEASED, at most */
#define BARRIER_WAIT_MS 5000u   /* for the replay's barrier, at most (pub/sub down: give up) */

static void unavailable(handover *h, const char *why)
{
    log_warn("UserID=%lld: %s: closing with 1013", (long long)h->user, why);
    ws_session_close(h->c, WS_CLOSE_TRY_AGAIN, "cluster unavailable, try again");
}

static void on_claimed(worker *w, void *arg, const cluster_claim_result *r)
{
    handover *h = arg;
    h->inflight = false;
    if (h->c == NULL)
        return; /* closed meanwhile: the tick frees it */
    if (!r->ok) {
        unavailable(h, "its claim in Redis failed");
        return;
    }
    if (r->superseded) {
        /* A newer connection of this node claimed the user first. */
        ws_session_evict(w, h->user, h->generation);
        return;
    }
    h->claimed_at = w->loop.now;
    h->await_release = r->evicted_elsewhere && h->last_id < 0 && w->history;
    h->state = ST_WAITING;
    handover_advance(w, h);
}

void handover_cluster_start(worker *w, handover *h)
{
    h->inflight = true;
    if (cluster_link_claim(w, h->user, h->generation, on_claimed, h) != 0) {
        h->inflight = false;
        unavailable(h, "the link to Redis is down");
    }
}

static void on_chunk(worker *w, void *arg, const cluster_replay_result *r);

static void request_chunk(worker *w, handover *h)
{
    cluster_replay_args a = {
        .user = h->user,
        .generation = h->generation,
        .mode = h->last_id >= 0 ? CLUSTER_REPLAY_AFTER : CLUSTER_REPLAY_UNSENT,
        .after_id = h->last_id > 0 ? h->last_id : 0,
        .after_seq = h->done_upto,
        .upto = h->snapshot_taken ? h->max_seq : 0,
    };
    h->paused = false;
    h->inflight = true;
    if (cluster_link_replay(w, &a, on_chunk, h) != 0) {
        h->inflight = false;
        unavailable(h, "the link to Redis is down");
    }
}

static void on_chunk(worker *w, void *arg, const cluster_replay_result *r)
{
    handover *h = arg;
    h->inflight = false;
    if (h->c == NULL)
        return;
    if (!r->ok) {
        unavailable(h, "reading its history from Redis failed");
        return;
    }
    if (!h->snapshot_taken) {
        h->snapshot_taken = true;
        h->max_seq = r->snapshot;
        int recovered = h->last_id < 0 ? -1 : r->recovered;
        if (ws_session_send_connected(h->c, h->email, recovered) != 0 || h->c == NULL)
            return;
    }
    uint64_t written = 0;
    for (size_t i = 0; i < r->n && h->c != NULL; i++) {
        const cluster_replay_entry *e = &r->entries[i];
        if (e->seq <= h->floor_seq)
            continue;
        if (user_map_put(&h->ids, e->id, h) != 0) {
            conn_abort(&h->c->io, "out of memory replaying a history");
            return;
        }
        if (ws_session_write_notification(h->c, e->json, e->len, e->id, e->seq, 0) != 0)
            break;
        h->floor_seq = e->seq;
        written++;
    }
    if (written > 0)
        atomic_fetch_add_explicit(&w->stats->replayed, written, memory_order_relaxed);
    if (h->c == NULL)
        return;
    if (r->last_seq > h->done_upto)
        h->done_upto = r->last_seq;
    if (r->more && h->max_seq > h->done_upto) {
        if (handover_output_full(w, h->c))
            h->paused = true; /* the tick asks for the next chunk as the client reads */
        else
            request_chunk(w, h);
        return;
    }
    h->state = ST_RELEASING;
    handover_advance(w, h);
}

/* WAITING: what must be in Redis before the replay reads it. */
static bool ready_to_replay(worker *w, handover *h)
{
    uint64_t done = handover_committed(w);
    if (done < h->local_seq || (h->last_id < 0 && !handover_marks_committed(w, h))) {
        if (w->loop.now - h->started >= HANDOVER_WAIT_MS) {
            char why[160];
            snprintf(why, sizeof why, "this node's notifications up to %llu were not stored "
                     "within %u s", (unsigned long long)h->local_seq, HANDOVER_WAIT_MS / 1000u);
            unavailable(h, why);
        }
        return false;
    }
    if (h->await_release) {
        if (w->loop.now - h->claimed_at < RELEASE_WAIT_MS)
            return false;
        log_info("UserID=%lld: the node of its evicted connection did not confirm within %u ms; "
                 "replaying anyway",
                 (long long)h->user, RELEASE_WAIT_MS);
        h->await_release = false;
    }
    return true;
}

bool handover_cluster_step(worker *w, handover *h)
{
    if (h->c == NULL || h->inflight)
        return false;
    switch (h->state) {
    case ST_WAITING:
        if (!w->history) {
            /* No history: nothing to replay; `connected` follows the claim. */
            h->snapshot_taken = true;
            int recovered = h->last_id < 0 ? -1 : h->last_id == 0;
            if (ws_session_send_connected(h->c, h->email, recovered) != 0 || h->c == NULL)
                return false;
            h->state = ST_RELEASING;
            return true;
        }
        if (!ready_to_replay(w, h))
            return false;
        h->state = ST_REPLAYING;
        request_chunk(w, h);
        return false;
    case ST_REPLAYING:
        if (h->paused && !handover_output_full(w, h->c))
            request_chunk(w, h);
        return false;
    case ST_RELEASING:
        return true;
    default:
        return false;
    }
}

bool handover_cluster_covered(const handover *h, const handover_item *it)
{
    if (it->kind == HANDOVER_ROUTED)
        return it->seq != 0 && it->seq <= h->max_seq;
    if (it->kind == HANDOVER_LIVE)
        return user_map_get(&h->ids, it->id) != NULL;
    return false;
}

handover_verdict handover_cluster_verdict(const handover *h, const handover_item *it)
{
    if (h->state < ST_FILTERING)
        return HANDOVER_HOLD;
    return handover_cluster_covered(h, it) ? HANDOVER_DROP : HANDOVER_SEND;
}

bool handover_cluster_filter_done(const worker *w, const handover *h)
{
    return !w->history || h->barrier_seen || w->loop.now - h->replayed_at >= BARRIER_WAIT_MS;
}
