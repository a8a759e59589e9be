/* queue.h — the per-slot queues: one AF_UNIX datagram socket pair per worker
 * slot, created once by the master and kept across respawns. Any process sends
 * on the slot's `in` end; the slot's worker reads the `out` end. One datagram is
 * one message: a fixed little header and, for NOTIFY, the client JSON ready to
 * be framed. */
#ifndef WSN_QUEUE_H
#define WSN_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_MAGIC 0x574eu           /* "WN" */
#define QUEUE_HEADER_LEN 36u
#define QUEUE_MAX_PAYLOAD (256u * 1024u)
#define QUEUE_MAX_DATAGRAM (QUEUE_HEADER_LEN + QUEUE_MAX_PAYLOAD)

typedef enum {
    QMSG_NOTIFY = 1, /* write payload as one text frame to (user, generation) */
    QMSG_EVICT = 2,  /* close (user, generation) with 4000: a newer connection exists */
} qmsg_type;

typedef struct {
    uint8_t type;
    int64_t user;
    uint64_t generation;
    uint64_t accepted_ns;      /* CLOCK_REALTIME ns when the master accepted it (latency) */
    const uint8_t *payload;    /* points into the datagram buffer when decoded */
    uint32_t payload_len;
} queue_msg;

typedef struct {
    int worker_end;   /* read by the slot's worker */
    int sender_end;   /* written by everyone else */
} queue_pair;

/* Encode into out. Returns the datagram length, or 0 if it does not fit or is invalid. */
size_t queue_msg_encode(uint8_t *out, size_t out_size, const queue_msg *m);

/* Decode a received datagram. Returns 0, or -1 when truncated or corrupt. */
int queue_msg_decode(const uint8_t *buf, size_t len, queue_msg *m);

/* Non-blocking, close-on-exec SOCK_DGRAM pair with a large send buffer. Returns 0 or -1. */
int queue_pair_create(queue_pair *q);

/* Send one message without blocking. Returns 0, or -1 with errno (EAGAIN: queue full). */
int queue_send(int sender_end, const queue_msg *m);

/* As queue_send, but wait up to wait_ms for room in a full queue. */
int queue_send_wait(int sender_end, const queue_msg *m, int wait_ms);

#endif
