/* SLA v2.0 validator. Walks a descriptor once, checking each member it
 * knows against Oakestra's schema (tightened where the schema is loose:
 * integer ranges, address ranges, port syntax, per-type constraint fields,
 * unique names) and collecting every violation with its field path instead
 * of stopping at the first. Members it does not know are ignored, as
 * Oakestra stores them verbatim. Pure functions, thread-safe. */
#include "root_orchestrator/sla.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define MAX_APPLICATIONS  64
#define MAX_MICROSERVICES 128
#define MAX_DESC_LEN      4096
#define MAX_CODE_LEN      1024
#define MAX_MEMORY_MB     16777216
#define MAX_VCPUS         1024
#define MAX_REPLICAS      1000

#define RULE_NAME      "must be 1 to 30 letters or digits (^[a-zA-Z0-9]{1,30}$)"
#define RULE_UINT      "must be an integer >= 0"
#define RULE_STR_ARRAY "must be an array of strings"
#define RULE_OBJ_ARRAY "must be an array of objects"

typedef char path_t[320];

typedef struct {
    oak_err_t found; /* details collected here, moved to the caller's err */
    int count;
    bool for_service;
} vctx_t;

static void fail(vctx_t *v, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(vctx_t *v, const char *path, const char *fmt, ...)
{
    if (++v->count > SLA_MAX_ERRORS)
        return;
    char rule[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rule, sizeof(rule), fmt, ap);
    va_end(ap);
    oak_err_add_field(&v->found, path, "%s", rule);
}

static const char *at(path_t out, const char *base, const char *key)
{
    snprintf(out, sizeof(path_t), "%s%s%s", base, *base ? "." : "", key);
    return out;
}

static const char *at_index(path_t out, const char *base, size_t i)
{
    snprintf(out, sizeof(path_t), "%s[%zu]", base, i);
    return out;
}

/* The member key of o, or NULL; reports "is required" when required. */
static json_t *member(vctx_t *v, const json_t *o, const char *base, const char *key, bool required)
{
    json_t *m = json_object_get(o, key);
    if (!m && required) {
        path_t p;
        fail(v, at(p, base, key), "is required");
    }
    return m;
}

/* A string member: NULL when absent or reported as wrong. */
static const char *get_string(vctx_t *v, const json_t *o, const char *base, const char *key,
                              bool required)
{
    json_t *m = member(v, o, base, key, required);
    if (!m)
        return NULL;
    path_t p;
    if (!json_is_string(m)) {
        fail(v, at(p, base, key), "must be a string");
        return NULL;
    }
    const char *s = json_string_value(m);
    if (strlen(s) != json_string_length(m)) {
        fail(v, at(p, base, key), "must not contain NUL characters");
        return NULL;
    }
    return s;
}

static const char *get_nonempty_string(vctx_t *v, const json_t *o, const char *base,
                                       const char *key, bool required)
{
    const char *s = get_string(v, o, base, key, required);
    if (s && !*s) {
        path_t p;
        fail(v, at(p, base, key), "must not be empty");
        return NULL;
    }
    return s;
}

static void check_int(vctx_t *v, const json_t *o, const char *base, const char *key, long long max)
{
    json_t *m = member(v, o, base, key, false);
    path_t p;
    if (!m)
        return;
    if (!json_is_integer(m) || json_integer_value(m) < 0)
        fail(v, at(p, base, key), RULE_UINT);
    else if (max >= 0 && json_integer_value(m) > max)
        fail(v, at(p, base, key), "must be at most %lld", max);
}

static void check_bool(vctx_t *v, const json_t *o, const char *base, const char *key)
{
    json_t *m = member(v, o, base, key, false);
    path_t p;
    if (m && !json_is_boolean(m))
        fail(v, at(p, base, key), "must be a boolean");
}

/* A number member (integer or real); non-negative when min0. */
static void check_number(vctx_t *v, const json_t *o, const char *base, const char *key,
                         bool required, bool min0)
{
    json_t *m = member(v, o, base, key, required);
    path_t p;
    if (!m)
        return;
    if (!json_is_number(m))
        fail(v, at(p, base, key), min0 ? "must be a number >= 0" : "must be a number");
    else if (min0 && json_number_value(m) < 0)
        fail(v, at(p, base, key), "must be a number >= 0");
}

static void check_object(vctx_t *v, const json_t *o, const char *base, const char *key)
{
    json_t *m = member(v, o, base, key, false);
    path_t p;
    if (m && !json_is_object(m))
        fail(v, at(p, base, key), "must be an object");
}

/* Type of each entry of a string array. Returns the array when it is one
 * (even if some entries were reported), NULL when absent or not an array. */
static json_t *check_str_array(vctx_t *v, const json_t *o, const char *base, const char *key,
                               bool required, bool nonempty)
{
    json_t *a = member(v, o, base, key, required);
    path_t p, pi;
    if (!a)
        return NULL;
    at(p, base, key);
    if (!json_is_array(a)) {
        fail(v, p, nonempty ? "must be a non-empty array of strings" : RULE_STR_ARRAY);
        return NULL;
    }
    if (nonempty && json_array_size(a) == 0)
        fail(v, p, "must be a non-empty array of strings");
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        if (!json_is_string(e))
            fail(v, at_index(pi, p, i), "must be a string");
    }
    return a;
}

