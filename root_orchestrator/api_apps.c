/* Applications ("apps"), services ("services", Oakestra's jobs, each with
 * its instance_list), instances and clusters over REST. Every mutation is
 * validated completely before anything is written, and written before the
 * reply. Visibility: a caller sees the objects of its organization; an
 * Admin sees all. Loop thread only. */
#include "root_orchestrator/api_apps.h"

#include <stdio.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "root_orchestrator/api_util.h"
#include "root_orchestrator/clusters.h"
#include "root_orchestrator/instances.h"
#include "root_orchestrator/relay.h"
#include "root_orchestrator/sla.h"

#define APP_ROLES   (ROLE_ADMIN | ROLE_ORG_ADMIN | ROLE_APP_PROVIDER)
#define INFRA_ROLES (ROLE_ADMIN | ROLE_INFRA_PROVIDER)

static json_t *public_doc(const json_t *d)
{
    json_t *o = json_deep_copy(d);
    json_object_del(o, "_version");
    return o;
}

static json_t *public_list(const json_t *arr)
{
    json_t *out = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d) json_array_append_new(out, public_doc(d));
    return out;
}

static bool valid_sla_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 30)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* Loads a document the caller may see; fills resp with 404 otherwise (not
 * 403, so ids of other organizations do not leak). */
static json_t *load_visible(root_t *r, const caller_t *c, const char *coll, const char *id,
                            const char *what, oak_http_resp_t *resp)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *d = NULL;
    if (oak_store_get(r->store, coll, id, &d, &err) < 0) {
        if (err.code == OAK_E_NOT_FOUND)
            api_fail(resp, OAK_E_NOT_FOUND, "%s '%s' not found", what, id);
        else
            oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return NULL;
    }
    if (!api_can_see(c, oak_json_str(d, "organization_id"))) {
        json_decref(d);
        api_fail(resp, OAK_E_NOT_FOUND, "%s '%s' not found", what, id);
        return NULL;
    }
    return d;
}

static json_t *apps_visible(root_t *r, const caller_t *c, oak_err_t *err)
{
    json_t *out = NULL;
    if (c->roles & ROLE_ADMIN) {
        if (oak_store_find(r->store, "apps", NULL, NULL, &out, err) < 0)
            return NULL;
    } else {
        json_auto_t *org = json_string(c->org_id);
        if (oak_store_find(r->store, "apps", "organization_id", org, &out, err) < 0)
            return NULL;
    }
    return out;
}

/* Builds the service document for microservice ms of application app. */
static json_t *service_doc(const json_t *app, const json_t *ms, const caller_t *c)
{
    json_t *s = json_deep_copy(ms);
    char id[25];
    oak_store_new_id(id);
    const char *an = oak_json_str(app, "application_name"),
               *ans = oak_json_str(app, "application_namespace"),
               *sn = oak_json_str(ms, "microservice_name"),
               *sns = oak_json_str(ms, "microservice_namespace");
    char jobname[200];
    snprintf(jobname, sizeof(jobname), "%s.%s.%s.%s", an, ans, sn, sns);
    json_object_set_new(s, "_id", json_string(id));
    json_object_set_new(s, "microserviceID", json_string(id));
    json_object_set_new(s, "applicationID", json_string(oak_json_str(app, "_id")));
    json_object_set_new(s, "app_name", json_string(an));
    json_object_set_new(s, "app_ns", json_string(ans));
    json_object_set_new(s, "service_name", json_string(sn));
    json_object_set_new(s, "service_ns", json_string(sns));
    json_object_set_new(s, "job_name", json_string(jobname));
    json_object_set_new(s, "image", json_string(oak_json_str(ms, "code")));
    json_object_set_new(s, "next_instance_progressive_number", json_integer(0));
    json_object_set_new(s, "instance_list", json_array());
    json_object_set_new(s, "organization_id", json_string(c->org_id));
    json_object_set_new(s, "userId", json_string(c->user));
    json_t *addr = json_object_get(ms, "addresses");
    if (oak_json_str(addr, "rr_ip"))
        json_object_set_new(s, "RR_ip", json_string(oak_json_str(addr, "rr_ip")));
    if (oak_json_str(addr, "rr_ip_v6"))
        json_object_set_new(s, "RR_ip_v6", json_string(oak_json_str(addr, "rr_ip_v6")));
    service_refresh_status(s);
    return s;
}

