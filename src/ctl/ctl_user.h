/* ctl_user.h — `wsnotifyctl user`: one --users-file line with a fresh hash. */
#ifndef WSN_CTL_USER_H
#define WSN_CTL_USER_H

int ctl_user_run(int argc, char **argv);

#endif
