/* login_body.c — parse the login request's JSON body (see login_body.h). */
#include "workers/login_body.h"

#include <json-c/json.h>
#include <string.h>

#include "src/common/utf8.h"

/* key's value as a string of at most max bytes, copied into out. */
static const char *take_string(json_object *obj, const char *key, char *out, size_t max)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return "email and password must be strings";
    size_t n = (size_t)json_object_get_string_len(v);
    const char *s = json_object_get_string(v);
    if (n == 0)
        return "email and password must not be empty";
    if (n > max)
        return "email or password too long";
    if (memchr(s, '\0', n) != NULL)
        return "a NUL byte in email or password";
    memcpy(out, s, n);
    out[n] = '\0';
    return NULL;
}

int login_body_parse(const uint8_t *data, size_t len, login_body *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (len > LOGIN_BODY_MAX) {
        *why = "body too large";
        return -1;
    }
    if (!utf8_valid(data, len)) {
        *why = "body is not UTF-8";
        return -1;
    }
    json_tokener *tok = json_tokener_new_ex(8);
    if (tok == NULL) {
        *why = "out of memory";
        return -1;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, (const char *)data, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    /* Only white space may follow the object. */
    while (obj != NULL && end < len &&
           (data[end] == ' ' || data[end] == '\n' || data[end] == '\r' || data[end] == '\t'))
        end++;
    const char *bad = NULL;
    if (obj == NULL || jerr != json_tokener_success || end != len)
        bad = "body is not JSON";
    else if (!json_object_is_type(obj, json_type_object))
        bad = "body is not a JSON object";
    if (bad == NULL)
        bad = take_string(obj, "email", out->email, USERS_EMAIL_MAX);
    if (bad == NULL)
        bad = take_string(obj, "password", out->password, PASSWORD_MAX);
    json_object_put(obj);
    if (bad != NULL) {
        memset(out, 0, sizeof *out);
        *why = bad;
        return -1;
    }
    return 0;
}
