/* data_dir.h — where the history store lives: --data-dir (created, with its
 * missing parents, mode 0700), or a private temporary directory that the
 * master removes when it exits (README "History": without --data-dir the
 * history lives as long as the process). */
#ifndef WSN_DATA_DIR_H
#define WSN_DATA_DIR_H

#include <stdbool.h>
#include <stddef.h>

#define DATA_DIR_MAX 4096

/* The directory to use: dir, made if missing, or (dir NULL) a new temporary
 * one under $TMPDIR (else /tmp). out gets its path. Returns 0, or -1 with a
 * one-line message in err. */
int data_dir_prepare(const char *dir, char out[DATA_DIR_MAX], char *err, size_t err_size);

/* Remove a temporary store: its files, then the directory. Best effort. */
void data_dir_remove(const char *dir);

#endif
