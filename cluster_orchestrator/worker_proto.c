/* Cluster <-> worker protocol payloads (docs/worker-protocol.md, section
 * "Payload validation"). Each parser loads the payload with a size limit,
 * checks the shape, then walks the members it knows once, collecting every
 * violation with its field path (as root_orchestrator/sla.c does) into a
 * local result that reaches the caller only when nothing was wrong. The
 * builders assemble the same shapes; wp_build_deploy runs the deploy
 * validator on what it built. Pure functions without shared state,
 * thread-safe. */
#include "cluster_orchestrator/worker_proto.h"

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define RULE_JOB_NAME "must be 1 to 200 characters of [A-Za-z0-9._-]"
#define RULE_HOST     "must be 1 to 64 characters of [A-Za-z0-9._-]"
#define RULE_ARCH     "must be 1 to 32 characters of [a-z0-9_]"
#define RULE_RUNTIME  "must be a runtime name matching ^[a-z][a-z0-9_-]{0,30}$"
#define RULE_SID      "must be 24 lowercase hex digits"
#define RULE_STATUS   "must be one of CREATED, RUNNING, FAILED, DEAD, COMPLETED, UNDEPLOYED"
#define RULE_PORT                                                                                  \
    "must be \"[hostPort:]containerPort[/tcp|/udp]\" entries separated by ';', ports 1-65535"

typedef char path_t[96];

typedef struct {
    oak_err_t found; /* details collected here, moved to the caller's err */
    int count;
    char first[640]; /* "<field> <rule>" of the first error, for the message */
} vctx_t;

static void fail(vctx_t *v, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(vctx_t *v, const char *path, const char *fmt, ...)
{
    char rule[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rule, sizeof(rule), fmt, ap);
    va_end(ap);
    if (v->count == 0)
        snprintf(v->first, sizeof(v->first), "%s %s", path, rule);
    if (++v->count > WP_MAX_ERRORS)
        return;
    oak_err_add_field(&v->found, path, "%s", rule);
}

/* 0 when no rule was broken; else moves the details into err and fails
 * with OAK_E_UNPROCESSABLE, naming the first field in the message. */
static int finish(vctx_t *v, const char *what, oak_err_t *err)
{
    if (v->count == 0)
        return 0;
    if (err) {
        json_decref(err->details);
        err->details = oak_steal(&v->found.details);
    }
    json_decref(v->found.details);
    v->found.details = NULL;
    if (v->count == 1)
        return oak_err_set(err, OAK_E_UNPROCESSABLE, "%s is invalid: %s", what, v->first);
    return oak_err_set(err, OAK_E_UNPROCESSABLE, "%s is invalid: %s (and %d more error%s)", what,
                       v->first, v->count - 1, v->count == 2 ? "" : "s");
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

/* ---- character classes ---- */

static bool c_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
static bool c_job(unsigned char c)
{
    return c_alnum(c) || c == '.' || c == '_' || c == '-';
}
static bool c_node(unsigned char c)
{
    return c_alnum(c) || c == '_' || c == '-';
}
static bool c_arch(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}
static bool c_hex(unsigned char c)
{
    return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9');
}
static bool c_visible(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}
static bool c_print(unsigned char c)
{
    return c >= 0x20 && c < 0x7f;
}

/* s has min..max characters, all in class ok. */
static bool all_of(const char *s, size_t min, size_t max, bool (*ok)(unsigned char))
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (n >= max || !ok((unsigned char)s[n]))
            return false;
    }
    return n >= min;
}

static bool is_runtime(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t n = 1; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= 31 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool is_ip(const char *s)
{
    unsigned char b[16];
    if (strlen(s) >= INET6_ADDRSTRLEN)
        return false;
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* 1..5 digits with a value of 1..65535 at s (n bytes available). */
static bool port_at(const char *s, size_t n, size_t *used)
{
    size_t i = 0;
    long val = 0;
    while (i < n && i < 6 && s[i] >= '0' && s[i] <= '9')
        val = val * 10 + (s[i++] - '0');
    *used = i;
    return i >= 1 && i <= 5 && val >= 1 && val <= 65535;
}

/* "[hostPort:]containerPort[/tcp|/udp]" entries separated by ';' (empty
 * entries allowed, so "" and a trailing ';' are fine). */
static bool is_port_spec(const char *s)
{
    while (*s) {
        size_t n = strcspn(s, ";"), used;
        const char *e = s, *end = s + n;
        if (n > 0) {
            if (!port_at(e, (size_t)(end - e), &used))
                return false;
            e += used;
            if (e < end && *e == ':') {
                e++;
                if (!port_at(e, (size_t)(end - e), &used))
                    return false;
                e += used;
            }
            size_t rest = (size_t)(end - e);
            if (rest != 0 && !(rest == 4 && (!strncmp(e, "/tcp", 4) || !strncmp(e, "/udp", 4))))
                return false;
        }
        s = *end ? end + 1 : end;
    }
    return true;
}

bool wp_node_id_valid(const char *s)
{
    return s && all_of(s, 1, WP_NODE_ID_MAX, c_node);
}

bool wp_service_id_valid(const char *s)
{
    return s && strlen(s) == WP_ID_LEN && all_of(s, WP_ID_LEN, WP_ID_LEN, c_hex);
}

/* ---- topics ---- */

static const char *const kind_suffix[] = {
    [WP_STATUS] = "status",
    [WP_INFORMATION] = "information",
    [WP_STATE] = "state",
    [WP_JOB] = "job",
    [WP_RESOURCES] = "jobs/resources",
    [WP_DEPLOY] = "control/deploy",
    [WP_DELETE] = "control/delete",
    [WP_LOGS_REQ] = "control/logs",
    [WP_LOGS] = "logs",
    [WP_STATE_REQ] = "control/state",
};

const char *wp_kind_name(wp_kind_t kind)
{
    return (unsigned)kind < WP_UNKNOWN ? kind_suffix[kind] : "unknown";
}

int wp_topic_parse(const char *topic, char id[WP_NODE_ID_MAX + 1], wp_kind_t *kind)
{
    id[0] = '\0';
    *kind = WP_UNKNOWN;
    if (!topic || strncmp(topic, "nodes/", 6) != 0)
        return -1;
    const char *s = topic + 6;
    size_t n = strcspn(s, "/");
    if (n < 1 || n > WP_NODE_ID_MAX || s[n] != '/' || s[n + 1] == '\0')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!c_node((unsigned char)s[i]))
            return -1;
    }
    memcpy(id, s, n);
    id[n] = '\0';
    const char *rest = s + n + 1;
    for (int k = 0; k < WP_UNKNOWN; k++) {
        if (!strcmp(rest, kind_suffix[k])) {
            *kind = (wp_kind_t)k;
            break;
        }
    }
    return 0;
}

