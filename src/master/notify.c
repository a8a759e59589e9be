/* notify.c — a notification itself (see notify.h): the checks of its
 * request, its numbering in time, and the client JSON built once for it. */
#include "src/master/notify.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/common/utf8.h"

static const char *or_empty(const char *s) { return s != NULL ? s : ""; }

static int check_utf8(const char *field, const char *s, char *err, size_t err_size)
{
    if (!utf8_valid((const uint8_t *)s, strlen(s))) {
        snprintf(err, err_size, "%s is not valid UTF-8", field);
        return -1;
    }
    return 0;
}

/* Code points a link may start with that a client could strip before using
 * it: every C0 control and space (the WHATWG URL parser drops them), and the
 * rest of what JavaScript's trim() removes (a client that trims first). */
static size_t leading_blank_len(const unsigned char *p)
{
    if (p[0] != '\0' && p[0] <= 0x20)
        return 1;
    static const char *const wide[] = {
        "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82",
        "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87",
        "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9",
        "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80", "\xef\xbb\xbf",
    };
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        size_t n = strlen(wide[i]);
        if (strncmp((const char *)p, wide[i], n) == 0) /* stops at p's NUL */
            return n;
    }
    return 0;
}

/* The scheme of link as a browser parses it, lower-cased into out (NUL-
 * terminated), or "" when it has none (a path, a query, "//host"): leading
 * blanks dropped, ASCII tab, LF and CR ignored anywhere ("java\tscript:" is
 * javascript:), then ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":". */
static void link_scheme(const char *link, char *out, size_t out_size)
{
    const unsigned char *p = (const unsigned char *)link;
    size_t skip;
    while ((skip = leading_blank_len(p)) > 0)
        p += skip;
    size_t n = 0;
    out[0] = '\0';
    for (; *p != '\0'; p++) {
        unsigned char c = *p;
        if (c == '\t' || c == '\n' || c == '\r')
            continue;
        if (c == ':') {
            if (n > 0 && n < out_size)
                out[n] = '\0';
            else
                out[0] = '\0';
            return;
        }
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool more = (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
        if (!(alpha || (n > 0 && more)) || n + 1 >= out_size) {
            out[0] = '\0';
            return;
        }
        out[n++] = (char)(c | (alpha ? 0x20 : 0));
    }
    out[0] = '\0'; /* no ':' at all */
}

/* A link whose scheme would run code or smuggle content when a client puts
 * it in an href: refused, whatever the case and the blanks around it. */
static int check_link(const char *link, char *err, size_t err_size)
{
    static const char *const refused[] = {"javascript", "data", "vbscript"};
    char scheme[16];
    link_scheme(link, scheme, sizeof scheme);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (strcmp(scheme, refused[i]) == 0) {
            snprintf(err, err_size, "link: the %s: scheme is not allowed", refused[i]);
            return -1;
        }
    }
    return 0;
}

int notify_validate(const notify_request *req, char *err, size_t err_size)
{
    const char *type = or_empty(req->type);
    const char *title = or_empty(req->title);
    const char *message = or_empty(req->message);
    const char *link = or_empty(req->link);
    if (req->user_id <= 0) {
        snprintf(err, err_size, "user_id must be a positive integer");
        return -1;
    }
    if (type[0] == '\0') {
        snprintf(err, err_size, "type is required");
        return -1;
    }
    if (strlen(type) > NOTIFY_MAX_TYPE) {
        snprintf(err, err_size, "type is longer than %u bytes", NOTIFY_MAX_TYPE);
        return -1;
    }
    if (title[0] == '\0') {
        snprintf(err, err_size, "title is required");
        return -1;
    }
    size_t content = strlen(title) + strlen(message) + strlen(link);
    if (content > NOTIFY_MAX_CONTENT) {
        snprintf(err, err_size, "title+message+link is %zu bytes, over the %u-byte limit",
                 content, NOTIFY_MAX_CONTENT);
        return -1;
    }
    if (req->id < 0 || req->id > NOTIFY_ID_MAX) {
        /* Clients read ids as JavaScript numbers, exact only below 2^53. */
        snprintf(err, err_size, "id must be between 0 and 2^53-1");
        return -1;
    }
    if (check_utf8("type", type, err, err_size) != 0 ||
        check_utf8("title", title, err, err_size) != 0 ||
        check_utf8("message", message, err, err_size) != 0 ||
        check_utf8("link", link, err, err_size) != 0)
        return -1;
    return check_link(link, err, err_size);
}

