/* token_file.c — loading the bearer tokens of --grpc-token-file and checking a
 * presented token against them (see token_file.h).
 *
 * Each token is kept with its SHA-256; a presented value is hashed and its
 * digest compared with every token's digest by CRYPTO_memcmp, without an
 * early exit, so neither the length nor the prefix of a token leaks through
 * the time a refusal takes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero */
#endif

#include "src/common/token_file.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/errbuf.h"
#include "src/common/rfile.h"

static bool sha256(const void *p, size_t n, unsigned char out[TOKEN_DIGEST_LEN])
{
    unsigned int len = 0;
    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == TOKEN_DIGEST_LEN;
}

static bool is_blank(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t')
            return false;
    return true;
}

/* One line (its terminator removed) into t. */
static int add_line(token_set *t, const unsigned char *p, size_t n, size_t line,
                    const char *path, char *err, size_t err_size)
{
    if (n == 0 || is_blank(p, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f) {
            errbuf_set(err, err_size,
                       "%s:%zu: a token holds a space, a control or a non-ASCII character",
                       path, line);
            return -1;
        }
    }
    if (n < TOKEN_MIN_LEN || n > TOKEN_MAX_LEN) {
        errbuf_set(err, err_size, "%s:%zu: a token must be %d to %d characters long", path,
                   line, TOKEN_MIN_LEN, TOKEN_MAX_LEN);
        return -1;
    }
    if (t->count == TOKEN_FILE_MAX) {
        errbuf_set(err, err_size, "%s:%zu: more than %d tokens", path, line, TOKEN_FILE_MAX);
        return -1;
    }
    char *text = malloc(n + 1);
    if (text == NULL || !sha256(p, n, t->item[t->count].digest)) {
        free(text);
        errbuf_set(err, err_size, "%s:%zu: out of memory", path, line);
        return -1;
    }
    memcpy(text, p, n);
    text[n] = '\0';
    t->item[t->count].text = text;
    t->item[t->count].len = n;
    t->count++;
    return 0;
}

int token_file_load(token_set *out, const char *path, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    unsigned char *buf = NULL;
    size_t len = 0;
    const char *why = NULL;
    if (path == NULL || rfile_read_all(path, TOKEN_FILE_BYTES, &buf, &len, &why) != 0) {
        errbuf_set(err, err_size, "cannot read %s: %s", path ? path : "(none)",
                   path ? why : "no file given");
        return -1;
    }
    int rc = 0;
    size_t line = 1;
    for (size_t start = 0; start < len && rc == 0; line++) {
        const unsigned char *nl = memchr(buf + start, '\n', len - start);
        size_t end = nl != NULL ? (size_t)(nl - buf) : len;
        size_t n = end - start;
        if (n > 0 && buf[start + n - 1] == '\r')
            n--;
        rc = add_line(out, buf + start, n, line, path, err, err_size);
        start = end + 1;
    }
    explicit_bzero(buf, len);
    free(buf);
    if (rc == 0 && out->count == 0) {
        errbuf_set(err, err_size, "no token in %s", path);
        rc = -1;
    }
    if (rc != 0)
        token_file_free(out);
    return rc;
}

void token_file_free(token_set *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->count && i < TOKEN_FILE_MAX; i++) {
        if (t->item[i].text != NULL)
            explicit_bzero(t->item[i].text, t->item[i].len);
        free(t->item[i].text);
    }
    explicit_bzero(t, sizeof *t);
}

bool token_file_match(const token_set *t, const char *value, size_t len)
{
    unsigned char d[TOKEN_DIGEST_LEN];
    if (t == NULL || value == NULL || len == 0 || len > TOKEN_MAX_LEN || !sha256(value, len, d))
        return false;
    int found = 0;
    for (size_t i = 0; i < t->count && i < TOKEN_FILE_MAX; i++)
        found |= CRYPTO_memcmp(d, t->item[i].digest, TOKEN_DIGEST_LEN) == 0;
    OPENSSL_cleanse(d, sizeof d);
    return found != 0;
}
