/* Error objects. A function that can fail returns int (< 0 on failure) and
 * takes `oak_err_t *err` last; the callee fills it once with a code, an errno
 * and a message, and the consumer (the HTTP reply, gRPC status or main)
 * reports it. `details` optionally holds a JSON array of field errors
 * ({"field": path, "rule": text}) owned by the error. */
#ifndef OAK_ERR_H
#define OAK_ERR_H

#include <jansson.h>

typedef enum {
    OAK_E_OK = 0,
    OAK_E_INVALID,       /* malformed input: 400 */
    OAK_E_UNPROCESSABLE, /* well-formed but breaks rules: 422 */
    OAK_E_UNAUTH,        /* 401 */
    OAK_E_FORBIDDEN,     /* 403 */
    OAK_E_NOT_FOUND,     /* 404 */
    OAK_E_CONFLICT,      /* 409: duplicate or version mismatch */
    OAK_E_TOO_LARGE,     /* 413 */
    OAK_E_UNAVAILABLE,   /* 503: peer or backend down */
    OAK_E_TIMEOUT,       /* 504 */
    OAK_E_IO,            /* 500 with errno */
    OAK_E_INTERNAL,      /* 500 */
    OAK_E_NOT_IMPLEMENTED
} oak_code_t;

typedef struct {
    oak_code_t code;
    int errnum;
    char msg[512];
    json_t *details;
} oak_err_t;

#define OAK_ERR_INIT                                                                               \
    {                                                                                              \
        0                                                                                          \
    }

/* Sets code and message; returns -1 so callers can `return oak_err_set(...)`.
 * err may be NULL. */
int oak_err_set(oak_err_t *err, oak_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As oak_err_set with OAK_E_IO, appending ": strerror(errnum)". */
int oak_err_errno(oak_err_t *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends a field error {"field": field, "rule": rule} to err->details. */
void oak_err_add_field(oak_err_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Releases details and resets to OAK_E_OK. */
void oak_err_clear(oak_err_t *err);
/* HTTP status for an error code. */
int oak_err_http_status(oak_code_t code);
/* Stable short name ("not_found", ...) for an error code. */
const char *oak_err_code_name(oak_code_t code);
/* JSON body {"message", "error", "errors"?}; new reference. */
json_t *oak_err_to_json(const oak_err_t *err);

#endif
