/* utf8.h — strict UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), usable incrementally across message fragments. */
#ifndef WSN_UTF8_H
#define WSN_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0u
#define UTF8_REJECT 1u

/* Advance the validator over s; start from UTF8_ACCEPT. The result is
 * UTF8_ACCEPT at a character boundary, UTF8_REJECT once invalid (sticky),
 * anything else in the middle of a character. */
uint32_t utf8_validate_step(uint32_t state, const uint8_t *s, size_t len);

/* The whole of s is valid, complete UTF-8. */
bool utf8_valid(const uint8_t *s, size_t len);

#endif
