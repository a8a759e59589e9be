/* listener.h — the HTTP/WebSocket listening sockets. Each worker slot gets its
 * own SO_REUSEPORT socket on the same address, owned by the master and kept
 * across respawns, so the kernel spreads new connections evenly over workers
 * and a respawned worker finds its backlog waiting. */
#ifndef WSN_LISTENER_H
#define WSN_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fail if anything already listens on addr:port. SO_REUSEPORT alone would let a
 * second daemon of the same user share the port silently. Returns 0 or -1 (err). */
int listener_check_free(const char *addr, uint16_t port, char *err, size_t err_size);

/* A non-blocking, close-on-exec listening socket. Returns the fd, or -1 (err). */
int listener_open(const char *addr, uint16_t port, bool reuseport, char *err, size_t err_size);

#endif
