/* http_request.c — strict, bounded parser for an HTTP/1.x request head, plus
 * the small lookups the gateway needs (header by name, token lists, query
 * parameters).
 *
 * The parser is stateless: every call re-parses the buffer from the start.
 * That costs at most HTTP_MAX_HEAD bytes of scanning per call and keeps the
 * caller free of parser state. It never allocates; everything in
 * http_request points into the caller's buffer.
 *
 * Strictness choices (RFC 9112 allows a server to be this strict):
 * - no leading empty lines before the request line;
 * - method: 1..HTTP_MAX_METHOD token characters, then exactly one SP;
 * - target: origin-form only ('/' then visible ASCII), then exactly one SP;
 * - version: "HTTP/" DIGIT "." DIGIT; only 1.0 and 1.1 are accepted;
 * - no whitespace before the ':' of a header, no obsolete line folding;
 * - header values: visible ASCII, obs-text (0x80-0xFF), SP and HTAB only.
 * Every byte is validated as soon as it is seen, so garbage (binary data, a
 * TLS ClientHello on the plain-text port) is rejected on the first bad byte
 * instead of after the caller has buffered HTTP_MAX_HEAD bytes. */
#include "workers/http_request.h"

#include <limits.h>
#include <string.h>

#include "src/common/decimal.h"
#include "src/common/percent.h"

/* Real methods are short; a longer run of token bytes is not HTTP. */
#define HTTP_MAX_METHOD 32

/* While parsing, HTTP_PARSE_OK from a step means "this piece is done, go on". */
typedef struct {
    const char *buf;
    size_t end;  /* bytes available to the parser: min(len, HTTP_MAX_HEAD) */
    size_t pos;
} cursor;

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* field-vchar / SP / HTAB; obs-text is tolerated in values as RFC 9110 says. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Locale-independent: header names and tokens are ASCII by definition. */
static bool ascii_equal_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

static bool at_end(const cursor *c)
{
    return c->pos >= c->end;
}

static unsigned char peek(const cursor *c)
{
    return (unsigned char)c->buf[c->pos];
}

/* Consume "\r\n" or a bare "\n". A '\r' followed by anything else is BAD:
 * a lone CR is a classic request-smuggling ingredient. */
static http_parse_status consume_eol(cursor *c)
{
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    if (peek(c) == '\n') {
        c->pos++;
        return HTTP_PARSE_OK;
    }
    if (peek(c) != '\r')
        return HTTP_PARSE_BAD;
    if (c->pos + 1 >= c->end)
        return HTTP_PARSE_INCOMPLETE;
    if (c->buf[c->pos + 1] != '\n')
        return HTTP_PARSE_BAD;
    c->pos += 2;
    return HTTP_PARSE_OK;
}

static http_parse_status consume_sp(cursor *c)
{
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    if (peek(c) != ' ')
        return HTTP_PARSE_BAD;
    c->pos++;
    return HTTP_PARSE_OK;
}

static http_parse_status parse_method(cursor *c, http_request *req)
{
    size_t start = c->pos;
    while (!at_end(c) && is_tchar(peek(c))) {
        if (c->pos - start >= HTTP_MAX_METHOD)
            return HTTP_PARSE_BAD;
        c->pos++;
    }
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    if (c->pos == start)
        return HTTP_PARSE_BAD;
    req->method = c->buf + start;
    req->method_len = c->pos - start;
    return consume_sp(c);
}

static void split_target(http_request *req)
{
    const char *q = memchr(req->target, '?', req->target_len);
    if (q == NULL) {
        req->path = req->target;
        req->path_len = req->target_len;
        req->query = NULL;
        req->query_len = 0;
        return;
    }
    req->path = req->target;
    req->path_len = (size_t)(q - req->target);
    req->query = q + 1;
    req->query_len = req->target_len - req->path_len - 1;
}

static http_parse_status parse_target(cursor *c, http_request *req)
{
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    if (peek(c) != '/')
        return HTTP_PARSE_BAD;
    size_t start = c->pos;
    while (!at_end(c) && is_target_char(peek(c)))
        c->pos++;
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    req->target = c->buf + start;
    req->target_len = c->pos - start;
    split_target(req);
    /* Anything but SP here (CR, LF, control, non-ASCII) means a missing
     * version (HTTP/0.9 style) or a bad target byte. */
    return consume_sp(c);
}