static bool is_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return n >= 1 && n <= 30;
}

static const char *check_name(vctx_t *v, const json_t *o, const char *base, const char *key)
{
    const char *s = get_string(v, o, base, key, true);
    path_t p;
    if (s && !is_name(s)) {
        fail(v, at(p, base, key), RULE_NAME);
        return NULL;
    }
    return s;
}

/* ^[a-z][a-z0-9_-]{0,30}$: container, docker, unikernel, crosvm or the
 * name of a containerd runtime configured on the workers (runsc, ...). */
static bool is_runtime(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    size_t n = 1;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n <= 31;
}

static bool parse_port(const char *s, size_t n, size_t *used)
{
    size_t i = 0;
    long v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i < 6)
        v = v * 10 + (s[i++] - '0');
    *used = i;
    return i > 0 && i <= 5 && v >= 1 && v <= 65535;
}

/* "[hostPort:]containerPort[/tcp|/udp]" entries separated by ';'. */
static bool is_port_spec(const char *s)
{
    while (*s) {
        size_t n = strcspn(s, ";"), used = 0;
        const char *e = s;
        if (n > 0) {
            if (!parse_port(e, n, &used))
                return false;
            e += used;
            if (e < s + n && *e == ':') {
                e++;
                if (!parse_port(e, (size_t)(s + n - e), &used))
                    return false;
                e += used;
            }
            size_t rest = (size_t)(s + n - e);
            if (rest != 0 && !(rest == 4 && (!strncmp(e, "/tcp", 4) || !strncmp(e, "/udp", 4))))
                return false;
        }
        s += n;
        if (*s == ';')
            s++;
    }
    return true;
}

/* "lat,long" in degrees. */
static bool is_location(const char *s)
{
    char *end = NULL;
    double lat = strtod(s, &end);
    if (end == s || *end != ',')
        return false;
    const char *q = end + 1;
    double lon = strtod(q, &end);
    if (end == q)
        return false;
    while (*end == ' ')
        end++;
    return *end == '\0' && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180;
}

static void check_addresses(vctx_t *v, const json_t *ms, const char *base)
{
    json_t *a = member(v, ms, base, "addresses", false);
    path_t pa;
    if (!a)
        return;
    at(pa, base, "addresses");
    if (!json_is_object(a)) {
        fail(v, pa, "must be an object");
        return;
    }
    static const char *v4[] = {"rr_ip", "closest_ip"};
    static const char *v6[] = {"rr_ip_v6", "closest_ip_v6"};
    path_t p;
    for (int i = 0; i < 2; i++) {
        const char *s = get_string(v, a, pa, v4[i], false);
        unsigned char b[16];
        if (s && !(inet_pton(AF_INET, s, b) == 1 && b[0] == 10 && b[1] == 30))
            fail(v, at(p, pa, v4[i]), "must be an IPv4 address inside 10.30.0.0/16");
        s = get_string(v, a, pa, v6[i], false);
        if (s && !(inet_pton(AF_INET6, s, b) == 1 && b[0] == 0xfd && b[1] == 0xff))
            fail(v, at(p, pa, v6[i]), "must be an IPv6 address inside fdff::/16");
    }
}

