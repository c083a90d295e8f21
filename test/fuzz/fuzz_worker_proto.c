/* Fuzz harness for cluster_orchestrator/worker_proto: the input goes to
 * every MQTT payload parser (status, information, state, job, resources,
 * deploy, delete, logs request and answer) and, as a string, to the topic parser; the first byte
 * also picks the core count given to the parsers that take one. Each
 * outcome must be an accepted payload or a 400/413/422 error whose details
 * (for 422) are 1..WP_MAX_ERRORS {field, rule} strings, with the output
 * left zeroed; an accepted payload must survive build -> parse unchanged.
 * Never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i])
            return false;
    return true;
}

/* Checks a parser's result; returns true when it accepted. */
static bool outcome(int rc, oak_err_t *err)
{
    if (rc == 0) {
        if (err->details)
            abort();
        return true;
    }
    if (rc != -1)
        abort();
    if (err->code == OAK_E_UNPROCESSABLE) {
        size_t n = json_array_size(err->details), i;
        json_t *e;
        if (n == 0 || n > WP_MAX_ERRORS)
            abort();
        json_array_foreach(err->details, i, e)
        {
            if (!json_is_string(json_object_get(e, "field")) ||
                !json_is_string(json_object_get(e, "rule")))
                abort();
        }
    } else if ((err->code != OAK_E_INVALID && err->code != OAK_E_TOO_LARGE) || err->details) {
        abort();
    }
    oak_err_clear(err);
    return false;
}

/* Serialises a built payload, which must exist and fit the limit. */
static char *dump(json_t *payload, size_t *len)
{
    if (!payload)
        abort();
    char *s = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    if (!s || (*len = strlen(s)) > WP_MAX_PAYLOAD)
        abort();
    return s;
}

static bool ref_eq(const char *sa, int na, uint64_t ga, const char *sb, int nb, uint64_t gb)
{
    return !strcmp(sa, sb) && na == nb && ga == gb;
}

static void check_topic(const uint8_t *data, size_t size)
{
    char *t = xstrndup((const char *)data, size);
    char id[WP_NODE_ID_MAX + 1];
    wp_kind_t k;
    if (wp_topic_parse(t, id, &k) == 0) {
        if (!wp_node_id_valid(id))
            abort();
        if (k != WP_UNKNOWN) {
            char *again = wp_topic(id, k);
            if (!again || strcmp(again, t) != 0)
                abort();
            free(again);
        }
    } else if (id[0] || k != WP_UNKNOWN) {
        abort();
    }
    free(t);
}

static void check_status(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    bool on = true, back = false;
    if (!outcome(wp_parse_status(data, size, &on, &err), &err)) {
        if (on)
            abort();
        return;
    }
    size_t len;
    char *s = dump(wp_build_status(on), &len);
    if (wp_parse_status(s, len, &back, &err) < 0 || back != on)
        abort();
    free(s);
}

static void check_information(const uint8_t *data, size_t size, int cores)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *o = NULL, *again = NULL;
    if (!outcome(wp_parse_information(data, size, cores, &o, &err), &err)) {
        if (o)
            abort();
        return;
    }
    size_t len;
    char *s = dump(json_incref(o), &len);
    if (wp_parse_information(s, len, cores, &again, &err) < 0 || !json_equal(o, again))
        abort();
    json_decref(o);
    json_decref(again);
    free(s);
}

static void check_state(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_inst_t *v = NULL, *w = NULL;
    size_t n = 1, m = 0;
    if (!outcome(wp_parse_state(data, size, &v, &n, &err), &err)) {
        if (v || n)
            abort();
        return;
    }
    size_t len;
    char *s = dump(wp_build_state(v, n), &len);
    if (wp_parse_state(s, len, &w, &m, &err) < 0 || m != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!ref_eq(v[i].service_id, v[i].instance_number, v[i].generation, w[i].service_id,
                    w[i].instance_number, w[i].generation) ||
            v[i].status != w[i].status)
            abort();
    free(v);
    free(w);
    free(s);
}

static void check_resources(const uint8_t *data, size_t size, int cores)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_usage_t *v = NULL, *w = NULL;
    size_t n = 1, m = 0;
    if (!outcome(wp_parse_resources(data, size, cores, &v, &n, &err), &err)) {
        if (v || n)
            abort();
        return;
    }
    /* the rebuilt text may be longer than the input (reals get a ".0"), so
     * only a payload that still fits is parsed again */
    json_t *b = wp_build_resources(v, n);
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!s)
        abort();
    size_t len = strlen(s);
    if (len <= WP_MAX_PAYLOAD) {
        if (wp_parse_resources(s, len, cores, &w, &m, &err) < 0 || m != n)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!ref_eq(v[i].service_id, v[i].instance_number, v[i].generation, w[i].service_id,
                        w[i].instance_number, w[i].generation) ||
                v[i].cpu_percent != w[i].cpu_percent || v[i].memory_mb != w[i].memory_mb)
                abort();
    }
    free(v);
    free(w);
    free(s);
}

