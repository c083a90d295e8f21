/* Integration tests of the system-manager's REST API: each test starts the
 * real build/<O>/bin/system-manager on free ports in a fresh state
 * directory, talks HTTP to it, and stops it with SIGTERM, requiring a clean
 * exit (so leaks and sanitizer reports in the daemon fail the test).
 * Covers the first-start Admin bootstrap, token checks on every route (the
 * route tables are parsed from the root_orchestrator sources at run time, so a new
 * route is covered without editing this file), SLA validation with the
 * shared test descriptors, services and instances, organizations and roles,
 * persistence across a restart, and the OpenAPI document. Run from the
 * repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <glob.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_httpc.h"
#include "lib/oak_json.h"
#include "lib/oak_jwt.h"
#include "test/common/harness.h"

/* ---- fixture: one daemon per test ---- */

typedef struct {
    th_daemon_t d;
    char *dir;
    char *admin; /* Admin's access token (when the password is known) */
    bool keep;   /* keep the state dir (set when the daemon did not exit cleanly) */
} fx_t;

static void dump_log(const fx_t *fx)
{
    char *log = th_read_file(fx->d.log_path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s (last 3000 bytes) ----\n%s\n----\n", fx->d.log_path,
            log ? log + (n > 3000 ? n - 3000 : 0) : "(none)");
    free(log);
}

/* Starts (or restarts, on the same state dir) the daemon of fx. */
static void fx_start(fx_t *fx, const char *const *env)
{
    if (th_start_root(&fx->d, fx->dir, env) < 0) {
        dump_log(fx);
        fail_msg("system-manager did not start");
    }
}

/* Stops the daemon with SIGTERM and requires exit status 0. */
static void fx_stop(fx_t *fx)
{
    int st = th_stop(&fx->d, SIGTERM);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fx->keep = true;
        dump_log(fx);
        fail_msg("system-manager did not exit cleanly (wait status %d)", st);
    }
}

static fx_t *fx_new(const char *const *env)
{
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->dir = th_tmpdir("oak-root-api");
    fx_start(fx, env);
    if (fx->d.admin_password[0]) {
        fx->admin = th_login(fx->d.api_port, "Admin", fx->d.admin_password);
        if (!fx->admin) {
            th_stop(&fx->d, SIGKILL);
            dump_log(fx);
            fail_msg("Admin cannot log in with the generated password");
        }
    }
    return fx;
}

static void fx_free(fx_t *fx)
{
    if (fx->d.pid > 0)
        fx_stop(fx);
    if (!fx->keep)
        th_rmtree(fx->dir);
    free(fx->dir);
    free(fx->admin);
    free(fx);
}

/* *state may carry a NULL-terminated environment for the daemon
 * (cmocka_unit_test_prestate_setup_teardown). */
static int setup(void **state)
{
    *state = fx_new(*state);
    return 0;
}

static int teardown(void **state)
{
    fx_free(*state);
    return 0;
}

/* ---- small helpers ---- */

static long http(fx_t *fx, const char *method, const char *path, const char *token,
                 const json_t *body, json_t **out)
{
    return th_http(fx->d.api_port, method, path, token, body, out);
}

static long httpf(fx_t *fx, const char *method, const char *token, const json_t *body, json_t **out,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static long httpf(fx_t *fx, const char *method, const char *token, const json_t *body, json_t **out,
                  const char *fmt, ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return http(fx, method, path, token, body, out);
}

static json_t *load_json_file(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: %s", path, e.text);
    return j;
}

/* Minimal SLA with one application and one microservice. */
static json_t *sla_one(const char *app, const char *ns, const char *svc, int replicas)
{
    json_t *ms = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "microservice_name", svc,
                           "microservice_namespace", ns, "virtualization", "container", "code",
                           "docker.io/library/nginx:latest", "memory", 100, "vcpus", 1);
    if (replicas > 0)
        json_object_set_new(ms, "replicas", json_integer(replicas));
    return json_pack("{s:s, s:s, s:[{s:s, s:s, s:s, s:[o]}]}", "sla_version", "v2.0", "customerID",
                     "Admin", "applications", "application_name", app, "application_namespace", ns,
                     "application_desc", "test", "microservices", ms);
}

/* The object of arr whose key equals value (borrowed), or NULL. */
static json_t *find_by(const json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = oak_json_str(v, key);
        if (s && strcmp(s, value) == 0)
            return v;
    }
    return NULL;
}

/* Creates an application from sla as token's user; returns its id (owned). */
static char *create_app(fx_t *fx, const char *token, json_t *sla)
{
    json_t *out = NULL;
    const char *name =
        oak_json_str(json_array_get(json_object_get(sla, "applications"), 0), "application_name");
    long st = http(fx, "POST", "/api/application/", token, sla, &out);
    if (st != 200)
        fail_msg("POST /api/application/ (%s): %ld %s", name, st,
                 out ? json_dumps(out, JSON_COMPACT) : "");
    json_t *app = find_by(out, "application_name", name);
    assert_non_null(app);
    char *id = xstrdup(oak_json_str(app, "_id"));
    json_decref(out);
    json_decref(sla);
    return id;
}

/* The id (owned) of the first service of application app_id. */
static char *first_service(fx_t *fx, const char *token, const char *app_id)
{
    json_t *app = NULL;
    assert_int_equal(httpf(fx, "GET", token, NULL, &app, "/api/application/%s", app_id), 200);
    const char *sid = json_string_value(json_array_get(json_object_get(app, "microservices"), 0));
    assert_non_null(sid);
    char *id = xstrdup(sid);
    json_decref(app);
    return id;
}

static json_t *get_service(fx_t *fx, const char *token, const char *sid)
{
    json_t *s = NULL;
    assert_int_equal(httpf(fx, "GET", token, NULL, &s, "/api/service/%s", sid), 200);
    return s;
}

/* True when every path in fields appears as errors[].field of body. */
static void assert_error_fields(const json_t *body, const char *const *fields, const char *file)
{
    json_t *errs = json_object_get(body, "errors");
    if (!json_is_array(errs) || json_array_size(errs) == 0)
        fail_msg("%s: no errors[] in %s", file, body ? json_dumps(body, JSON_COMPACT) : "(null)");
    for (const char *const *f = fields; f && *f; f++) {
        if (!find_by(errs, "field", *f))
            fail_msg("%s: errors[] does not name field %s: %s", file, *f,
                     json_dumps(errs, JSON_COMPACT));
    }
}

