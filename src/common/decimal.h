/* decimal.h — the one strict decimal parser behind every number read from a
 * flag, an environment variable or a token claim: ASCII digits only (no sign,
 * no space, no "0x", nothing trailing), never empty, never wrapped around. */
#ifndef WSN_DECIMAL_H
#define WSN_DECIMAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The n bytes at s (not NUL-terminated) as a number. */
bool decimal_parse_n(const char *s, size_t n, uint64_t *out);
/* The string s as a number in [min, max]. */
bool decimal_parse_range(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
