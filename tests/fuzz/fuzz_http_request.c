/* fuzz_http_request.c — libFuzzer harness for the HTTP request-head parser, its
 * incremental front end (http_head_append) and its header, token-list and
 * query helpers, run on what it parsed and on the raw input. Invariants: an OK
 * parse ends inside the input and inside HTTP_MAX_HEAD, every pointer it
 * returns lies inside the head, its prefixes are INCOMPLETE and the head alone
 * parses the same; the input fed to http_head_append in pieces (cut where its
 * own bytes say) reaches the same verdict within the promised number of
 * parses; the helpers never write past their out buffer and agree between
 * small and large buffers; http_request_last_id stays within its range. */
#include <stdbool.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "workers/http_request.h"

static const char *g_base;
static size_t g_len;

/* [p, p + n) lies within [g_base, g_base + g_len). */
static bool inside(const char *p, size_t n)
{
    return p != NULL && p >= g_base && n <= g_len && (size_t)(p - g_base) <= g_len - n;
}

/* A NUL-terminated copy, for the helpers that take C strings. */
static char *cstr(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static long query_param_sized(const char *q, size_t qlen, const char *name, size_t out_size,
                              char **value)
{
    /* Exactly out_size bytes, so a write past the end is a heap overflow. */
    char *out = malloc(out_size ? out_size : 1);
    if (out == NULL)
        abort();
    if (out_size)
        memset(out, 'Z', out_size);
    long r = http_query_param(q, qlen, name, out, out_size);
    FUZZ_ASSERT(r >= -2);
    if (out_size == 0) {
        FUZZ_ASSERT(r == -2);
    } else if (r >= 0) {
        FUZZ_ASSERT((size_t)r < out_size);
        FUZZ_ASSERT(out[r] == '\0');
        /* A decoded %00 is refused. A raw NUL is copied through, but only the
         * raw-bytes calls below can have one: a parsed target cannot. */
        if (memchr(q, '\0', qlen) == NULL)
            FUZZ_ASSERT(strlen(out) == (size_t)r);
    } else {
        FUZZ_ASSERT(out[0] == '\0');
    }
    if (value != NULL && r >= 0)
        *value = out;
    else
        free(out);
    return r;
}

/* The same lookup with buffers of 0, 1, 4 and 8 KiB: small ones may say
 * "does not fit" (-2), but never a different value. */
static void check_query(const char *q, size_t qlen, const char *name)
{
    char *big = NULL;
    long rb = query_param_sized(q, qlen, name, HTTP_MAX_HEAD, &big);
    static const size_t small_sizes[] = { 0, 1, 4 };
    for (size_t i = 0; i < sizeof small_sizes / sizeof small_sizes[0]; i++) {
        char *small = NULL;
        long rs = query_param_sized(q, qlen, name, small_sizes[i], &small);
        if (rb == -1)
            FUZZ_ASSERT(rs == -1 || (small_sizes[i] == 0 && rs == -2));
        if (rs >= 0) {
            FUZZ_ASSERT(rs == rb);
            FUZZ_ASSERT(memcmp(small, big, (size_t)rs + 1) == 0);
        }
        if (rb >= 0 && (size_t)rb < small_sizes[i])
            FUZZ_ASSERT(rs == rb);
        free(small);
    }
    free(big);
}

static void check_token_list(const char *value, size_t len)
{
    static const char *const tokens[] = { "upgrade", "websocket", "keep-alive", "close", "x" };
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
        (void)http_token_list_has(value, len, tokens[i]);
    FUZZ_ASSERT(!http_token_list_has(value, len, ""));
    /* The first item, trimmed, is in the list (when it is a usable token). */
    const char *comma = memchr(value, ',', len);
    size_t a = 0;
    size_t b = comma ? (size_t)(comma - value) : len;
    while (a < b && (value[a] == ' ' || value[a] == '\t'))
        a++;
    while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t'))
        b--;
    if (b > a && memchr(value + a, '\0', b - a) == NULL) {
        char *tok = cstr(value + a, b - a);
        FUZZ_ASSERT(http_token_list_has(value, len, tok));
        free(tok);
    }
}

static void check_parsed(const char *buf, size_t size, const http_request *req, size_t head_len)
{
    FUZZ_ASSERT(head_len > 0 && head_len <= size && head_len <= HTTP_MAX_HEAD);
    g_base = buf;
    g_len = head_len;
    FUZZ_ASSERT(inside(req->method, req->method_len) && req->method_len > 0);
    FUZZ_ASSERT(req->method == buf);
    FUZZ_ASSERT(inside(req->target, req->target_len) && req->target_len > 0);
    FUZZ_ASSERT(req->target[0] == '/');
    FUZZ_ASSERT(req->path == req->target && req->path_len <= req->target_len);
    if (req->query != NULL) {
        FUZZ_ASSERT(inside(req->query, req->query_len));
        FUZZ_ASSERT(req->query == req->target + req->path_len + 1);
        FUZZ_ASSERT(req->path_len + 1 + req->query_len == req->target_len);
        FUZZ_ASSERT(req->target[req->path_len] == '?');
    } else {
        FUZZ_ASSERT(req->path_len == req->target_len && req->query_len == 0);
    }
    FUZZ_ASSERT(req->version_minor == 0 || req->version_minor == 1);
    FUZZ_ASSERT(req->header_count <= HTTP_MAX_HEADERS);
    FUZZ_ASSERT(buf[head_len - 1] == '\n');

    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        FUZZ_ASSERT(inside(h->name, h->name_len) && h->name_len > 0);
        FUZZ_ASSERT(h->value_len == 0 || inside(h->value, h->value_len));
        FUZZ_ASSERT(h->value >= h->name + h->name_len + 1);
        FUZZ_ASSERT(h->name[h->name_len] == ':');
        if (h->value_len) {
            FUZZ_ASSERT(h->value[0] != ' ' && h->value[0] != '\t');
            FUZZ_ASSERT(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
            FUZZ_ASSERT(memchr(h->value, '\0', h->value_len) == NULL);
        }
        /* Lookup by name returns the first header of that name, any case. */
        char *name = cstr(h->name, h->name_len);
        const http_header *found = http_request_header(req, name);
        FUZZ_ASSERT(found != NULL && found <= h && found->name_len == h->name_len);
        size_t count = http_request_header_count(req, name);
        FUZZ_ASSERT(count >= 1 && count <= req->header_count);
        free(name);
        check_token_list(h->value, h->value_len);
    }
    /* The resume position: a verdict, and a value only within its range. */
    int64_t last_id = -7;
    int lr = http_request_last_id(req, &last_id);
    FUZZ_ASSERT(lr == -1 || lr == 0 || lr == 1);
    if (lr == 1)
        FUZZ_ASSERT(last_id >= 0 && last_id <= HTTP_LAST_ID_MAX);
    if (lr == 0) {
        char v[64];
        FUZZ_ASSERT(http_request_header(req, "last-event-id") == NULL);
        FUZZ_ASSERT(http_query_param(req->query, req->query_len, "last_id", v, sizeof v) == -1);
    }

    FUZZ_ASSERT(http_request_header(req, "") == NULL);
    FUZZ_ASSERT(http_request_header_count(req, "") == 0);
    (void)http_request_header(req, "sec-websocket-key");

    if (req->query != NULL) {
        check_query(req->query, req->query_len, "token");
        check_query(req->query, req->query_len, "");
        /* The first pair's name is present (maybe badly encoded). */
        const char *end = req->query + req->query_len;
        const char *p = req->query;
        while (p < end && *p != '=' && *p != '&')
            p++;
        char *first = cstr(req->query, (size_t)(p - req->query));
        if (req->query_len > 0) {
            char *v = NULL;
            FUZZ_ASSERT(query_param_sized(req->query, req->query_len, first, HTTP_MAX_HEAD, &v) !=
                        -1);
            free(v);
        }
        check_query(req->query, req->query_len, first);
        free(first);
    }

    /* The head is self-delimiting: alone it parses to the same length, and
     * any shorter prefix is still incomplete (every byte is checked as it is
     * seen, so there is no verdict before the blank line). */
    http_request again;
    size_t again_len = 0;
    FUZZ_ASSERT(http_request_parse(buf, head_len, &again, &again_len) == HTTP_PARSE_OK);
    FUZZ_ASSERT(again_len == head_len && again.header_count == req->header_count);
    size_t cuts[] = { head_len - 1, head_len / 2, 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] == 0 || cuts[i] >= head_len)
            continue;
        size_t l = 99;
        FUZZ_ASSERT(http_request_parse(buf, cuts[i], &again, &l) == HTTP_PARSE_INCOMPLETE);
        FUZZ_ASSERT(l == 0);
    }
}

