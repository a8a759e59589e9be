/* marks.h — the SENT and ACKED marks a worker reports to the master (queue.h
 * QMSG_MARKS): a notification of the history written to a client, or acked by
 * it. Marks are collected in the worker's batch and go out as one datagram
 * per loop iteration (or sooner when the batch fills), never waiting: when the
 * master's queue is full the batch is lost, counted and logged. A lost SENT
 * can at worst replay a notification once more to an offline user; a lost
 * ACKED leaves its state SENT. */
#ifndef WSN_MARKS_H
#define WSN_MARKS_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/queue.h"

#define MARKS_BATCH 1024u   /* marks per datagram: 25 KiB, far below QUEUE_MAX_MARKS */

struct worker;

typedef struct {
    uint8_t *buf;            /* MARKS_BATCH packed marks; NULL: no history, marks ignored */
    uint32_t count;          /* marks waiting in buf */
    bool scheduled;          /* the flush event is active for this loop iteration */
    bool expecting;          /* marks_expect published a pending mark not flushed yet */
    uint64_t lost_unlogged;  /* marks lost since the last log line */
    uint32_t logged_at;      /* loop.now of that line */
    bool logged;             /* a line was written (logged_at is set) */
} marks_batch;

/* Allocate the batch. Returns 0, or -1 when out of memory. */
int marks_init(marks_batch *b);
void marks_free(marks_batch *b);

/* Pack m at the end of the batch (which must not be full). Returns true when
 * the batch is full now. */
bool marks_append(marks_batch *b, const queue_mark *m);

/* The batch as one QMSG_MARKS message (payload points into b->buf). */
void marks_message(const marks_batch *b, queue_msg *out);

/* Record a mark of w's: flushed at the end of the current loop iteration
 * (w->marks_ev), or at once when the batch is full. A no-op without history. */
void marks_put(struct worker *w, int64_t user, int64_t id, uint8_t state, uint64_t at_ms);

/* A SENT mark will follow: say so in the shared region before the
 * notification is written (the marks barrier must not miss a mark a client
 * could already have seen the frame of). A no-op without history. */
void marks_expect(struct worker *w);

/* Send the batch to the master now, without blocking; on failure the marks
 * are dropped and counted in the slot's marks_lost (logged once a second). */
void marks_flush(struct worker *w);

/* The flush event's callback (arg: the worker). */
void marks_on_flush(int fd, short what, void *arg);

#endif
