/* hash.h — the hash behind every user-id keyed table (the shared directory,
 * the rate-limit table, each worker's user map). */
#ifndef WSN_SHM_HASH_H
#define WSN_SHM_HASH_H

#include <stdint.h>

/* splitmix64 finalizer: user ids are often sequential, which plain masking
 * would turn into long probe runs; this spreads them over every bit. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

#endif
