/* Requests the root relays to workers and the worker view it keeps.
 *
 * Logs: GET /api/service/<id>/instance/<n>/logs becomes a LOGS command
 * (seq 0: not stored, not resent, not acknowledged) on the command stream
 * of the instance's cluster; the cluster asks the worker over MQTT and
 * returns a LogsResult in its next Report. The HTTP answer is deferred
 * (oak_http_defer) and kept in r->logreqs with a timer; whichever comes
 * first, the result or the timeout, completes it, the other finds nothing.
 * A result for a request that timed out is dropped.
 *
 * Workers: clusters include their whole worker list in a Report when it
 * changed (and now and then for fresh usage figures); the root keeps the
 * last list per cluster in memory only (a restarted root has it again
 * within one interval).
 *
 * Loop thread only. */
#include "root_orchestrator/relay.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_grpc.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"

struct logreq {
    char id[32];
    root_t *r;
    oak_http_pending_t *p;
    uint64_t timer;
    char *service_id;
    int instance_number;
    int tail;
    char cluster_id[25];
    char *node_id;
    logreq_t *next;
};

static void logreq_unlink_free(root_t *r, logreq_t *q)
{
    for (logreq_t **pp = &r->logreqs; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    if (q->timer)
        oak_loop_cancel_timer(r->loop, q->timer);
    free(q->service_id);
    free(q->node_id);
    free(q);
}

static void logreq_fail(root_t *r, logreq_t *q, oak_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void logreq_fail(root_t *r, logreq_t *q, oak_code_t code, const char *fmt, ...)
{
    oak_err_t e = OAK_ERR_INIT;
    e.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    oak_http_resp_t resp = {0};
    oak_http_resp_error(&resp, &e);
    oak_http_complete(q->p, &resp);
    q->p = NULL;
    logreq_unlink_free(r, q);
}

static void on_logs_timeout(oak_loop_t *loop, void *data)
{
    logreq_t *q = data;
    q->timer = 0;
    log_warn("logs of %s/%d: cluster %s did not answer in %ld ms", q->service_id,
             q->instance_number, q->cluster_id, q->r->logs_timeout_ms);
    logreq_fail(q->r, q, OAK_E_TIMEOUT,
                "the worker of instance %d did not answer within %ld ms (cluster %s)",
                q->instance_number, q->r->logs_timeout_ms, q->cluster_id);
}

static const json_t *find_instance(const json_t *svc, int n)
{
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(svc, "instance_list"), i, in)
    {
        if (oak_json_int(in, "instance_number", -1) == n)
            return in;
    }
    return NULL;
}

void relay_logs_request(root_t *r, const json_t *svc, int n, int tail, const oak_http_req_t *req,
                        oak_http_resp_t *resp)
{
    const char *sid = oak_json_str(svc, "_id");
    const json_t *in = find_instance(svc, n);
    if (!in)
        return oak_http_resp_errorf(resp, OAK_E_NOT_FOUND, "service %s has no instance %d", sid,
                                    n);
    const char *cid = oak_json_str(in, "cluster_id");
    const char *wid = oak_json_str(in, "worker_id");
    const char *status = oak_json_str(in, "status");
    if (!cid || !*cid || !wid || !*wid)
        return oak_http_resp_errorf(resp, OAK_E_CONFLICT,
                                    "instance %d of service %s is not on a worker yet (status %s)",
                                    n, sid, status ? status : "unknown");
    cluster_t *c = clusters_by_id(r->clusters, cid);
    if (!c || !c->stream)
        return oak_http_resp_errorf(resp, OAK_E_UNAVAILABLE,
                                    "cluster %s of instance %d is not connected to the root",
                                    c ? c->name : cid, n);

    logreq_t *q = xcalloc(1, sizeof(*q));
    q->r = r;
    snprintf(q->id, sizeof(q->id), "L%" PRIu64, ++r->logreq_next);
    q->service_id = xstrdup(sid);
    q->instance_number = n;
    q->tail = tail;
    snprintf(q->cluster_id, sizeof(q->cluster_id), "%s", c->id);
    q->node_id = xstrdup(wid);

    Oak__Cluster__V1__Command m = OAK__CLUSTER__V1__COMMAND__INIT;
    m.seq = 0;
    m.kind = OAK__CLUSTER__V1__COMMAND__KIND__LOGS;
    m.service_id = q->service_id;
    m.instance_number = n;
    m.request_id = q->id;
    m.tail = tail;
    if (oak_grpc_stream_send(c->stream, &m.base) < 0) {
        free(q->service_id);
        free(q->node_id);
        free(q);
        return oak_http_resp_errorf(resp, OAK_E_UNAVAILABLE,
                                    "cluster %s: the command stream is closing", c->name);
    }
    q->p = oak_http_defer(req);
    q->next = r->logreqs;
    r->logreqs = q;
    q->timer = oak_loop_add_timer(r->loop, (uint64_t)r->logs_timeout_ms, on_logs_timeout, q);
    log_debug("logs of %s/%d: request %s sent to cluster %s", sid, n, q->id, c->name);
}

void relay_logs_result(root_t *r, const cluster_t *c, const Oak__Cluster__V1__LogsResult *res)
{
    logreq_t *q = r->logreqs;
    while (q && strcmp(q->id, res->request_id ? res->request_id : "") != 0)
        q = q->next;
    if (!q || strcmp(q->cluster_id, c->id) != 0) {
        log_debug("logs result %s from cluster %s: nobody waits for it", res->request_id,
                  c->name);
        return;
    }
    if (!res->ok) {
        oak_code_t code = res->error_code == 404   ? OAK_E_NOT_FOUND
                          : res->error_code == 504 ? OAK_E_TIMEOUT
                          : res->error_code == 409 ? OAK_E_CONFLICT
                                                   : OAK_E_UNAVAILABLE;
        return logreq_fail(r, q, code, "%s",
                           res->error && *res->error ? res->error : "the cluster could not fetch the logs");
    }
    json_t *o = json_object();
    json_object_set_new(o, "service_id", json_string(q->service_id));
    json_object_set_new(o, "instance_number", json_integer(q->instance_number));
    json_object_set_new(o, "node_id",
                        json_string(res->node_id && *res->node_id ? res->node_id : q->node_id));
    json_object_set_new(o, "cluster_id", json_string(q->cluster_id));
    json_object_set_new(o, "tail", json_integer(q->tail));
    /* logs are bytes: invalid UTF-8 is replaced so the JSON stays valid */
    json_object_set_new(o, "logs",
                        oak_json_string_lossy((const char *)res->logs.data, res->logs.len));
    json_object_set_new(o, "truncated", json_boolean(res->truncated));
    oak_http_resp_t resp = {0};
    oak_http_resp_json(&resp, 200, o);
    oak_http_complete(q->p, &resp);
    q->p = NULL;
    logreq_unlink_free(r, q);
}

void relay_stop(root_t *r)
{
    while (r->logreqs)
        logreq_fail(r, r->logreqs, OAK_E_UNAVAILABLE, "the system manager is stopping");
}

void relay_set_workers(root_t *r, cluster_t *c, Oak__Cluster__V1__Worker **w, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        const Oak__Cluster__V1__Worker *x = w[i];
        json_array_append_new(
            a, json_pack("{s:s, s:s, s:s, s:b, s:s, s:i, s:f, s:I, s:I, s:i, s:f}", "node_id",
                         x->node_id ? x->node_id : "", "name", x->name ? x->name : "", "ip",
                         x->ip ? x->ip : "", "active", x->active, "architecture",
                         x->architecture ? x->architecture : "", "cpu_cores", x->cpu_cores,
                         "cpu_percent", x->cpu_percent == x->cpu_percent ? x->cpu_percent : 0.0,
                         "memory_mb", (json_int_t)x->memory_mb, "memory_free_mb",
                         (json_int_t)x->memory_free_mb, "instances", x->instances, "last_seen",
                         x->last_seen == x->last_seen ? x->last_seen : 0.0));
    }
    json_decref(c->workers);
    c->workers = a;
}

json_t *relay_nodes_json(root_t *r, const char *cluster_id)
{
    json_t *out = json_array();
    for (size_t i = 0; i < r->clusters->n; i++) {
        const cluster_t *c = r->clusters->v[i];
        if (cluster_id && strcmp(cluster_id, c->id) != 0)
            continue;
        bool up = cluster_active(r, c);
        size_t k;
        json_t *w;
        json_array_foreach(c->workers, k, w)
        {
            json_t *o = json_deep_copy(w);
            bool active = json_is_true(json_object_get(w, "active")) && up;
            json_object_del(o, "active");
            json_object_set_new(o, "status", json_string(active ? "active" : "lost"));
            json_object_set_new(o, "cluster_id", json_string(c->id));
            json_object_set_new(o, "cluster_name", json_string(c->name));
            json_array_append_new(out, o);
        }
    }
    return out;
}
