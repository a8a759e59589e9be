/* clock.h — the clocks in the units the daemon keeps: CLOCK_MONOTONIC
 * milliseconds for deadlines and waits, CLOCK_REALTIME for what crosses
 * processes or hosts (acceptance times, latencies, acks, expiry). */
#ifndef WSN_CLOCK_H
#define WSN_CLOCK_H

#include <stdint.h>

uint64_t clock_monotonic_ms(void);
uint64_t clock_realtime_ns(void);
uint64_t clock_realtime_ms(void);

#endif
