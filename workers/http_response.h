/* http_response.h — the few HTTP/1.1 responses the gateway writes: JSON bodies,
 * errors as {"error":"..."}, and the 101 Switching Protocols of an upgrade. */
#ifndef WSN_HTTP_RESPONSE_H
#define WSN_HTTP_RESPONSE_H

#include <stddef.h>

const char *http_status_text(int status);

/* The status line and headers only, for a body of body_len bytes written after
 * it. Returns the length written, or 0 if out is too small. */
size_t http_response_head(char *out, size_t out_size, int status, const char *content_type,
                          const char *extra_headers, size_t body_len);

/* Full response with Connection: close. extra_headers is "" or CRLF-terminated
 * lines. Returns the length written, or 0 if out is too small. */
size_t http_response_format(char *out, size_t out_size, int status, const char *content_type,
                            const char *extra_headers, const char *body, size_t body_len);

/* {"error":"<message>"} with the given status; message must not need escaping. */
size_t http_response_error(char *out, size_t out_size, int status, const char *message,
                           const char *extra_headers);

/* 101 response for the Sec-WebSocket-Accept value. */
size_t http_response_upgrade(char *out, size_t out_size, const char *accept);

#endif
