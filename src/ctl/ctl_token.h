/* ctl_token.h — `wsnotifyctl token`: mint an HS256 JWT with the daemon's secret. */
#ifndef WSN_CTL_TOKEN_H
#define WSN_CTL_TOKEN_H

int ctl_token_run(int argc, char **argv);

#endif
