/* log_level_file.h — --log-level-file: a file whose first word is the log
 * level, re-read on SIGHUP by the master and every worker (the command line of
 * a running process cannot change, so a level changed at run time lives in a
 * file). */
#ifndef WSN_LOG_LEVEL_FILE_H
#define WSN_LOG_LEVEL_FILE_H

#include <stddef.h>

#include "src/common/config.h"
#include "src/common/log.h"

#define LOG_LEVEL_FILE_MAX 4096   /* bytes read from --log-level-file */

/* The first word of path: error, warn, info or debug (surrounding blanks and
 * anything after the first word are ignored). Returns 0, or -1 with a one-line
 * message naming the file. */
int log_level_file_read(const char *path, log_level *out, char *err, size_t err_size);

/* The level in force: --log-level-file's when given, else --log-level. */
int log_level_file_effective(const wsn_config *cfg, log_level *out, char *err, size_t err_size);

#endif
