/* ws_handshake.h — RFC 6455 opening handshake values. */
#ifndef WSN_WS_HANDSHAKE_H
#define WSN_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#define WS_ACCEPT_LEN 28  /* base64 of a SHA-1 digest */

/* Sec-WebSocket-Key must be base64 of exactly 16 bytes (24 characters). */
bool ws_key_valid(const char *key, size_t len);

/* out receives base64(SHA1(key + GUID)), NUL-terminated. Returns 0, -1 on failure. */
int ws_accept_value(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]);

#endif
