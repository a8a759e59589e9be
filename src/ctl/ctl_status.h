/* ctl_status.h — `wsnotifyctl status`: GetNotificationStatus, the answer as JSON. */
#ifndef WSN_CTL_STATUS_H
#define WSN_CTL_STATUS_H

int ctl_status_run(int argc, char **argv);

#endif
