/* http_request.h — a strict, bounded HTTP/1.1 request-head parser.
 *
 * Only what the gateway needs: request line, headers, and helpers to read a
 * header, a token list and a URL-decoded query parameter. The parser never
 * allocates; it points into the caller's buffer. */
#ifndef WSN_HTTP_REQUEST_H
#define WSN_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD 8192     /* request line + headers + blank line */
#define HTTP_MAX_HEADERS 64

typedef struct {
    const char *name;
    size_t name_len;
    const char *value;         /* leading/trailing whitespace stripped */
    size_t value_len;
} http_header;

typedef struct {
    const char *method;
    size_t method_len;
    const char *target;        /* as sent: path plus optional ?query */
    size_t target_len;
    const char *path;          /* target up to '?' */
    size_t path_len;
    const char *query;         /* after '?', NULL when absent */
    size_t query_len;
    int version_minor;         /* HTTP/1.x */
    http_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
} http_request;

typedef enum {
    HTTP_PARSE_OK,             /* complete head parsed; *head_len set */
    HTTP_PARSE_INCOMPLETE,     /* need more bytes (and len < HTTP_MAX_HEAD) */
    HTTP_PARSE_BAD,            /* malformed → 400 */
    HTTP_PARSE_TOO_LARGE,      /* head over HTTP_MAX_HEAD or too many headers → 431 */
    HTTP_PARSE_BAD_VERSION,    /* not HTTP/1.0 or 1.1 → 505 */
} http_parse_status;

http_parse_status http_request_parse(const char *buf, size_t len, http_request *req,
                                     size_t *head_len);

/* Add n bytes that arrived after the len bytes already in buf (which has room
 * for HTTP_MAX_HEAD + 1 bytes; at most that many are kept, the last proving
 * "too large"), and parse only when they end a line or fill the window: a
 * head sent a byte at a time costs one parse per line, not one per byte (at
 * most HTTP_MAX_HEADERS + 2 parses of at most HTTP_MAX_HEAD bytes). *len grows;
 * *parses (may be NULL) counts the parses. Returns INCOMPLETE, or what
 * http_request_parse returned (OK: *req and *head_len describe buf). */
http_parse_status http_head_append(char *buf, uint32_t *len, const uint8_t *data, size_t n,
                                   http_request *req, size_t *head_len, unsigned *parses);

/* First header with this name (case-insensitive), NULL when absent. */
const http_header *http_request_header(const http_request *req, const char *name);

/* How many headers have this name (case-insensitive). */
size_t http_request_header_count(const http_request *req, const char *name);

/* The comma-separated value contains token (case-insensitive), e.g. "keep-alive, Upgrade". */
bool http_token_list_has(const char *value, size_t len, const char *token);

/* URL-decode the query parameter `name` into out (NUL-terminated).
 * Returns its length, -1 when absent, -2 when it does not fit or is badly encoded. */
long http_query_param(const char *query, size_t query_len, const char *name, char *out,
                      size_t out_size);

/* The largest resume position a client may give: ids stay below 2^53 so that
 * JavaScript reads them exactly (SPEC "gRPC"). */
#define HTTP_LAST_ID_MAX ((INT64_C(1) << 53) - 1)

/* The resume position of a /ws request: ?last_id=N (URL-decoded), else the
 * header Last-Event-ID: N (the query wins, as with the token). N must be a
 * plain decimal 0..HTTP_LAST_ID_MAX. Returns 1 with *out set, 0 when neither
 * is present, -1 when the one that counts is malformed (or the header is
 * repeated: two positions are no position). */
int http_request_last_id(const http_request *req, int64_t *out);

#endif
