/* rfile.h — opening the operator's files (secrets, TLS PEM files, the log
 * level file, JWT public keys, gRPC tokens) so that reading them can never
 * block: only regular files are accepted; a FIFO, a device or a directory is
 * refused with a reason. */
#ifndef WSN_RFILE_H
#define WSN_RFILE_H

#include <stddef.h>

/* A read-only, close-on-exec descriptor of the regular file at path, or -1
 * with *why saying why (errno's words, or "not a regular file"). */
int rfile_open(const char *path, const char **why);

/* The whole regular file at path, read into a malloc'd buffer with a NUL
 * after its *len bytes (so PEM text can go to parsers wanting a C string).
 * A file over max bytes is refused. Returns 0, or -1 with *why set (errno's
 * words, "not a regular file", "too large"). The bytes may be secret: the
 * caller wipes and frees *data. */
int rfile_read_all(const char *path, size_t max, unsigned char **data, size_t *len,
                   const char **why);

#endif
