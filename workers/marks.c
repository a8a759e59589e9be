/* marks.c — batching the SENT/ACKED marks for the master (see marks.h). */
#include "workers/marks.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/log.h"
#include "workers/worker-t.h"

int marks_init(marks_batch *b)
{
    *b = (marks_batch){0};
    b->buf = malloc((size_t)MARKS_BATCH * QUEUE_MARK_LEN);
    return b->buf == NULL ? -1 : 0;
}

void marks_free(marks_batch *b)
{
    free(b->buf);
    b->buf = NULL;
    b->count = 0;
}

bool marks_append(marks_batch *b, const queue_mark *m)
{
    queue_mark_encode(b->buf + (size_t)b->count * QUEUE_MARK_LEN, m);
    b->count++;
    return b->count >= MARKS_BATCH;
}

void marks_message(const marks_batch *b, queue_msg *out)
{
    *out = (queue_msg){
        .type = QMSG_MARKS,
        .payload = b->buf,
        .payload_len = b->count * QUEUE_MARK_LEN,
    };
}

void marks_put(worker *w, int64_t user, int64_t id, uint8_t state, uint64_t at_ms)
{
    marks_batch *b = &w->marks;
    if (b->buf == NULL)
        return;
    queue_mark m = {.user = user, .id = id, .state = state, .at_ms = at_ms};
    if (marks_append(b, &m)) {
        marks_flush(w);
        return;
    }
    /* Once per loop iteration: every mark made until then shares the datagram. */
    if (!b->scheduled && w->marks_ev != NULL) {
        event_active(w->marks_ev, EV_TIMEOUT, 1);
        b->scheduled = true;
    }
}

void marks_expect(worker *w)
{
    marks_batch *b = &w->marks;
    if (b->buf == NULL || b->expecting)
        return;
    /* Seq-cst, and before the write: a replay on another worker that the
     * client's reconnect caused must see it. */
    uint64_t last = atomic_load_explicit(&w->stats->marks_sent, memory_order_relaxed) >> 1;
    atomic_store(&w->stats->marks_sent, last << 1 | 1);
    b->expecting = true;
    if (!b->scheduled && w->marks_ev != NULL) {
        event_active(w->marks_ev, EV_TIMEOUT, 1);
        b->scheduled = true;
    }
}

void marks_flush(worker *w)
{
    marks_batch *b = &w->marks;
    uint64_t last = atomic_load_explicit(&w->stats->marks_sent, memory_order_relaxed) >> 1;
    if (b->count == 0) {
        if (b->expecting) /* the write failed: no mark after all */
            atomic_store_explicit(&w->stats->marks_sent, last << 1, memory_order_release);
        b->expecting = false;
        return;
    }
    queue_msg m;
    marks_message(b, &m);
    /* Numbered per slot, so a replay can wait until the master committed it. */
    uint64_t number = last + 1;
    m.generation = (uint64_t)w->h.slot;
    m.seq = number;
    uint32_t n = b->count;
    b->count = 0;
    b->expecting = false;
    if (queue_send(w->h.master_fd, &m) == 0) {
        atomic_store_explicit(&w->stats->marks_sent, number << 1, memory_order_release);
        return;
    }
    atomic_store_explicit(&w->stats->marks_sent, last << 1, memory_order_release);
    int err = errno;
    atomic_fetch_add_explicit(&w->stats->marks_lost, n, memory_order_relaxed);
    b->lost_unlogged += n;
    /* A full queue loses marks batch after batch: one line a second, with the count. */
    if (!b->logged || w->loop.now - b->logged_at >= 1000u) {
        log_warn("cannot report %llu SENT/ACKED marks to the master (%s): they are lost "
                 "(a SENT may replay once more, an ACKED stays SENT)",
                 (unsigned long long)b->lost_unlogged, strerror(err));
        b->lost_unlogged = 0;
        b->logged_at = w->loop.now;
        b->logged = true;
    }
}

void marks_on_flush(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    w->marks.scheduled = false;
    marks_flush(w);
}
