/* worker_reload.h — a worker's reloadable state: the JWT secrets and public
 * keys, the TLS context for new connections and the log level, loaded at
 * start and swapped on SIGHUP only when the new version loaded completely. */
#ifndef WSN_WORKER_RELOAD_H
#define WSN_WORKER_RELOAD_H

#include "workers/worker.h"

/* At start: secrets, TLS context and log level; acknowledges the current
 * reload generation in the slot (region.h). Returns 0, or -1 (logged). */
int worker_load_reloadables(worker *w);

/* SIGHUP: re-read each part; a part that fails keeps its previous version and
 * logs an error. Open connections are untouched. Then acknowledges the reload
 * generation read before the files, complete or not. */
void worker_reload(worker *w);

/* Free what worker_load_reloadables set up. */
void worker_free_reloadables(worker *w);

#endif
