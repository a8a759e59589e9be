/* ctl_send.h — `wsnotifyctl send`: one SendNotification call, the answer as JSON. */
#ifndef WSN_CTL_SEND_H
#define WSN_CTL_SEND_H

int ctl_send_run(int argc, char **argv);

#endif
