/* bench_common.c — see bench_common.h. */
#include "scripts/bench/bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- histogram ---- */

#define SUB (1u << BENCH_HIST_SUB_BITS)   /* 128 sub-buckets per power of two */
#define EXACT (2u << BENCH_HIST_SUB_BITS) /* values below 256 are exact */

static unsigned hist_index(uint64_t v)
{
    if (v >= (1ULL << BENCH_HIST_MAX_BITS))
        v = (1ULL << BENCH_HIST_MAX_BITS) - 1;
    if (v < EXACT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS + 1 */
    unsigned shift = msb - BENCH_HIST_SUB_BITS;         /* >= 1 */
    return EXACT + (shift - 1) * SUB + (unsigned)((v >> shift) - SUB);
}

/* Lower bound and width of bucket i. */
static void hist_bucket(unsigned i, double *low, double *width)
{
    if (i < EXACT) {
        *low = i;
        *width = 1;
        return;
    }
    unsigned k = i - EXACT;
    unsigned shift = k / SUB + 1;
    uint64_t sub = k % SUB + SUB;
    *low = (double)(sub << shift);
    *width = (double)(1ULL << shift);
}

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof *h);
}

void bench_hist_add(bench_hist *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    if (h->count == 0 || ns < h->min)
        h->min = ns;
    if (h->count == 0 || ns > h->max)
        h->max = ns;
    h->count++;
    h->sum += (double)ns;
    h->b[hist_index((uint64_t)ns)]++;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->count == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
}

double bench_hist_quantile_ns(const bench_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return (double)h->min;
    if (p >= 1)
        return (double)h->max;
    uint64_t rank = (uint64_t)ceil(p * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t cum = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        cum += h->b[i];
        if (cum >= rank) {
            double low, width;
            hist_bucket(i, &low, &width);
            double v = width > 1 ? low + width / 2 : low;
            if (v < (double)h->min)
                v = (double)h->min;
            if (v > (double)h->max)
                v = (double)h->max;
            return v;
        }
    }
    return (double)h->max;
}

/* ---- buffer ---- */

void bench_buf_init(bench_buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
}

void bench_buf_free(bench_buf *b)
{
    free(b->p);
    bench_buf_init(b);
}

static void buf_reserve(bench_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    b->p = p;
    b->cap = cap;
}

void bench_buf_add(bench_buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void bench_buf_printf(bench_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        bench_buf_add(b, tmp, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void bench_buf_hist_json(bench_buf *b, const bench_hist *h)
{
    double mean = h->count ? h->sum / (double)h->count / 1e3 : 0;
    bench_buf_printf(b,
                     "{\"count\":%" PRIu64 ",\"min\":%.1f,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,"
                     "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}",
                     h->count, h->count ? (double)h->min / 1e3 : 0.0, mean,
                     bench_hist_quantile_ns(h, 0.50) / 1e3, bench_hist_quantile_ns(h, 0.90) / 1e3,
                     bench_hist_quantile_ns(h, 0.99) / 1e3, bench_hist_quantile_ns(h, 0.999) / 1e3,
                     h->count ? (double)h->max / 1e3 : 0.0);
}

void bench_buf_hist_buckets_json(bench_buf *b, const bench_hist *h)
{
    bench_buf_add(b, "[", 1);
    bool first = true;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS && h->count > 0; i++) {
        if (h->b[i] == 0)
            continue;
        double low, width;
        hist_bucket(i, &low, &width);
        bench_buf_printf(b, "%s[%.0f,%.0f,%" PRIu64 "]", first ? "" : ",", low, width, h->b[i]);
        first = false;
    }
    bench_buf_add(b, "]", 1);
}

void bench_buf_json_str(bench_buf *b, const char *s)
{
    bench_buf_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            bench_buf_add(b, e, 2);
        } else if (ch < 0x20) {
            bench_buf_printf(b, "\\u%04x", ch);
        } else {
            bench_buf_add(b, s, 1);
        }
    }
    bench_buf_add(b, "\"", 1);
}

/* ---- counters ---- */

void bench_counters_add(bench_counters *c, const char *key, uint64_t v)
{
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->key[i], key) == 0) {
            c->val[i] += v;
            return;
        }
    }
    int i;
    if (c->n < BENCH_COUNTERS_MAX) {
        i = c->n++;
        snprintf(c->key[i], sizeof c->key[i], "%s", key);
        c->val[i] = 0;
    } else {
        i = BENCH_COUNTERS_MAX - 1; /* full: the last key becomes the catch-all */
        snprintf(c->key[i], sizeof c->key[i], "other");
    }
    c->val[i] += v;
}

uint64_t bench_counters_total(const bench_counters *c)
{
    uint64_t t = 0;
    for (int i = 0; i < c->n; i++)
        t += c->val[i];
    return t;
}

