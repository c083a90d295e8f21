/* Hand-written description of every REST operation, turned into an
 * OpenAPI 3.0 document at start-up, plus a small browsable page. */
#include "root_orchestrator/openapi.h"

#include <string.h>

#include "lib/oak_alloc.h"

typedef struct {
    const char *method, *path, *tag, *summary;
    int auth;              /* 1: bearer token required */
    const char *body;      /* request schema name or NULL */
    const char *ok_status; /* success status */
} op_t;

static const op_t ops[] = {
    {"get", "/api/health", "system", "Liveness and a summary of the installation", 0, NULL, "200"},
    {"post", "/api/auth/login", "auth", "Log in; returns an access and a refresh token", 0, "Login",
     "200"},
    {"post", "/api/auth/refresh", "auth", "New access token from a refresh token (Bearer)", 0, NULL,
     "200"},
    {"post", "/api/auth/register", "auth",
     "Create a user in the caller's organization (Admin, Organization_Admin)", 1, "User", "201"},
    {"get", "/api/permission/{username}", "users", "Roles of a user in the caller's organization",
     1, NULL, "200"},
    {"get", "/api/user/{username}", "users", "A user (self or Admin)", 1, NULL, "200"},
    {"put", "/api/user/{username}", "users", "Update a user's email and roles (Admin)", 1,
     "UserUpdate", "200"},
    {"delete", "/api/user/{username}", "users", "Delete a user and its memberships (Admin)", 1,
     NULL, "200"},
    {"post", "/api/user/{username}", "users", "Change one's own password", 1, "PasswordChange",
     "200"},
    {"get", "/api/users/", "users", "All users (Admin)", 1, NULL, "200"},
    {"get", "/api/users/{organization_id}", "users", "Users of an organization with their roles", 1,
     NULL, "200"},
    {"get", "/api/organization/", "organizations", "All organizations (Admin)", 1, NULL, "200"},
    {"post", "/api/organization/", "organizations", "Create an organization (Admin)", 1,
     "Organization", "201"},
    {"put", "/api/organization/{id}", "organizations",
     "Rename or set the members of an organization (Admin)", 1, "Organization", "200"},
    {"delete", "/api/organization/{id}", "organizations", "Delete an organization (Admin)", 1, NULL,
     "200"},
    {"post", "/api/application/", "applications",
     "Register applications from an SLA v2.0 descriptor; microservices with `replicas` get that "
     "many instances requested; returns the caller's applications",
     1, "SLA", "200"},
    {"get", "/api/application/{id}", "applications", "One application", 1, NULL, "200"},
    {"put", "/api/application/{id}", "applications", "Rename or describe an application", 1,
     "ApplicationUpdate", "200"},
    {"delete", "/api/application/{id}", "applications",
     "Undeploy and delete an application and its services", 1, NULL, "200"},
    {"get", "/api/applications/", "applications", "Applications the caller can see (Admin: all)", 1,
     NULL, "200"},
    {"get", "/api/applications/{user_id}", "applications", "Applications of a user (self or Admin)",
     1, NULL, "200"},
    {"post", "/api/service/", "services",
     "Add services to an existing application (applications[0].applicationID)", 1, "SLA", "200"},
    {"get", "/api/service/{id}", "services", "One service (job) with its instance_list", 1, NULL,
     "200"},
    {"delete", "/api/service/{id}", "services", "Undeploy and delete a service", 1, NULL, "200"},
    {"post", "/api/service/{id}/instance", "instances",
     "Request one instance (or `replicas` instances) of a service", 1, "InstanceRequest", "200"},
    {"delete", "/api/service/{id}/instance/{n}", "instances", "Undeploy instance n of a service", 1,
     NULL, "200"},
    {"get", "/api/service/{id}/instance/{n}/logs", "instances",
     "Last lines of an instance's output, fetched from its worker through its cluster "
     "(query tail=N, 1-10000, default 100; 409 not on a worker, 503 cluster not connected, "
     "504 no answer in time)",
     1, NULL, "200"},
    {"get", "/api/nodes/", "clusters",
     "Workers of every cluster as their clusters report them (query cluster=<id>)", 1, NULL,
     "200"},
    {"get", "/api/services/", "services", "Services the caller can see (Admin: all)", 1, NULL,
     "200"},
    {"get", "/api/services/{app_id}", "services", "Services of an application", 1, NULL, "200"},
    {"get", "/api/clusters/", "clusters", "Registered clusters with capacity and liveness", 1, NULL,
     "200"},
    {"get", "/api/clusters/active", "clusters", "Active clusters", 1, NULL, "200"},
    {"post", "/api/clusters/token", "clusters",
     "Issue a cluster join token (Admin, Infrastructure_Provider)", 1, "JoinTokenRequest", "201"},
    {"get", "/api/docs/openapi.json", "system", "This document", 0, NULL, "200"},
    {"get", "/docs/openapi.json", "system", "Alias of /api/docs/openapi.json (Oakestra's path)", 0,
     NULL, "200"},
    {"get", "/api/docs", "system", "Browsable API documentation", 0, NULL, "200"},
};