/* An array member whose entries must be objects; calls each(v, entry,
 * entry path) for every object entry. */
static void each_object(vctx_t *v, const json_t *o, const char *base, const char *key,
                        bool required, void (*each)(vctx_t *, const json_t *, const char *))
{
    json_t *a = member(v, o, base, key, required);
    path_t p, pi;
    if (!a)
        return;
    at(p, base, key);
    if (!json_is_array(a)) {
        fail(v, p, RULE_OBJ_ARRAY);
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        at_index(pi, p, i);
        if (!json_is_object(e))
            fail(v, pi, "must be an object");
        else
            each(v, e, pi);
    }
}

static void check_constraint(vctx_t *v, const json_t *c, const char *base)
{
    const char *type = get_string(v, c, base, "type", true);
    path_t p;
    check_number(v, c, base, "rigidness", false, false);
    check_number(v, c, base, "convergence_time", false, true);
    if (!type)
        return;
    if (!strcmp(type, "direct")) {
        json_t *jc = json_object_get(c, "cluster"), *jn = json_object_get(c, "node");
        const char *cl = get_string(v, c, base, "cluster", false);
        const char *node = get_string(v, c, base, "node", false);
        if (!jc && !jn)
            fail(v, base, "a direct constraint needs cluster or node");
        else if (!(cl && *cl) && !(node && *node) && (!jc || cl) && (!jn || node))
            fail(v, base, "a direct constraint needs a non-empty cluster or node");
    } else if (!strcmp(type, "clusters")) {
        check_str_array(v, c, base, "allowed", true, true);
    } else if (!strcmp(type, "geo")) {
        const char *loc = get_string(v, c, base, "location", true);
        if (loc && !is_location(loc))
            fail(v, at(p, base, "location"),
                 "must be \"latitude,longitude\" in degrees, e.g. \"48.1374,11.5755\"");
        check_number(v, c, base, "threshold", true, true);
    } else if (!strcmp(type, "latency")) {
        get_nonempty_string(v, c, base, "area", true);
        check_number(v, c, base, "threshold", true, true);
    } else if (!strcmp(type, "addons")) {
        check_str_array(v, c, base, "needs", true, true);
    } else {
        fail(v, at(p, base, "type"), "must be one of direct, clusters, geo, latency, addons");
    }
}

static void check_con_constraint(vctx_t *v, const json_t *c, const char *base)
{
    get_string(v, c, base, "type", true);
    check_number(v, c, base, "threshold", true, false);
    check_number(v, c, base, "rigidness", true, false);
    check_number(v, c, base, "convergence_time", true, true);
}

static void check_connectivity(vctx_t *v, const json_t *c, const char *base)
{
    get_string(v, c, base, "target_microservice_id", true);
    each_object(v, c, base, "con_constraints", true, check_con_constraint);
}

static void check_volume(vctx_t *v, const json_t *vol, const char *base)
{
    path_t p;
    get_nonempty_string(v, vol, base, "volume_id", true);
    get_nonempty_string(v, vol, base, "csi_driver", true);
    const char *mp = get_string(v, vol, base, "mount_path", false);
    if (mp && mp[0] != '/')
        fail(v, at(p, base, "mount_path"), "must be an absolute path");
    check_object(v, vol, base, "config");
}

static void check_code(vctx_t *v, const json_t *ms, const char *base, const char *virt)
{
    json_t *m = json_object_get(ms, "code");
    const char *code = get_nonempty_string(v, ms, base, "code", true);
    path_t p;
    if (!code)
        return;
    if (json_string_length(m) > MAX_CODE_LEN) {
        fail(v, at(p, base, "code"), "must be at most %d characters", MAX_CODE_LEN);
        return;
    }
    if (!virt || strcmp(virt, "unikernel") != 0)
        return;
    /* unikernel: comma-separated URLs, matched by position to arch */
    size_t urls = 1;
    bool empty = false;
    for (const char *s = code;; s++) {
        const char *c = strchr(s, ',');
        if ((c ? (size_t)(c - s) : strlen(s)) == 0)
            empty = true;
        if (!c)
            break;
        urls++;
        s = c;
    }
    if (empty)
        fail(v, at(p, base, "code"), "must be one or more comma-separated image URLs");
    json_t *arch = json_object_get(ms, "arch");
    if (!empty && json_is_array(arch) && json_array_size(arch) != urls)
        fail(v, at(p, base, "arch"),
             "must name one architecture per URL in code (%zu URLs, %zu architectures)", urls,
             json_array_size(arch));
}

