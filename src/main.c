/* main.c — wsnotifyd's entry point: parse the command line, then run as the
 * master, or as a worker when started by the master (WSNOTIFY_WORKER set). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/common/config.h"
#include "src/master/master.h"
#include "workers/worker.h"

int main(int argc, char **argv)
{
    wsn_config cfg;
    char err[256];
    config_defaults(&cfg);
    switch (config_parse(&cfg, argc, argv, stdout, err, sizeof err)) {
    case CONFIG_EXIT_OK:
        return 0;
    case CONFIG_USAGE:
        fprintf(stderr, "wsnotifyd: %s\n", err);
        return 2;
    case CONFIG_OK:
        break;
    }
    /* Peers vanish; every send uses MSG_NOSIGNAL, this covers the rest. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        perror("wsnotifyd: signal(SIGPIPE)");
    const char *handoff = getenv("WSNOTIFY_WORKER");
    if (handoff != NULL)
        return worker_main(&cfg, handoff);
    return master_main(&cfg, argv);
}
