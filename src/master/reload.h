/* reload.h — the files SIGHUP re-reads, seen from the master: its own log
 * level (--log-level-file) and the gRPC port's tokens and certificate
 * (grpc_access.h), and the checks that the secrets, the JWT public keys, the
 * users file and the TLS certificate and key are usable. The workers do the
 * actual swap of theirs (workers/worker_reload.c); the master validates and
 * logs, so an operator sees a bad file in the master's log at once. */
#ifndef WSN_RELOAD_H
#define WSN_RELOAD_H

#include <stddef.h>

#include "src/common/config.h"
#include "src/common/log.h"

/* At start, before any worker is forked: set the master's level from
 * --log-level-file, check that something verifies tokens (secrets, public
 * keys, or both), check the users and TLS files, and load the gRPC port's
 * tokens and certificate. Returns 0, or -1 with err naming the flag or file
 * at fault (the caller exits 1). */
int reload_master_start(const wsn_config *cfg, char *err, size_t err_size);

/* On SIGHUP: re-read the log level and the gRPC port's tokens and
 * certificate, check every other reloadable file, logging each problem (the
 * workers then keep what they had for that part). */
void reload_master_check(const wsn_config *cfg);

#endif