/* Visible state as Admin sees it: applications and services. */
static json_t *snapshot(fx_t *fx)
{
    json_t *apps = NULL, *svcs = NULL;
    assert_int_equal(http(fx, "GET", "/api/applications/", fx->admin, NULL, &apps), 200);
    assert_int_equal(http(fx, "GET", "/api/services/", fx->admin, NULL, &svcs), 200);
    return json_pack("{s:o, s:o}", "apps", apps, "services", svcs);
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- the route tables of root_orchestrator, read from the sources ---- */

typedef struct {
    char method[8];
    char path[160];
} route_t;

#define MAX_ROUTES 256

/* Every `{"METHOD", "/path", h_handler}` line of the root_orchestrator sources (*.c). */
static size_t source_routes(route_t *out, size_t max)
{
    regex_t re;
    assert_int_equal(
        regcomp(&re,
                "^[[:space:]]*\\{[[:space:]]*\"(GET|POST|PUT|DELETE|PATCH|HEAD)\"[[:space:]]*,"
                "[[:space:]]*\"(/[^\"]*)\"[[:space:]]*,[[:space:]]*h_[A-Za-z0-9_]+[[:space:]]*\\}",
                REG_EXTENDED),
        0);
    glob_t g;
    assert_int_equal(glob("root_orchestrator/*.c", 0, NULL, &g), 0);
    size_t n = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *src = th_read_file(g.gl_pathv[i], NULL);
        assert_non_null(src);
        char *save = NULL;
        for (char *line = strtok_r(src, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            regmatch_t m[3];
            if (regexec(&re, line, 3, m, 0) != 0)
                continue;
            assert_true(n < max);
            snprintf(out[n].method, sizeof(out[n].method), "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
                     line + m[1].rm_so);
            snprintf(out[n].path, sizeof(out[n].path), "%.*s", (int)(m[2].rm_eo - m[2].rm_so),
                     line + m[2].rm_so);
            n++;
        }
        free(src);
    }
    globfree(&g);
    regfree(&re);
    return n;
}

/* Hand-maintained copy of the route tables of auth.c, api_apps.c and
 * openapi.c; checks the parser above (and is itself checked against the
 * OpenAPI document). */
static const route_t known_routes[] = {
    {"POST", "/api/auth/login"},
    {"POST", "/api/auth/refresh"},
    {"POST", "/api/auth/register"},
    {"GET", "/api/permission/<username>"},
    {"GET", "/api/user/<username>"},
    {"PUT", "/api/user/<username>"},
    {"DELETE", "/api/user/<username>"},
    {"POST", "/api/user/<username>"},
    {"GET", "/api/users/"},
    {"GET", "/api/users/<organization_id>"},
    {"GET", "/api/organization/"},
    {"POST", "/api/organization/"},
    {"PUT", "/api/organization/<id>"},
    {"DELETE", "/api/organization/<id>"},
    {"GET", "/api/health"},
    {"POST", "/api/application/"},
    {"GET", "/api/application/<id>"},
    {"PUT", "/api/application/<id>"},
    {"DELETE", "/api/application/<id>"},
    {"GET", "/api/applications/"},
    {"GET", "/api/applications/<user_id>"},
    {"POST", "/api/service/"},
    {"GET", "/api/service/<id>"},
    {"DELETE", "/api/service/<id>"},
    {"POST", "/api/service/<id>/instance"},
    {"DELETE", "/api/service/<id>/instance/<n>"},
    {"GET", "/api/services/"},
    {"GET", "/api/services/<app_id>"},
    {"GET", "/api/clusters/"},
    {"GET", "/api/clusters/active"},
    {"POST", "/api/clusters/token"},
    {"GET", "/api/docs/openapi.json"},
    {"GET", "/docs/openapi.json"},
    {"GET", "/api/docs"},
};
#define N_KNOWN (sizeof(known_routes) / sizeof(known_routes[0]))

static bool route_in(const route_t *v, size_t n, const char *method, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].method, method) && !strcmp(v[i].path, path))
            return true;
    return false;
}

/* "/api/x/<id>" -> "/api/x/{id}" (OpenAPI) */
static void to_openapi(const char *path, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = path; *p && k + 1 < n; p++)
        out[k++] = *p == '<' ? '{' : *p == '>' ? '}' : *p;
    out[k] = 0;
}

/* A concrete URL path for a pattern in either syntax: each parameter
 * becomes an id that names nothing ("0" for instance numbers). */
static void concrete(const char *pattern, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = pattern; *p && k + 30 < n; p++) {
        if (*p == '<' || *p == '{') {
            char close = *p == '<' ? '>' : '}';
            const char *e = strchr(p, close);
            bool num = e && e - p == 2 && p[1] == 'n';
            const char *v = num ? "0" : "000000000000000000000000";
            k += (size_t)snprintf(out + k, n - k, "%s", v);
            p = e ? e : p + strlen(p) - 1;
        } else {
            out[k++] = *p;
        }
    }
    out[k] = 0;
}

static bool auth_exempt(const char *path)
{
    return !strcmp(path, "/api/health") || !strcmp(path, "/api/auth/login") ||
           !strncmp(path, "/api/docs", 9) || !strncmp(path, "/docs/", 6);
}

static void lower(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; s[k] && k + 1 < n; k++)
        out[k] = (char)(s[k] >= 'A' && s[k] <= 'Z' ? s[k] + 32 : s[k]);
    out[k] = 0;
}

/* ---- tests: bootstrap and login ---- */