static void check_microservice(vctx_t *v, const json_t *ms, const char *base)
{
    path_t p, pi;
    const char *id = get_string(v, ms, base, "microserviceID", false);
    if (id && *id)
        fail(v, at(p, base, "microserviceID"),
             "must be empty: IDs are assigned by the orchestrator");
    check_name(v, ms, base, "microservice_name");
    check_name(v, ms, base, "microservice_namespace");
    const char *virt = get_string(v, ms, base, "virtualization", true);
    if (virt && !is_runtime(virt)) {
        fail(v, at(p, base, "virtualization"),
             "must be container, docker, unikernel, crosvm or a runtime name matching "
             "^[a-z][a-z0-9_-]{0,30}$");
        virt = NULL;
    }
    check_code(v, ms, base, virt);

    check_int(v, ms, base, "memory", MAX_MEMORY_MB);
    check_int(v, ms, base, "vcpus", MAX_VCPUS);
    static const char *uints[] = {"vgpus", "vtpus", "bandwidth_in", "bandwidth_out", "storage"};
    for (size_t i = 0; i < sizeof(uints) / sizeof(uints[0]); i++)
        check_int(v, ms, base, uints[i], -1);
    json_t *rep = json_object_get(ms, "replicas");
    if (rep && (!json_is_integer(rep) || json_integer_value(rep) < 0 ||
                json_integer_value(rep) > MAX_REPLICAS))
        fail(v, at(p, base, "replicas"), "must be an integer between 0 and %d", MAX_REPLICAS);

    const char *port = get_string(v, ms, base, "port", false);
    if (port && !is_port_spec(port))
        fail(v, at(p, base, "port"),
             "must be \"[hostPort:]containerPort[/tcp|/udp]\" entries separated by ';', "
             "ports 1-65535");
    check_str_array(v, ms, base, "cmd", false, false);
    check_str_array(v, ms, base, "args", false, false);
    check_str_array(v, ms, base, "arch", false, false);
    json_t *env = check_str_array(v, ms, base, "environment", false, false);
    if (env) {
        at(p, base, "environment");
        size_t i;
        json_t *e;
        json_array_foreach(env, i, e)
        {
            const char *s = json_string_value(e);
            if (s && (s[0] == '=' || !strchr(s, '=')))
                fail(v, at_index(pi, p, i), "must look like KEY=VALUE with a non-empty KEY");
        }
    }
    check_bool(v, ms, base, "one_shot");
    check_bool(v, ms, base, "privileged");
    check_addresses(v, ms, base);
    each_object(v, ms, base, "constraints", false, check_constraint);
    each_object(v, ms, base, "connectivity", false, check_connectivity);
    each_object(v, ms, base, "volumes", false, check_volume);
}

/* Reports the second and later entries of arr whose members k1 (and k2,
 * when given) equal those of an earlier entry. Only for short arrays. */
static void check_unique(vctx_t *v, const json_t *arr, const char *base, const char *k1,
                         const char *k2)
{
    size_t n = json_array_size(arr);
    path_t p, pe, pf;
    for (size_t i = 1; i < n; i++) {
        const json_t *a = json_array_get(arr, i);
        const char *a1 = oak_json_str(a, k1), *a2 = k2 ? oak_json_str(a, k2) : "";
        if (!a1 || !a2 || !is_name(a1))
            continue;
        for (size_t j = 0; j < i; j++) {
            const json_t *b = json_array_get(arr, j);
            const char *b1 = oak_json_str(b, k1), *b2 = k2 ? oak_json_str(b, k2) : "";
            if (b1 && b2 && !strcmp(a1, b1) && !strcmp(a2, b2)) {
                at_index(pe, base, i);
                at(pf, pe, k1);
                fail(v, pf, "must be unique: %s also uses %s%s%s", at_index(p, base, j), a1,
                     k2 ? "." : "", k2 ? a2 : "");
                break;
            }
        }
    }
}

