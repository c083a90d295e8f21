/* Users, organizations and tokens. Users live in collection "users"
 * ({_id, name, email, password (PBKDF2 hash), created_at}); organizations
 * in "organizations" ({_id, name, member: [{user_id, roles: [..]}]}).
 * Tokens are HS256 JWTs signed with a key kept in the state directory; the
 * claims follow Oakestra's (sub, user, roles, organization) plus user_id and
 * type ("access" or "refresh"). Loop thread only. */
#include "root_orchestrator/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_jwt.h"
#include "lib/oak_log.h"
#include "root_orchestrator/api_util.h"

#define ALL_ROLES (ROLE_ADMIN | ROLE_ORG_ADMIN | ROLE_APP_PROVIDER | ROLE_INFRA_PROVIDER)

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

static json_t *find_one(root_t *r, const char *coll, const char *field, const char *value)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *arr = NULL;
    json_auto_t *v = json_string(value);
    if (oak_store_find(r->store, coll, field, v, &arr, &err) < 0) {
        log_error("store find %s.%s: %s", coll, field, err.msg);
        oak_err_clear(&err);
        return NULL;
    }
    json_t *first = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return first;
}

static char *now_text(void)
{
    char buf[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%d/%m/%Y %H:%M", &tm);
    return xstrdup(buf);
}

static unsigned member_roles(const json_t *org, const char *user_id, bool *is_member)
{
    size_t i;
    json_t *m;
    *is_member = false;
    json_array_foreach(json_object_get(org, "member"), i, m)
    {
        const char *uid = oak_json_str(m, "user_id");
        if (uid && strcmp(uid, user_id) == 0) {
            oak_err_t e = OAK_ERR_INIT;
            unsigned roles = roles_from_json(json_object_get(m, "roles"), &e, "roles");
            oak_err_clear(&e);
            *is_member = true;
            return roles;
        }
    }
    return 0;
}

static json_t *user_public(const json_t *u)
{
    json_t *o = json_deep_copy(u);
    json_object_del(o, "password");
    json_object_del(o, "_version");
    return o;
}

int auth_load_key(root_t *r, oak_err_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/jwt.key", r->state_dir);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, r->jwt_key, sizeof(r->jwt_key));
        if (n != (ssize_t)sizeof(r->jwt_key))
            return oak_err_set(err, OAK_E_IO, "%s: expected %zu bytes of key", path,
                               sizeof(r->jwt_key));
        return 0;
    }
    if (errno != ENOENT)
        return oak_err_errno(err, errno, "cannot open %s", path);
    oak_random_bytes(r->jwt_key, sizeof(r->jwt_key));
    _cleanup_close_ int w = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w < 0)
        return oak_err_errno(err, errno, "cannot create %s", path);
    if (write(w, r->jwt_key, sizeof(r->jwt_key)) != (ssize_t)sizeof(r->jwt_key) || fsync(w) < 0)
        return oak_err_errno(err, errno, "cannot write %s", path);
    return 0;
}

int auth_bootstrap(root_t *r, const char *admin_password, oak_err_t *err)
{
    json_auto_t *admin = find_one(r, "users", "name", "Admin");
    json_auto_t *org = find_one(r, "organizations", "name", "root");
    char id[25];
    if (!admin) {
        _cleanup_free_ char *generated = NULL;
        const char *pw = admin_password && *admin_password ? admin_password : NULL;
        if (!pw) {
            generated = oak_random_token(18);
            pw = generated;
        }
        _cleanup_free_ char *hash = NULL;
        if (oak_password_hash(pw, &hash, err) < 0)
            return -1;
        oak_store_new_id(id);
        _cleanup_free_ char *ts = now_text();
        admin = json_pack("{s:s, s:s, s:s, s:s, s:s}", "_id", id, "name", "Admin", "email", "",
                          "password", hash, "created_at", ts);
        if (oak_store_insert(r->store, "users", admin, err) < 0)
            return -1;
        if (generated) {
            _cleanup_free_ char *path = xasprintf("%s/admin-password", r->state_dir);
            _cleanup_close_ int fd =
                open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd < 0)
                return oak_err_errno(err, errno, "cannot create %s", path);
            _cleanup_free_ char *line = xasprintf("%s\n", generated);
            if (write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fsync(fd) < 0)
                return oak_err_errno(err, errno, "cannot write %s", path);
            printf("Generated password for user Admin: %s (also stored in %s, mode 0600)\n",
                   generated, path);
            fflush(stdout);
        } else {
            log_info("user Admin created with the password from the configuration");
        }
    }
    if (!org) {
        oak_store_new_id(id);
        org = json_pack("{s:s, s:s, s:[{s:s, s:o}]}", "_id", id, "name", "root", "member",
                        "user_id", oak_json_str(admin, "_id"), "roles", roles_to_json(ALL_ROLES));
        if (oak_store_insert(r->store, "organizations", org, err) < 0)
            return -1;
    }
    return 0;
}

