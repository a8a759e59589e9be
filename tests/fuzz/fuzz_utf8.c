/* fuzz_utf8.c — libFuzzer harness for the UTF-8 validator: utf8_valid must
 * agree with an independent reference decoder, with a byte-at-a-time run of
 * utf8_validate_step and with a run in input-chosen pieces, and the
 * word-at-a-time ASCII skip must not depend on alignment. */
#include <stdbool.h>
#include <string.h>

#include "src/common/utf8.h"
#include "tests/fuzz/fuzz.h"

/* RFC 3629 written the obvious way, as the oracle: decode each character's
 * code point and refuse overlongs, surrogates and anything above U+10FFFF. */
static bool reference_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t need;
        uint32_t cp;
        uint32_t min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            need = 1, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            need = 2, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            need = 3, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool whole = utf8_valid(data, size);
    FUZZ_ASSERT(whole == reference_valid(data, size));

    /* One byte at a time; REJECT is sticky, ACCEPT only at a boundary. */
    uint32_t st = UTF8_ACCEPT;
    bool rejected = false;
    for (size_t i = 0; i < size; i++) {
        st = utf8_validate_step(st, data + i, 1);
        if (rejected)
            FUZZ_ASSERT(st == UTF8_REJECT);
        rejected = st == UTF8_REJECT;
        /* A prefix ends at a character boundary of valid text iff ACCEPT. */
        if (whole)
            FUZZ_ASSERT((st == UTF8_ACCEPT) ==
                        (i + 1 == size || (data[i + 1] & 0xC0) != 0x80));
    }
    FUZZ_ASSERT((st == UTF8_ACCEPT) == whole);
    FUZZ_ASSERT(whole || st != UTF8_ACCEPT);

    /* Pieces whose lengths come from the input itself (1 + each byte mod 19
     * is the next piece's length), so cuts fall both inside characters and
     * inside the 8-byte ASCII words; an empty step in between must change
     * nothing. */
    st = UTF8_ACCEPT;
    size_t pos = 0;
    size_t k = 0;
    while (pos < size) {
        size_t piece = 1u + data[k++ % size] % 19u;
        if (piece > size - pos)
            piece = size - pos;
        st = utf8_validate_step(st, data + pos, piece);
        FUZZ_ASSERT(utf8_validate_step(st, data + pos, 0) == st);
        pos += piece;
    }
    FUZZ_ASSERT((st == UTF8_ACCEPT) == whole);

    /* The same bytes at every alignment of an 8-byte word, in a buffer of
     * exactly offset + size bytes so a read past the end is caught. */
    for (size_t off = 1; off < 8; off++) {
        uint8_t *copy = malloc(off + size);
        if (copy == NULL)
            return 0;
        memset(copy, 'a', off);
        if (size)
            memcpy(copy + off, data, size);
        FUZZ_ASSERT(utf8_valid(copy + off, size) == whole);
        FUZZ_ASSERT(utf8_valid(copy, off + size) == whole); /* ASCII in front changes nothing */
        free(copy);
    }

    /* A state that is out of range (a corrupted carry) is refused. */
    FUZZ_ASSERT(utf8_validate_step(0xFFFFFFFFu, data, size) == UTF8_REJECT);
    return 0;
}
