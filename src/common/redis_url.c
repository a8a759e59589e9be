/* redis_url.c — parse the --redis URL (see redis_url.h). */
#include "src/common/redis_url.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "src/common/decimal.h"
#include "src/common/percent.h"

/* Copy s[0..len) into out, decoding %XX. Returns 0, or -1 when malformed,
 * too long, or decoding to a NUL. ('+' stays a '+': this is not a form.) */
static int decode(const char *s, size_t len, char *out, size_t out_size)
{
    return percent_decode(s, len, false, out, out_size) < 0 ? -1 : 0;
}

static bool ipv6_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
           c == ':' || c == '.';
}

static int fail(char *err, size_t err_size, const char *why)
{
    snprintf(err, err_size,
             "%s (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH)", why);
    return -1;
}

static int parse_unix(const char *rest, redis_url *out, char *err, size_t err_size)
{
    /* unix:///PATH: an empty authority, then an absolute path. */
    if (rest[0] != '/')
        return fail(err, err_size, "a unix:// URL needs an absolute path (unix:///PATH)");
    size_t len = strlen(rest);
    if (len < 2 || len >= sizeof out->path)
        return fail(err, err_size, "the socket path is empty or too long");
    memcpy(out->path, rest, len + 1);
    out->unix_socket = true;
    return 0;
}

int redis_url_parse(const char *s, redis_url *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(s, "unix://", 7) == 0)
        return parse_unix(s + 7, out, err, err_size);
    if (strncmp(s, "redis://", 8) != 0)
        return fail(err, err_size, "unknown scheme");
    const char *p = s + 8;
    const char *slash = strchr(p, '/');
    const char *end = slash != NULL ? slash : p + strlen(p);
    /* The last '@' ends the credentials: a password may hold '@' only escaped,
     * but searching from the right keeps a stray one from splitting the host. */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            return fail(err, err_size, "credentials must be [USER]:PASSWORD@");
        if (decode(p, (size_t)(colon - p), out->user, sizeof out->user) != 0 ||
            decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof out->password) != 0)
            return fail(err, err_size, "bad or too long user or password");
        if (out->password[0] == '\0')
            return fail(err, err_size, "empty password");
        p = at + 1;
    }
    const char *host_end;
    const char *port_start = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL)
            return fail(err, err_size, "unclosed [ in the host");
        if ((size_t)(close - p - 1) >= sizeof out->host || close == p + 1)
            return fail(err, err_size, "bad IPv6 host");
        memcpy(out->host, p + 1, (size_t)(close - p - 1));
        for (const char *q = out->host; *q != '\0'; q++)
            if (!ipv6_char(*q))
                return fail(err, err_size, "bad IPv6 host");
        host_end = close + 1;
        if (host_end < end && *host_end != ':')
            return fail(err, err_size, "junk after the IPv6 host");
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end == NULL)
            host_end = end;
        size_t hl = (size_t)(host_end - p);
        if (hl == 0 || hl >= sizeof out->host)
            return fail(err, err_size, "missing or too long host");
        memcpy(out->host, p, hl);
        for (size_t i = 0; i < hl; i++) {
            char c = out->host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_'))
                return fail(err, err_size, "bad character in the host");
        }
    }
    if (host_end < end && *host_end == ':')
        port_start = host_end + 1;
    if (port_start != NULL) {
        char digits[8];
        size_t pl = (size_t)(end - port_start);
        uint64_t v;
        if (pl == 0 || pl >= sizeof digits)
            return fail(err, err_size, "bad port");
        memcpy(digits, port_start, pl);
        digits[pl] = '\0';
        if (!decimal_parse_range(digits, 1, 65535, &v))
            return fail(err, err_size, "the port must be 1..65535");
        out->port = (int)v;
    }
    if (slash != NULL && slash[1] != '\0') {
        uint64_t v;
        if (!decimal_parse_range(slash + 1, 0, 2147483647, &v))
            return fail(err, err_size, "the database must be a number");
        out->db = (int)v;
    }
    return 0;
}

void redis_url_describe(const redis_url *u, char *out, size_t out_size)
{
    if (u->unix_socket)
        snprintf(out, out_size, "unix:%s", u->path);
    else if (strchr(u->host, ':') != NULL)
        snprintf(out, out_size, "[%s]:%d", u->host, u->port);
    else
        snprintf(out, out_size, "%s:%d", u->host, u->port);
}