char *wp_topic(const char *id, wp_kind_t kind)
{
    if (!wp_node_id_valid(id) || (unsigned)kind >= WP_UNKNOWN)
        return NULL;
    return xasprintf("nodes/%s/%s", id, kind_suffix[kind]);
}

/* ---- statuses ---- */

static const char *const status_names[] = {
    [WP_ST_CREATED] = "CREATED", [WP_ST_RUNNING] = "RUNNING",     [WP_ST_FAILED] = "FAILED",
    [WP_ST_DEAD] = "DEAD",       [WP_ST_COMPLETED] = "COMPLETED", [WP_ST_UNDEPLOYED] = "UNDEPLOYED",
};
#define N_STATUS (sizeof(status_names) / sizeof(status_names[0]))

const char *wp_status_name(wp_status_t s)
{
    return (unsigned)s < N_STATUS ? status_names[s] : "UNKNOWN";
}

int wp_status_parse(const char *name, wp_status_t *out)
{
    for (size_t i = 0; name && i < N_STATUS; i++) {
        if (!strcmp(name, status_names[i])) {
            *out = (wp_status_t)i;
            return 0;
        }
    }
    return -1;
}

/* ---- loading and member checks ---- */

/* Parses a payload (size limit, JSON syntax). On failure err names what. */
static int load(const void *p, size_t len, const char *what, json_t **out, oak_err_t *err)
{
    if (oak_json_parse(p, len, WP_MAX_PAYLOAD, out, err) == 0)
        return 0;
    if (err) {
        char m[sizeof(err->msg)];
        snprintf(m, sizeof(m), "%s: %s", what, err->msg);
        snprintf(err->msg, sizeof(err->msg), "%s", m);
        json_decref(err->details);
        err->details = NULL;
    }
    return -1;
}

static bool depth_ok(const json_t *j, int left)
{
    if (!json_is_object(j) && !json_is_array(j))
        return true;
    if (left <= 0)
        return false;
    if (json_is_array(j)) {
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e)
        {
            if (!depth_ok(e, left - 1))
                return false;
        }
        return true;
    }
    const char *k;
    json_t *e;
    json_object_foreach((json_t *)j, k, e)
    {
        if (!depth_ok(e, left - 1))
            return false;
    }
    return true;
}

/* The document when it is an object of acceptable depth, else NULL (reported). */
static const json_t *top(vctx_t *v, const json_t *doc)
{
    if (!json_is_object(doc)) {
        fail(v, "$", "must be a JSON object");
        return NULL;
    }
    if (!depth_ok(doc, WP_MAX_DEPTH)) {
        fail(v, "$", "must not nest deeper than %d levels", WP_MAX_DEPTH);
        return NULL;
    }
    return doc;
}

/* Member key of o with its path in p, or NULL (reported when required). */
static json_t *field(vctx_t *v, const json_t *o, const char *base, const char *key, bool required,
                     path_t p)
{
    at(p, base, key);
    json_t *m = json_object_get(o, key);
    if (!m && required)
        fail(v, p, "is required");
    return m;
}

/* As field, also reading Oakestra's spelling alias; when both are present
 * they must be equal. p is the path of the spelling used. */
static json_t *field_alias(vctx_t *v, const json_t *o, const char *base, const char *key,
                           const char *alias, bool required, path_t p)
{
    json_t *m = json_object_get(o, key), *a = json_object_get(o, alias);
    if (m && a && !json_equal(m, a)) {
        fail(v, at(p, base, alias), "must equal %s when both are given", key);
        return NULL;
    }
    if (!m && a) {
        at(p, base, alias);
        return a;
    }
    return field(v, o, base, key, required, p);
}