static json_t *issue_tokens(root_t *r, const json_t *user, const json_t *org, unsigned roles,
                            bool with_refresh, oak_err_t *err)
{
    json_auto_t *claims =
        json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "sub", oak_json_str(user, "name"), "user",
                  oak_json_str(user, "name"), "user_id", oak_json_str(user, "_id"), "roles",
                  roles_to_json(roles), "organization", oak_json_str(org, "_id"), "type", "access");
    _cleanup_free_ char *access = NULL, *refresh = NULL;
    if (oak_jwt_sign(r->jwt_key, sizeof(r->jwt_key), claims, r->access_ttl_s, &access, err) < 0)
        return NULL;
    json_t *out =
        json_pack("{s:s, s:I}", "token", access, "expires_in", (json_int_t)r->access_ttl_s);
    if (with_refresh) {
        json_object_set_new(claims, "type", json_string("refresh"));
        if (oak_jwt_sign(r->jwt_key, sizeof(r->jwt_key), claims, r->refresh_ttl_s, &refresh, err) <
            0) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, "refresh_token", json_string(refresh));
    }
    return out;
}

static void h_login(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    json_auto_t *b = api_body_object(req, resp, 64 * 1024);
    if (!b)
        return;
    const char *user = oak_json_str(b, "username"), *pw = oak_json_str(b, "password");
    const char *orgname = oak_json_str(b, "organization_name");
    if (!orgname)
        orgname = oak_json_str(b, "organization");
    if (!orgname || !*orgname)
        orgname = "root";
    oak_err_t err = OAK_ERR_INIT;
    if (!user)
        oak_err_add_field(&err, "username", "is required and must be a string");
    if (!pw)
        oak_err_add_field(&err, "password", "is required and must be a string");
    if (err.details) {
        err.code = OAK_E_UNPROCESSABLE;
        snprintf(err.msg, sizeof(err.msg), "login body is invalid");
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return;
    }
    json_auto_t *u = find_one(r, "users", "name", user);
    if (!u || !oak_password_verify(pw, oak_json_str(u, "password")))
        return api_fail(resp, OAK_E_UNAUTH, "wrong username or password");
    json_auto_t *org = find_one(r, "organizations", "name", orgname);
    if (!org)
        return api_fail(resp, OAK_E_NOT_FOUND, "organization '%s' does not exist", orgname);
    bool member;
    unsigned roles = member_roles(org, oak_json_str(u, "_id"), &member);
    if (!member)
        return api_fail(resp, OAK_E_UNAUTH, "user '%s' is not a member of organization '%s'", user,
                        orgname);
    json_t *tok = issue_tokens(r, u, org, roles, true, &err);
    if (!tok) {
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return;
    }
    oak_http_resp_json(resp, 200, tok);
}

