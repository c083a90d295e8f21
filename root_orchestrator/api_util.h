/* Small helpers shared by the REST handlers of the system manager: body
 * parsing into an error reply, the authenticated caller, role checks and
 * object visibility. Loop thread only. */
#ifndef API_UTIL_H
#define API_UTIL_H

#include <stdbool.h>

#include "lib/oak_http.h"
#include "root_orchestrator/root.h"

enum {
    ROLE_ADMIN = 1 << 0,
    ROLE_ORG_ADMIN = 1 << 1,
    ROLE_APP_PROVIDER = 1 << 2,
    ROLE_INFRA_PROVIDER = 1 << 3,
};

/* The authenticated caller, from a verified access token. */
typedef struct {
    char user[128];
    char user_id[32];
    char org_id[32];
    unsigned roles;
} caller_t;

/* Parses the request body as a JSON object; on failure fills resp with a
 * 400/413 error and returns NULL. Returns a new reference. */
json_t *api_body_object(const oak_http_req_t *req, oak_http_resp_t *resp, size_t max);
/* Verifies the bearer access token; on failure fills resp with 401 and
 * returns false. */
bool api_caller(root_t *r, const oak_http_req_t *req, oak_http_resp_t *resp, caller_t *out);
/* As api_caller, and additionally requires one of the roles in mask (403). */
bool api_caller_role(root_t *r, const oak_http_req_t *req, oak_http_resp_t *resp, unsigned mask,
                     caller_t *out);
/* True if the caller may see objects of organization org_id. */
bool api_can_see(const caller_t *c, const char *org_id);
/* Replies with an error built from code and message. */
void api_fail(oak_http_resp_t *resp, oak_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replies with err and clears it. */
void api_reply_err(oak_http_resp_t *resp, oak_err_t *err);
/* If err holds field errors, replies 422 with message what and the fields,
 * clears err and returns true. */
bool api_fields_failed(oak_http_resp_t *resp, oak_err_t *err, const char *what);
/* Parses a non-negative decimal integer path parameter; -1 if invalid. */
long long api_param_int(const char *s);

/* Role names <-> bits. */
unsigned roles_from_json(const json_t *arr, oak_err_t *err, const char *field);
json_t *roles_to_json(unsigned roles);

#endif
