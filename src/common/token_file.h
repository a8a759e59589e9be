/* token_file.h — the bearer tokens of --grpc-token-file: one per line, the
 * gRPC port accepts a call carrying any of them (the master checks them;
 * wsnotifyctl sends the first). Only SHA-256 digests take part in the check,
 * compared in constant time; the tokens themselves are wiped on free and
 * never appear in an error message. */
#ifndef WSN_TOKEN_FILE_H
#define WSN_TOKEN_FILE_H

#include <stdbool.h>
#include <stddef.h>

#define TOKEN_FILE_MAX 64          /* tokens in one file */
#define TOKEN_MIN_LEN 16           /* shorter is guessable: refused */
#define TOKEN_MAX_LEN 1024
#define TOKEN_FILE_BYTES (256 * 1024)
#define TOKEN_DIGEST_LEN 32

typedef struct {
    size_t count;
    struct {
        char *text;                /* NUL-terminated, len bytes */
        size_t len;
        unsigned char digest[TOKEN_DIGEST_LEN];
    } item[TOKEN_FILE_MAX];
} token_set;

/* Lines end with "\n" or "\r\n"; blank lines are skipped. A token is
 * TOKEN_MIN_LEN..TOKEN_MAX_LEN visible ASCII characters (no space: a stray
 * blank would make a token nobody can send). Returns 0, or -1 with err naming
 * the file and line (no token in it, not a regular file, ...). */
int token_file_load(token_set *out, const char *path, char *err, size_t err_size);
void token_file_free(token_set *t);

/* value (len bytes) is one of t's tokens. Its time depends on len and on the
 * number of tokens, never on how much of a token matched. */
bool token_file_match(const token_set *t, const char *value, size_t len);

#endif