static void h_refresh(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    const char *h = oak_http_req_header(req, "Authorization");
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return api_fail(resp, OAK_E_UNAUTH, "Missing refresh token");
    if (oak_jwt_verify(r->jwt_key, sizeof(r->jwt_key), h + 7, &claims, &err) < 0) {
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return;
    }
    json_auto_t *c = claims;
    const char *type = oak_json_str(c, "type");
    if (!type || strcmp(type, "refresh") != 0)
        return api_fail(resp, OAK_E_UNAUTH, "a refresh token is required");
    json_t *u = NULL, *org = NULL;
    const char *uid = oak_json_str(c, "user_id"), *oid = oak_json_str(c, "organization");
    if (!uid || !oid || oak_store_get(r->store, "users", uid, &u, &err) < 0 ||
        oak_store_get(r->store, "organizations", oid, &org, &err) < 0) {
        json_decref(u);
        oak_err_clear(&err);
        return api_fail(resp, OAK_E_UNAUTH, "the token's user or organization no longer exists");
    }
    json_auto_t *uu = u, *oo = org;
    bool member;
    unsigned roles = member_roles(oo, uid, &member);
    if (!member)
        return api_fail(resp, OAK_E_UNAUTH, "the user is no longer a member of the organization");
    json_t *tok = issue_tokens(r, uu, oo, roles, false, &err);
    if (!tok) {
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return;
    }
    oak_http_resp_json(resp, 200, tok);
}

/* Finds the user named in the path; fills resp with 404 when missing. */
static json_t *path_user(root_t *r, const oak_http_req_t *req, oak_http_resp_t *resp)
{
    json_t *u = find_one(r, "users", "name", req->params[0]);
    if (!u)
        api_fail(resp, OAK_E_NOT_FOUND, "user '%s' does not exist", req->params[0]);
    return u;
}

static bool self_or_admin(const caller_t *c, const char *username, oak_http_resp_t *resp)
{
    if ((c->roles & ROLE_ADMIN) || strcmp(c->user, username) == 0)
        return true;
    api_fail(resp, OAK_E_FORBIDDEN, "You have not enough permissions!");
    return false;
}

static void h_permission(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c) || !self_or_admin(&c, req->params[0], resp))
        return;
    json_auto_t *u = path_user(r, req, resp);
    if (!u)
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *org = NULL;
    unsigned roles = 0;
    if (oak_store_get(r->store, "organizations", c.org_id, &org, &err) == 0) {
        bool m;
        roles = member_roles(org, oak_json_str(u, "_id"), &m);
        json_decref(org);
    }
    oak_err_clear(&err);
    oak_http_resp_json(resp, 200, json_pack("{s:o}", "roles", roles_to_json(roles)));
}

static void h_user_get(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c) || !self_or_admin(&c, req->params[0], resp))
        return;
    json_auto_t *u = path_user(r, req, resp);
    if (!u)
        return;
    json_t *out = user_public(u);
    oak_err_t err = OAK_ERR_INIT;
    json_t *org = NULL;
    if (oak_store_get(r->store, "organizations", c.org_id, &org, &err) == 0) {
        bool m;
        json_object_set_new(out, "roles",
                            roles_to_json(member_roles(org, oak_json_str(u, "_id"), &m)));
        json_decref(org);
    }
    oak_err_clear(&err);
    oak_http_resp_json(resp, 200, out);
}

/* Sets the roles of user_id in org (adds the membership if missing). */
static int org_set_member(root_t *r, const char *org_id, const char *user_id, unsigned roles,
                          oak_err_t *err)
{
    json_t *org = NULL;
    if (oak_store_get(r->store, "organizations", org_id, &org, err) < 0)
        return -1;
    json_auto_t *o = org;
    json_t *members = json_object_get(o, "member");
    if (!json_is_array(members)) {
        members = json_array();
        json_object_set_new(o, "member", members);
    }
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        const char *uid = oak_json_str(m, "user_id");
        if (uid && strcmp(uid, user_id) == 0) {
            json_object_set_new(m, "roles", roles_to_json(roles));
            return oak_store_update(r->store, "organizations", o, oak_json_int(o, "_version", 0),
                                    err);
        }
    }
    json_array_append_new(
        members, json_pack("{s:s, s:o}", "user_id", user_id, "roles", roles_to_json(roles)));
    return oak_store_update(r->store, "organizations", o, oak_json_int(o, "_version", 0), err);
}

