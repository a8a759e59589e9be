/* data_dir.c — prepare and remove the history store's directory (see data_dir.h). */
#include "src/master/data_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(char *path, char *err, size_t err_size)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, err_size, "cannot create %s: %s", path, strerror(errno));
            *p = saved;
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            return 0;
    }
}

int data_dir_prepare(const char *dir, char out[DATA_DIR_MAX], char *err, size_t err_size)
{
    if (dir == NULL) {
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(out, DATA_DIR_MAX, "%s/wsnotifyd-XXXXXX",
                         tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
        if (n < 0 || n >= DATA_DIR_MAX || mkdtemp(out) == NULL) {
            snprintf(err, err_size, "cannot create a temporary store directory: %s",
                     strerror(errno));
            return -1;
        }
        return 0;
    }
    int n = snprintf(out, DATA_DIR_MAX, "%s", dir);
    if (n < 0 || n >= DATA_DIR_MAX) {
        snprintf(err, err_size, "path too long");
        return -1;
    }
    if (make_dirs(out, err, err_size) != 0)
        return -1;
    struct stat st;
    if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_size, "%s is not a directory", out);
        return -1;
    }
    if (access(out, W_OK | X_OK) != 0) {
        snprintf(err, err_size, "cannot write to %s: %s", out, strerror(errno));
        return -1;
    }
    return 0;
}

void data_dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        char path[DATA_DIR_MAX + 256];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (n > 0 && (size_t)n < sizeof path)
                (void)unlink(path);
        }
        closedir(d);
    }
    (void)rmdir(dir);
}
