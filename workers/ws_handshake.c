/* ws_handshake.c — Sec-WebSocket-Key validation and Sec-WebSocket-Accept (RFC 6455 4.2). */
#include "workers/ws_handshake.h"

#include <string.h>

#include <openssl/evp.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24       /* base64 of 16 bytes: 22 characters + "==" */
#define WS_KEY_DATA_CHARS 22
#define SHA1_LEN 20

static bool base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* 24 characters with exactly two '=' of padding is the only shape that decodes
 * to 16 bytes; one '=' would be 17 bytes, none 18. The 4 unused bits of the last
 * data character are not required to be zero, as lenient decoders (and so some
 * clients) do not care about them either. */
bool ws_key_valid(const char *key, size_t len)
{
    if (key == NULL || len != WS_KEY_LEN)
        return false;
    for (size_t i = 0; i < WS_KEY_DATA_CHARS; i++) {
        if (!base64_char(key[i]))
            return false;
    }
    return key[22] == '=' && key[23] == '=';
}

int ws_accept_value(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    int ok;

    if (key == NULL && len > 0)
        return -1;

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return -1;
    ok = EVP_DigestInit_ex(md, EVP_sha1(), NULL) == 1 &&
         EVP_DigestUpdate(md, key, len) == 1 &&
         EVP_DigestUpdate(md, WS_GUID, sizeof(WS_GUID) - 1) == 1 &&
         EVP_DigestFinal_ex(md, digest, &digest_len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok || digest_len != SHA1_LEN)
        return -1;

    /* EVP_EncodeBlock writes the NUL too: 4 * ceil(20 / 3) = 28 characters. */
    if (EVP_EncodeBlock((unsigned char *)out, digest, SHA1_LEN) != WS_ACCEPT_LEN)
        return -1;
    return 0;
}