static void check_job(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_job_t j, back;
    if (!outcome(wp_parse_job(data, size, &j, &err), &err)) {
        if (!all_zero(&j, sizeof(j)))
            abort();
        return;
    }
    size_t len;
    char *s = dump(wp_build_job(&j), &len);
    if (wp_parse_job(s, len, &back, &err) < 0 ||
        !ref_eq(j.service_id, j.instance_number, j.generation, back.service_id,
                back.instance_number, back.generation) ||
        strcmp(j.job_name, back.job_name) || j.status != back.status ||
        strcmp(j.status_detail, back.status_detail) || j.has_exit_code != back.has_exit_code ||
        j.exit_code != back.exit_code)
        abort();
    free(s);
}

static void check_deploy(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_deploy_t d, back;
    if (!outcome(wp_parse_deploy(data, size, &d, &err), &err)) {
        if (!all_zero(&d, sizeof(d)))
            abort();
        return;
    }
    if (!d.job_name || !d.image || !d.port || !d.virtualization || !json_is_object(d.service))
        abort();
    /* whatever the builder makes of the embedded service document parses */
    json_t *payload = NULL;
    if (wp_build_deploy(d.service, d.instance_number, d.generation, &payload, &err) == 0) {
        size_t len;
        char *s = dump(payload, &len);
        if (wp_parse_deploy(s, len, &back, &err) < 0 || strcmp(back.service_id, d.service_id))
            abort();
        wp_deploy_clear(&back);
        free(s);
    } else {
        if (payload)
            abort();
        outcome(-1, &err);
    }
    wp_deploy_clear(&d);
}

static void check_delete(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_delete_t d, back;
    if (!outcome(wp_parse_delete(data, size, &d, &err), &err)) {
        if (!all_zero(&d, sizeof(d)))
            abort();
        return;
    }
    size_t len;
    char *s = dump(wp_build_delete(&d), &len);
    if (wp_parse_delete(s, len, &back, &err) < 0 ||
        !ref_eq(d.service_id, d.instance_number, d.generation, back.service_id,
                back.instance_number, back.generation) ||
        strcmp(d.job_name, back.job_name))
        abort();
    free(s);
}

static void check_logs(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_logs_req_t q, qb;
    if (!outcome(wp_parse_logs_req(data, size, &q, &err), &err)) {
        if (!all_zero(&q, sizeof(q)))
            abort();
    } else {
        size_t len;
        char *s = dump(wp_build_logs_req(&q), &len);
        if (wp_parse_logs_req(s, len, &qb, &err) < 0 || memcmp(&q, &qb, sizeof(q)) != 0)
            abort();
        free(s);
    }
    wp_logs_t l, lb;
    if (!outcome(wp_parse_logs(data, size, &l, &err), &err)) {
        if (!all_zero(&l, sizeof(l)))
            abort();
        return;
    }
    size_t len;
    char *s = dump(wp_build_logs(&l), &len);
    if (wp_parse_logs(s, len, &lb, &err) < 0 || strcmp(l.request_id, lb.request_id) ||
        l.ok != lb.ok || l.error_code != lb.error_code || strcmp(l.error, lb.error) ||
        l.logs_len != lb.logs_len || (l.logs && memcmp(l.logs, lb.logs, l.logs_len)) ||
        l.truncated != lb.truncated)
        abort();
    free(s);
    wp_logs_clear(&l);
    wp_logs_clear(&lb);
}

static void check_state_req(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_state_req_t r, back;
    if (!outcome(wp_parse_state_req(data, size, &r, &err), &err)) {
        if (!all_zero(&r, sizeof(r)))
            abort();
        return;
    }
    size_t len;
    char *s = dump(wp_build_state_req(&r), &len);
    if (wp_parse_state_req(s, len, &back, &err) < 0 || strcmp(r.reason, back.reason) != 0)
        abort();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int cores = size > 0 ? data[0] % 9 : 0; /* 0 = unknown */
    check_topic(data, size);
    check_status(data, size);
    check_information(data, size, cores);
    check_state(data, size);
    check_resources(data, size, cores);
    check_job(data, size);
    check_deploy(data, size);
    check_delete(data, size);
    check_logs(data, size);
    check_state_req(data, size);
    return 0;
}
