/* fuzz_ws_message.c — libFuzzer harness for the client message parser. Beyond
 * "no crash, no leak": the result is one of the five types, an ack id is never
 * negative, parsing is deterministic, JSON whitespace after a message changes
 * nothing and any other byte after a parsed message makes it INVALID. */
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "workers/ws_message.h"

/* data + suffix in an exact-size buffer. */
static ws_message parse_with_suffix(const uint8_t *data, size_t size, const char *suffix)
{
    size_t n = strlen(suffix);
    uint8_t *buf = malloc(size + n ? size + n : 1);
    if (buf == NULL)
        abort();
    if (size)
        memcpy(buf, data, size);
    memcpy(buf + size, suffix, n);
    ws_message m;
    FUZZ_ASSERT(ws_message_parse(buf, size + n, &m) == 0);
    free(buf);
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_message m;
    memset(&m, 0x5A, sizeof m);
    /* -1 only when memory ran out, which a fuzz run does not make happen. */
    FUZZ_ASSERT(ws_message_parse(data, size, &m) == 0);
    FUZZ_ASSERT(m.type == WS_MSG_PING || m.type == WS_MSG_ACK || m.type == WS_MSG_BAD_ACK ||
                m.type == WS_MSG_UNKNOWN || m.type == WS_MSG_INVALID);
    if (m.type == WS_MSG_ACK)
        FUZZ_ASSERT(m.ack_id >= 0);
    else
        FUZZ_ASSERT(m.ack_id == 0);

    ws_message again;
    FUZZ_ASSERT(ws_message_parse(data, size, &again) == 0);
    FUZZ_ASSERT(again.type == m.type && again.ack_id == m.ack_id);

    /* A parsed message is one whole object: trailing whitespace is still it,
     * anything else after it is garbage. (Skipped for INVALID: "{" + " " is
     * as invalid as "{", but that tells nothing.) */
    if (m.type != WS_MSG_INVALID) {
        ws_message ws = parse_with_suffix(data, size, " \t\r\n");
        FUZZ_ASSERT(ws.type == m.type && ws.ack_id == m.ack_id);
        FUZZ_ASSERT(parse_with_suffix(data, size, "x").type == WS_MSG_INVALID);
        FUZZ_ASSERT(parse_with_suffix(data, size, "{}").type == WS_MSG_INVALID);
        /* A raw NUL byte after it, too (json-c stops at a NUL). */
        uint8_t *nul = malloc(size + 1);
        if (nul == NULL)
            abort();
        memcpy(nul, data, size);
        nul[size] = 0;
        ws_message z;
        FUZZ_ASSERT(ws_message_parse(nul, size + 1, &z) == 0 && z.type == WS_MSG_INVALID);
        free(nul);
    }
    return 0;
}
