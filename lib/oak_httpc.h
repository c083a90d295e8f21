/* Blocking HTTP client over the libcurl easy API, for worker threads, tests
 * and the CLI (never call it on an event loop thread). Thread-safe: every
 * call uses its own curl handle. */
#ifndef OAK_HTTPC_H
#define OAK_HTTPC_H

#include <jansson.h>
#include <stddef.h>

#include "lib/oak_err.h"

/* Responses larger than this fail with OAK_E_TOO_LARGE. */
#define OAK_HTTPC_MAX_RESPONSE (64u * 1024u * 1024u)

typedef struct {
    long status; /* HTTP status */
    char *body;  /* NUL-terminated (never NULL after success) */
    size_t body_len;
    char *content_type; /* or NULL */
} oak_httpc_resp_t;

/* Performs one request. method is "GET", "POST", "PUT", "PATCH", "DELETE",
 * ...; headers is a NULL-terminated list of "Name: value" strings (or NULL);
 * body/body_len is sent when body is non-NULL (an empty POST sends
 * Content-Length: 0). timeout_ms <= 0 means no overall timeout (connecting
 * still times out after 10 s). Any HTTP status is success at this level:
 * *out is filled and must be released with oak_httpc_resp_free().
 * Errors: OAK_E_TIMEOUT, OAK_E_UNAVAILABLE (connection refused, DNS, reset)
 * with curl's message, OAK_E_TOO_LARGE (response over
 * OAK_HTTPC_MAX_RESPONSE), OAK_E_INVALID (bad URL or method). */
int oak_httpc_request(const char *method, const char *url, const char *const *headers,
                      const char *body, size_t body_len, long timeout_ms, oak_httpc_resp_t *out,
                      oak_err_t *err);
/* As oak_httpc_request, over the unix socket at socket_path; url still
 * names the host part for the Host header ("http://localhost/path"). */
int oak_httpc_request_unix(const char *socket_path, const char *method, const char *url,
                           const char *const *headers, const char *body, size_t body_len,
                           long timeout_ms, oak_httpc_resp_t *out, oak_err_t *err);

/* JSON round trip: sends body (if non-NULL) serialised compactly with
 * Content-Type: application/json, and "Authorization: Bearer <token>" when
 * bearer_token is non-NULL. *status receives the HTTP status; *out (may be
 * NULL to ignore) receives the parsed response as a new reference, or NULL
 * when the body is empty or not JSON. Transport errors as for
 * oak_httpc_request. */
int oak_httpc_json(const char *method, const char *url, const char *bearer_token,
                   const json_t *body, long timeout_ms, long *status, json_t **out, oak_err_t *err);
/* As oak_httpc_json, over a unix socket. */
int oak_httpc_json_unix(const char *socket_path, const char *method, const char *url,
                        const char *bearer_token, const json_t *body, long timeout_ms, long *status,
                        json_t **out, oak_err_t *err);

/* Frees the members of r (not r itself) and zeroes it. NULL is ignored. */
void oak_httpc_resp_free(oak_httpc_resp_t *r);

#endif