static void h_register(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN | ROLE_ORG_ADMIN, &c))
        return;
    json_auto_t *b = api_body_object(req, resp, 64 * 1024);
    if (!b)
        return;
    oak_err_t err = OAK_ERR_INIT;
    const char *name = oak_json_str(b, "name"), *pw = oak_json_str(b, "password");
    const char *email = oak_json_str(b, "email");
    if (!valid_name(name))
        oak_err_add_field(&err, "name", "is required: 1-64 letters, digits, '_', '-' or '.'");
    if (!pw || strlen(pw) < 8 || strlen(pw) > 256)
        oak_err_add_field(&err, "password", "is required: 8-256 characters");
    if (json_object_get(b, "email") && !email)
        oak_err_add_field(&err, "email", "must be a string");
    unsigned roles = ROLE_APP_PROVIDER;
    if (json_object_get(b, "roles"))
        roles = roles_from_json(json_object_get(b, "roles"), &err, "roles");
    if (!(c.roles & ROLE_ADMIN) && (roles & ROLE_ADMIN))
        oak_err_add_field(&err, "roles", "only an Admin can grant the Admin role");
    if (api_fields_failed(resp, &err, "user is invalid"))
        return;
    json_auto_t *exists = find_one(r, "users", "name", name);
    if (exists)
        return api_fail(resp, OAK_E_CONFLICT, "Username already exists");
    _cleanup_free_ char *hash = NULL, *ts = now_text();
    if (oak_password_hash(pw, &hash, &err) < 0)
        return api_reply_err(resp, &err);
    char id[25];
    oak_store_new_id(id);
    json_auto_t *u = json_pack("{s:s, s:s, s:s, s:s, s:s}", "_id", id, "name", name, "email",
                               email ? email : "", "password", hash, "created_at", ts);
    if (oak_store_begin(r->store, &err) < 0)
        return api_reply_err(resp, &err);
    if (oak_store_insert(r->store, "users", u, &err) < 0 ||
        org_set_member(r, c.org_id, id, roles, &err) < 0 || oak_store_commit(r->store, &err) < 0) {
        oak_store_rollback(r->store);
        return api_reply_err(resp, &err);
    }
    json_t *out = user_public(u);
    json_object_set_new(out, "roles", roles_to_json(roles));
    oak_http_resp_json(resp, 201, out);
}

static void h_user_put(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN, &c))
        return;
    json_auto_t *u = path_user(r, req, resp);
    if (!u)
        return;
    json_auto_t *b = api_body_object(req, resp, 64 * 1024);
    if (!b)
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *email = json_object_get(b, "email");
    if (email && !json_is_string(email))
        oak_err_add_field(&err, "email", "must be a string");
    unsigned roles = 0;
    bool set_roles = json_object_get(b, "roles") != NULL;
    if (set_roles)
        roles = roles_from_json(json_object_get(b, "roles"), &err, "roles");
    if (api_fields_failed(resp, &err, "user update is invalid"))
        return;
    if (oak_store_begin(r->store, &err) < 0)
        return api_reply_err(resp, &err);
    if (email)
        json_object_set(u, "email", email);
    if (oak_store_update(r->store, "users", u, oak_json_int(u, "_version", 0), &err) < 0 ||
        (set_roles && org_set_member(r, c.org_id, oak_json_str(u, "_id"), roles, &err) < 0) ||
        oak_store_commit(r->store, &err) < 0) {
        oak_store_rollback(r->store);
        return api_reply_err(resp, &err);
    }
    oak_http_resp_json(resp, 200, user_public(u));
}

static void h_user_delete(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN, &c))
        return;
    if (strcmp(req->params[0], "Admin") == 0)
        return api_fail(resp, OAK_E_FORBIDDEN, "the Admin user cannot be deleted");
    json_auto_t *u = path_user(r, req, resp);
    if (!u)
        return;
    const char *uid = oak_json_str(u, "_id");
    oak_err_t err = OAK_ERR_INIT;
    json_t *orgs = NULL;
    if (oak_store_begin(r->store, &err) < 0)
        return api_reply_err(resp, &err);
    if (oak_store_find(r->store, "organizations", NULL, NULL, &orgs, &err) < 0)
        goto fail;
    size_t i, k;
    json_t *o, *m;
    json_array_foreach(orgs, i, o)
    {
        json_t *members = json_object_get(o, "member");
        bool changed = false;
        json_array_foreach(members, k, m)
        {
            const char *mid = oak_json_str(m, "user_id");
            if (mid && strcmp(mid, uid) == 0) {
                json_array_remove(members, k);
                changed = true;
                break;
            }
        }
        if (changed && oak_store_update(r->store, "organizations", o,
                                        oak_json_int(o, "_version", 0), &err) < 0)
            goto fail;
    }
    if (oak_store_delete(r->store, "users", uid, 0, &err) < 0 ||
        oak_store_commit(r->store, &err) < 0)
        goto fail;
    json_decref(orgs);
    oak_http_resp_json(resp, 200, json_pack("{s:s}", "message", "User deleted"));
    return;