/* Adds the `replicas` REQUESTED instances to a service about to be stored,
 * so that the service and its instances are written in one transaction. */
static int add_replicas(json_t *svc, oak_err_t *err)
{
    long long n = oak_json_int(svc, "replicas", 0);
    return n > 0 && inst_add(svc, (int)n, err) < 0 ? -1 : 0;
}

/* Places the instances of the services just created. */
static void place_replicas(root_t *r, json_t *services)
{
    size_t i;
    json_t *s;
    json_array_foreach(services, i, s)
    {
        long long n = oak_json_int(s, "replicas", 0);
        if (n > 0)
            inst_place_new(r, s, 0, (int)n);
    }
}

static bool app_name_taken(root_t *r, const caller_t *c, const char *name, const char *ns,
                           const char *except_id)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *org = json_string(c->org_id);
    json_t *list = NULL;
    if (oak_store_find(r->store, "apps", "organization_id", org, &list, &err) < 0) {
        oak_err_clear(&err);
        return false;
    }
    size_t i;
    json_t *a;
    bool taken = false;
    json_array_foreach(list, i, a)
    {
        const char *n = oak_json_str(a, "application_name"),
                   *s = oak_json_str(a, "application_namespace"), *id = oak_json_str(a, "_id");
        if (n && s && !strcmp(n, name) && !strcmp(s, ns) && (!except_id || strcmp(id, except_id)))
            taken = true;
    }
    json_decref(list);
    return taken;
}

static void h_app_create(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, APP_ROLES, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *parsed = NULL;
    if (sla_parse(req->body, req->body_len, r->max_body, false, &parsed, &err) < 0)
        return api_reply_err(resp, &err);
    json_auto_t *sla = parsed;
    json_t *apps = json_object_get(sla, "applications");
    size_t i, k;
    json_t *a, *ms;
    /* check every conflict before writing anything */
    json_array_foreach(apps, i, a)
    {
        const char *n = oak_json_str(a, "application_name"),
                   *ns = oak_json_str(a, "application_namespace");
        if (app_name_taken(r, &c, n, ns, NULL))
            return api_fail(resp, OAK_E_CONFLICT, "application %s in namespace %s already exists",
                            n, ns);
        for (size_t j = 0; j < i; j++) {
            json_t *b = json_array_get(apps, j);
            if (!strcmp(n, oak_json_str(b, "application_name")) &&
                !strcmp(ns, oak_json_str(b, "application_namespace")))
                return api_fail(resp, OAK_E_CONFLICT,
                                "application %s in namespace %s appears twice", n, ns);
        }
    }
    json_auto_t *created = json_array();
    if (oak_store_begin(r->store, &err) < 0)
        return api_reply_err(resp, &err);
    json_array_foreach(apps, i, a)
    {
        char id[25];
        oak_store_new_id(id);
        const char *desc = oak_json_str(a, "application_desc");
        json_t *app = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:[], s:s, s:s}", "_id", id, "applicationID", id,
            "application_name", oak_json_str(a, "application_name"), "application_namespace",
            oak_json_str(a, "application_namespace"), "application_desc", desc ? desc : "",
            "microservices", "userId", c.user, "organization_id", c.org_id);
        json_array_foreach(json_object_get(a, "microservices"), k, ms)
        {
            json_t *s = service_doc(app, ms, &c);
            json_array_append_new(json_object_get(app, "microservices"),
                                  json_string(oak_json_str(s, "_id")));
            if (add_replicas(s, &err) < 0 || oak_store_insert(r->store, "services", s, &err) < 0) {
                json_decref(s);
                json_decref(app);
                goto fail;
            }
            json_array_append_new(created, s);
        }
        if (oak_store_insert(r->store, "apps", app, &err) < 0) {
            json_decref(app);
            goto fail;
        }
        json_decref(app);
    }
    if (oak_store_commit(r->store, &err) < 0)
        goto fail;
    place_replicas(r, created);
    json_t *list = apps_visible(r, &c, &err);
    if (!list)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, public_list(list));
    json_decref(list);
    return;