/* A string of at most max bytes without NUL, else NULL (reported). */
static const char *chk_str(vctx_t *v, const json_t *m, const char *p, size_t max)
{
    if (!json_is_string(m)) {
        fail(v, p, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(m);
    size_t n = json_string_length(m);
    if (strlen(s) != n) {
        fail(v, p, "must not contain NUL characters");
        return NULL;
    }
    if (n > max) {
        fail(v, p, "must be at most %zu bytes", max);
        return NULL;
    }
    return s;
}

/* A string whose characters are all in class ok, min..max of them. */
static const char *chk_class(vctx_t *v, const json_t *m, const char *p, size_t min, size_t max,
                             bool (*ok)(unsigned char), const char *rule)
{
    if (!json_is_string(m)) {
        fail(v, p, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(m);
    if (strlen(s) != json_string_length(m) || !all_of(s, min, max, ok)) {
        fail(v, p, "%s", rule);
        return NULL;
    }
    return s;
}

static bool chk_int(vctx_t *v, const json_t *m, const char *p, long long min, long long max,
                    long long *out)
{
    if (json_is_integer(m) && json_integer_value(m) >= min && json_integer_value(m) <= max) {
        *out = json_integer_value(m);
        return true;
    }
    if (max == LLONG_MAX)
        fail(v, p, "must be an integer >= %lld", min);
    else
        fail(v, p, "must be an integer between %lld and %lld", min, max);
    return false;
}

static bool chk_num(vctx_t *v, const json_t *m, const char *p, double min, double max, double *out)
{
    double d = json_number_value(m);
    if (json_is_number(m) && isfinite(d) && d >= min && d <= max) {
        *out = d;
        return true;
    }
    fail(v, p, "must be a number between %g and %g", min, max);
    return false;
}

static bool chk_bool(vctx_t *v, const json_t *m, const char *p, bool *out)
{
    if (!json_is_boolean(m)) {
        fail(v, p, "must be a boolean");
        return false;
    }
    *out = json_is_true(m);
    return true;
}

static const char *get_class(vctx_t *v, const json_t *o, const char *base, const char *key,
                             bool required, size_t min, size_t max, bool (*ok)(unsigned char),
                             const char *rule)
{
    path_t p;
    json_t *m = field(v, o, base, key, required, p);
    return m ? chk_class(v, m, p, min, max, ok, rule) : NULL;
}

static bool get_int(vctx_t *v, const json_t *o, const char *base, const char *key, bool required,
                    long long min, long long max, long long *out)
{
    path_t p;
    json_t *m = field(v, o, base, key, required, p);
    return m && chk_int(v, m, p, min, max, out);
}

static bool get_num(vctx_t *v, const json_t *o, const char *base, const char *key, bool required,
                    double min, double max, double *out)
{
    path_t p;
    json_t *m = field(v, o, base, key, required, p);
    return m && chk_num(v, m, p, min, max, out);
}

/* service_id, instance_number (or Oakestra's "instance" when aliases) and
 * generation, all required. */
static void get_ref(vctx_t *v, const json_t *o, const char *base, bool aliases,
                    char sid[WP_ID_LEN + 1], int *instance, uint64_t *generation)
{
    path_t p;
    long long ll;
    const char *s =
        get_class(v, o, base, "service_id", true, WP_ID_LEN, WP_ID_LEN, c_hex, RULE_SID);
    if (s)
        memcpy(sid, s, WP_ID_LEN + 1);
    json_t *m = aliases ? field_alias(v, o, base, "instance_number", "instance", true, p)
                        : field(v, o, base, "instance_number", true, p);
    if (m && chk_int(v, m, p, 0, WP_MAX_INSTANCE, &ll))
        *instance = (int)ll;
    if (get_int(v, o, base, "generation", true, 1, LLONG_MAX, &ll))
        *generation = (uint64_t)ll;
}

static bool get_status(vctx_t *v, const json_t *o, const char *base, wp_status_t *out)
{
    path_t p;
    json_t *m = field(v, o, base, "status", true, p);
    if (!m)
        return false;
    if (!json_is_string(m) || wp_status_parse(json_string_value(m), out) < 0) {
        fail(v, p, RULE_STATUS);
        return false;
    }
    return true;
}

/* A job_name (or alias) into buf; "" when absent. */
static void get_job_name(vctx_t *v, const json_t *o, const char *base, const char *alias,
                         char buf[WP_MAX_JOB_NAME + 1])
{
    path_t p;
    json_t *m = alias ? field_alias(v, o, base, "job_name", alias, false, p)
                      : field(v, o, base, "job_name", false, p);
    const char *s = m ? chk_class(v, m, p, 1, WP_MAX_JOB_NAME, c_job, RULE_JOB_NAME) : NULL;
    if (s)
        snprintf(buf, WP_MAX_JOB_NAME + 1, "%s", s);
}

/* The array member key with at most max entries, or NULL (reported). */
static json_t *get_array(vctx_t *v, const json_t *o, const char *base, const char *key,
                         bool required, size_t min, size_t max, const char *what, path_t p)
{
    json_t *a = field(v, o, base, key, required, p);
    if (!a)
        return NULL;
    if (!json_is_array(a) || json_array_size(a) < min || json_array_size(a) > max) {
        if (min > 0)
            fail(v, p, "must be an array of %zu to %zu %s", min, max, what);
        else
            fail(v, p, "must be an array of at most %zu %s", max, what);
        return NULL;
    }
    return a;
}

/* "virtualization": unique runtime names. True when valid (or absent). */
static bool chk_virt(vctx_t *v, const json_t *o, const char *base, bool required, size_t min,
                     json_t **out)
{
    path_t p, pi, pj;
    json_t *a =
        get_array(v, o, base, "virtualization", required, min, WP_MAX_VIRT, "runtime names", p);
    *out = a;
    if (!a)
        return !json_object_get(o, "virtualization");
    bool ok = true;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *e = json_array_get(a, i);
        at_index(pi, p, i);
        if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e) ||
            !is_runtime(json_string_value(e))) {
            fail(v, pi, RULE_RUNTIME);
            ok = false;
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (json_equal(e, json_array_get(a, j))) {
                fail(v, pi, "repeats %s", at_index(pj, p, j));
                ok = false;
                break;
            }
        }
    }
    return ok;
}

static char **copy_strings(const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    if (*n == 0)
        return NULL;
    char **out = xcalloc(*n, sizeof(char *));
    for (size_t i = 0; i < *n; i++)
        out[i] = xstrdup(json_string_value(json_array_get(a, i)));
    return out;
}

static void free_strings(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

/* A real for a builder: null (which every parser rejects, naming the
 * field) when d is not finite, as jansson cannot represent it. */
static json_t *num(double d)
{
    return isfinite(d) ? json_real(d) : json_null();
}

static json_t *string_array(const char *const *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(s[i]));
    return a;
}

/* ---- registration ---- */

void wp_register_clear(wp_register_t *r)
{
    free(r->host);
    free(r->ip);
    free(r->node_id);
    free(r->token);
    free(r->arch);
    free_strings(r->virt, r->nvirt);
    json_decref(r->system_info);
    memset(r, 0, sizeof(*r));
}

static void check_system_info(vctx_t *v, const json_t *si, const char *p)
{
    if (!json_is_object(si) || json_object_size(si) > WP_MAX_SYSINFO) {
        fail(v, p, "must be an object of at most %d members", WP_MAX_SYSINFO);
        return;
    }
    const char *k;
    json_t *e;
    path_t pk;
    json_object_foreach((json_t *)si, k, e)
    {
        at(pk, p, k);
        if (strlen(k) > 64)
            fail(v, p, "must have member names of at most 64 bytes");
        else if (json_is_string(e))
            chk_str(v, e, pk, 256);
        else if (!json_is_number(e) && !json_is_boolean(e))
            fail(v, pk, "must be a string, a number or a boolean");
    }
}

int wp_parse_register(const char *body, size_t len, wp_register_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_auto_t *doc = NULL;
    if (load(body, len, "registration", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    wp_register_t r = {0};
    const json_t *o = top(&v, doc);
    if (o) {
        path_t p;
        long long ll;
        const char *s;
        json_t *m;
        if ((s = get_class(&v, o, "", "host", true, 1, WP_MAX_HOST, c_job, RULE_HOST)))
            r.host = xstrdup(s);
        if ((m = field(&v, o, "", "ip", true, p)) && (s = chk_str(&v, m, p, 64))) {
            if (is_ip(s))
                r.ip = xstrdup(s);
            else
                fail(&v, p, "must be an IPv4 or IPv6 address");
        }
        if (get_int(&v, o, "", "port", true, 1, 65535, &ll))
            r.port = (int)ll;
        if ((s = get_class(&v, o, "", "architecture", true, 1, 32, c_arch, RULE_ARCH)))
            r.arch = xstrdup(s);
        json_t *virt;
        if (chk_virt(&v, o, "", true, 1, &virt) && virt)
            r.virt = copy_strings(virt, &r.nvirt);
        if (get_int(&v, o, "", "cpu_cores", true, 1, WP_MAX_CORES, &ll))
            r.cpu_cores = (int)ll;
        if (get_int(&v, o, "", "memory", true, 0, WP_MAX_MEMORY_MB, &ll))
            r.memory_mb = ll;
        if (get_int(&v, o, "", "gpus", false, 0, WP_MAX_GPUS, &ll))
            r.gpus = (int)ll;
        if ((m = field(&v, o, "", "system_info", false, p))) {
            int before = v.count;
            check_system_info(&v, m, p);
            if (v.count == before)
                r.system_info = json_incref(m);
        }
        if ((m = field(&v, o, "", "node_id", false, p)) && (s = chk_str(&v, m, p, 64)) && *s) {
            if (wp_node_id_valid(s))
                r.node_id = xstrdup(s);
            else
                fail(&v, p, "must be empty or 1 to 24 characters of [A-Za-z0-9_-]");
        }
        if ((m = field(&v, o, "", "token", false, p)) && (s = chk_str(&v, m, p, WP_MAX_TOKEN)) &&
            *s) {
            if (all_of(s, 1, WP_MAX_TOKEN, c_visible))
                r.token = xstrdup(s);
            else
                fail(&v, p, "must be at most %d visible ASCII characters", WP_MAX_TOKEN);
        }
    }
    if (finish(&v, "registration", err) < 0) {
        wp_register_clear(&r);
        return -1;
    }
    *out = r;
    return 0;
}

json_t *wp_build_register(const wp_register_t *r)
{
    json_t *o =
        json_pack("{s:s, s:s, s:i, s:s, s:o, s:i, s:I, s:i, s:s}", "host", r->host ? r->host : "",
                  "ip", r->ip ? r->ip : "", "port", r->port, "architecture", r->arch ? r->arch : "",
                  "virtualization", string_array((const char *const *)r->virt, r->nvirt),
                  "cpu_cores", r->cpu_cores, "memory", (json_int_t)r->memory_mb, "gpus", r->gpus,
                  "node_id", r->node_id ? r->node_id : "");
    if (r->token)
        json_object_set_new(o, "token", json_string(r->token));
    if (r->system_info)
        json_object_set_new(o, "system_info", json_deep_copy(r->system_info));
    return o;
}

/* ---- status ---- */

int wp_parse_status(const void *p, size_t len, bool *online, oak_err_t *err)
{
    *online = false;
    json_auto_t *doc = NULL;
    if (load(p, len, "status payload", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    bool on = false;
    const json_t *o = top(&v, doc);
    path_t pp;
    json_t *m = o ? field(&v, o, "", "status", true, pp) : NULL;
    if (m) {
        const char *s = json_string_value(m);
        if (s && !strcmp(s, "online"))
            on = true;
        else if (!s || strcmp(s, "offline") != 0)
            fail(&v, pp, "must be \"online\" or \"offline\"");
    }
    if (finish(&v, "status payload", err) < 0)
        return -1;
    *online = on;
    return 0;
}

json_t *wp_build_status(bool online)
{
    return json_pack("{s:s}", "status", online ? "online" : "offline");
}

/* ---- information ---- */

int wp_parse_information(const void *p, size_t len, int cores, json_t **out, oak_err_t *err)
{
    *out = NULL;
    json_auto_t *doc = NULL;
    if (load(p, len, "information payload", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    json_auto_t *res = json_object();
    const json_t *o = top(&v, doc);
    if (o) {
        long long ll, mem = -1, total = -1;
        double d;
        path_t pp;
        json_t *m;
        if (get_int(&v, o, "", "cpu_cores", false, 1, WP_MAX_CORES, &ll)) {
            cores = (int)ll;
            json_object_set_new(res, "cpu_cores", json_integer(ll));
        }
        if (cores <= 0 || cores > WP_MAX_CORES)
            cores = WP_MAX_CORES;
        if (get_num(&v, o, "", "cpu_percent", false, 0, 100.0 * cores, &d))
            json_object_set_new(res, "cpu_percent", json_real(d));
        if (get_int(&v, o, "", "memory", false, 0, WP_MAX_MEMORY_MB, &mem))
            json_object_set_new(res, "memory", json_integer(mem));
        if (get_int(&v, o, "", "memory_total", false, 0, WP_MAX_MEMORY_MB, &total))
            json_object_set_new(res, "memory_total", json_integer(total));
        if (json_object_get(res, "memory") && json_object_get(res, "memory_total") && mem > total)
            fail(&v, "memory", "must not exceed memory_total");
        if (get_num(&v, o, "", "disk_percent", false, 0, 100, &d))
            json_object_set_new(res, "disk_percent", json_real(d));
        if (get_int(&v, o, "", "gpus", false, 0, WP_MAX_GPUS, &ll))
            json_object_set_new(res, "gpus", json_integer(ll));
        if (get_num(&v, o, "", "load1", false, 0, WP_MAX_LOAD, &d))
            json_object_set_new(res, "load1", json_real(d));
        const char *s;
        if ((s = get_class(&v, o, "", "architecture", false, 1, 32, c_arch, RULE_ARCH)))
            json_object_set_new(res, "architecture", json_string(s));
        json_t *virt;
        if (chk_virt(&v, o, "", false, 0, &virt) && virt)
            json_object_set_new(res, "virtualization", json_deep_copy(virt));
        if ((m = field(&v, o, "", "kernel_version", false, pp)) &&
            (s = chk_class(&v, m, pp, 1, 128, c_print,
                           "must be 1 to 128 printable ASCII characters")))
            json_object_set_new(res, "kernel_version", json_string(s));
    }
    if (finish(&v, "information payload", err) < 0)
        return -1;
    *out = oak_steal(&res);
    return 0;
}

json_t *wp_build_information(const wp_info_t *i)
{
    return json_pack("{s:i, s:o, s:I, s:I, s:o, s:i, s:o, s:s, s:o, s:s}", "cpu_cores",
                     i->cpu_cores, "cpu_percent", num(i->cpu_percent), "memory",
                     (json_int_t)i->memory_mb, "memory_total", (json_int_t)i->memory_total_mb,
                     "disk_percent", num(i->disk_percent), "gpus", i->gpus, "load1", num(i->load1),
                     "architecture", i->architecture ? i->architecture : "", "virtualization",
                     string_array(i->virt, i->nvirt), "kernel_version",
                     i->kernel_version ? i->kernel_version : "");
}

/* ---- job ---- */

int wp_parse_job(const void *p, size_t len, wp_job_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_auto_t *doc = NULL;
    if (load(p, len, "job payload", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    wp_job_t j = {.instance_number = 0};
    const json_t *o = top(&v, doc);
    if (o) {
        path_t pp;
        json_t *m;
        long long ll;
        get_ref(&v, o, "", true, j.service_id, &j.instance_number, &j.generation);
        get_job_name(&v, o, "", "sname", j.job_name);
        get_status(&v, o, "", &j.status);
        const char *s;
        if ((m = field(&v, o, "", "status_detail", false, pp)) &&
            (s = chk_str(&v, m, pp, WP_MAX_DETAIL)))
            snprintf(j.status_detail, sizeof(j.status_detail), "%s", s);
        if (get_int(&v, o, "", "exit_code", false, 0, 255, &ll)) {
            j.exit_code = (int)ll;
            j.has_exit_code = true;
        }
    }
    if (finish(&v, "job payload", err) < 0)
        return -1;
    *out = j;
    return 0;
}

json_t *wp_build_job(const wp_job_t *j)
{
    json_t *o =
        json_pack("{s:s, s:i, s:I, s:s, s:s}", "service_id", j->service_id, "instance_number",
                  j->instance_number, "generation", (json_int_t)j->generation, "status",
                  wp_status_name(j->status), "status_detail", j->status_detail);
    if (j->job_name[0])
        json_object_set_new(o, "job_name", json_string(j->job_name));
    if (j->has_exit_code)
        json_object_set_new(o, "exit_code", json_integer(j->exit_code));
    return o;
}

/* ---- state and resources ---- */

typedef struct {
    const char *sid;
    int instance;
    size_t idx;
} ref_key_t;

static int cmp_ref(const void *a, const void *b)
{
    const ref_key_t *x = a, *y = b;
    int c = strcmp(x->sid, y->sid);
    if (c)
        return c;
    if (x->instance != y->instance)
        return x->instance < y->instance ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Reports every entry that names the same instance as an earlier one. */
static void check_unique_refs(vctx_t *v, ref_key_t *keys, size_t n, const char *base)
{
    qsort(keys, n, sizeof(*keys), cmp_ref);
    path_t p, q;
    /* sorted by (instance, index): a run's first entry is its earliest */
    for (size_t i = 1, first = 0; i < n; i++) {
        if (!strcmp(keys[first].sid, keys[i].sid) && keys[first].instance == keys[i].instance)
            fail(v, at_index(p, base, keys[i].idx), "repeats the instance of %s",
                 at_index(q, base, keys[first].idx));
        else
            first = i;
    }
}

int wp_parse_state(const void *p, size_t len, wp_inst_t **out, size_t *n, oak_err_t *err)
{
    *out = NULL;
    *n = 0;
    json_auto_t *doc = NULL;
    if (load(p, len, "state payload", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    _cleanup_free_ wp_inst_t *items = NULL;
    size_t count = 0;
    const json_t *o = top(&v, doc);
    path_t pa, pi;
    json_t *a = o ? get_array(&v, o, "", "instances", true, 0, WP_MAX_STATE, "objects", pa) : NULL;
    if (a && (count = json_array_size(a)) > 0) {
        items = xcalloc(count, sizeof(*items));
        for (size_t i = 0; i < count; i++) {
            json_t *e = json_array_get(a, i);
            at_index(pi, pa, i);
            if (!json_is_object(e)) {
                fail(&v, pi, "must be an object");
                continue;
            }
            get_ref(&v, e, pi, false, items[i].service_id, &items[i].instance_number,
                    &items[i].generation);
            get_status(&v, e, pi, &items[i].status);
        }
        if (v.count == 0) {
            _cleanup_free_ ref_key_t *keys = xcalloc(count, sizeof(*keys));
            for (size_t i = 0; i < count; i++)
                keys[i] = (ref_key_t){items[i].service_id, items[i].instance_number, i};
            check_unique_refs(&v, keys, count, pa);
        }
    }
    if (finish(&v, "state payload", err) < 0)
        return -1;
    *out = oak_steal(&items);
    *n = count;
    return 0;
}

json_t *wp_build_state(const wp_inst_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:i, s:I, s:s}", "service_id", v[i].service_id,
                                           "instance_number", v[i].instance_number, "generation",
                                           (json_int_t)v[i].generation, "status",
                                           wp_status_name(v[i].status)));
    return json_pack("{s:o}", "instances", a);
}

int wp_parse_resources(const void *p, size_t len, int cores, wp_usage_t **out, size_t *n,
                       oak_err_t *err)
{
    *out = NULL;
    *n = 0;
    json_auto_t *doc = NULL;
    if (load(p, len, "resources payload", &doc, err) < 0)
        return -1;
    if (cores <= 0 || cores > WP_MAX_CORES)
        cores = WP_MAX_CORES;
    vctx_t v = {.count = 0};
    _cleanup_free_ wp_usage_t *items = NULL;
    size_t count = 0;
    const json_t *o = top(&v, doc);
    path_t pa, pi;
    json_t *a =
        o ? get_array(&v, o, "", "services", true, 0, WP_MAX_RESOURCES, "objects", pa) : NULL;
    if (a && (count = json_array_size(a)) > 0) {
        items = xcalloc(count, sizeof(*items));
        for (size_t i = 0; i < count; i++) {
            json_t *e = json_array_get(a, i);
            at_index(pi, pa, i);
            if (!json_is_object(e)) {
                fail(&v, pi, "must be an object");
                continue;
            }
            wp_usage_t *u = &items[i];
            get_ref(&v, e, pi, false, u->service_id, &u->instance_number, &u->generation);
            get_num(&v, e, pi, "cpu_percent", true, 0, 100.0 * cores, &u->cpu_percent);
            get_int(&v, e, pi, "memory_mb", true, 0, WP_MAX_MEMORY_MB, &u->memory_mb);
        }
        if (v.count == 0) {
            _cleanup_free_ ref_key_t *keys = xcalloc(count, sizeof(*keys));
            for (size_t i = 0; i < count; i++)
                keys[i] = (ref_key_t){items[i].service_id, items[i].instance_number, i};
            check_unique_refs(&v, keys, count, pa);
        }
    }
    if (finish(&v, "resources payload", err) < 0)
        return -1;
    *out = oak_steal(&items);
    *n = count;
    return 0;
}

json_t *wp_build_resources(const wp_usage_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:i, s:I, s:o, s:I}", "service_id",
                                           v[i].service_id, "instance_number", v[i].instance_number,
                                           "generation", (json_int_t)v[i].generation, "cpu_percent",
                                           num(v[i].cpu_percent), "memory_mb",
                                           (json_int_t)v[i].memory_mb));
    return json_pack("{s:o}", "services", a);
}

/* ---- deploy ---- */

void wp_deploy_clear(wp_deploy_t *d)
{
    free(d->job_name);
    free(d->image);
    free_strings(d->cmd, d->ncmd);
    free_strings(d->env, d->nenv);
    free(d->port);
    free(d->virtualization);
    json_decref(d->service);
    memset(d, 0, sizeof(*d));
}

/* cmd / environment: at most WP_MAX_ARGS strings of at most WP_MAX_ARG_LEN
 * bytes (KEY=VALUE with a non-empty KEY for environment). */
static char **get_args(vctx_t *v, const json_t *o, const char *key, bool env, size_t *n)
{
    path_t p, pi;
    *n = 0;
    json_t *a = get_array(v, o, "", key, false, 0, WP_MAX_ARGS, "strings", p);
    if (!a)
        return NULL;
    int before = v->count;
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = chk_str(v, json_array_get(a, i), at_index(pi, p, i), WP_MAX_ARG_LEN);
        if (s && env && (s[0] == '=' || !strchr(s, '=')))
            fail(v, pi, "must look like KEY=VALUE with a non-empty KEY");
    }
    return v->count == before ? copy_strings(a, n) : NULL;
}

static void check_deploy(vctx_t *v, const json_t *o, wp_deploy_t *d)
{
    path_t p;
    json_t *m;
    long long ll;
    const char *s;
    char name[WP_MAX_JOB_NAME + 1] = "";
    get_ref(v, o, "", false, d->service_id, &d->instance_number, &d->generation);
    if (field(v, o, "", "job_name", true, p)) {
        get_job_name(v, o, "", NULL, name);
        if (name[0])
            d->job_name = xstrdup(name);
    }
    if ((m = field(v, o, "", "image", true, p)) && (s = chk_str(v, m, p, WP_MAX_IMAGE))) {
        if (*s)
            d->image = xstrdup(s);
        else
            fail(v, p, "must not be empty");
    }
    d->cmd = get_args(v, o, "cmd", false, &d->ncmd);
    d->env = get_args(v, o, "environment", true, &d->nenv);
    if (get_int(v, o, "", "vcpus", false, 0, WP_MAX_VCPUS, &ll))
        d->vcpus = (int)ll;
    if (get_int(v, o, "", "memory", false, 0, WP_MAX_MEMORY_MB, &ll))
        d->memory_mb = ll;
    if (get_int(v, o, "", "vgpus", false, 0, WP_MAX_GPUS, &ll))
        d->vgpus = (int)ll;
    if ((m = field(v, o, "", "one_shot", false, p)))
        chk_bool(v, m, p, &d->one_shot);
    if ((m = field(v, o, "", "port", false, p)) && (s = chk_str(v, m, p, WP_MAX_PORT_SPEC))) {
        if (is_port_spec(s))
            d->port = xstrdup(s);
        else
            fail(v, p, RULE_PORT);
    }
    if (!d->port && !json_object_get(o, "port"))
        d->port = xstrdup("");
    if ((m = field(v, o, "", "virtualization", true, p))) {
        if (json_is_string(m) && strlen(json_string_value(m)) == json_string_length(m) &&
            is_runtime(json_string_value(m)))
            d->virtualization = xstrdup(json_string_value(m));
        else
            fail(v, p, RULE_RUNTIME);
    }
    if ((m = field(v, o, "", "service", true, p))) {
        json_t *id = json_object_get(m, "_id");
        if (!json_is_object(m))
            fail(v, p, "must be an object");
        else if (id && d->service_id[0] &&
                 !(json_is_string(id) && !strcmp(json_string_value(id), d->service_id)))
            fail(v, "service._id", "must equal service_id");
        else
            d->service = json_incref(m);
    }
}

int wp_parse_deploy(const void *p, size_t len, wp_deploy_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_auto_t *doc = NULL;
    if (load(p, len, "deploy payload", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    wp_deploy_t d = {.instance_number = 0};
    const json_t *o = top(&v, doc);
    if (o)
        check_deploy(&v, o, &d);
    if (finish(&v, "deploy payload", err) < 0) {
        wp_deploy_clear(&d);
        return -1;
    }
    *out = d;
    return 0;
}

/* Copies member key of svc into d (or def, stolen, when absent). */
static void copy_member(json_t *d, const char *dkey, const json_t *svc, const char *key,
                        json_t *def)
{
    json_t *m = json_object_get(svc, key);
    if (m) {
        json_object_set_new(d, dkey, json_deep_copy(m));
        json_decref(def);
    } else if (def) {
        json_object_set_new(d, dkey, def);
    }
}

int wp_build_deploy(const json_t *svc, int instance_number, uint64_t generation, json_t **out,
                    oak_err_t *err)
{
    *out = NULL;
    vctx_t v = {.count = 0};
    if (!json_is_object(svc)) {
        fail(&v, "service", "must be an object");
        return finish(&v, "deploy payload", err);
    }
    json_auto_t *d = json_object();
    copy_member(d, "service_id", svc, "_id", NULL);
    json_object_set_new(d, "instance_number", json_integer(instance_number));
    json_object_set_new(
        d, "generation",
        json_integer(generation > (uint64_t)LLONG_MAX ? -1 : (json_int_t)generation));
    copy_member(d, "job_name", svc, "job_name", NULL);
    const char *image = oak_json_str(svc, "image");
    copy_member(d, "image", svc, image && *image ? "image" : "code", NULL);
    copy_member(d, "cmd", svc, "cmd", json_array());
    copy_member(d, "environment", svc, "environment", json_array());
    copy_member(d, "vcpus", svc, "vcpus", json_integer(0));
    copy_member(d, "memory", svc, "memory", json_integer(0));
    copy_member(d, "vgpus", svc, "vgpus", json_integer(0));
    copy_member(d, "one_shot", svc, "one_shot", json_false());
    copy_member(d, "port", svc, "port", json_string(""));
    copy_member(d, "virtualization", svc, "virtualization", NULL);
    json_object_set_new(d, "service", json_deep_copy(svc));

    wp_deploy_t tmp = {.instance_number = 0};
    if (top(&v, d))
        check_deploy(&v, d, &tmp);
    wp_deploy_clear(&tmp);
    if (finish(&v, "deploy payload", err) < 0)
        return -1;
    size_t size = json_dumpb(d, NULL, 0, JSON_COMPACT);
    if (size > WP_MAX_PAYLOAD)
        return oak_err_set(err, OAK_E_TOO_LARGE,
                           "deploy payload of %zu bytes exceeds the limit of %d bytes", size,
                           WP_MAX_PAYLOAD);
    *out = oak_steal(&d);
    return 0;
}

/* ---- delete ---- */

int wp_parse_delete(const void *p, size_t len, wp_delete_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_auto_t *doc = NULL;
    if (load(p, len, "delete payload", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    wp_delete_t d = {.instance_number = 0};
    const json_t *o = top(&v, doc);
    if (o) {
        get_ref(&v, o, "", false, d.service_id, &d.instance_number, &d.generation);
        get_job_name(&v, o, "", NULL, d.job_name);
    }
    if (finish(&v, "delete payload", err) < 0)
        return -1;
    *out = d;
    return 0;
}

json_t *wp_build_delete(const wp_delete_t *d)
{
    json_t *o = json_pack("{s:s, s:i, s:I}", "service_id", d->service_id, "instance_number",
                          d->instance_number, "generation", (json_int_t)d->generation);
    if (d->job_name[0])
        json_object_set_new(o, "job_name", json_string(d->job_name));
    return o;
}

/* ---- state request ---- */

int wp_parse_state_req(const void *p, size_t len, wp_state_req_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_auto_t *doc = NULL;
    if (load(p, len, "state request", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    wp_state_req_t r = {.reason = ""};
    const json_t *o = top(&v, doc);
    if (o) {
        path_t pa;
        json_t *m = field(&v, o, "", "reason", false, pa);
        const char *s = m ? chk_class(&v, m, pa, 0, WP_MAX_REASON, c_print,
                                      "must be at most 200 printable characters")
                          : NULL;
        if (s)
            snprintf(r.reason, sizeof(r.reason), "%s", s);
    }
    if (finish(&v, "state request", err) < 0)
        return -1;
    *out = r;
    return 0;
}

json_t *wp_build_state_req(const wp_state_req_t *r)
{
    json_t *o = json_object();
    if (r->reason[0])
        json_object_set_new(o, "reason", json_string(r->reason));
    return o;
}

/* ---- logs ---- */

#define RULE_REQ_ID "must be 1 to 64 characters of [A-Za-z0-9_-]"

static void get_request_id(vctx_t *v, const json_t *o, char buf[WP_MAX_REQ_ID + 1])
{
    const char *s = get_class(v, o, "", "request_id", true, 1, WP_MAX_REQ_ID, c_node, RULE_REQ_ID);
    if (s)
        snprintf(buf, WP_MAX_REQ_ID + 1, "%s", s);
}

int wp_parse_logs_req(const void *p, size_t len, wp_logs_req_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_auto_t *doc = NULL;
    if (load(p, len, "logs request", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    wp_logs_req_t r = {.tail = 0};
    const json_t *o = top(&v, doc);
    if (o) {
        long long ll;
        get_request_id(&v, o, r.request_id);
        const char *s =
            get_class(&v, o, "", "service_id", true, WP_ID_LEN, WP_ID_LEN, c_hex, RULE_SID);
        if (s)
            memcpy(r.service_id, s, WP_ID_LEN + 1);
        if (get_int(&v, o, "", "instance_number", true, 0, WP_MAX_INSTANCE, &ll))
            r.instance_number = (int)ll;
        if (get_int(&v, o, "", "tail", true, 1, WP_MAX_TAIL, &ll))
            r.tail = (int)ll;
    }
    if (finish(&v, "logs request", err) < 0)
        return -1;
    *out = r;
    return 0;
}

json_t *wp_build_logs_req(const wp_logs_req_t *r)
{
    return json_pack("{s:s, s:s, s:i, s:i}", "request_id", r->request_id, "service_id",
                     r->service_id, "instance_number", r->instance_number, "tail", r->tail);
}

int wp_parse_logs(const void *p, size_t len, wp_logs_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_auto_t *doc = NULL;
    if (load(p, len, "logs answer", &doc, err) < 0)
        return -1;
    vctx_t v = {.count = 0};
    wp_logs_t l = {.ok = false};
    const char *text = NULL;
    size_t text_len = 0;
    const json_t *o = top(&v, doc);
    if (o) {
        path_t pa;
        get_request_id(&v, o, l.request_id);
        json_t *m = field(&v, o, "", "ok", true, pa);
        if (m)
            chk_bool(&v, m, pa, &l.ok);
        if (m && l.ok) {
            m = field(&v, o, "", "logs", true, pa);
            if (m && !json_is_string(m))
                fail(&v, pa, "must be a string");
            else if (m && json_string_length(m) > WP_MAX_LOGS)
                fail(&v, pa, "must be at most %d bytes", WP_MAX_LOGS);
            else if (m) {
                text = json_string_value(m);
                text_len = json_string_length(m);
            }
            m = field(&v, o, "", "truncated", false, pa);
            if (m)
                chk_bool(&v, m, pa, &l.truncated);
        } else if (m) {
            long long ll;
            if (get_int(&v, o, "", "error_code", true, 400, 599, &ll))
                l.error_code = (int)ll;
            m = field(&v, o, "", "error", true, pa);
            const char *e = m ? chk_str(&v, m, pa, WP_MAX_DETAIL) : NULL;
            if (e)
                snprintf(l.error, sizeof(l.error), "%s", e);
        }
    }
    if (finish(&v, "logs answer", err) < 0)
        return -1;
    if (l.ok) {
        l.logs = xmalloc(text_len + 1);
        memcpy(l.logs, text, text_len);
        l.logs[text_len] = '\0';
        l.logs_len = text_len;
    }
    *out = l;
    return 0;
}

void wp_logs_clear(wp_logs_t *l)
{
    free(l->logs);
    memset(l, 0, sizeof(*l));
}

json_t *wp_build_logs(const wp_logs_t *l)
{
    json_t *o = json_pack("{s:s, s:b}", "request_id", l->request_id, "ok", l->ok);
    if (l->ok) {
        json_t *t = oak_json_string_lossy(l->logs, l->logs_len);
        bool cut = l->truncated;
        size_t n = json_string_length(t);
        if (n > WP_MAX_LOGS) { /* keep the newest whole lines that fit */
            const char *x = json_string_value(t);
            size_t from = n - WP_MAX_LOGS;
            const char *nl = memchr(x + from, '\n', n - from);
            if (nl)
                from = (size_t)(nl + 1 - x);
            else
                while (from < n && ((unsigned char)x[from] & 0xC0) == 0x80)
                    from++; /* not inside a UTF-8 sequence */
            json_t *shorter = json_stringn(x + from, n - from);
            json_decref(t);
            t = shorter;
            cut = true;
        }
        json_object_set_new(o, "logs", t);
        json_object_set_new(o, "truncated", json_boolean(cut));
    } else {
        json_object_set_new(o, "error_code", json_integer(l->error_code));
        json_object_set_new(o, "error", json_string(l->error));
    }
    return o;
}
