/* errbuf.h — filling a caller's error buffer: the "char *err, size_t err_size"
 * convention of the loaders (secrets, TLS files) that report one line of why
 * they failed and leave logging to the caller. */
#ifndef WSN_ERRBUF_H
#define WSN_ERRBUF_H

#include <stddef.h>

/* printf into err; err may be NULL or err_size 0 (the caller wants no words).
 * On a formatting failure err is left empty rather than undefined. */
void errbuf_set(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