static void test_first_start_generated_password(void **state)
{
    fx_t *fx = *state;
    char path[300];
    snprintf(path, sizeof(path), "%s/admin-password", fx->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    const char *pw = fx->d.admin_password;
    assert_true(strlen(pw) >= 16);
    /* printed exactly once on the daemon's output */
    char *log = th_read_file(fx->d.log_path, NULL);
    assert_int_equal(count_substr(log, pw), 1);
    assert_int_equal(count_substr(log, "Generated password for user Admin"), 1);
    free(log);

    json_t *out = NULL;
    json_t *b = json_pack("{s:s, s:s}", "username", "Admin", "password", pw);
    assert_int_equal(http(fx, "POST", "/api/auth/login", NULL, b, &out), 200);
    assert_non_null(oak_json_str(out, "token"));
    assert_non_null(oak_json_str(out, "refresh_token"));
    json_decref(out);
    json_decref(b);
    b = json_pack("{s:s, s:s}", "username", "Admin", "password", "wrong-password");
    assert_int_equal(http(fx, "POST", "/api/auth/login", NULL, b, &out), 401);
    assert_null(oak_json_str(out, "token"));
    json_decref(out);
    json_decref(b);
    b = json_pack("{s:s, s:s}", "username", "Nobody", "password", pw);
    assert_int_equal(http(fx, "POST", "/api/auth/login", NULL, b, NULL), 401);
    json_decref(b);
    b = json_pack("{s:s, s:s, s:s}", "username", "Admin", "password", pw, "organization_name",
                  "no-such-org");
    assert_int_equal(http(fx, "POST", "/api/auth/login", NULL, b, NULL), 404);
    json_decref(b);

    /* a second start neither regenerates nor prints the password */
    char *before = th_read_file(path, NULL);
    fx_stop(fx);
    fx_start(fx, NULL);
    char *after = th_read_file(path, NULL);
    assert_string_equal(before, after);
    log = th_read_file(fx->d.log_path, NULL);
    assert_int_equal(count_substr(log, "Generated password for user Admin"), 1);
    assert_int_equal(count_substr(log, "system-manager listening"), 2);
    free(log);
    free(before);
    free(after);
    char *tok = th_login(fx->d.api_port, "Admin", pw);
    assert_non_null(tok);
    free(tok);
}

static const char *const env_admin_pw[] = {"OAK_ADMIN_PASSWORD=configured-secret-42", NULL};

static void test_configured_admin_password(void **state)
{
    fx_t *fx = *state;
    char path[300];
    snprintf(path, sizeof(path), "%s/admin-password", fx->dir);
    assert_int_equal(access(path, F_OK), -1);
    assert_string_equal(fx->d.admin_password, "");
    char *log = th_read_file(fx->d.log_path, NULL);
    assert_int_equal(count_substr(log, "configured-secret-42"), 0);
    assert_int_equal(count_substr(log, "Generated password"), 0);
    free(log);
    char *tok = th_login(fx->d.api_port, "Admin", "configured-secret-42");
    assert_non_null(tok);
    assert_null(th_login(fx->d.api_port, "Admin", "configured-secret-43"));
    assert_int_equal(http(fx, "GET", "/api/users/", tok, NULL, NULL), 200);
    free(tok);
}

/* Signs claims with the daemon's own key (read from its state dir). */
static char *sign_with_state_key(fx_t *fx, json_t *claims, long ttl)
{
    char path[300];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/jwt.key", fx->dir);
    char *key = th_read_file(path, &len);
    assert_non_null(key);
    assert_int_equal(len, 32);
    char *tok = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_jwt_sign((unsigned char *)key, len, claims, ttl, &tok, &err), 0);
    free(key);
    return tok;
}

static void test_every_route_needs_a_token(void **state)
{
    fx_t *fx = *state;
    json_t *me = NULL, *orgs = NULL, *out = NULL;
    assert_int_equal(http(fx, "GET", "/api/user/Admin", fx->admin, NULL, &me), 200);
    assert_int_equal(http(fx, "GET", "/api/organization/", fx->admin, NULL, &orgs), 200);
    json_t *root = find_by(orgs, "name", "root");
    assert_non_null(root);
    json_t *claims = json_pack("{s:s, s:s, s:s, s:[s], s:s, s:s}", "sub", "Admin", "user", "Admin",
                               "user_id", oak_json_str(me, "_id"), "roles", "Admin", "organization",
                               oak_json_str(root, "_id"), "type", "access");
    /* control: these claims under the daemon's key make a working token */
    char *good = sign_with_state_key(fx, claims, 600);
    assert_int_equal(http(fx, "GET", "/api/users/", good, NULL, NULL), 200);
    char *expired = sign_with_state_key(fx, claims, -3600);
    unsigned char other_key[32];
    oak_random_bytes(other_key, sizeof(other_key));
    char *forged = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_jwt_sign(other_key, sizeof(other_key), claims, 600, &forged, &err), 0);
    json_t *lb = json_pack("{s:s, s:s}", "username", "Admin", "password", fx->d.admin_password);
    assert_int_equal(http(fx, "POST", "/api/auth/login", NULL, lb, &out), 200);
    char *refresh = xstrdup(oak_json_str(out, "refresh_token"));
    json_decref(out);
    json_decref(lb);

    const char *bad_tokens[] = {
        NULL, /* no Authorization header */
        "garbage",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJBZG1pbiIsImV4cCI6MTAwMDAwMDAwMH0.c2ln",
        expired,
        forged,
        refresh, /* a refresh token is no access token */
    };
    route_t routes[MAX_ROUTES];
    size_t n = source_routes(routes, MAX_ROUTES);
    size_t checked = 0;
    json_t *empty = json_object();
    for (size_t i = 0; i < n; i++) {
        if (auth_exempt(routes[i].path))
            continue;
        char path[512];
        concrete(routes[i].path, path, sizeof(path));
        bool has_body = !strcmp(routes[i].method, "POST") || !strcmp(routes[i].method, "PUT");
        for (size_t k = 0; k < sizeof(bad_tokens) / sizeof(bad_tokens[0]); k++) {
            if (!strcmp(routes[i].path, "/api/auth/refresh") && bad_tokens[k] == refresh)
                continue; /* the one route where it is the right token */
            long st =
                http(fx, routes[i].method, path, bad_tokens[k], has_body ? empty : NULL, &out);
            if (st != 401)
                fail_msg("%s %s with bad token #%zu: %ld (want 401) %s", routes[i].method, path, k,
                         st, out ? json_dumps(out, JSON_COMPACT) : "");
            assert_non_null(oak_json_str(out, "message"));
            json_decref(out);
            checked++;
        }
    }
    /* the parsed tables cover at least the known routes */
    assert_true(checked >= 25 * 5);
    /* the exempt routes answer without a token */
    assert_int_equal(http(fx, "GET", "/api/health", NULL, NULL, NULL), 200);
    assert_int_equal(http(fx, "GET", "/api/docs/openapi.json", NULL, NULL, NULL), 200);
    json_decref(empty);
    json_decref(claims);
    json_decref(me);
    json_decref(orgs);
    free(good);
    free(expired);
    free(forged);
    free(refresh);
}

/* ---- SLA submission ---- */

