/* fuzz.h — what every fuzz harness shares: the libFuzzer entry point's
 * prototype (for -Wmissing-prototypes in the gcc replay build) and an assert
 * that NDEBUG cannot switch off. */
#ifndef WSN_TESTS_FUZZ_H
#define WSN_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() is what libFuzzer (and the replay main's test run) reports as a
 * crash, with the failed condition on stderr. */
#define FUZZ_ASSERT(cond)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                            \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* A little-endian integer from the input, zero-padded when it runs out. */
static inline uint64_t fuzz_le(const uint8_t *p, size_t avail, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < avail; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#endif