static json_t *schemas(void)
{
    json_error_t e;
    return json_loads(
        "{"
        "\"Error\":{\"type\":\"object\",\"properties\":{\"message\":{\"type\":\"string\"},"
        "\"error\":{\"type\":\"string\"},\"errors\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"object\",\"properties\":{\"field\":{\"type\":\"string\"},\"rule\":{\"type\":"
        "\"string\"}}}}}},"
        "\"Login\":{\"type\":\"object\",\"required\":[\"username\",\"password\"],\"properties\":{"
        "\"username\":{\"type\":\"string\"},\"password\":{\"type\":\"string\"},"
        "\"organization_name\":{\"type\":\"string\",\"default\":\"root\"}}},"
        "\"User\":{\"type\":\"object\",\"required\":[\"name\",\"password\"],\"properties\":{"
        "\"name\":{\"type\":\"string\"},\"password\":{\"type\":\"string\",\"minLength\":8},"
        "\"email\":{\"type\":\"string\"},\"roles\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"string\",\"enum\":[\"Admin\",\"Organization_Admin\",\"Application_Provider\","
        "\"Infrastructure_Provider\"]}}}},"
        "\"UserUpdate\":{\"type\":\"object\",\"properties\":{\"email\":{\"type\":\"string\"},"
        "\"roles\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}},"
        "\"PasswordChange\":{\"type\":\"object\",\"required\":[\"oldPassword\",\"newPassword\"],"
        "\"properties\":{\"oldPassword\":{\"type\":\"string\"},\"newPassword\":{\"type\":"
        "\"string\"}}},"
        "\"Organization\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
        "\"member\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"user_id\":{\"type\":\"string\"},\"roles\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"string\"}}}}}}},"
        "\"SLA\":{\"type\":\"object\",\"description\":\"Oakestra SLA v2.0 deployment "
        "descriptor; see docs/system-manager.md\",\"required\":[\"sla_version\",\"customerID\","
        "\"applications\"],\"properties\":{\"sla_version\":{\"type\":\"string\",\"enum\":["
        "\"v2.0\"]},\"customerID\":{\"type\":\"string\"},\"applications\":{\"type\":\"array\","
        "\"items\":{\"type\":\"object\"}}}},"
        "\"ApplicationUpdate\":{\"type\":\"object\",\"properties\":{\"application_name\":{"
        "\"type\":\"string\"},\"application_namespace\":{\"type\":\"string\"},"
        "\"application_desc\":{\"type\":\"string\"}}},"
        "\"InstanceRequest\":{\"type\":\"object\",\"properties\":{\"replicas\":{\"type\":"
        "\"integer\",\"minimum\":1,\"maximum\":1000}}},"
        "\"JoinTokenRequest\":{\"type\":\"object\",\"properties\":{\"cluster_name\":{\"type\":"
        "\"string\"},\"ttl_s\":{\"type\":\"integer\"}}}"
        "}",
        0, &e);
}