static void test_sla_valid_files(void **state)
{
    fx_t *fx = *state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/testdata/sla/valid", th_shared_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    size_t files = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char path[800];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        json_t *sla = load_json_file(path);
        json_t *apps = json_object_get(sla, "applications");
        size_t napps = json_array_size(apps);
        assert_true(napps > 0);
        json_t *out = NULL;
        long st = http(fx, "POST", "/api/application/", fx->admin, sla, &out);
        if (st != 200)
            fail_msg("%s: %ld %s", e->d_name, st, out ? json_dumps(out, JSON_COMPACT) : "");
        json_decref(out);
        json_t *list = NULL;
        assert_int_equal(http(fx, "GET", "/api/applications/", fx->admin, NULL, &list), 200);
        size_t i;
        json_t *a;
        json_array_foreach(apps, i, a)
        {
            const char *name = oak_json_str(a, "application_name");
            json_t *stored = find_by(list, "application_name", name);
            if (!stored)
                fail_msg("%s: application %s not listed", e->d_name, name);
            json_t *one = NULL;
            assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &one, "/api/application/%s",
                                   oak_json_str(stored, "_id")),
                             200);
            assert_true(json_is_object(one));
            assert_string_equal(oak_json_str(one, "application_name"), name);
            assert_string_equal(oak_json_str(one, "application_namespace"),
                                oak_json_str(a, "application_namespace"));
            json_t *ms = json_object_get(one, "microservices");
            assert_int_equal(json_array_size(ms),
                             json_array_size(json_object_get(a, "microservices")));
            /* each microservice became a service with the descriptor's image */
            size_t k;
            json_t *sid;
            json_array_foreach(ms, k, sid)
            {
                json_t *svc = get_service(fx, fx->admin, json_string_value(sid));
                json_t *desc = find_by(json_object_get(a, "microservices"), "microservice_name",
                                       oak_json_str(svc, "microservice_name"));
                assert_non_null(desc);
                assert_string_equal(oak_json_str(svc, "image"), oak_json_str(desc, "code"));
                assert_string_equal(oak_json_str(svc, "applicationID"),
                                    oak_json_str(stored, "_id"));
                json_decref(svc);
            }
            json_decref(one);
        }
        json_decref(list);
        json_decref(sla);
        files++;
    }
    closedir(d);
    assert_true(files >= 2);
}

static const struct {
    const char *file;
    long status;
    const char *fields[4];
} invalid_expect[] = {
    {"bad-name.json",
     422,
     {"applications[0].application_name", "applications[0].microservices[0].microservice_name"}},
    {"old-version.json", 422, {"sla_version"}},
    {"wrong-types.json",
     422,
     {"applications[0].microservices[0].memory", "applications[0].microservices[0].vcpus",
      "applications[0].microservices[0].cmd"}},
    {"missing-code.json", 422, {"applications[0].microservices[0].code"}},
    {"truncated.json", 400, {NULL}},
};

static void test_sla_invalid_files(void **state)
{
    fx_t *fx = *state;
    /* something stored already, so "unchanged" is not trivially "empty" */
    free(create_app(fx, fx->admin, sla_one("base", "test", "web", 1)));
    json_t *before = snapshot(fx);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/testdata/sla/invalid", th_shared_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    size_t files = 0, described = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char path[800];
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        char *body = th_read_file(path, &len);
        assert_non_null(body);
        json_t *out = NULL;
        long st =
            th_http_raw(fx->d.api_port, "POST", "/api/application/", fx->admin, body, len, &out);
        free(body);
        long want = 422;
        const char *const *fields = NULL;
        for (size_t k = 0; k < sizeof(invalid_expect) / sizeof(invalid_expect[0]); k++) {
            if (!strcmp(invalid_expect[k].file, e->d_name)) {
                want = invalid_expect[k].status;
                fields = invalid_expect[k].fields;
                described++;
            }
        }
        if (st != want)
            fail_msg("%s: %ld (want %ld) %s", e->d_name, st, want,
                     out ? json_dumps(out, JSON_COMPACT) : "");
        assert_non_null(oak_json_str(out, "message"));
        if (want == 422)
            assert_error_fields(out, fields, e->d_name);
        json_decref(out);
        files++;
    }
    closedir(d);
    assert_true(files >= 5);
    assert_int_equal(described, sizeof(invalid_expect) / sizeof(invalid_expect[0]));
    json_t *after = snapshot(fx);
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
}

static const char *const env_max_body[] = {"OAK_MAX_BODY=4096", NULL};

static void test_body_limit_and_duplicates(void **state)
{
    fx_t *fx = *state;
    /* a valid SLA padded past the limit with a long description */
    json_t *sla = sla_one("big", "test", "web", 0);
    char *pad = xmalloc(5000);
    memset(pad, 'x', 4999);
    pad[4999] = 0;
    json_object_set_new(json_array_get(json_object_get(sla, "applications"), 0), "application_desc",
                        json_string(pad));
    free(pad);
    json_t *out = NULL;
    assert_int_equal(http(fx, "POST", "/api/application/", fx->admin, sla, &out), 413);
    json_decref(out);
    json_decref(sla);
    json_t *list = NULL;
    assert_int_equal(http(fx, "GET", "/api/applications/", fx->admin, NULL, &list), 200);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    /* under the limit it is accepted; the same name+namespace again is 409 */
    char *id = create_app(fx, fx->admin, sla_one("dup", "test", "web", 0));
    sla = sla_one("dup", "test", "other", 0);
    assert_int_equal(http(fx, "POST", "/api/application/", fx->admin, sla, &out), 409);
    assert_non_null(oak_json_str(out, "message"));
    json_decref(out);
    json_decref(sla);
    /* same name in another namespace is fine */
    free(create_app(fx, fx->admin, sla_one("dup", "prod", "web", 0)));
    assert_int_equal(http(fx, "GET", "/api/applications/", fx->admin, NULL, &list), 200);
    assert_int_equal(json_array_size(list), 2);
    json_decref(list);
    /* the rejected duplicate left no service behind */
    json_t *svcs = NULL;
    assert_int_equal(http(fx, "GET", "/api/services/", fx->admin, NULL, &svcs), 200);
    assert_int_equal(json_array_size(svcs), 2);
    assert_null(find_by(svcs, "service_name", "other"));
    json_decref(svcs);
    free(id);
}

/* ---- services and instances ---- */

