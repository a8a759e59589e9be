/* ctl_health.h — `wsnotifyctl health`: GET /health, the body printed. */
#ifndef WSN_CTL_HEALTH_H
#define WSN_CTL_HEALTH_H

int ctl_health_run(int argc, char **argv);

#endif