fail:
    json_decref(orgs);
    oak_store_rollback(r->store);
    api_reply_err(resp, &err);
}

static void h_user_password(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    if (strcmp(c.user, req->params[0]) != 0)
        return api_fail(resp, OAK_E_FORBIDDEN, "users can only change their own password");
    json_auto_t *u = path_user(r, req, resp);
    if (!u)
        return;
    json_auto_t *b = api_body_object(req, resp, 64 * 1024);
    if (!b)
        return;
    const char *oldpw = oak_json_str(b, "oldPassword"), *newpw = oak_json_str(b, "newPassword");
    oak_err_t err = OAK_ERR_INIT;
    if (!oldpw)
        oak_err_add_field(&err, "oldPassword", "is required and must be a string");
    if (!newpw || strlen(newpw) < 8 || strlen(newpw) > 256)
        oak_err_add_field(&err, "newPassword", "is required: 8-256 characters");
    else if (oldpw && strcmp(oldpw, newpw) == 0)
        oak_err_add_field(&err, "newPassword", "must differ from the old password");
    if (api_fields_failed(resp, &err, "password change is invalid"))
        return;
    if (!oak_password_verify(oldpw, oak_json_str(u, "password")))
        return api_fail(resp, OAK_E_INVALID, "the old password is wrong");
    _cleanup_free_ char *hash = NULL;
    if (oak_password_hash(newpw, &hash, &err) < 0)
        return api_reply_err(resp, &err);
    json_object_set_new(u, "password", json_string(hash));
    if (oak_store_update(r->store, "users", u, oak_json_int(u, "_version", 0), &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, json_pack("{s:s}", "message", "Password changed"));
}

static json_t *users_with_roles(root_t *r, const json_t *org, oak_err_t *err)
{
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(org, "member"), i, m)
    {
        json_t *u = NULL;
        const char *uid = oak_json_str(m, "user_id");
        if (!uid || oak_store_get(r->store, "users", uid, &u, err) < 0) {
            oak_err_clear(err);
            continue;
        }
        json_t *pub = user_public(u);
        json_decref(u);
        json_object_set(pub, "roles", json_object_get(m, "roles"));
        json_array_append_new(out, pub);
    }
    return out;
}

static void h_users(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *all = NULL;
    if (oak_store_find(r->store, "users", NULL, NULL, &all, &err) < 0)
        return api_reply_err(resp, &err);
    json_t *out = json_array();
    size_t i;
    json_t *u;
    json_array_foreach(all, i, u) json_array_append_new(out, user_public(u));
    json_decref(all);
    oak_http_resp_json(resp, 200, out);
}

static void h_users_of_org(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN | ROLE_ORG_ADMIN, &c))
        return;
    if (!api_can_see(&c, req->params[0]))
        return api_fail(resp, OAK_E_FORBIDDEN, "You have not enough permissions!");
    oak_err_t err = OAK_ERR_INIT;
    json_t *org = NULL;
    if (oak_store_get(r->store, "organizations", req->params[0], &org, &err) < 0)
        return api_reply_err(resp, &err);
    json_t *out = users_with_roles(r, org, &err);
    json_decref(org);
    oak_http_resp_json(resp, 200, out);
}