static void test_instances(void **state)
{
    fx_t *fx = *state;
    char *app = create_app(fx, fx->admin, sla_one("single", "test", "web", 0));
    char *sid = first_service(fx, fx->admin, app);
    json_t *svc = get_service(fx, fx->admin, sid);
    assert_int_equal(json_array_size(json_object_get(svc, "instance_list")), 0);
    json_decref(svc);

    json_t *out = NULL;
    assert_int_equal(httpf(fx, "POST", fx->admin, NULL, &out, "/api/service/%s/instance", sid),
                     200);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(out, "instances"), 0)), 0);
    json_decref(out);
    svc = get_service(fx, fx->admin, sid);
    json_t *list = json_object_get(svc, "instance_list");
    assert_int_equal(json_array_size(list), 1);
    json_t *in = json_array_get(list, 0);
    assert_int_equal(oak_json_int(in, "instance_number", -1), 0);
    /* no cluster exists: the request was scheduled and is waiting */
    assert_string_equal(oak_json_str(in, "status"), "NO_CLUSTER_CAPACITY");
    assert_non_null(oak_json_str(in, "status_detail"));
    assert_true(strstr(oak_json_str(in, "status_detail"), "cluster") != NULL);
    assert_null(oak_json_str(in, "cluster_id"));
    assert_string_equal(oak_json_str(svc, "status"), "NO_CLUSTER_CAPACITY");
    json_decref(svc);
    /* its logs: not on a worker (409, saying so); no such instance (404) */
    out = NULL;
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &out, "/api/service/%s/instance/0/logs", sid),
                     409);
    assert_non_null(strstr(oak_json_str(out, "message"), "not on a worker"));
    json_decref(out);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, NULL, "/api/service/%s/instance/5/logs", sid),
                     404);
    assert_int_equal(
        httpf(fx, "GET", fx->admin, NULL, NULL, "/api/service/%s/instance/0/logs?tail=x", sid), 400);
    /* no cluster, no workers */
    out = NULL;
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &out, "/api/nodes/"), 200);
    assert_true(json_is_array(out) && json_array_size(out) == 0);
    json_decref(out);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, NULL, "/api/nodes/?cluster=nope"), 404);

    /* replicas: 3 -> three instances at once */
    char *app3 = create_app(fx, fx->admin, sla_one("triple", "test", "web", 3));
    char *sid3 = first_service(fx, fx->admin, app3);
    svc = get_service(fx, fx->admin, sid3);
    list = json_object_get(svc, "instance_list");
    assert_int_equal(json_array_size(list), 3);
    for (int i = 0; i < 3; i++) {
        in = json_array_get(list, (size_t)i);
        assert_int_equal(oak_json_int(in, "instance_number", -1), i);
        assert_string_equal(oak_json_str(in, "status"), "NO_CLUSTER_CAPACITY");
    }
    json_decref(svc);

    /* removing one instance */
    assert_int_equal(httpf(fx, "DELETE", fx->admin, NULL, NULL, "/api/service/%s/instance/1", sid3),
                     200);
    svc = get_service(fx, fx->admin, sid3);
    list = json_object_get(svc, "instance_list");
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(oak_json_int(json_array_get(list, 0), "instance_number", -1), 0);
    assert_int_equal(oak_json_int(json_array_get(list, 1), "instance_number", -1), 2);
    json_decref(svc);
    assert_int_equal(httpf(fx, "DELETE", fx->admin, NULL, NULL, "/api/service/%s/instance/1", sid3),
                     404);
    assert_int_equal(
        httpf(fx, "DELETE", fx->admin, NULL, NULL, "/api/service/%s/instance/99", sid3), 404);
    assert_int_equal(
        httpf(fx, "DELETE", fx->admin, NULL, &out, "/api/service/%s/instance/abc", sid3), 400);
    assert_non_null(oak_json_str(out, "message"));
    json_decref(out);
    assert_int_equal(
        httpf(fx, "DELETE", fx->admin, NULL, NULL, "/api/service/%s/instance/-1", sid3), 400);
    assert_int_equal(
        httpf(fx, "POST", fx->admin, NULL, NULL, "/api/service/000000000000000000000000/instance"),
        404);
    /* new instances continue the numbering */
    json_t *body = json_pack("{s:i}", "replicas", 2);
    assert_int_equal(httpf(fx, "POST", fx->admin, body, &out, "/api/service/%s/instance", sid3),
                     200);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(out, "instances"), 0)), 3);
    json_decref(out);
    json_decref(body);
    body = json_pack("{s:i}", "replicas", 0);
    assert_int_equal(httpf(fx, "POST", fx->admin, body, &out, "/api/service/%s/instance", sid3),
                     422);
    assert_non_null(find_by(json_object_get(out, "errors"), "field", "replicas"));
    json_decref(out);
    json_decref(body);
    svc = get_service(fx, fx->admin, sid3);
    assert_int_equal(json_array_size(json_object_get(svc, "instance_list")), 4);
    json_decref(svc);

    /* DELETE /api/service/<id> */
    assert_int_equal(httpf(fx, "DELETE", fx->admin, NULL, NULL, "/api/service/%s", sid), 200);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, NULL, "/api/service/%s", sid), 404);
    json_t *a = NULL;
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &a, "/api/application/%s", app), 200);
    assert_int_equal(json_array_size(json_object_get(a, "microservices")), 0);
    json_decref(a);
    assert_int_equal(httpf(fx, "DELETE", fx->admin, NULL, NULL, "/api/service/%s", sid), 404);

    /* DELETE /api/application/<id> removes its services */
    assert_int_equal(httpf(fx, "DELETE", fx->admin, NULL, NULL, "/api/application/%s", app3), 200);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, NULL, "/api/application/%s", app3), 404);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, NULL, "/api/service/%s", sid3), 404);
    json_t *svcs = NULL;
    assert_int_equal(http(fx, "GET", "/api/services/", fx->admin, NULL, &svcs), 200);
    assert_int_equal(json_array_size(svcs), 0);
    json_decref(svcs);
    json_t *apps = NULL;
    assert_int_equal(http(fx, "GET", "/api/applications/", fx->admin, NULL, &apps), 200);
    assert_int_equal(json_array_size(apps), 1); /* "single", now without services */
    json_decref(apps);
    free(app);
    free(sid);
    free(app3);
    free(sid3);
}

