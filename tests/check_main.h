/* check_main.h — the end of every unit test's main(): run its suite with the
 * check framework and turn the outcome into the exit status automake reads. */
#ifndef WSN_TESTS_CHECK_MAIN_H
#define WSN_TESTS_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

/* Runs every test of s (the runner takes s over). */
static inline int check_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