static http_parse_status expect_digit(cursor *c, int *digit)
{
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    if (peek(c) < '0' || peek(c) > '9')
        return HTTP_PARSE_BAD;
    *digit = peek(c) - '0';
    c->pos++;
    return HTTP_PARSE_OK;
}

static http_parse_status parse_version(cursor *c, http_request *req)
{
    static const char prefix[] = "HTTP/";
    for (size_t i = 0; i < sizeof prefix - 1; i++) {
        if (at_end(c))
            return HTTP_PARSE_INCOMPLETE;
        if (peek(c) != (unsigned char)prefix[i])
            return HTTP_PARSE_BAD;
        c->pos++;
    }
    int major = 0;
    int minor = 0;
    http_parse_status st = expect_digit(c, &major);
    if (st != HTTP_PARSE_OK)
        return st;
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    if (peek(c) != '.')
        return HTTP_PARSE_BAD;
    c->pos++;
    st = expect_digit(c, &minor);
    if (st != HTTP_PARSE_OK)
        return st;
    st = consume_eol(c);
    if (st != HTTP_PARSE_OK)
        return st;
    /* Well-formed but not one we speak: the caller answers 505. */
    if (major != 1 || minor > 1)
        return HTTP_PARSE_BAD_VERSION;
    req->version_minor = minor;
    return HTTP_PARSE_OK;
}

static http_parse_status parse_request_line(cursor *c, http_request *req)
{
    http_parse_status st = parse_method(c, req);
    if (st != HTTP_PARSE_OK)
        return st;
    st = parse_target(c, req);
    if (st != HTTP_PARSE_OK)
        return st;
    return parse_version(c, req);
}

/* One "name: value" line; the caller has checked it does not start a blank
 * line or a folded continuation. */
static http_parse_status parse_header_line(cursor *c, http_header *h)
{
    size_t name_start = c->pos;
    while (!at_end(c) && is_tchar(peek(c)))
        c->pos++;
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    /* Whitespace before ':' must be rejected (RFC 9112 §5.1): proxies
     * disagree about what such a header means. */
    if (peek(c) != ':' || c->pos == name_start)
        return HTTP_PARSE_BAD;
    h->name = c->buf + name_start;
    h->name_len = c->pos - name_start;
    c->pos++;

    while (!at_end(c) && is_ows(peek(c)))
        c->pos++;
    size_t value_start = c->pos;
    while (!at_end(c) && is_value_char(peek(c)))
        c->pos++;
    if (at_end(c))
        return HTTP_PARSE_INCOMPLETE;
    size_t value_end = c->pos;
    http_parse_status st = consume_eol(c);
    if (st != HTTP_PARSE_OK)
        return st;
    while (value_end > value_start && is_ows((unsigned char)c->buf[value_end - 1]))
        value_end--;
    h->value = c->buf + value_start;
    h->value_len = value_end - value_start;
    return HTTP_PARSE_OK;
}

static http_parse_status parse_headers(cursor *c, http_request *req)
{
    for (;;) {
        if (at_end(c))
            return HTTP_PARSE_INCOMPLETE;
        unsigned char first = peek(c);
        if (first == '\r' || first == '\n')
            return consume_eol(c); /* the blank line ending the head */
        /* A line starting with whitespace is obsolete folding (or, right
         * after the request line, a smuggling attempt): never accepted. */
        if (is_ows(first))
            return HTTP_PARSE_BAD;
        if (req->header_count == HTTP_MAX_HEADERS)
            return HTTP_PARSE_TOO_LARGE;
        http_parse_status st = parse_header_line(c, &req->headers[req->header_count]);
        if (st != HTTP_PARSE_OK)
            return st;
        req->header_count++;
    }
}

http_parse_status http_request_parse(const char *buf, size_t len, http_request *req,
                                     size_t *head_len)
{
    if (buf == NULL || req == NULL || head_len == NULL)
        return HTTP_PARSE_BAD;
    *head_len = 0;
    req->header_count = 0;
    req->query = NULL;
    req->query_len = 0;

    cursor c = { .buf = buf, .end = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD, .pos = 0 };
    http_parse_status st = parse_request_line(&c, req);
    if (st == HTTP_PARSE_OK)
        st = parse_headers(&c, req);
    if (st == HTTP_PARSE_INCOMPLETE && len >= HTTP_MAX_HEAD)
        return HTTP_PARSE_TOO_LARGE; /* the window is full and still no blank line */
    if (st == HTTP_PARSE_OK)
        *head_len = c.pos;
    return st;
}

