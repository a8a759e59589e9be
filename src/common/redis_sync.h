/* redis_sync.h — a blocking hiredis connection with timeouts, set up the way
 * every cluster connection of the master is: AUTH, SELECT, and (for command
 * connections) the scripts of redis_scripts.h loaded so EVALSHA finds them. */
#ifndef WSN_REDIS_SYNC_H
#define WSN_REDIS_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "src/common/redis_url.h"

struct redisContext;
struct redisReply;

/* Connect within timeout_ms; every later read or write also gives up after
 * timeout_ms. Returns the context, or NULL with err. */
struct redisContext *redis_sync_connect(const redis_url *u, int timeout_ms, bool load_scripts,
                                        char *err, size_t err_size);

/* The reply's error text in err when it is NULL (the connection's error) or
 * a Redis error; true when it is usable. */
bool redis_sync_reply_ok(struct redisContext *c, const struct redisReply *r, char *err,
                         size_t err_size);

void redis_sync_free(struct redisContext *c);   /* NULL ok */

#endif