fail:
    oak_store_rollback(r->store);
    api_reply_err(resp, &err);
}

static void h_app_get(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    json_auto_t *app = load_visible(r, &c, "apps", req->params[0], "application", resp);
    if (app)
        oak_http_resp_json(resp, 200, public_doc(app));
}

static void h_app_put(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, APP_ROLES, &c))
        return;
    json_auto_t *app = load_visible(r, &c, "apps", req->params[0], "application", resp);
    if (!app)
        return;
    json_auto_t *b = api_body_object(req, resp, r->max_body);
    if (!b)
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *v;
    const char *an = oak_json_str(app, "application_name");
    const char *ans = oak_json_str(app, "application_namespace");
    if ((v = json_object_get(b, "application_name"))) {
        if (!valid_sla_name(json_string_value(v)))
            oak_err_add_field(&err, "application_name", "must be 1-30 letters or digits");
        an = json_string_value(v);
    }
    if ((v = json_object_get(b, "application_namespace"))) {
        if (!valid_sla_name(json_string_value(v)))
            oak_err_add_field(&err, "application_namespace", "must be 1-30 letters or digits");
        ans = json_string_value(v);
    }
    if ((v = json_object_get(b, "application_desc")) &&
        (!json_is_string(v) || strlen(json_string_value(v)) > 4096))
        oak_err_add_field(&err, "application_desc", "must be a string of at most 4096 characters");
    if (api_fields_failed(resp, &err, "application update is invalid"))
        return;
    if (app_name_taken(r, &c, an, ans, req->params[0]))
        return api_fail(resp, OAK_E_CONFLICT, "application %s in namespace %s already exists", an,
                        ans);
    json_object_set_new(app, "application_name", json_string(an));
    json_object_set_new(app, "application_namespace", json_string(ans));
    if (json_object_get(b, "application_desc"))
        json_object_set(app, "application_desc", json_object_get(b, "application_desc"));
    if (oak_store_update(r->store, "apps", app, oak_json_int(app, "_version", 0), &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200,
                       json_pack("{s:s, s:o}", "message", "Application is updated", "application",
                                 public_doc(app)));
}

/* Undeploys and deletes one service; removes it from its application. */
static int delete_service(root_t *r, json_t *svc, oak_err_t *err)
{
    if (inst_undeploy(r, svc, -1, err) < 0)
        return -1;
    json_t *app = NULL;
    const char *app_id = oak_json_str(svc, "applicationID");
    if (app_id && oak_store_get(r->store, "apps", app_id, &app, err) == 0) {
        json_t *ms = json_object_get(app, "microservices");
        size_t i;
        json_t *v;
        json_array_foreach(ms, i, v)
        {
            if (json_is_string(v) && !strcmp(json_string_value(v), oak_json_str(svc, "_id"))) {
                json_array_remove(ms, i);
                break;
            }
        }
        int rc = oak_store_update(r->store, "apps", app, oak_json_int(app, "_version", 0), err);
        json_decref(app);
        if (rc < 0)
            return -1;
    }
    oak_err_clear(err);
    return oak_store_delete(r->store, "services", oak_json_str(svc, "_id"), 0, err);
}

static void h_app_delete(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, APP_ROLES, &c))
        return;
    json_auto_t *app = load_visible(r, &c, "apps", req->params[0], "application", resp);
    if (!app)
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *appid = json_string(req->params[0]);
    json_t *svcs = NULL;
    if (oak_store_find(r->store, "services", "applicationID", appid, &svcs, &err) < 0)
        return api_reply_err(resp, &err);
    json_auto_t *sv = svcs;
    size_t i;
    json_t *s;
    json_array_foreach(sv, i, s)
    {
        if (delete_service(r, s, &err) < 0 && err.code != OAK_E_NOT_FOUND)
            return api_reply_err(resp, &err);
        oak_err_clear(&err);
    }
    if (oak_store_delete(r->store, "apps", req->params[0], 0, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, json_pack("{s:s}", "message", "Application deleted"));
}

