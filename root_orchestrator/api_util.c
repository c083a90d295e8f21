/* REST helper functions of the system manager (loop thread only). */
#include "root_orchestrator/api_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_json.h"
#include "lib/oak_jwt.h"

static const char *role_names[] = {"Admin", "Organization_Admin", "Application_Provider",
                                   "Infrastructure_Provider"};

json_t *api_body_object(const oak_http_req_t *req, oak_http_resp_t *resp, size_t max)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *j = NULL;
    if (oak_json_parse_object(req->body, req->body_len, max, &j, &err) < 0) {
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return NULL;
    }
    return j;
}

void api_fail(oak_http_resp_t *resp, oak_code_t code, const char *fmt, ...)
{
    oak_err_t err = OAK_ERR_INIT;
    va_list ap;
    err.code = code;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
    va_end(ap);
    oak_http_resp_error(resp, &err);
}

void api_reply_err(oak_http_resp_t *resp, oak_err_t *err)
{
    oak_http_resp_error(resp, err);
    oak_err_clear(err);
}

bool api_fields_failed(oak_http_resp_t *resp, oak_err_t *err, const char *what)
{
    if (!err->details)
        return false;
    err->code = OAK_E_UNPROCESSABLE;
    snprintf(err->msg, sizeof(err->msg), "%s", what);
    api_reply_err(resp, err);
    return true;
}

unsigned roles_from_json(const json_t *arr, oak_err_t *err, const char *field)
{
    unsigned roles = 0;
    size_t i;
    json_t *v;
    if (!json_is_array(arr)) {
        oak_err_add_field(err, field, "must be an array of role names");
        return 0;
    }
    json_array_foreach(arr, i, v)
    {
        bool ok = false;
        for (int k = 0; k < 4 && json_is_string(v); k++) {
            if (strcmp(json_string_value(v), role_names[k]) == 0) {
                roles |= 1u << k;
                ok = true;
            }
        }
        if (!ok) {
            char f[128];
            snprintf(f, sizeof(f), "%s[%zu]", field, i);
            oak_err_add_field(err, f,
                              "must be one of Admin, Organization_Admin, Application_Provider, "
                              "Infrastructure_Provider");
        }
    }
    return roles;
}

json_t *roles_to_json(unsigned roles)
{
    json_t *a = json_array();
    for (int k = 0; k < 4; k++)
        if (roles & (1u << k))
            json_array_append_new(a, json_string(role_names[k]));
    return a;
}

bool api_caller(root_t *r, const oak_http_req_t *req, oak_http_resp_t *resp, caller_t *out)
{
    const char *h = oak_http_req_header(req, "Authorization");
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        api_fail(resp, OAK_E_UNAUTH, "Missing authentication token");
        return false;
    }
    if (oak_jwt_verify(r->jwt_key, sizeof(r->jwt_key), h + 7, &claims, &err) < 0) {
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return false;
    }
    json_auto_t *c = claims;
    const char *type = oak_json_str(c, "type"), *user = oak_json_str(c, "user");
    const char *uid = oak_json_str(c, "user_id"), *org = oak_json_str(c, "organization");
    if (!type || strcmp(type, "access") != 0 || !user || !uid || !org) {
        api_fail(resp, OAK_E_UNAUTH, "token is not an access token");
        return false;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->user, sizeof(out->user), "%s", user);
    snprintf(out->user_id, sizeof(out->user_id), "%s", uid);
    snprintf(out->org_id, sizeof(out->org_id), "%s", org);
    oak_err_t rerr = OAK_ERR_INIT;
    out->roles = roles_from_json(json_object_get(c, "roles"), &rerr, "roles");
    oak_err_clear(&rerr);
    /* the user must still exist: a deleted user's token stops working */
    json_t *u = NULL;
    if (oak_store_get(r->store, "users", uid, &u, &err) < 0) {
        oak_err_clear(&err);
        api_fail(resp, OAK_E_UNAUTH, "the token's user no longer exists");
        return false;
    }
    json_decref(u);
    return true;
}

bool api_caller_role(root_t *r, const oak_http_req_t *req, oak_http_resp_t *resp, unsigned mask,
                     caller_t *out)
{
    if (!api_caller(r, req, resp, out))
        return false;
    if (!(out->roles & mask)) {
        api_fail(resp, OAK_E_FORBIDDEN, "You have not enough permissions!");
        return false;
    }
    return true;
}

bool api_can_see(const caller_t *c, const char *org_id)
{
    if (c->roles & ROLE_ADMIN)
        return true;
    return org_id && strcmp(org_id, c->org_id) == 0;
}

long long api_param_int(const char *s)
{
    char *end = NULL;
    if (!s || !*s || strlen(s) > 9)
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 0)
        return -1;
    return v;
}
