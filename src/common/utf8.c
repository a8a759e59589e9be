/* utf8.c — strict, incremental UTF-8 validation (RFC 3629) as a small DFA.
 *
 * Every byte is mapped to a class, and (state, class) to the next state. The
 * mid-character states encode exactly which continuation byte range is still
 * legal, so overlongs (C0/C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and
 * code points above U+10FFFF (F4 90.., F5..FF) are rejected at the first byte
 * that makes them so. The state is a plain integer, so a partial character can
 * be carried across WebSocket fragments. */
#include "src/common/utf8.h"

#include <string.h>

/* Mid-character states (UTF8_ACCEPT = 0 and UTF8_REJECT = 1 come from utf8.h). */
enum {
    UTF8_NEED1 = 2,       /* one more continuation, 80..BF */
    UTF8_NEED2 = 3,       /* two more, the next 80..BF */
    UTF8_NEED3 = 4,       /* three more, the next 80..BF */
    UTF8_AFTER_E0 = 5,    /* next A0..BF (below is overlong), then one more */
    UTF8_AFTER_ED = 6,    /* next 80..9F (above is a surrogate), then one more */
    UTF8_AFTER_F0 = 7,    /* next 90..BF (below is overlong), then two more */
    UTF8_AFTER_F4 = 8,    /* next 80..8F (above is > U+10FFFF), then two more */
    UTF8_NSTATES = 9,
};

/* Byte classes. */
enum {
    C_ASCII = 0,  /* 00..7F */
    C_CONT_LO,    /* 80..8F */
    C_CONT_MID,   /* 90..9F */
    C_CONT_HI,    /* A0..BF */
    C_BAD,        /* C0, C1 (always overlong), F5..FF (beyond U+10FFFF) */
    C_LEAD2,      /* C2..DF */
    C_E0,
    C_LEAD3,      /* E1..EC, EE, EF */
    C_ED,
    C_F0,
    C_LEAD4,      /* F1..F3 */
    C_F4,
    C_NCLASSES,
};

static const uint8_t utf8_class[256] = {
    /* 00..7F */
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    /* 80..8F */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    /* 90..9F */
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    /* A0..BF */
    3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3, 3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,
    /* C0..DF */
    4,4,5,5,5,5,5,5,5,5,5,5,5,5,5,5, 5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,
    /* E0..EF */
    6,7,7,7,7,7,7,7,7,7,7,7,7,8,7,7,
    /* F0..FF */
    9,10,10,10,11,4,4,4,4,4,4,4,4,4,4,4,
};

#define R UTF8_REJECT
static const uint8_t utf8_next[UTF8_NSTATES][C_NCLASSES] = {
    /*                ASCII CONT_LO      CONT_MID     CONT_HI      BAD LEAD2       E0             LEAD3       ED             F0             LEAD4       F4 */
    [UTF8_ACCEPT]   = { 0,  R,           R,           R,           R,  UTF8_NEED1, UTF8_AFTER_E0, UTF8_NEED2, UTF8_AFTER_ED, UTF8_AFTER_F0, UTF8_NEED3, UTF8_AFTER_F4 },
    [UTF8_REJECT]   = { R,  R,           R,           R,           R,  R,          R,             R,          R,             R,             R,          R },
    [UTF8_NEED1]    = { R,  UTF8_ACCEPT, UTF8_ACCEPT, UTF8_ACCEPT, R,  R,          R,             R,          R,             R,             R,          R },
    [UTF8_NEED2]    = { R,  UTF8_NEED1,  UTF8_NEED1,  UTF8_NEED1,  R,  R,          R,             R,          R,             R,             R,          R },
    [UTF8_NEED3]    = { R,  UTF8_NEED2,  UTF8_NEED2,  UTF8_NEED2,  R,  R,          R,             R,          R,             R,             R,          R },
    [UTF8_AFTER_E0] = { R,  R,           R,           UTF8_NEED1,  R,  R,          R,             R,          R,             R,             R,          R },
    [UTF8_AFTER_ED] = { R,  UTF8_NEED1,  UTF8_NEED1,  R,           R,  R,          R,             R,          R,             R,             R,          R },
    [UTF8_AFTER_F0] = { R,  R,           UTF8_NEED2,  UTF8_NEED2,  R,  R,          R,             R,          R,             R,             R,          R },
    [UTF8_AFTER_F4] = { R,  UTF8_NEED2,  R,           R,           R,  R,          R,             R,          R,             R,             R,          R },
};
#undef R

#define UTF8_HIGH_BITS UINT64_C(0x8080808080808080)

uint32_t utf8_validate_step(uint32_t state, const uint8_t *s, size_t len)
{
    size_t i = 0;

    /* A state from a previous call that is out of range cannot be trusted. */
    if (state >= UTF8_NSTATES)
        return UTF8_REJECT;

    while (i < len) {
        if (state == UTF8_ACCEPT) {
            /* Chat-like traffic is mostly ASCII: skip it a word at a time. */
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, sizeof(w));
                if (w & UTF8_HIGH_BITS)
                    break;
                i += 8;
            }
            if (i == len)
                break;
        }
        state = utf8_next[state][utf8_class[s[i]]];
        if (state == UTF8_REJECT)
            return UTF8_REJECT;
        i++;
    }
    return state;
}

bool utf8_valid(const uint8_t *s, size_t len)
{
    return utf8_validate_step(UTF8_ACCEPT, s, len) == UTF8_ACCEPT;
}
