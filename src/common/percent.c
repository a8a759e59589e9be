/* percent.c — %XX decoding (see percent.h). */
#include "src/common/percent.h"

#include <limits.h>

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long percent_decode(const char *in, size_t n, bool plus_is_space, char *out, size_t out_size)
{
    size_t w = 0;
    if (out_size == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '+' && plus_is_space) {
            ch = ' ';
        } else if (ch == '%') {
            if (n - i < 3) /* '%' needs two hex digits after it */
                return -1;
            int hi = hex_value((unsigned char)in[i + 1]);
            int lo = hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (unsigned char)(hi * 16 + lo);
            if (ch == '\0')
                return -1;
            i += 2;
        }
        if (w + 1 >= out_size || w >= (size_t)LONG_MAX)
            return -1;
        out[w++] = (char)ch;
    }
    out[w] = '\0';
    return (long)w;
}
