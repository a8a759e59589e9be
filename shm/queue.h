/* queue.h — the queues between processes: one AF_UNIX datagram socket pair
 * per worker slot (any process sends NOTIFY, EVICT and BROADCAST on its sender
 * end; the slot's worker reads the other), and one to the master (workers send
 * MARKS: notifications written to a client, or acked by it). All are created
 * once by the master and kept across respawns. One datagram is one message: a
 * fixed little-endian header and a payload (the client JSON ready to be
 * framed, or packed marks). */
#ifndef WSN_QUEUE_H
#define WSN_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_MAGIC 0x574eu           /* "WN" */
#define QUEUE_HEADER_LEN 52u
#define QUEUE_MAX_PAYLOAD (256u * 1024u)
#define QUEUE_MAX_DATAGRAM (QUEUE_HEADER_LEN + QUEUE_MAX_PAYLOAD)
#define QUEUE_MARK_LEN 25u            /* one packed queue_mark */
#define QUEUE_MAX_MARKS (QUEUE_MAX_PAYLOAD / QUEUE_MARK_LEN)

typedef enum {
    QMSG_NOTIFY = 1,    /* to a worker: payload as one text frame to (user, generation) */
    QMSG_EVICT = 2,     /* to a worker: close (user, generation) with 4000 */
    QMSG_BROADCAST = 3, /* to a worker: payload to every open session (user 0) */
    QMSG_MARKS = 4,     /* to the master: payload is packed queue_marks (user 0); generation
                         * is the sending slot, seq its number (region_slot.marks_sent) */
    /* Cluster mode (README "Cluster"), from the master to a worker: */
    QMSG_ROUTED = 5,    /* like NOTIFY, but routed through Redis: seq is the cluster's */
    QMSG_SIGNAL = 6,    /* to (user, generation): seq is a queue_signal (no payload) */
} qmsg_type;

/* A cluster EVICT from another node carries who evicts (id: the new
 * generation, seq: its node's instance) so the worker can answer once the
 * evicted session's marks are out; a local EVICT has both 0. */

typedef enum {
    QSIGNAL_RELEASED = 1,  /* the user's evicted session on another node is gone, marks applied */
    QSIGNAL_BARRIER = 2,   /* every routed notification older than the session's replay is here */
} queue_signal;

/* Mark states beyond shm/store.h's, cluster mode only. */
enum {
    QUEUE_MARK_RELEASE = 9,   /* (user, id = generation): the session closed: not its holder now */
    QUEUE_MARK_EVICTED = 10,  /* (user, id = new generation, at_ms = new instance): an eviction
                               * from another node is done (the session is gone) */
};

typedef struct {
    uint8_t type;
    int64_t user;
    uint64_t generation;
    uint64_t accepted_ns;      /* CLOCK_REALTIME ns when the master accepted it (latency) */
    int64_t id;                /* NOTIFY, BROADCAST: the notification id */
    uint64_t seq;              /* NOTIFY: its place in the history (0: not stored) */
    const uint8_t *payload;    /* points into the datagram buffer when decoded */
    uint32_t payload_len;
} queue_msg;

/* A worker's report on a stored notification (state: STORE_SENT, STORE_ACKED
 * of shm/store.h; at_ms: CLOCK_REALTIME milliseconds of the ack). */
typedef struct {
    int64_t user;
    int64_t id;
    uint8_t state;
    uint64_t at_ms;
} queue_mark;

typedef struct {
    int worker_end;   /* read by the slot's worker */
    int sender_end;   /* written by everyone else */
} queue_pair;

/* Encode into out. Returns the datagram length, or 0 if it does not fit or is invalid. */
size_t queue_msg_encode(uint8_t *out, size_t out_size, const queue_msg *m);

/* Decode a received datagram. Returns 0, or -1 when truncated or corrupt. */
int queue_msg_decode(const uint8_t *buf, size_t len, queue_msg *m);

/* Pack a mark into QUEUE_MARK_LEN bytes at out; unpack one. */
void queue_mark_encode(uint8_t *out, const queue_mark *m);
void queue_mark_decode(const uint8_t *in, queue_mark *m);

/* Non-blocking, close-on-exec SOCK_DGRAM pair with a large send buffer. Returns 0 or -1. */
int queue_pair_create(queue_pair *q);

/* Send one message without blocking. Returns 0, or -1 with errno (EAGAIN: queue full). */
int queue_send(int sender_end, const queue_msg *m);

#endif
