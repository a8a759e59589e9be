/* worker.h — one worker process: a single-threaded libevent loop accepting
 * WebSocket clients on its slot's listening socket, reading its slot queue,
 * and running the heartbeat and handshake deadlines. All of the worker's
 * mutable state lives in struct worker (worker-t.h). */
#ifndef WSN_WORKER_H
#define WSN_WORKER_H

#include "src/common/config.h"
#include "workers/worker-t.h"

/* Run the worker until SIGTERM/SIGINT has been served. Returns the exit status. */
int worker_main(const wsn_config *cfg, const char *handoff_spec);

#endif