static void h_apps(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *list = apps_visible(r, &c, &err);
    if (!list)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, public_list(list));
    json_decref(list);
}

static void h_apps_of_user(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    const char *who = req->params[0];
    bool self = !strcmp(who, c.user_id) || !strcmp(who, c.user);
    if (!self && !(c.roles & ROLE_ADMIN))
        return api_fail(resp, OAK_E_FORBIDDEN, "You have not enough permissions!");
    const char *username = c.user;
    json_t *u = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (!self) {
        if (oak_store_get(r->store, "users", who, &u, &err) == 0)
            username = oak_json_str(u, "name");
        else
            username = who;
        oak_err_clear(&err);
    }
    json_auto_t *key = json_string(username);
    json_decref(u);
    json_t *list = NULL;
    if (oak_store_find(r->store, "apps", "userId", key, &list, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, public_list(list));
    json_decref(list);
}

static void h_service_create(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, APP_ROLES, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *parsed = NULL;
    if (sla_parse(req->body, req->body_len, r->max_body, true, &parsed, &err) < 0)
        return api_reply_err(resp, &err);
    json_auto_t *sla = parsed;
    json_t *a = json_array_get(json_object_get(sla, "applications"), 0);
    json_auto_t *app =
        load_visible(r, &c, "apps", oak_json_str(a, "applicationID"), "application", resp);
    if (!app)
        return;
    /* names must stay unique within the application */
    json_auto_t *appid = json_string(oak_json_str(app, "_id"));
    json_t *existing = NULL;
    if (oak_store_find(r->store, "services", "applicationID", appid, &existing, &err) < 0)
        return api_reply_err(resp, &err);
    json_auto_t *ex = existing;
    size_t i, k;
    json_t *ms, *s;
    json_array_foreach(json_object_get(a, "microservices"), i, ms)
    {
        json_array_foreach(ex, k, s)
        {
            if (!strcmp(oak_json_str(s, "service_name"), oak_json_str(ms, "microservice_name")) &&
                !strcmp(oak_json_str(s, "service_ns"),
                        oak_json_str(ms, "microservice_namespace"))) {
                char f[96];
                snprintf(f, sizeof(f), "applications[0].microservices[%zu].microservice_name", i);
                oak_err_add_field(&err, f, "a service with this name and namespace exists");
            }
        }
    }
    if (err.details) {
        err.code = OAK_E_CONFLICT;
        snprintf(err.msg, sizeof(err.msg), "service already exists in application %s",
                 oak_json_str(app, "application_name"));
        return api_reply_err(resp, &err);
    }
    json_auto_t *created = json_array();
    json_auto_t *deployed = json_array();
    if (oak_store_begin(r->store, &err) < 0)
        return api_reply_err(resp, &err);
    json_array_foreach(json_object_get(a, "microservices"), i, ms)
    {
        /* the stored application's names win over the descriptor's */
        json_t *svc = service_doc(app, ms, &c);
        if (add_replicas(svc, &err) < 0 || oak_store_insert(r->store, "services", svc, &err) < 0) {
            json_decref(svc);
            goto fail;
        }
        json_array_append_new(json_object_get(app, "microservices"),
                              json_string(oak_json_str(svc, "_id")));
        json_array_append_new(deployed, json_pack("{s:s, s:s, s:i}", "service_name",
                                                  oak_json_str(svc, "service_name"), "job_id",
                                                  oak_json_str(svc, "_id"), "status", 200));
        json_array_append_new(created, svc);
    }
    if (oak_store_update(r->store, "apps", app, oak_json_int(app, "_version", 0), &err) < 0 ||
        oak_store_commit(r->store, &err) < 0)
        goto fail;
    place_replicas(r, created);
    json_t *last = json_array_get(created, json_array_size(created) - 1);
    oak_http_resp_json(resp, 200,
                       json_pack("{s:s, s:O, s:[]}", "job_id", oak_json_str(last, "_id"),
                                 "deployed_services", deployed, "failed_services"));
    return;
fail:
    oak_store_rollback(r->store);
    api_reply_err(resp, &err);
}

static void h_service_get(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    json_auto_t *s = load_visible(r, &c, "services", req->params[0], "service", resp);
    if (s)
        oak_http_resp_json(resp, 200, public_doc(s));
}

static void h_service_delete(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, APP_ROLES, &c))
        return;
    json_auto_t *s = load_visible(r, &c, "services", req->params[0], "service", resp);
    if (!s)
        return;
    oak_err_t err = OAK_ERR_INIT;
    if (delete_service(r, s, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, json_pack("{s:s}", "message", "Job deleted"));
}

