/* Error objects and their mapping to HTTP statuses and JSON bodies. */
#include "lib/oak_err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int oak_err_set(oak_err_t *err, oak_code_t code, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    err->code = code;
    err->errnum = 0;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int oak_err_errno(oak_err_t *err, int errnum, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    err->code = OAK_E_IO;
    err->errnum = errnum;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
    return -1;
}

void oak_err_add_field(oak_err_t *err, const char *field, const char *fmt, ...)
{
    if (!err)
        return;
    char rule[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rule, sizeof(rule), fmt, ap);
    va_end(ap);
    if (!err->details)
        err->details = json_array();
    json_array_append_new(err->details, json_pack("{s:s, s:s}", "field", field, "rule", rule));
}

void oak_err_clear(oak_err_t *err)
{
    if (!err)
        return;
    json_decref(err->details);
    memset(err, 0, sizeof(*err));
}

int oak_err_http_status(oak_code_t code)
{
    switch (code) {
    case OAK_E_OK:
        return 200;
    case OAK_E_INVALID:
        return 400;
    case OAK_E_UNPROCESSABLE:
        return 422;
    case OAK_E_UNAUTH:
        return 401;
    case OAK_E_FORBIDDEN:
        return 403;
    case OAK_E_NOT_FOUND:
        return 404;
    case OAK_E_CONFLICT:
        return 409;
    case OAK_E_TOO_LARGE:
        return 413;
    case OAK_E_UNAVAILABLE:
        return 503;
    case OAK_E_TIMEOUT:
        return 504;
    case OAK_E_NOT_IMPLEMENTED:
        return 501;
    case OAK_E_IO:
    case OAK_E_INTERNAL:
        break;
    }
    return 500;
}

const char *oak_err_code_name(oak_code_t code)
{
    static const char *names[] = {
        [OAK_E_OK] = "ok",
        [OAK_E_INVALID] = "invalid_request",
        [OAK_E_UNPROCESSABLE] = "validation_failed",
        [OAK_E_UNAUTH] = "unauthenticated",
        [OAK_E_FORBIDDEN] = "forbidden",
        [OAK_E_NOT_FOUND] = "not_found",
        [OAK_E_CONFLICT] = "conflict",
        [OAK_E_TOO_LARGE] = "too_large",
        [OAK_E_UNAVAILABLE] = "unavailable",
        [OAK_E_TIMEOUT] = "timeout",
        [OAK_E_IO] = "io_error",
        [OAK_E_INTERNAL] = "internal",
        [OAK_E_NOT_IMPLEMENTED] = "not_implemented",
    };
    if ((unsigned)code < sizeof(names) / sizeof(names[0]) && names[code])
        return names[code];
    return "internal";
}

json_t *oak_err_to_json(const oak_err_t *err)
{
    json_t *o = json_pack("{s:s, s:s}", "message", err->msg[0] ? err->msg : "error", "error",
                          oak_err_code_name(err->code));
    if (err->details)
        json_object_set(o, "errors", err->details);
    return o;
}