static void test_service_add_and_app_update(void **state)
{
    fx_t *fx = *state;
    char *app = create_app(fx, fx->admin, sla_one("shop", "test", "web", 0));
    /* POST /api/service/ adds microservices to the named application */
    json_t *sla = sla_one("shop", "test", "db", 2);
    json_t *a0 = json_array_get(json_object_get(sla, "applications"), 0);
    json_object_set_new(a0, "applicationID", json_string(app));
    json_t *out = NULL;
    assert_int_equal(http(fx, "POST", "/api/service/", fx->admin, sla, &out), 200);
    const char *job = oak_json_str(out, "job_id");
    assert_non_null(job);
    assert_non_null(find_by(json_object_get(out, "deployed_services"), "service_name", "db"));
    json_t *svc = get_service(fx, fx->admin, job);
    assert_string_equal(oak_json_str(svc, "applicationID"), app);
    assert_int_equal(json_array_size(json_object_get(svc, "instance_list")), 2);
    json_decref(svc);
    json_t *one = NULL;
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &one, "/api/application/%s", app), 200);
    assert_int_equal(json_array_size(json_object_get(one, "microservices")), 2);
    json_decref(one);
    json_t *svcs = NULL;
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &svcs, "/api/services/%s", app), 200);
    assert_int_equal(json_array_size(svcs), 2);
    json_decref(svcs);
    json_decref(out);
    /* the same service name again: 409, nothing added */
    assert_int_equal(http(fx, "POST", "/api/service/", fx->admin, sla, &out), 409);
    assert_non_null(find_by(json_object_get(out, "errors"), "field",
                            "applications[0].microservices[0].microservice_name"));
    json_decref(out);
    /* without applicationID it is invalid for this route; unknown id: 404 */
    json_object_del(a0, "applicationID");
    json_object_set_new(json_array_get(json_object_get(a0, "microservices"), 0),
                        "microservice_name", json_string("cache"));
    assert_int_equal(http(fx, "POST", "/api/service/", fx->admin, sla, &out), 422);
    assert_non_null(
        find_by(json_object_get(out, "errors"), "field", "applications[0].applicationID"));
    json_decref(out);
    json_object_set_new(a0, "applicationID", json_string("000000000000000000000000"));
    assert_int_equal(http(fx, "POST", "/api/service/", fx->admin, sla, NULL), 404);
    json_decref(sla);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &svcs, "/api/services/%s", app), 200);
    assert_int_equal(json_array_size(svcs), 2);
    json_decref(svcs);

    /* PUT /api/application/<id>: rename, with the uniqueness rule */
    free(create_app(fx, fx->admin, sla_one("other", "test", "web", 0)));
    json_t *b = json_pack("{s:s, s:s}", "application_name", "other", "application_desc", "x");
    assert_int_equal(httpf(fx, "PUT", fx->admin, b, NULL, "/api/application/%s", app), 409);
    json_decref(b);
    b = json_pack("{s:s}", "application_name", "bad name");
    assert_int_equal(httpf(fx, "PUT", fx->admin, b, &out, "/api/application/%s", app), 422);
    assert_non_null(find_by(json_object_get(out, "errors"), "field", "application_name"));
    json_decref(out);
    json_decref(b);
    b = json_pack("{s:s, s:s}", "application_name", "shop2", "application_desc", "renamed");
    assert_int_equal(httpf(fx, "PUT", fx->admin, b, NULL, "/api/application/%s", app), 200);
    json_decref(b);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, &one, "/api/application/%s", app), 200);
    assert_string_equal(oak_json_str(one, "application_name"), "shop2");
    assert_string_equal(oak_json_str(one, "application_desc"), "renamed");
    assert_string_equal(oak_json_str(one, "application_namespace"), "test");
    json_decref(one);
    free(app);
}

/* ---- organizations and roles ---- */

static char *register_user(fx_t *fx, const char *name, const char *role)
{
    json_t *b = json_pack("{s:s, s:s, s:s, s:[s]}", "name", name, "password", "password-123",
                          "email", "u@example.org", "roles", role),
           *out = NULL;
    long st = http(fx, "POST", "/api/auth/register", fx->admin, b, &out);
    if (st != 201)
        fail_msg("register %s: %ld %s", name, st, out ? json_dumps(out, JSON_COMPACT) : "");
    assert_null(json_object_get(out, "password"));
    char *id = xstrdup(oak_json_str(out, "_id"));
    json_decref(out);
    json_decref(b);
    return id;
}

static char *login_org(fx_t *fx, const char *user, const char *pw, const char *org, char **refresh)
{
    json_t *b = json_pack("{s:s, s:s}", "username", user, "password", pw), *out = NULL;
    if (org)
        json_object_set_new(b, "organization_name", json_string(org));
    long st = http(fx, "POST", "/api/auth/login", NULL, b, &out);
    json_decref(b);
    if (st != 200)
        fail_msg("login %s@%s: %ld", user, org ? org : "root", st);
    char *tok = xstrdup(oak_json_str(out, "token"));
    if (refresh)
        *refresh = xstrdup(oak_json_str(out, "refresh_token"));
    json_decref(out);
    return tok;
}