static void h_instance_create(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, APP_ROLES, &c))
        return;
    json_auto_t *s = load_visible(r, &c, "services", req->params[0], "service", resp);
    if (!s)
        return;
    long long count = 1;
    if (req->body_len > 0) {
        json_auto_t *b = api_body_object(req, resp, 64 * 1024);
        if (!b)
            return;
        json_t *v = json_object_get(b, "replicas");
        if (v) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000) {
                oak_err_t err = OAK_ERR_INIT;
                err.code = OAK_E_UNPROCESSABLE;
                snprintf(err.msg, sizeof(err.msg), "instance request is invalid");
                oak_err_add_field(&err, "replicas", "must be an integer between 1 and 1000");
                return api_reply_err(resp, &err);
            }
            count = json_integer_value(v);
        }
    }
    long long first = oak_json_int(s, "next_instance_progressive_number", 0);
    oak_err_t err = OAK_ERR_INIT;
    if (inst_request(r, s, (int)count, &err) < 0)
        return api_reply_err(resp, &err);
    json_t *nums = json_array();
    for (long long i = 0; i < count; i++)
        json_array_append_new(nums, json_integer(first + i));
    oak_http_resp_json(resp, 200, json_pack("{s:s, s:o}", "message", "ok", "instances", nums));
}

static void h_instance_delete(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, APP_ROLES, &c))
        return;
    long long n = api_param_int(req->params[1]);
    if (n < 0)
        return api_fail(resp, OAK_E_INVALID, "instance number '%s' is not a non-negative integer",
                        req->params[1]);
    json_auto_t *s = load_visible(r, &c, "services", req->params[0], "service", resp);
    if (!s)
        return;
    oak_err_t err = OAK_ERR_INIT;
    if (inst_undeploy(r, s, (int)n, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, json_pack("{s:s}", "message", "ok"));
}

static void h_instance_logs(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    long long n = api_param_int(req->params[1]);
    if (n < 0 || n > INT32_MAX)
        return api_fail(resp, OAK_E_INVALID, "instance number '%s' is not a non-negative integer",
                        req->params[1]);
    long long tail = RELAY_LOGS_TAIL_DEFAULT;
    const char *t = oak_http_req_query(req, "tail");
    if (t) {
        tail = api_param_int(t);
        if (tail < 1 || tail > RELAY_LOGS_TAIL_MAX)
            return api_fail(resp, OAK_E_INVALID, "tail '%s' must be an integer between 1 and %d",
                            t, RELAY_LOGS_TAIL_MAX);
    }
    json_auto_t *s = load_visible(r, &c, "services", req->params[0], "service", resp);
    if (s)
        relay_logs_request(r, s, (int)n, (int)tail, req, resp);
}

static void h_nodes(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    const char *cid = oak_http_req_query(req, "cluster");
    if (cid && !clusters_by_id(r->clusters, cid))
        return api_fail(resp, OAK_E_NOT_FOUND, "no cluster %s", cid);
    oak_http_resp_json(resp, 200, relay_nodes_json(r, cid));
}

static void h_services_of_app(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    json_auto_t *app = load_visible(r, &c, "apps", req->params[0], "application", resp);
    if (!app)
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *key = json_string(req->params[0]);
    json_t *list = NULL;
    if (oak_store_find(r->store, "services", "applicationID", key, &list, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, public_list(list));
    json_decref(list);
}

static void h_services(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller(r, req, resp, &c))
        return;
    oak_err_t err = OAK_ERR_INIT;
    json_t *list = NULL;
    json_auto_t *org = json_string(c.org_id);
    int rc = (c.roles & ROLE_ADMIN)
                 ? oak_store_find(r->store, "services", NULL, NULL, &list, &err)
                 : oak_store_find(r->store, "services", "organization_id", org, &list, &err);
    if (rc < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 200, public_list(list));
    json_decref(list);
}