/* Feeds data to http_head_append in pieces, as the connection would: piece
 * lengths 1..32 from the input's own bytes, except that every third input
 * (by its first byte) goes a byte at a time, the worst case for the parse
 * count. Stops at the first verdict, then checks it against a direct parse. */
static void check_append(const uint8_t *data, size_t size)
{
    /* Exactly the documented HTTP_MAX_HEAD + 1 bytes of room. */
    char *buf = malloc(HTTP_MAX_HEAD + 1);
    if (buf == NULL)
        abort();
    bool bytewise = size > 0 && data[0] % 3 == 0;
    uint32_t len = 0;
    unsigned parses = 0;
    http_request req;
    size_t head_len = 0;
    http_parse_status st = HTTP_PARSE_INCOMPLETE;
    size_t pos = 0;
    size_t k = 0;
    while (pos < size && st == HTTP_PARSE_INCOMPLETE && len <= HTTP_MAX_HEAD) {
        size_t piece = bytewise ? 1 : 1u + data[k++ % size] % 32u;
        if (piece > size - pos)
            piece = size - pos;
        uint32_t before = len;
        st = http_head_append(buf, &len, data + pos, piece, &req, &head_len, &parses);
        FUZZ_ASSERT(len >= before && len <= HTTP_MAX_HEAD + 1);
        FUZZ_ASSERT(len - before == piece || len == HTTP_MAX_HEAD + 1);
        pos += piece;
    }
    FUZZ_ASSERT(memcmp(buf, data, len) == 0);

    http_request direct;
    size_t direct_len = 0;
    http_parse_status want = http_request_parse(buf, len, &direct, &direct_len);
    if (want == HTTP_PARSE_INCOMPLETE && len > HTTP_MAX_HEAD)
        want = HTTP_PARSE_TOO_LARGE;
    if (st != HTTP_PARSE_INCOMPLETE) {
        FUZZ_ASSERT(st == want);
    } else {
        /* Undecided while no line has ended since the last parse: a direct
         * parse may already know BAD or TOO_LARGE (the 65th header has
         * begun, or exactly HTTP_MAX_HEAD bytes are in), but never OK, whose
         * head ends with the '\n' that would have made it parse. */
        FUZZ_ASSERT(want != HTTP_PARSE_OK);
        /* The next line end forces the verdict a direct parse gives. */
        if (len <= HTTP_MAX_HEAD) {
            st = http_head_append(buf, &len, (const uint8_t *)"\n", 1, &req, &head_len, &parses);
            want = http_request_parse(buf, len, &direct, &direct_len);
            if (want == HTTP_PARSE_INCOMPLETE && len > HTTP_MAX_HEAD)
                want = HTTP_PARSE_TOO_LARGE;
            FUZZ_ASSERT(st == want);
        }
    }
    /* Worst case one parse per line: the request line, HTTP_MAX_HEADERS
     * headers and the blank line (or the header one too many). */
    FUZZ_ASSERT(parses <= HTTP_MAX_HEADERS + 2);
    if (st == HTTP_PARSE_OK) {
        FUZZ_ASSERT(head_len == direct_len && req.header_count == direct.header_count);
        FUZZ_ASSERT(req.method == buf && req.target_len == direct.target_len);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    http_request req;
    size_t head_len = 12345;
    http_parse_status st = http_request_parse(buf, size, &req, &head_len);
    FUZZ_ASSERT(st == HTTP_PARSE_OK || st == HTTP_PARSE_INCOMPLETE || st == HTTP_PARSE_BAD ||
                st == HTTP_PARSE_TOO_LARGE || st == HTTP_PARSE_BAD_VERSION);
    if (st == HTTP_PARSE_OK)
        check_parsed(buf, size, &req, head_len);
    else
        FUZZ_ASSERT(head_len == 0);
    if (st == HTTP_PARSE_INCOMPLETE)
        FUZZ_ASSERT(size < HTTP_MAX_HEAD);

    /* Stateless: a second call on the same bytes gives the same answer. */
    size_t head_len2 = 0;
    FUZZ_ASSERT(http_request_parse(buf, size, &req, &head_len2) == st && head_len2 == head_len);

    check_append(data, size);

    /* The helpers on raw bytes too (any byte, NULs included). */
    size_t raw = size < HTTP_MAX_HEAD ? size : HTTP_MAX_HEAD;
    check_token_list(buf, raw);
    check_query(buf, raw, "token");
    check_query(buf, raw, "a");
    return 0;
}
