/* bench_common.h — helpers shared by the benchmark load generators
 * (wsn_load, wsn_publish): monotonic clock, a log-linear latency histogram,
 * HS256 JWT minting, base64, argument parsing, a growable text buffer and
 * atomic file writes. Not part of the daemon. */
#ifndef WSN_BENCH_COMMON_H
#define WSN_BENCH_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds: one clock for every process on the host. */
int64_t bench_mono_ns(void);
/* CLOCK_REALTIME in seconds. */
int64_t bench_wall_s(void);

/* ---- histogram ----------------------------------------------------------
 * Values in nanoseconds. Exact below 256 ns; above, 128 linear sub-buckets per
 * power of two (bucket width <= 1/128 of its lower bound, so a percentile is
 * within 0.4% once the bucket midpoint is taken). Values at or above 2^36 ns
 * (~68 s) land in the last bucket; min, max, count and sum stay exact. */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_MAX_BITS 36
#define BENCH_HIST_BUCKETS \
    ((2u << BENCH_HIST_SUB_BITS) + (BENCH_HIST_MAX_BITS - BENCH_HIST_SUB_BITS - 1) * (1u << BENCH_HIST_SUB_BITS))

typedef struct {
    uint64_t count;
    int64_t min;
    int64_t max;
    double sum;
    uint64_t b[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_init(bench_hist *h);
void bench_hist_add(bench_hist *h, int64_t ns); /* negative values count as 0 */
void bench_hist_merge(bench_hist *dst, const bench_hist *src);
/* The value (ns) below which a fraction p (0..1) of the samples lie; 0 if empty. */
double bench_hist_quantile_ns(const bench_hist *h, double p);

/* ---- growable text buffer (aborts on out of memory: benchmark code) ---- */
typedef struct {
    char *p;
    size_t len;
    size_t cap;
} bench_buf;

void bench_buf_init(bench_buf *b);
void bench_buf_free(bench_buf *b);
void bench_buf_add(bench_buf *b, const void *data, size_t len);
void bench_buf_printf(bench_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* {"count":..,"mean":..,"p50":..,"p90":..,"p99":..,"p999":..,"max":..} in µs. */
void bench_buf_hist_json(bench_buf *b, const bench_hist *h);
/* The non-empty buckets of h, [[low_ns,width_ns,count],...], so that a driver
 * can merge the histograms of several processes and take exact-bucket
 * percentiles (midpoint rule, as bench_hist_quantile_ns). */
void bench_buf_hist_buckets_json(bench_buf *b, const bench_hist *h);
/* A JSON string literal (quotes included) of s. */
void bench_buf_json_str(bench_buf *b, const char *s);

/* ---- counters by name (small, linear: a few dozen keys at most) ---- */
#define BENCH_COUNTERS_MAX 64
typedef struct {
    int n;
    char key[BENCH_COUNTERS_MAX][40];
    uint64_t val[BENCH_COUNTERS_MAX];
} bench_counters;

void bench_counters_add(bench_counters *c, const char *key, uint64_t v);
uint64_t bench_counters_total(const bench_counters *c);
void bench_buf_counters_json(bench_buf *b, const bench_counters *c); /* {"key":n,...} */

/* ---- files ---- */
/* Write data to path.tmp.PID then rename it over path. 0 or -1 (errno). */
int bench_write_atomic(const char *path, const char *data, size_t len);
/* Resident set size of this process in KiB (VmRSS), -1 if unknown. */
long bench_rss_kb(void);

/* ---- encoding, JWT ---- */
/* Standard base64 with padding; out needs 4*((n+2)/3)+1 bytes. Returns the length. */
size_t bench_b64(const uint8_t *in, size_t n, char *out);
/* base64url without padding; out needs 4*((n+2)/3)+1 bytes. Returns the length. */
size_t bench_b64url(const uint8_t *in, size_t n, char *out);
/* HS256 JWT {"user_id":U,"email":"uU@bench","exp":exp} signed with secret
 * (OpenSSL HMAC-SHA256). Written to out (NUL-terminated); returns its length,
 * or 0 if it does not fit or HMAC fails. */
size_t bench_jwt(const char *secret, int64_t user_id, int64_t exp, char *out, size_t out_size);
/* base64(SHA-1(key + RFC 6455 GUID)): the Sec-WebSocket-Accept for key. out >= 29 bytes. */
int bench_ws_accept(const char *key, char *out);

/* ---- random ---- */
uint64_t bench_rand_seed(void);          /* from getrandom(), else time and pid */
uint64_t bench_rand(uint64_t *state);    /* splitmix64 */
/* Uniform in [0, n), n > 0. */
uint64_t bench_rand_below(uint64_t *state, uint64_t n);

/* ---- parsing ---- */
/* A decimal integer in [lo, hi], the whole string. */
bool bench_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* A finite non-negative decimal number (e.g. "2.5"), the whole string. */
bool bench_parse_double(const char *s, double lo, double hi, double *out);
/* "A-B" (or a single "A") with lo <= A <= B <= hi. */
bool bench_parse_range(const char *s, int64_t lo, int64_t hi, int64_t *a, int64_t *b);
/* Copy template t to out with the single occurrence of pattern (e.g. "%s" or
 * "%lld") replaced by value; a template without it, with it twice, or too long
 * fails. "%%" stands for one '%'. Returns the length or -1. */
int bench_subst(const char *t, const char *pattern, const char *value, char *out, size_t out_size);
/* Count of pattern occurrences in t, "%%" skipped; other '%' conversions count as -1 (invalid). */
int bench_template_check(const char *t, const char *pattern);

/* Print a message and exit(2). */
void bench_die_usage(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#endif
