/* errbuf.c — filling a caller's error buffer (see errbuf.h). */
#include "src/common/errbuf.h"

#include <stdarg.h>
#include <stdio.h>

void errbuf_set(char *err, size_t err_size, const char *fmt, ...)
{
    if (err == NULL || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    if (r < 0)
        err[0] = '\0';
}