json_t *openapi_document(void)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        const op_t *o = &ops[i];
        json_t *item = json_object_get(paths, o->path);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, o->path, item);
        }
        json_t *params = json_array();
        for (const char *p = strchr(o->path, '{'); p; p = strchr(p + 1, '{')) {
            const char *e = strchr(p, '}');
            char *name = xstrndup(p + 1, (size_t)(e - p - 1));
            json_array_append_new(params,
                                  json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in", "path",
                                            "required", 1, "schema", "type", "string"));
            free(name);
        }
        json_t *op = json_pack("{s:[s], s:s, s:o, s:{s:{s:s}, s:{s:s, s:{s:{s:{s:s}}}}}}", "tags",
                               o->tag, "summary", o->summary, "parameters", params, "responses",
                               o->ok_status, "description", "success", "default", "description",
                               "error (see docs/errors.md)", "content", "application/json",
                               "schema", "$ref", "#/components/schemas/Error");
        if (o->auth)
            json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
        if (o->body) {
            char ref[96];
            snprintf(ref, sizeof(ref), "#/components/schemas/%s", o->body);
            json_object_set_new(op, "requestBody",
                                json_pack("{s:b, s:{s:{s:{s:s}}}}", "required",
                                          strcmp(o->body, "InstanceRequest") != 0 &&
                                              strcmp(o->body, "JoinTokenRequest") != 0,
                                          "content", "application/json", "schema", "$ref", ref));
        }
        json_object_set_new(item, o->method, op);
    }
    return json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:o, s:{s:{s:s, s:s, s:s}}}}", "openapi",
                     "3.0.3", "info", "title", "oak system manager API", "version", "1.0",
                     "description",
                     "Root orchestrator REST API, compatible with Oakestra's paths and payloads.",
                     "paths", paths, "components", "schemas", schemas(), "securitySchemes",
                     "bearer", "type", "http", "scheme", "bearer", "bearerFormat", "JWT");
}

static void h_openapi(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_http_resp_json(resp, 200, openapi_document());
}

static void h_docs(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    json_auto_t *doc = openapi_document();
    json_t *paths = json_object_get(doc, "paths");
    size_t cap = 8192, len = 0;
    char *html = xmalloc(cap);
#define APPEND(...)                                                                                \
    do {                                                                                           \
        int n_ = snprintf(html + len, cap - len, __VA_ARGS__);                                     \
        if ((size_t)n_ >= cap - len) {                                                             \
            cap = cap * 2 + (size_t)n_;                                                            \
            html = xrealloc(html, cap);                                                            \
            snprintf(html + len, cap - len, __VA_ARGS__);                                          \
        }                                                                                          \
        len += (size_t)n_;                                                                         \
    } while (0)
    APPEND("<!doctype html><html><head><meta charset=\"utf-8\"><title>oak API</title><style>"
           "body{font-family:sans-serif;max-width:60em;margin:2em auto}code{background:#eee}"
           "td{padding:.2em .6em;border-bottom:1px solid #ddd}</style></head><body>"
           "<h1>oak system manager API</h1><p>Machine-readable: "
           "<a href=\"/api/docs/openapi.json\">/api/docs/openapi.json</a>. Errors: see "
           "docs/errors.md.</p><table>");
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            char up[8];
            size_t k;
            for (k = 0; method[k] && k < sizeof(up) - 1; k++)
                up[k] = (char)(method[k] - 32);
            up[k] = 0;
            APPEND("<tr><td><b>%s</b></td><td><code>%s</code></td><td>%s%s</td></tr>", up, path,
                   json_string_value(json_object_get(op, "summary")),
                   json_object_get(op, "security") ? "" : " <i>(no token)</i>");
        }
    }
    APPEND("</table></body></html>");
#undef APPEND
    resp->status = 200;
    resp->raw = html;
    resp->raw_len = len;
    resp->content_type = "text/html; charset=utf-8";
}

const oak_http_route_t openapi_routes[] = {
    {"GET", "/api/docs/openapi.json", h_openapi},
    {"GET", "/docs/openapi.json", h_openapi},
    {"GET", "/api/docs", h_docs},
};
const size_t openapi_nroutes = sizeof(openapi_routes) / sizeof(openapi_routes[0]);
