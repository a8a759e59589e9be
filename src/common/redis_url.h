/* redis_url.h — the --redis URL (README "Cluster"): redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 * or unix:///PATH. Parsing only; connecting is redis_sync.h's and the
 * workers' cluster link's. */
#ifndef WSN_REDIS_URL_H
#define WSN_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_HOST_MAX 256
#define REDIS_URL_PATH_MAX 108     /* sun_path */
#define REDIS_URL_SECRET_MAX 256

typedef struct {
    bool unix_socket;
    char host[REDIS_URL_HOST_MAX];   /* TCP: name or address (IPv6 without brackets) */
    int port;                        /* TCP: 1..65535, 6379 when absent */
    char path[REDIS_URL_PATH_MAX];   /* unix: the socket's path */
    char user[REDIS_URL_SECRET_MAX]; /* "" = the default user (AUTH PASSWORD) */
    char password[REDIS_URL_SECRET_MAX]; /* "" = no AUTH */
    int db;                          /* 0..15 usual; 0..INT_MAX accepted, SELECT when > 0 */
} redis_url;

/* Parse s. %XX escapes are decoded in the user and password. Returns 0, or
 * -1 with err saying what is wrong (never echoing the password). */
int redis_url_parse(const char *s, redis_url *out, char *err, size_t err_size);

/* "127.0.0.1:6379" or "unix:/run/redis.sock" (no secrets), for log lines. */
void redis_url_describe(const redis_url *u, char *out, size_t out_size);

#endif