static void check_application(vctx_t *v, const json_t *app, const char *base)
{
    path_t p;
    check_name(v, app, base, "application_name");
    check_name(v, app, base, "application_namespace");
    json_t *jid = json_object_get(app, "applicationID");
    const char *id = get_string(v, app, base, "applicationID", false);
    if (v->for_service && (!jid || (id && !*id)))
        fail(v, at(p, base, "applicationID"),
             "is required for POST /api/service/: the ID of the application to extend");
    else if (!v->for_service && id && *id)
        fail(v, at(p, base, "applicationID"),
             "must be empty or absent for POST /api/application/: IDs are assigned by the "
             "orchestrator");
    const char *desc = get_string(v, app, base, "application_desc", false);
    if (desc && json_string_length(json_object_get(app, "application_desc")) > MAX_DESC_LEN)
        fail(v, at(p, base, "application_desc"), "must be at most %d characters", MAX_DESC_LEN);

    json_t *mss = member(v, app, base, "microservices", true);
    if (!mss)
        return;
    at(p, base, "microservices");
    size_t n = json_array_size(mss);
    if (!json_is_array(mss) || n < 1 || n > MAX_MICROSERVICES)
        fail(v, p, "must be an array of 1 to %d microservices", MAX_MICROSERVICES);
    if (!json_is_array(mss))
        return;
    size_t i;
    json_t *ms;
    path_t pi;
    json_array_foreach(mss, i, ms)
    {
        at_index(pi, p, i);
        if (!json_is_object(ms))
            fail(v, pi, "must be an object");
        else
            check_microservice(v, ms, pi);
    }
    if (n <= MAX_MICROSERVICES)
        check_unique(v, mss, p, "microservice_name", NULL);
}

int sla_validate(const json_t *sla, bool for_service, oak_err_t *err)
{
    vctx_t v = {.found = OAK_ERR_INIT, .for_service = for_service};
    if (!json_is_object(sla)) {
        fail(&v, "$", "must be a JSON object");
    } else {
        json_t *ver = member(&v, sla, "", "sla_version", true);
        if (ver && json_is_string(ver) && !strcmp(json_string_value(ver), "v1.0"))
            fail(&v, "sla_version", "v1.0 is deprecated; use v2.0");
        else if (ver && !(json_is_string(ver) && !strcmp(json_string_value(ver), "v2.0")))
            fail(&v, "sla_version", "must be \"v2.0\"");
        get_string(&v, sla, "", "customerID", true);
        check_str_array(&v, sla, "", "args", false, false);

        json_t *apps = member(&v, sla, "", "applications", true);
        size_t n = json_array_size(apps);
        if (apps && (!json_is_array(apps) || n < 1 || n > MAX_APPLICATIONS))
            fail(&v, "applications", "must be an array of 1 to %d applications", MAX_APPLICATIONS);
        if (json_is_array(apps)) {
            size_t i;
            json_t *app;
            path_t pi;
            json_array_foreach(apps, i, app)
            {
                at_index(pi, "applications", i);
                if (!json_is_object(app))
                    fail(&v, pi, "must be an object");
                else
                    check_application(&v, app, pi);
            }
            if (n <= MAX_APPLICATIONS)
                check_unique(&v, apps, "applications", "application_name", "application_namespace");
        }
    }
    if (v.count == 0)
        return 0;
    if (err) {
        json_decref(err->details);
        err->details = oak_steal(&v.found.details);
    }
    json_decref(v.found.details);
    if (v.count > SLA_MAX_ERRORS)
        return oak_err_set(err, OAK_E_UNPROCESSABLE, "SLA is invalid: %d errors (first %d listed)",
                           v.count, SLA_MAX_ERRORS);
    return oak_err_set(err, OAK_E_UNPROCESSABLE, "SLA is invalid: %d error%s", v.count,
                       v.count == 1 ? "" : "s");
}

int sla_parse(const char *body, size_t len, size_t max, bool for_service, json_t **out,
              oak_err_t *err)
{
    json_t *parsed = NULL;
    if (oak_json_parse(body, len, max, &parsed, err) < 0)
        return -1;
    json_auto_t *doc = parsed;
    if (sla_validate(doc, for_service, err) < 0)
        return -1;
    *out = oak_steal(&doc);
    return 0;
}
