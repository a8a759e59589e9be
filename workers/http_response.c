/* http_response.c — format the gateway's HTTP responses into a caller buffer. */
#include "workers/http_response.h"

#include <stdio.h>
#include <string.h>

const char *http_status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

size_t http_response_head(char *out, size_t out_size, int status, const char *content_type,
                          const char *extra_headers, size_t body_len)
{
    int n = snprintf(out, out_size,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "%s"
                     "\r\n",
                     status, http_status_text(status), content_type, body_len, extra_headers);
    if (n < 0 || (size_t)n >= out_size)
        return 0;
    return (size_t)n;
}

size_t http_response_format(char *out, size_t out_size, int status, const char *content_type,
                            const char *extra_headers, const char *body, size_t body_len)
{
    size_t n = http_response_head(out, out_size, status, content_type, extra_headers, body_len);
    if (n == 0 || n + body_len > out_size)
        return 0;
    memcpy(out + n, body, body_len);
    return n + body_len;
}

size_t http_response_error(char *out, size_t out_size, int status, const char *message,
                           const char *extra_headers)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", message);
    if (n < 0 || (size_t)n >= sizeof body)
        return 0;
    return http_response_format(out, out_size, status, "application/json", extra_headers, body,
                                (size_t)n);
}

size_t http_response_upgrade(char *out, size_t out_size, const char *accept)
{
    int n = snprintf(out, out_size,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "\r\n",
                     accept);
    if (n < 0 || (size_t)n >= out_size)
        return 0;
    return (size_t)n;
}
