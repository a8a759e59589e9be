/* replay_main.c — a main() for the fuzz harnesses without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file of the given directories, so
 * `make check` replays the seed and regression corpora with the normal
 * compiler. With no arguments it replays $WSN_SRCDIR/tests/fuzz/corpus/NAME
 * and $WSN_SRCDIR/tests/fuzz/regressions/NAME, NAME being FUZZ_HARNESS (set
 * by the build per program). Exits 0 when every input ran, 99 (automake's
 * "hard error") when a directory or file cannot be read; a failed invariant
 * aborts. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

#ifndef FUZZ_HARNESS
#error "FUZZ_HARNESS must name the harness (its corpus folder), e.g. -DFUZZ_HARNESS='\"utf8\"'"
#endif

#define EXIT_HARD_ERROR 99

/* The whole file in a buffer of exactly its size, so a read past the end is
 * a heap overflow a sanitizer build reports. */
static int read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fclose(f);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    /* malloc(0) may return NULL; one spare byte is never handed on. */
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL || fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *data = buf;
    *size = n;
    return 0;
}

/* Dotfiles (.keep, editor droppings) are not inputs. */
static int not_hidden(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Runs every regular file of dir in name order (reproducible output).
 * Returns the number run, or -1. */
static long replay_dir(const char *dir)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, not_hidden, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot read directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    long ran = 0;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (failed || len < 0 || (size_t)len >= sizeof path) {
            failed = 1;
        } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            uint8_t *data = NULL;
            size_t size = 0;
            if (read_file(path, &data, &size) != 0) {
                fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
                failed = 1;
            } else {
                /* Named before running, so an abort says which input it was. */
                fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
                LLVMFuzzerTestOneInput(data, size);
                free(data);
                ran++;
            }
        }
        free(names[i]);
    }
    free(names);
    return failed ? -1 : ran;
}

int main(int argc, char **argv)
{
    char defaults[2][4096];
    const char *dirs_default[2];
    const char *const *dirs = (const char *const *)argv + 1;
    int ndirs = argc - 1;

    if (ndirs == 0) {
        const char *src = getenv("WSN_SRCDIR");
        if (src == NULL || src[0] == '\0') {
            fprintf(stderr, "replay: no directories given and WSN_SRCDIR is not set\n");
            return EXIT_HARD_ERROR;
        }
        static const char *const kinds[2] = { "corpus", "regressions" };
        for (int i = 0; i < 2; i++) {
            int len = snprintf(defaults[i], sizeof defaults[i], "%s/tests/fuzz/%s/%s", src,
                               kinds[i], FUZZ_HARNESS);
            if (len < 0 || (size_t)len >= sizeof defaults[i]) {
                fprintf(stderr, "replay: WSN_SRCDIR is too long\n");
                return EXIT_HARD_ERROR;
            }
            dirs_default[i] = defaults[i];
        }
        dirs = dirs_default;
        ndirs = 2;
    }

    long total = 0;
    for (int i = 0; i < ndirs; i++) {
        long n = replay_dir(dirs[i]);
        if (n < 0)
            return EXIT_HARD_ERROR;
        printf("replay %s: %ld input(s) from %s\n", FUZZ_HARNESS, n, dirs[i]);
        total += n;
    }
    printf("replay %s: %ld input(s) in %d director%s, all passed\n", FUZZ_HARNESS, total, ndirs,
           ndirs == 1 ? "y" : "ies");
    return EXIT_SUCCESS;
}
