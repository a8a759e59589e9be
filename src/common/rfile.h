/* rfile.h — opening the operator's files (secrets, TLS PEM files, the log
 * level file) so that reading them can never block: only regular files are
 * accepted; a FIFO, a device or a directory is refused with a reason. */
#ifndef WSN_RFILE_H
#define WSN_RFILE_H

/* A read-only, close-on-exec descriptor of the regular file at path, or -1
 * with *why saying why (errno's words, or "not a regular file"). */
int rfile_open(const char *path, const char **why);

#endif