void notify_format_timestamp(int64_t unix_seconds, char out[21])
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 21, "1970-01-01T00:00:00Z");
}

/* JSON string escaping, byte for byte as json-c writes it (tests compare the
 * two): \" \\ \b \t \n \f \r, other bytes below 0x20 as \u00xx, the rest as
 * is (the text is valid UTF-8, checked by notify_validate). Written by hand
 * because this runs once per notification: json-c costs a dozen mallocs. */
static size_t escaped_len(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c == '\b' || c == '\t' || c == '\n' || c == '\f' ||
            c == '\r')
            n += 2;
        else if (c < 0x20)
            n += 6;
        else
            n += 1;
    }
    return n;
}

static char *put_escaped(char *p, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char short_form = c == '"' ? '"' : c == '\\' ? '\\' : c == '\b' ? 'b' : c == '\t' ? 't'
                        : c == '\n' ? 'n' : c == '\f' ? 'f' : c == '\r' ? 'r' : 0;
        if (short_form != 0) {
            *p++ = '\\';
            *p++ = short_form;
        } else if (c < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[c >> 4];
            p[5] = hex[c & 15];
            p += 6;
        } else {
            *p++ = (char)c;
        }
    }
    return p;
}

static char *put_text(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

char *notify_build_json(const notify_request *req, int64_t id, const char *timestamp,
                        size_t *len)
{
    const char *title = or_empty(req->title), *message = or_empty(req->message);
    const char *type = or_empty(req->type), *link = or_empty(req->link);
    char idbuf[24];
    int idn = snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    if (idn <= 0)
        return NULL;
    static const char k_head[] = "{\"type\":\"notification\",\"data\":{\"id\":";
    static const char k_title[] = ",\"title\":\"", k_message[] = "\",\"message\":\"",
                      k_type[] = "\",\"notification_type\":\"", k_link[] = "\",\"link\":\"",
                      k_time[] = "\",\"timestamp\":\"", k_tail[] = "\"}}";
    size_t n = sizeof k_head - 1 + (size_t)idn + sizeof k_title - 1 + escaped_len(title) +
               sizeof k_message - 1 + escaped_len(message) + sizeof k_type - 1 +
               escaped_len(type) + sizeof k_link - 1 + escaped_len(link) + sizeof k_time - 1 +
               escaped_len(timestamp) + sizeof k_tail - 1;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    char *p = put_text(out, k_head);
    p = put_text(p, idbuf);
    p = put_escaped(put_text(p, k_title), title);
    p = put_escaped(put_text(p, k_message), message);
    p = put_escaped(put_text(p, k_type), type);
    p = put_escaped(put_text(p, k_link), link);
    p = put_escaped(put_text(p, k_time), timestamp);
    p = put_text(p, k_tail);
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
}

void notify_format_timestamp_ms(uint64_t unix_ms, char out[25])
{
    time_t t = (time_t)(unix_ms / 1000u);
    struct tm tm;
    char base[21];
    if (gmtime_r(&t, &tm) == NULL || strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(base, sizeof base, "1970-01-01T00:00:00");
    /* 19 + ".mmmZ" + NUL = 24 bytes; a year past 9999 is cut, never overrun. */
    if (snprintf(out, 25, "%.19s.%03uZ", base, (unsigned)(unix_ms % 1000u)) < 0)
        out[0] = '\0';
}
