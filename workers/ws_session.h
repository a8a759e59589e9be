/* ws_session.h — the WebSocket session of an upgraded client: the messages of
 * README's "Connecting a client" (connected, ping, ack), control frames, the
 * close handshake, and what the slot queue brings (notifications, broadcasts,
 * evictions). A session holds the user's entry in the directory and the
 * worker's user map from open to close. */
#ifndef WSN_WS_SESSION_H
#define WSN_WS_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "shm/queue.h"
#include "workers/client.h"

#define WS_SESSION_CONTROL_PER_SECOND 100u  /* ping + pong frames a client may send */

struct worker;

/* Register the upgraded connection (its directory entry is claimed), then
 * write the 101 response and, with history, start its hand-over (handover.h:
 * `connected` once the replay is ready); without, write `connected` now.
 * last_id: the client's resume position (?last_id / Last-Event-ID), -1: none. */
void ws_session_open(client *cl, int64_t user_id, uint32_t generation, const char *email,
                     int64_t last_id, const char *response, size_t response_len);

/* The `connected` message; recovered: -1 leaves it out (no last_id), else
 * false/true. Returns 0, or -1 when the connection was aborted. */
int ws_session_send_connected(client *cl, const char *email, int recovered);

/* One text frame as it is (a reply). Returns 0, or -1 when aborted. */
int ws_session_send_text(client *cl, const void *json, size_t len);

/* One notification frame (live, replayed or broadcast), and what follows from
 * it being written: one more ack allowed, a SENT mark when seq != 0, the
 * delivery latency when accepted_ns != 0. Returns 0, or -1 when aborted. */
int ws_session_write_notification(client *cl, const void *json, size_t len, int64_t id,
                                  uint64_t seq, uint64_t accepted_ns);

/* Bytes of WebSocket frames from the client (also those that followed the
 * request head). */
void ws_session_feed(client *cl, uint8_t *data, size_t len);

/* One unmasked server frame. Returns 0, or -1 when the connection was aborted. */
int ws_session_send(client *cl, uint8_t opcode, const void *payload, size_t len);

/* Start the close handshake: a close frame, then the transport's close. */
void ws_session_close(client *cl, uint16_t code, const char *reason);

/* Queue datagrams for this worker: a NOTIFY for (user, generation), a
 * BROADCAST for every open session, an EVICT. */
void ws_session_deliver(struct worker *w, const queue_msg *m);
void ws_session_broadcast(struct worker *w, const queue_msg *m);
void ws_session_evict(struct worker *w, int64_t user, uint64_t generation);

/* Ask another slot's worker to close (user, generation) with 4000, never
 * waiting. When its queue is full the EVICT is lost: the slot is asked to
 * reconcile instead. Returns 0, or -1 (logged). */
int ws_session_send_evict(struct worker *w, int slot, int64_t user, uint64_t generation);

/* Check up to max sessions, from scan position *pos on, against the
 * directory, and close with 4000 those it no longer names as their user's
 * holder (their EVICT was lost). Returns how many were closed. */
size_t ws_session_reconcile(struct worker *w, size_t *pos, size_t max);

#endif
