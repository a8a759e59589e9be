/* percent.h — %XX decoding, as URLs and form bodies use it: the one decoder
 * behind the query string of an upgrade (workers/http_request.c) and the
 * credentials of a --redis URL (redis_url.c). */
#ifndef WSN_PERCENT_H
#define WSN_PERCENT_H

#include <stdbool.h>
#include <stddef.h>

/* Decode in[0..n) into out (NUL-terminated), '+' as a space when
 * plus_is_space. Returns the decoded length, or -1 when a % is not followed
 * by two hex digits, a byte decodes to NUL (callers use C strings), or out
 * is too small. */
long percent_decode(const char *in, size_t n, bool plus_is_space, char *out, size_t out_size);

#endif
