/* fuzz_queue.c — libFuzzer harness for the queue datagram codec (v2) and the
 * packed marks. A datagram that decodes must satisfy the per-type rules, point
 * its payload inside the buffer and re-encode to the very same bytes (the
 * format has one encoding per message); a message built from input fields
 * must survive encode → decode unchanged exactly when the rules allow it; a
 * mark must survive pack → unpack → pack.
 *
 * Input, for the built message: byte 0 = type (bits 0-2, so invalid types come
 * up too), drop the payload (bit 3), user 0 (bit 4: what BROADCAST and MARKS
 * need); then user, generation, accepted_ns, id, seq as little-endian 64-bit
 * words; the rest is the payload. The whole input is also decoded as is. */
#include <stdbool.h>
#include <string.h>

#include "shm/queue.h"
#include "tests/fuzz/fuzz.h"

#define FIELDS_LEN 41u /* byte 0 and five 8-byte words */

/* The rules of queue.h, written out independently of queue.c. */
static bool rules_allow(uint8_t type, int64_t user, uint32_t payload_len, uint64_t seq)
{
    if (payload_len > QUEUE_MAX_PAYLOAD)
        return false;
    switch (type) {
    case QMSG_NOTIFY:
    case QMSG_ROUTED:
        return user > 0;
    case QMSG_SIGNAL:
        return user > 0 && payload_len == 0 && (seq == QSIGNAL_RELEASED || seq == QSIGNAL_BARRIER);
    case QMSG_EVICT:
        return user > 0 && payload_len == 0;
    case QMSG_BROADCAST:
        return user == 0 && payload_len > 0;
    case QMSG_MARKS:
        return user == 0 && payload_len > 0 && payload_len % QUEUE_MARK_LEN == 0;
    default:
        return false;
    }
}

static void check_marks(const queue_msg *m)
{
    if (m->type != QMSG_MARKS)
        return;
    for (uint32_t off = 0; off < m->payload_len; off += QUEUE_MARK_LEN) {
        queue_mark k;
        uint8_t again[QUEUE_MARK_LEN];
        queue_mark_decode(m->payload + off, &k);
        queue_mark_encode(again, &k);
        FUZZ_ASSERT(memcmp(again, m->payload + off, QUEUE_MARK_LEN) == 0);
    }
}

static void check_decoded(const uint8_t *buf, size_t len, const queue_msg *m)
{
    FUZZ_ASSERT(len >= QUEUE_HEADER_LEN && len <= QUEUE_MAX_DATAGRAM);
    FUZZ_ASSERT(rules_allow(m->type, m->user, m->payload_len, m->seq));
    FUZZ_ASSERT((size_t)m->payload_len == len - QUEUE_HEADER_LEN);
    if (m->payload_len == 0)
        FUZZ_ASSERT(m->payload == NULL);
    else
        FUZZ_ASSERT(m->payload == buf + QUEUE_HEADER_LEN);
    check_marks(m);
}

/* Decodes the input as a datagram and, when it decodes, re-encodes it. */
static void decode_encode(const uint8_t *data, size_t size)
{
    queue_msg m;
    if (queue_msg_decode(data, size, &m) != 0)
        return;
    check_decoded(data, size, &m);
    uint8_t *out = malloc(size);
    if (out == NULL)
        abort();
    FUZZ_ASSERT(queue_msg_encode(out, size, &m) == size);
    FUZZ_ASSERT(memcmp(out, data, size) == 0);
    /* One byte short does not fit. */
    FUZZ_ASSERT(queue_msg_encode(out, size - 1, &m) == 0);
    free(out);
}

static uint64_t word(const uint8_t *data, size_t size, size_t at)
{
    return at < size ? fuzz_le(data + at, size - at, 8) : 0;
}

static void encode_decode(const uint8_t *data, size_t size)
{
    uint8_t flags = size ? data[0] : 0;
    queue_msg m = {
        .type = flags & 7,
        .user = (flags & 0x10) ? 0 : (int64_t)word(data, size, 1),
        .generation = word(data, size, 9),
        .accepted_ns = word(data, size, 17),
        .id = (int64_t)word(data, size, 25),
        .seq = word(data, size, 33),
    };
    if (size > FIELDS_LEN && !(flags & 0x08)) {
        m.payload = data + FIELDS_LEN;
        m.payload_len = (uint32_t)(size - FIELDS_LEN);
    }
    size_t cap = QUEUE_HEADER_LEN + m.payload_len;
    uint8_t *out = malloc(cap);
    if (out == NULL)
        abort();
    size_t n = queue_msg_encode(out, cap, &m);
    FUZZ_ASSERT(rules_allow(m.type, m.user, m.payload_len, m.seq) == (n != 0));
    if (n != 0) {
        FUZZ_ASSERT(n == cap);
        queue_msg back;
        FUZZ_ASSERT(queue_msg_decode(out, n, &back) == 0);
        check_decoded(out, n, &back);
        FUZZ_ASSERT(back.type == m.type && back.user == m.user &&
                    back.generation == m.generation && back.accepted_ns == m.accepted_ns &&
                    back.id == m.id && back.seq == m.seq && back.payload_len == m.payload_len);
        FUZZ_ASSERT(m.payload_len == 0 || memcmp(back.payload, m.payload, m.payload_len) == 0);
        /* Cut short by a byte, it no longer decodes; nor with a byte flipped
         * in the magic, the version or the reserved word. */
        FUZZ_ASSERT(queue_msg_decode(out, n - 1, &back) != 0);
        static const size_t fixed[] = { 0, 1, 2, 48, 49, 50, 51 };
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
            out[fixed[i]] ^= 0x01;
            FUZZ_ASSERT(queue_msg_decode(out, n, &back) != 0);
            out[fixed[i]] ^= 0x01;
        }
    }
    free(out);
}

/* A mark from the first QUEUE_MARK_LEN input bytes: unpack, pack, unpack. */
static void mark_round_trip(const uint8_t *data, size_t size)
{
    uint8_t raw[QUEUE_MARK_LEN] = { 0 };
    memcpy(raw, data, size < sizeof raw ? size : sizeof raw);
    queue_mark a;
    queue_mark b;
    uint8_t packed[QUEUE_MARK_LEN];
    queue_mark_decode(raw, &a);
    queue_mark_encode(packed, &a);
    FUZZ_ASSERT(memcmp(packed, raw, sizeof raw) == 0);
    queue_mark_decode(packed, &b);
    FUZZ_ASSERT(a.user == b.user && a.id == b.id && a.state == b.state && a.at_ms == b.at_ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > QUEUE_MAX_DATAGRAM + 1)
        return 0;
    decode_encode(data, size);
    encode_decode(data, size);
    mark_round_trip(data, size);
    return 0;
}
