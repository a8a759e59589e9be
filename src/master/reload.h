/* reload.h — the files SIGHUP re-reads, seen from the master: its own log
 * level (--log-level-file), and the checks that the secret file and the TLS
 * certificate and key are usable. The workers do the actual swap
 * (workers/worker_reload.c); the master only validates and logs, so an
 * operator sees a bad file in the master's log at once. */
#ifndef WSN_RELOAD_H
#define WSN_RELOAD_H

#include <stddef.h>

#include "src/common/config.h"
#include "src/common/log.h"

/* At start, before any worker is forked: set the master's level from
 * --log-level-file and check the TLS files. Returns 0, or -1 with err naming
 * the file at fault (the caller exits 1). */
int reload_master_start(const wsn_config *cfg, char *err, size_t err_size);

/* On SIGHUP: re-read the log level and check every reloadable file, logging
 * each problem (the workers then keep what they had for that part). */
void reload_master_check(const wsn_config *cfg);

#endif