static int check_members(root_t *r, const json_t *members, oak_err_t *err)
{
    size_t i;
    json_t *m;
    if (!json_is_array(members)) {
        oak_err_add_field(err, "member", "must be an array of {user_id, roles}");
        return -1;
    }
    json_array_foreach(members, i, m)
    {
        char f[64];
        snprintf(f, sizeof(f), "member[%zu].user_id", i);
        const char *uid = oak_json_str(m, "user_id");
        json_t *u = NULL;
        oak_err_t e = OAK_ERR_INIT;
        if (!uid)
            oak_err_add_field(err, f, "is required and must be a string");
        else if (oak_store_get(r->store, "users", uid, &u, &e) < 0)
            oak_err_add_field(err, f, "names no existing user");
        json_decref(u);
        oak_err_clear(&e);
        snprintf(f, sizeof(f), "member[%zu].roles", i);
        roles_from_json(json_object_get(m, "roles"), err, f);
    }
    return err->details ? -1 : 0;
}

static void h_orgs(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *all = NULL;
    if (oak_store_find(r->store, "organizations", NULL, NULL, &all, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, all);
}

static void h_org_create(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN, &c))
        return;
    json_auto_t *b = api_body_object(req, resp, 256 * 1024);
    if (!b)
        return;
    oak_err_t err = OAK_ERR_INIT;
    const char *name = oak_json_str(b, "name");
    if (!valid_name(name))
        oak_err_add_field(&err, "name", "is required: 1-64 letters, digits, '_', '-' or '.'");
    json_t *members = json_object_get(b, "member");
    if (members)
        check_members(r, members, &err);
    if (api_fields_failed(resp, &err, "organization is invalid"))
        return;
    json_auto_t *exists = find_one(r, "organizations", "name", name);
    if (exists)
        return api_fail(resp, OAK_E_CONFLICT, "organization '%s' already exists", name);
    char id[25];
    oak_store_new_id(id);
    json_auto_t *org = json_pack("{s:s, s:s}", "_id", id, "name", name);
    json_object_set_new(org, "member", members ? json_deep_copy(members) : json_array());
    if (oak_store_insert(r->store, "organizations", org, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 201, json_incref(org));
}

static void h_org_put(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *org = NULL;
    if (oak_store_get(r->store, "organizations", req->params[0], &org, &err) < 0)
        return api_reply_err(resp, &err);
    json_auto_t *o = org;
    json_auto_t *b = api_body_object(req, resp, 256 * 1024);
    if (!b)
        return;
    json_t *name = json_object_get(b, "name"), *members = json_object_get(b, "member");
    if (name && !valid_name(json_string_value(name)))
        oak_err_add_field(&err, "name", "must be 1-64 letters, digits, '_', '-' or '.'");
    if (members)
        check_members(r, members, &err);
    if (api_fields_failed(resp, &err, "organization is invalid"))
        return;
    if (name)
        json_object_set(o, "name", name);
    if (members)
        json_object_set(o, "member", members);
    if (oak_store_update(r->store, "organizations", o, oak_json_int(o, "_version", 0), &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, json_incref(o));
}

static void h_org_delete(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, ROLE_ADMIN, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *org = NULL;
    if (oak_store_get(r->store, "organizations", req->params[0], &org, &err) < 0)
        return api_reply_err(resp, &err);
    json_auto_t *o = org;
    if (strcmp(oak_json_str(o, "name"), "root") == 0)
        return api_fail(resp, OAK_E_FORBIDDEN, "the root organization cannot be deleted");
    if (oak_store_delete(r->store, "organizations", req->params[0], 0, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, json_pack("{s:s}", "message", "Organization deleted"));
}

const oak_http_route_t auth_routes[] = {
    {"POST", "/api/auth/login", h_login},
    {"POST", "/api/auth/refresh", h_refresh},
    {"POST", "/api/auth/register", h_register},
    {"GET", "/api/permission/<username>", h_permission},
    {"GET", "/api/user/<username>", h_user_get},
    {"PUT", "/api/user/<username>", h_user_put},
    {"DELETE", "/api/user/<username>", h_user_delete},
    {"POST", "/api/user/<username>", h_user_password},
    {"GET", "/api/users/", h_users},
    {"GET", "/api/users/<organization_id>", h_users_of_org},
    {"GET", "/api/organization/", h_orgs},
    {"POST", "/api/organization/", h_org_create},
    {"PUT", "/api/organization/<id>", h_org_put},
    {"DELETE", "/api/organization/<id>", h_org_delete},
};
const size_t auth_nroutes = sizeof(auth_routes) / sizeof(auth_routes[0]);
