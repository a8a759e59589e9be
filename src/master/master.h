/* master.h — the master process: owns the listening sockets, the shared region
 * and the slot queues; starts one worker per slot (fork + exec of this same
 * binary in worker mode) and supervises them. */
#ifndef WSN_MASTER_H
#define WSN_MASTER_H

#include "src/common/config.h"

/* Run until SIGTERM/SIGINT has stopped every worker. Returns the exit status. */
int master_main(const wsn_config *cfg, char **argv);

#endif