static void clusters_reply(root_t *r, oak_http_resp_t *resp, bool only_active)
{
    json_t *out = json_array();
    for (size_t i = 0; i < r->clusters->n; i++) {
        cluster_t *cl = r->clusters->v[i];
        if (!only_active || cluster_active(r, cl))
            json_array_append_new(out, cluster_to_json(r, cl));
    }
    oak_http_resp_json(resp, 200, out);
}

static void h_clusters(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    caller_t c;
    if (api_caller(ctx, req, resp, &c))
        clusters_reply(ctx, resp, false);
}

static void h_clusters_active(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    caller_t c;
    if (api_caller(ctx, req, resp, &c))
        clusters_reply(ctx, resp, true);
}

static void h_cluster_token(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    caller_t c;
    if (!api_caller_role(r, req, resp, INFRA_ROLES, &c))
        return;
    const char *name = NULL;
    long long ttl = r->join_token_ttl_s;
    json_auto_t *b = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (req->body_len > 0) {
        b = api_body_object(req, resp, 64 * 1024);
        if (!b)
            return;
        json_t *v = json_object_get(b, "cluster_name");
        if (v &&
            (!json_is_string(v) || strlen(json_string_value(v)) > 64 || !*json_string_value(v)))
            oak_err_add_field(&err, "cluster_name", "must be a string of 1-64 characters");
        name = json_string_value(v);
        v = json_object_get(b, "ttl_s");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 60 ||
                  json_integer_value(v) > 365LL * 86400))
            oak_err_add_field(&err, "ttl_s", "must be an integer between 60 and 31536000");
        if (v && json_is_integer(v))
            ttl = json_integer_value(v);
        if (api_fields_failed(resp, &err, "token request is invalid"))
            return;
    }
    char *token = NULL;
    double exp = 0;
    if (clusters_issue_token(r, name, (long)ttl, c.user, &token, &exp, &err) < 0)
        return api_reply_err(resp, &err);
    oak_http_resp_json(resp, 201,
                       json_pack("{s:s, s:s, s:f}", "token", token, "cluster_name",
                                 name ? name : "", "expires_at", exp));
    free(token);
}

static void h_health(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    root_t *r = ctx;
    size_t active = 0;
    for (size_t i = 0; i < r->clusters->n; i++)
        active += cluster_active(r, r->clusters->v[i]);
    oak_http_resp_json(
        resp, 200,
        json_pack("{s:s, s:s, s:I, s:I}", "status", "ok", "store", oak_store_backend(r->store),
                  "clusters", (json_int_t)r->clusters->n, "active_clusters", (json_int_t)active));
}

const oak_http_route_t apps_routes[] = {
    {"GET", "/api/health", h_health},
    {"POST", "/api/application/", h_app_create},
    {"GET", "/api/application/<id>", h_app_get},
    {"PUT", "/api/application/<id>", h_app_put},
    {"DELETE", "/api/application/<id>", h_app_delete},
    {"GET", "/api/applications/", h_apps},
    {"GET", "/api/applications/<user_id>", h_apps_of_user},
    {"POST", "/api/service/", h_service_create},
    {"GET", "/api/service/<id>", h_service_get},
    {"DELETE", "/api/service/<id>", h_service_delete},
    {"POST", "/api/service/<id>/instance", h_instance_create},
    {"DELETE", "/api/service/<id>/instance/<n>", h_instance_delete},
    {"GET", "/api/service/<id>/instance/<n>/logs", h_instance_logs},
    {"GET", "/api/nodes/", h_nodes},
    {"GET", "/api/services/", h_services},
    {"GET", "/api/services/<app_id>", h_services_of_app},
    {"GET", "/api/clusters/", h_clusters},
    {"GET", "/api/clusters/active", h_clusters_active},
    {"POST", "/api/clusters/token", h_cluster_token},
};
const size_t apps_nroutes = sizeof(apps_routes) / sizeof(apps_routes[0]);
