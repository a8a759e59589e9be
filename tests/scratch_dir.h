/* scratch_dir.h — a unit test's temporary directory: made in the setup,
 * files named inside it, shell commands run in it, removed in the teardown.
 * One directory per test program (its state is this file's static). */
#ifndef WSN_TESTS_SCRATCH_DIR_H
#define WSN_TESTS_SCRATCH_DIR_H

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static char scratch_dir[64];

/* Makes /tmp/PREFIX-XXXXXX. */
static inline void scratch_make(const char *prefix)
{
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/%s-XXXXXX", prefix);
    ck_assert_ptr_nonnull(mkdtemp(scratch_dir));
}

/* DIR/name, in one of 8 rotating buffers (several may be in use at once). */
static inline char *scratch_path(const char *name)
{
    static char buf[8][160];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", scratch_dir, name);
    return p;
}

/* Runs a shell command in the directory, its output discarded; it must succeed. */
static inline void scratch_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void scratch_sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[1200];
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", scratch_dir, cmd);
    ck_assert_msg(system(full) == 0, "failed: %s", cmd);
}

static inline void scratch_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch_dir);
    ck_assert_int_eq(system(cmd), 0);
}

#endif