void bench_buf_counters_json(bench_buf *b, const bench_counters *c)
{
    bench_buf_add(b, "{", 1);
    for (int i = 0; i < c->n; i++) {
        if (i)
            bench_buf_add(b, ",", 1);
        bench_buf_json_str(b, c->key[i]);
        bench_buf_printf(b, ":%" PRIu64, c->val[i]);
    }
    bench_buf_add(b, "}", 1);
}

/* ---- files ---- */

int bench_write_atomic(const char *path, const char *data, size_t len)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
            return -1;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

long bench_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* ---- encoding ---- */

static size_t b64_any(const uint8_t *in, size_t n, char *out, const char *alphabet, bool pad)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = alphabet[v >> 6 & 63];
        else if (pad)
            out[o++] = '=';
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

size_t bench_b64(const uint8_t *in, size_t n, char *out)
{
    return b64_any(in, n, out, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                   true);
}

size_t bench_b64url(const uint8_t *in, size_t n, char *out)
{
    return b64_any(in, n, out, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                   false);
}

size_t bench_jwt(const char *secret, int64_t user_id, int64_t exp, char *out, size_t out_size)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char payload[160];
    int plen = snprintf(payload, sizeof payload,
                        "{\"user_id\":%" PRId64 ",\"email\":\"u%" PRId64 "@bench\",\"exp\":%" PRId64 "}",
                        user_id, user_id, exp);
    if (plen < 0 || (size_t)plen >= sizeof payload)
        return 0;
    char input[400];
    size_t n = bench_b64url((const uint8_t *)header, sizeof header - 1, input);
    input[n++] = '.';
    n += bench_b64url((const uint8_t *)payload, (size_t)plen, input + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)input, n, mac,
             &maclen) == NULL)
        return 0;
    char sig[64];
    size_t slen = bench_b64url(mac, maclen, sig);
    if (n + 1 + slen + 1 > out_size)
        return 0;
    memcpy(out, input, n);
    out[n] = '.';
    memcpy(out + n + 1, sig, slen + 1);
    return n + 1 + slen;
}

int bench_ws_accept(const char *key, char *out)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[128];
    int n = snprintf(in, sizeof in, "%s%s", key, guid);
    if (n < 0 || (size_t)n >= sizeof in)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha1(), NULL) != 1)
        return -1;
    bench_b64(md, mdlen, out);
    return 0;
}

/* ---- random ---- */

uint64_t bench_rand_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = (uint64_t)bench_mono_ns() ^ ((uint64_t)getpid() << 32);
    return s;
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t bench_rand_below(uint64_t *state, uint64_t n)
{
    /* Lemire's multiply-shift; the bias is negligible for benchmark ranges. */
    return (uint64_t)(((unsigned __int128)bench_rand(state) * n) >> 64);
}

/* ---- parsing ---- */

bool bench_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (s == NULL || *s == '\0' || *s == ' ' || *s == '+')
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int64_t)v;
    return true;
}

bool bench_parse_double(const char *s, double lo, double hi, double *out)
{
    if (s == NULL || *s == '\0' || *s == ' ')
        return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool bench_parse_range(const char *s, int64_t lo, int64_t hi, int64_t *a, int64_t *b)
{
    const char *dash = strchr(s, '-');
    if (dash == NULL) {
        if (!bench_parse_i64(s, lo, hi, a))
            return false;
        *b = *a;
        return true;
    }
    char first[32];
    size_t n = (size_t)(dash - s);
    if (n == 0 || n >= sizeof first)
        return false;
    memcpy(first, s, n);
    first[n] = '\0';
    return bench_parse_i64(first, lo, hi, a) && bench_parse_i64(dash + 1, lo, hi, b) && *a <= *b;
}

int bench_template_check(const char *t, const char *pattern)
{
    size_t pl = strlen(pattern);
    int count = 0;
    for (const char *p = t; *p; p++) {
        if (*p != '%')
            continue;
        if (p[1] == '%') {
            p++;
            continue;
        }
        if (strncmp(p, pattern, pl) != 0)
            return -1;
        count++;
        p += pl - 1;
    }
    return count;
}

int bench_subst(const char *t, const char *pattern, const char *value, char *out, size_t out_size)
{
    if (bench_template_check(t, pattern) != 1)
        return -1;
    size_t pl = strlen(pattern);
    size_t vl = strlen(value);
    size_t o = 0;
    for (const char *p = t; *p; p++) {
        const char *piece = p;
        size_t len = 1;
        if (*p == '%' && p[1] == '%') {
            p++;
        } else if (*p == '%') {
            piece = value;
            len = vl;
            p += pl - 1;
        }
        if (o + len + 1 > out_size)
            return -1;
        memcpy(out + o, piece, len);
        o += len;
    }
    out[o] = '\0';
    return (int)o;
}

void bench_die_usage(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    exit(2);
}