static void test_organizations_and_roles(void **state)
{
    fx_t *fx = *state;
    free(register_user(fx, "alice", "Application_Provider"));
    json_t *b = json_pack("{s:s, s:s}", "name", "alice", "password", "password-123");
    assert_int_equal(http(fx, "POST", "/api/auth/register", fx->admin, b, NULL), 409);
    json_decref(b);
    char *alice_refresh = NULL;
    char *alice = login_org(fx, "alice", "password-123", NULL, &alice_refresh);
    char *alice_app = create_app(fx, alice, sla_one("aliceapp", "test", "web", 0));
    char *alice_svc = first_service(fx, alice, alice_app);

    /* second organization with a second user */
    char *bob_id = register_user(fx, "bob", "Application_Provider");
    b = json_pack("{s:s, s:[{s:s, s:[s]}]}", "name", "org2", "member", "user_id", bob_id, "roles",
                  "Application_Provider");
    json_t *org = NULL;
    assert_int_equal(http(fx, "POST", "/api/organization/", fx->admin, b, &org), 201);
    assert_int_equal(http(fx, "POST", "/api/organization/", fx->admin, b, NULL), 409);
    json_decref(b);
    assert_non_null(oak_json_str(org, "_id"));
    /* a member list naming no user is rejected with the field path */
    json_t *out = NULL;
    b = json_pack("{s:s, s:[{s:s, s:[s]}]}", "name", "org3", "member", "user_id",
                  "000000000000000000000000", "roles", "Application_Provider");
    assert_int_equal(http(fx, "POST", "/api/organization/", fx->admin, b, &out), 422);
    assert_non_null(find_by(json_object_get(out, "errors"), "field", "member[0].user_id"));
    json_decref(out);
    json_decref(b);

    char *bob = login_org(fx, "bob", "password-123", "org2", NULL);
    char *bob_app = create_app(fx, bob, sla_one("bobapp", "test", "web", 0));
    /* alice is not a member of org2 */
    b = json_pack("{s:s, s:s, s:s}", "username", "alice", "password", "password-123",
                  "organization_name", "org2");
    assert_int_equal(http(fx, "POST", "/api/auth/login", NULL, b, NULL), 401);
    json_decref(b);

    /* bob sees his app only */
    json_t *list = NULL;
    assert_int_equal(http(fx, "GET", "/api/applications/", bob, NULL, &list), 200);
    assert_int_equal(json_array_size(list), 1);
    assert_non_null(find_by(list, "_id", bob_app));
    assert_null(find_by(list, "_id", alice_app));
    json_decref(list);
    assert_int_equal(httpf(fx, "GET", bob, NULL, NULL, "/api/application/%s", alice_app), 404);
    assert_int_equal(httpf(fx, "GET", bob, NULL, NULL, "/api/service/%s", alice_svc), 404);
    assert_int_equal(httpf(fx, "DELETE", bob, NULL, NULL, "/api/application/%s", alice_app), 404);
    assert_int_equal(httpf(fx, "POST", bob, NULL, NULL, "/api/service/%s/instance", alice_svc),
                     404);
    assert_int_equal(http(fx, "GET", "/api/services/", bob, NULL, &list), 200);
    assert_null(find_by(list, "_id", alice_svc));
    json_decref(list);
    /* and alice does not see bob's */
    assert_int_equal(http(fx, "GET", "/api/applications/", alice, NULL, &list), 200);
    assert_int_equal(json_array_size(list), 1);
    assert_non_null(find_by(list, "_id", alice_app));
    json_decref(list);
    assert_int_equal(httpf(fx, "GET", alice, NULL, NULL, "/api/application/%s", bob_app), 404);
    /* Admin sees both */
    assert_int_equal(http(fx, "GET", "/api/applications/", fx->admin, NULL, &list), 200);
    assert_non_null(find_by(list, "_id", alice_app));
    assert_non_null(find_by(list, "_id", bob_app));
    json_decref(list);
    assert_int_equal(httpf(fx, "GET", fx->admin, NULL, NULL, "/api/application/%s", bob_app), 200);
    /* the same application name in another organization is no conflict */
    free(create_app(fx, bob, sla_one("aliceapp", "test", "web", 0)));

    /* Application_Provider limits */
    assert_int_equal(http(fx, "GET", "/api/users/", alice, NULL, &out), 403);
    assert_non_null(oak_json_str(out, "message"));
    json_decref(out);
    assert_int_equal(http(fx, "POST", "/api/clusters/token", alice, NULL, NULL), 403);
    assert_int_equal(http(fx, "GET", "/api/organization/", alice, NULL, NULL), 403);
    b = json_pack("{s:s, s:s}", "name", "mallory", "password", "password-123");
    assert_int_equal(http(fx, "POST", "/api/auth/register", alice, b, NULL), 403);
    json_decref(b);
    assert_int_equal(http(fx, "GET", "/api/users/", fx->admin, NULL, &list), 200);
    assert_int_equal(json_array_size(list), 3);
    json_decref(list);
    assert_int_equal(http(fx, "POST", "/api/clusters/token", fx->admin, NULL, &out), 201);
    assert_non_null(oak_json_str(out, "token"));
    json_decref(out);

    /* refresh */
    assert_int_equal(http(fx, "POST", "/api/auth/refresh", alice_refresh, NULL, &out), 200);
    const char *fresh = oak_json_str(out, "token");
    assert_non_null(fresh);
    assert_string_not_equal(fresh, alice);
    assert_int_equal(http(fx, "GET", "/api/applications/", fresh, NULL, &list), 200);
    assert_non_null(find_by(list, "_id", alice_app));
    json_decref(list);
    /* the refreshed token keeps alice's roles */
    assert_int_equal(http(fx, "GET", "/api/users/", fresh, NULL, NULL), 403);
    json_decref(out);
    assert_int_equal(http(fx, "POST", "/api/auth/refresh", alice, NULL, NULL), 401);
    assert_int_equal(http(fx, "POST", "/api/auth/refresh", NULL, NULL, NULL), 401);

    /* a deleted user's tokens stop working */
    assert_int_equal(http(fx, "DELETE", "/api/user/bob", fx->admin, NULL, NULL), 200);
    assert_int_equal(http(fx, "GET", "/api/applications/", bob, NULL, NULL), 401);

    json_decref(org);
    free(alice);
    free(alice_refresh);
    free(alice_app);
    free(alice_svc);
    free(bob_id);
    free(bob);
    free(bob_app);
}

/* ---- persistence ---- */

static void test_restart_persistence(void **state)
{
    fx_t *fx = *state;
    char *app = create_app(fx, fx->admin, sla_one("keep", "test", "web", 0));
    char *sid = first_service(fx, fx->admin, app);
    assert_int_equal(httpf(fx, "POST", fx->admin, NULL, NULL, "/api/service/%s/instance", sid),
                     200);
    free(register_user(fx, "carol", "Application_Provider"));
    json_t *before = snapshot(fx);

    fx_stop(fx);
    fx_start(fx, NULL);

    /* the token issued before the restart still verifies (key persisted) */
    json_t *after = snapshot(fx);
    assert_true(json_equal(before, after));
    json_t *svc = get_service(fx, fx->admin, sid);
    assert_int_equal(json_array_size(json_object_get(svc, "instance_list")), 1);
    json_decref(svc);
    /* same Admin password (from the file written on the first start) */
    char *tok = th_login(fx->d.api_port, "Admin", fx->d.admin_password);
    assert_non_null(tok);
    free(tok);
    tok = th_login(fx->d.api_port, "carol", "password-123");
    assert_non_null(tok);
    free(tok);
    /* numbering continues after the restart */
    json_t *out = NULL;
    assert_int_equal(httpf(fx, "POST", fx->admin, NULL, &out, "/api/service/%s/instance", sid),
                     200);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(out, "instances"), 0)), 1);
    json_decref(out);
    json_decref(before);
    json_decref(after);
    free(app);
    free(sid);
}

