/* login_body.h — the body of POST /api/v1/auth/login: one JSON object with a
 * string "email" and a string "password" (other keys ignored), at most
 * LOGIN_BODY_MAX bytes. Pure: no I/O, no allocation that outlives the call. */
#ifndef WSN_LOGIN_BODY_H
#define WSN_LOGIN_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "src/common/password.h"
#include "src/common/users_file.h"

#define LOGIN_BODY_MAX 4096

typedef struct {
    char email[USERS_EMAIL_MAX + 1];
    char password[PASSWORD_MAX + 1];
} login_body;

/* Parse data. Returns 0, or -1 with a short reason in *why (a static string:
 * not JSON, not an object, a missing or non-string field, too long, a NUL
 * inside a string). */
int login_body_parse(const uint8_t *data, size_t len, login_body *out, const char **why);

#endif
