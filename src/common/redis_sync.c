/* redis_sync.c — blocking Redis connections for the master (see redis_sync.h). */
#include "src/common/redis_sync.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "src/common/redis_scripts.h"

bool redis_sync_reply_ok(redisContext *c, const redisReply *r, char *err, size_t err_size)
{
    if (r == NULL) {
        snprintf(err, err_size, "%s", c != NULL && c->errstr[0] ? c->errstr : "no reply");
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, err_size, "%.*s", (int)r->len, r->str);
        return false;
    }
    return true;
}

/* One command whose reply only needs to be OK-ish. */
static int simple(redisContext *c, int argc, const char **argv, const size_t *lens, char *err,
                  size_t err_size)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    bool ok = redis_sync_reply_ok(c, r, err, err_size);
    if (r != NULL)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

redisContext *redis_sync_connect(const redis_url *u, int timeout_ms, bool load_scripts,
                                 char *err, size_t err_size)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = u->unix_socket ? redisConnectUnixWithTimeout(u->path, tv)
                                     : redisConnectWithTimeout(u->host, u->port, tv);
    if (c == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(err, err_size, "%s", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK || redisEnableKeepAlive(c) != REDIS_OK) {
        snprintf(err, err_size, "cannot set the socket options: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    char e[200];
    if (u->password[0] != '\0') {
        const char *argv[3] = {"AUTH", u->user, u->password};
        size_t lens[3] = {4, strlen(u->user), strlen(u->password)};
        int rc = u->user[0] != '\0' ? simple(c, 3, argv, lens, e, sizeof e)
                                    : simple(c, 2, (const char *[]){"AUTH", u->password},
                                             (size_t[]){4, strlen(u->password)}, e, sizeof e);
        if (rc != 0) {
            snprintf(err, err_size, "AUTH refused: %s", e);
            redisFree(c);
            return NULL;
        }
    }
    if (u->db > 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", u->db);
        if (simple(c, 2, (const char *[]){"SELECT", db}, (size_t[]){6, strlen(db)}, e,
                   sizeof e) != 0) {
            snprintf(err, err_size, "SELECT %s: %s", db, e);
            redisFree(c);
            return NULL;
        }
    }
    for (int s = 0; load_scripts && s < RSCRIPT_COUNT; s++) {
        const char *src = redis_script_source((redis_script)s);
        if (simple(c, 3, (const char *[]){"SCRIPT", "LOAD", src},
                   (size_t[]){6, 4, strlen(src)}, e, sizeof e) != 0) {
            snprintf(err, err_size, "SCRIPT LOAD: %s", e);
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

void redis_sync_free(redisContext *c)
{
    if (c != NULL)
        redisFree(c);
}
