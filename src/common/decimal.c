/* decimal.c — strict decimal parsing (see decimal.h). Hand-rolled rather than
 * strtoull(), which would take a sign, leading space and "-1" as UINT64_MAX. */
#include "src/common/decimal.h"

#include <string.h>

bool decimal_parse_n(const char *s, size_t n, uint64_t *out)
{
    if (n == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned digit = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

bool decimal_parse_range(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (!decimal_parse_n(s, strlen(s), &v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}