/* ---- OpenAPI ---- */

static void check_refs(const json_t *v, const json_t *schemas)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!strcmp(k, "$ref")) {
                const char *ref = json_string_value(x);
                assert_non_null(ref);
                assert_true(!strncmp(ref, "#/components/schemas/", 21));
                if (!json_object_get(schemas, ref + 21))
                    fail_msg("dangling $ref %s", ref);
            } else {
                check_refs(x, schemas);
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) check_refs(x, schemas);
    }
}

static bool documented(const json_t *paths, const char *method, const char *pattern)
{
    char p[200], m[8];
    to_openapi(pattern, p, sizeof(p));
    lower(method, m, sizeof(m));
    return json_object_get(json_object_get(paths, p), m) != NULL;
}

static void test_openapi(void **state)
{
    fx_t *fx = *state;
    json_t *doc = NULL;
    assert_int_equal(http(fx, "GET", "/api/docs/openapi.json", NULL, NULL, &doc), 200);
    assert_true(json_is_object(doc));
    const char *ver = oak_json_str(doc, "openapi");
    assert_non_null(ver);
    assert_true(!strncmp(ver, "3.", 2));
    assert_non_null(oak_json_str(json_object_get(doc, "info"), "title"));
    assert_non_null(oak_json_str(json_object_get(doc, "info"), "version"));
    json_t *paths = json_object_get(doc, "paths");
    json_t *schemas = json_object_get(json_object_get(doc, "components"), "schemas");
    assert_true(json_is_object(paths) && json_object_size(paths) > 0);
    check_refs(doc, schemas);
    /* the Oakestra alias serves the same document */
    json_t *alias = NULL;
    assert_int_equal(http(fx, "GET", "/docs/openapi.json", NULL, NULL, &alias), 200);
    assert_true(json_equal(doc, alias));
    json_decref(alias);

    static const char *methods[] = {"get",  "put",     "post",  "delete", "patch",
                                    "head", "options", "trace", NULL};
    const char *path;
    json_t *item;
    size_t ops = 0;
    json_object_foreach(paths, path, item)
    {
        assert_true(path[0] == '/');
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            bool known = false;
            for (int i = 0; methods[i]; i++)
                known |= !strcmp(methods[i], method);
            if (!known)
                fail_msg("%s: '%s' is not an HTTP method", path, method);
            assert_true(json_object_size(json_object_get(op, "responses")) > 0);
            /* every {param} of the path is declared as a required path parameter */
            for (const char *p = strchr(path, '{'); p; p = strchr(p + 1, '{')) {
                const char *e = strchr(p, '}');
                assert_non_null(e);
                char name[64];
                snprintf(name, sizeof(name), "%.*s", (int)(e - p - 1), p + 1);
                json_t *prm = find_by(json_object_get(op, "parameters"), "name", name);
                if (!prm || strcmp(oak_json_str(prm, "in"), "path") ||
                    !oak_json_bool(prm, "required", false))
                    fail_msg("%s %s: path parameter %s not declared", method, path, name);
            }
            /* probe: the server has this route (no token: 401 or a
             * public answer, never "no route" or "method not allowed") */
            char url[512], up[8];
            concrete(path, url, sizeof(url));
            size_t k;
            for (k = 0; method[k] && k < 7; k++)
                up[k] = (char)(method[k] - 32);
            up[k] = 0;
            json_t *out = NULL;
            bool body = !strcmp(up, "POST") || !strcmp(up, "PUT");
            json_t *empty = json_object();
            long st = http(fx, up, url, NULL, body ? empty : NULL, &out);
            json_decref(empty);
            const char *msg = oak_json_str(out, "message");
            if (st == 404 || st == 405 || st < 0 || (msg && strstr(msg, "not allowed")))
                fail_msg("documented %s %s is not served: %ld %s", up, path, st, msg ? msg : "");
            if (json_object_get(op, "security"))
                assert_int_equal(st, 401);
            json_decref(out);
            ops++;
        }
    }
    /* every route registered in the sources, and every route of the
     * hand-maintained list, is documented */
    route_t routes[MAX_ROUTES];
    size_t n = source_routes(routes, MAX_ROUTES);
    for (size_t i = 0; i < N_KNOWN; i++)
        if (!route_in(routes, n, known_routes[i].method, known_routes[i].path))
            fail_msg("known route %s %s not found in root_orchestrator/*.c", known_routes[i].method,
                     known_routes[i].path);
    for (size_t i = 0; i < n; i++)
        if (!documented(paths, routes[i].method, routes[i].path))
            fail_msg("route %s %s is not in the OpenAPI document", routes[i].method,
                     routes[i].path);
    for (size_t i = 0; i < N_KNOWN; i++)
        assert_true(documented(paths, known_routes[i].method, known_routes[i].path));
    assert_int_equal(ops, n); /* nothing documented that is not routed */
    /* an undocumented path is not served */
    char rnd[64];
    snprintf(rnd, sizeof(rnd), "/api/undocumented-%ld", (long)getpid());
    assert_null(json_object_get(paths, rnd));
    assert_int_equal(http(fx, "GET", rnd, fx->admin, NULL, NULL), 404);
    assert_int_equal(http(fx, "GET", "/api/application/x/y/z", fx->admin, NULL, NULL), 404);
    json_decref(doc);
}

static void test_docs_html(void **state)
{
    fx_t *fx = *state;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/docs", fx->d.api_port);
    oak_httpc_resp_t resp = {0};
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_httpc_request("GET", url, NULL, NULL, 0, 10000, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_non_null(resp.content_type);
    assert_non_null(strstr(resp.content_type, "text/html"));
    assert_non_null(strstr(resp.body, "<html"));
    assert_non_null(strstr(resp.body, "/api/application/{id}"));
    assert_non_null(strstr(resp.body, "</html>"));
    oak_httpc_resp_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_start_generated_password, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_configured_admin_password, setup, teardown,
                                                 (void *)env_admin_pw),
        cmocka_unit_test_setup_teardown(test_every_route_needs_a_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sla_valid_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sla_invalid_files, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_body_limit_and_duplicates, setup, teardown,
                                                 (void *)env_max_body),
        cmocka_unit_test_setup_teardown(test_instances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_add_and_app_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_organizations_and_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openapi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docs_html, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