http_parse_status http_head_append(char *buf, uint32_t *len, const uint8_t *data, size_t n,
                                   http_request *req, size_t *head_len, unsigned *parses)
{
    size_t room = HTTP_MAX_HEAD + 1 - *len;
    size_t take = n < room ? n : room;
    memcpy(buf + *len, data, take);
    *len += (uint32_t)take;
    /* Until a line ends nothing new can be decided: the parser would only
     * walk the same bytes again. */
    if (memchr(data, '\n', take) == NULL && *len <= HTTP_MAX_HEAD)
        return HTTP_PARSE_INCOMPLETE;
    if (parses != NULL)
        (*parses)++;
    http_parse_status st = http_request_parse(buf, *len, req, head_len);
    if (st == HTTP_PARSE_INCOMPLETE && *len > HTTP_MAX_HEAD)
        return HTTP_PARSE_TOO_LARGE;
    return st;
}

const http_header *http_request_header(const http_request *req, const char *name)
{
    if (req == NULL || name == NULL)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == n && ascii_equal_nocase(h->name, name, n))
            return h;
    }
    return NULL;
}

size_t http_request_header_count(const http_request *req, const char *name)
{
    if (req == NULL || name == NULL)
        return 0;
    size_t n = strlen(name);
    size_t count = 0;
    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        count += h->name_len == n && ascii_equal_nocase(h->name, name, n);
    }
    return count;
}

bool http_token_list_has(const char *value, size_t len, const char *token)
{
    if (value == NULL || token == NULL)
        return false;
    size_t tlen = strlen(token);
    if (tlen == 0)
        return false;
    size_t pos = 0;
    while (pos <= len) {
        const char *comma = memchr(value + pos, ',', len - pos);
        size_t item_end = comma ? (size_t)(comma - value) : len;
        size_t a = pos;
        size_t b = item_end;
        while (a < b && is_ows((unsigned char)value[a]))
            a++;
        while (b > a && is_ows((unsigned char)value[b - 1]))
            b--;
        if (b - a == tlen && ascii_equal_nocase(value + a, token, tlen))
            return true;
        if (comma == NULL)
            break;
        pos = item_end + 1;
    }
    return false;
}

long http_query_param(const char *query, size_t query_len, const char *name, char *out,
                      size_t out_size)
{
    if (out == NULL || out_size == 0)
        return -2;
    out[0] = '\0';
    if (query == NULL || name == NULL)
        return -1;
    size_t name_len = strlen(name);
    size_t pos = 0;
    while (pos < query_len) {
        const char *amp = memchr(query + pos, '&', query_len - pos);
        size_t pair_end = amp ? (size_t)(amp - query) : query_len;
        const char *pair = query + pos;
        size_t pair_len = pair_end - pos;
        const char *eq = memchr(pair, '=', pair_len);
        size_t key_len = eq ? (size_t)(eq - pair) : pair_len;
        /* Names are compared literally (not decoded); "token" without '='
         * counts as present with an empty value. */
        if (key_len == name_len && memcmp(pair, name, name_len) == 0) {
            const char *val = eq ? eq + 1 : pair + pair_len;
            long r = percent_decode(val, (size_t)(pair + pair_len - val), true, out, out_size);
            if (r < 0)
                r = -2;
            if (r < 0)
                out[0] = '\0';
            return r;
        }
        pos = pair_end + 1;
    }
    return -1;
}

/* 20 digits hold any uint64; one more proves a longer value too long. */
#define LAST_ID_TEXT 24

static int last_id_value(const char *s, size_t n, int64_t *out)
{
    uint64_t v = 0;
    if (!decimal_parse_n(s, n, &v) || v > (uint64_t)HTTP_LAST_ID_MAX)
        return -1;
    *out = (int64_t)v;
    return 1;
}

int http_request_last_id(const http_request *req, int64_t *out)
{
    char text[LAST_ID_TEXT];
    if (req->query != NULL) {
        long n = http_query_param(req->query, req->query_len, "last_id", text, sizeof text);
        if (n >= 0)
            return last_id_value(text, (size_t)n, out);
        if (n == -2)
            return -1;
    }
    size_t count = http_request_header_count(req, "Last-Event-ID");
    if (count == 0)
        return 0;
    if (count > 1)
        return -1;
    const http_header *h = http_request_header(req, "Last-Event-ID");
    return last_id_value(h->value, h->value_len, out);
}
