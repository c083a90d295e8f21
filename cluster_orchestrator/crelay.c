/* Root <-> worker relays of the cluster manager (see crelay.h).
 *
 * A logs request is kept in cm->logreqs under the root's request id, with
 * the worker it was sent to and a timer. The worker's answer must come on
 * that worker's own topic (the broker lets a worker publish only under
 * nodes/<its id>/), so one worker cannot answer for another. Every request
 * is answered exactly once: by the worker's answer, the timer, or an error
 * at once. Loop thread only. */
#include "cluster_orchestrator/crelay.h"

#include <stdio.h>
#include <string.h>

#include "cluster_orchestrator/root_link.h"
#include "cluster_orchestrator/worker_proto.h"
#include "cluster_orchestrator/wlink.h"
#include "cluster_orchestrator/workers.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "lib/oak_mqtt.h"

struct crelay_req {
    cm_t *cm;
    char id[WP_MAX_REQ_ID + 1];
    char worker_id[WP_NODE_ID_MAX + 1];
    uint64_t timer;
    crelay_req_t *next;
};

static void answer_error(cm_t *cm, const char *request_id, const char *node_id, int code,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void answer_error(cm_t *cm, const char *request_id, const char *node_id, int code,
                         const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_info("logs request %s: %s", request_id, msg);
    root_link_logs_result(cm->root, json_pack("{s:s, s:b, s:s, s:i, s:s}", "request_id",
                                              request_id, "ok", 0, "error", msg, "error_code",
                                              code, "node_id", node_id ? node_id : ""));
}

static void req_free(cm_t *cm, crelay_req_t *q)
{
    for (crelay_req_t **pp = &cm->logreqs; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    if (q->timer)
        oak_loop_cancel_timer(cm->loop, q->timer);
    free(q);
}

static void on_timeout(oak_loop_t *loop, void *data)
{
    crelay_req_t *q = data;
    q->timer = 0;
    answer_error(q->cm, q->id, q->worker_id, 504, "worker %s did not answer within %d ms",
                 q->worker_id, CRELAY_LOGS_TIMEOUT_MS);
    req_free(q->cm, q);
}

void crelay_logs_request(cm_t *cm, const Oak__Cluster__V1__Command *cmd)
{
    const char *rid = cmd->request_id ? cmd->request_id : "";
    if (!*rid || strlen(rid) > WP_MAX_REQ_ID) {
        log_warn("LOGS command without a usable request id dropped");
        return;
    }
    const char *sid = cmd->service_id ? cmd->service_id : "";
    char key[64];
    snprintf(key, sizeof(key), "%s-%d", sid, cmd->instance_number);
    json_auto_t *d = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (oak_store_get(cm->store, "instances", key, &d, &err) < 0) {
        oak_err_clear(&err);
        return answer_error(cm, rid, NULL, 404, "the cluster has no instance %d of service %s",
                            cmd->instance_number, sid);
    }
    const char *wid = oak_json_str(d, "worker_id");
    worker_t *w = wid ? workers_get(cm->workers, wid) : NULL;
    if (!w)
        return answer_error(cm, rid, NULL, 409, "instance %d of service %s is not on a worker",
                            cmd->instance_number, sid);
    if (!w->online || !cm->mqtt)
        return answer_error(cm, rid, w->id, 503, "worker %s (%s) is offline", w->host, w->id);

    wp_logs_req_t r = {.instance_number = cmd->instance_number};
    snprintf(r.request_id, sizeof(r.request_id), "%s", rid);
    snprintf(r.service_id, sizeof(r.service_id), "%s", sid);
    r.tail = cmd->tail < 1 ? 100 : cmd->tail > WP_MAX_TAIL ? WP_MAX_TAIL : cmd->tail;
    if (wlink_publish(cm, w->id, WP_LOGS_REQ, wp_build_logs_req(&r), &err) < 0) {
        answer_error(cm, rid, w->id, 503, "cannot reach worker %s: %s", w->id, err.msg);
        oak_err_clear(&err);
        return;
    }
    crelay_req_t *q = xcalloc(1, sizeof(*q));
    q->cm = cm;
    snprintf(q->id, sizeof(q->id), "%s", rid);
    snprintf(q->worker_id, sizeof(q->worker_id), "%s", w->id);
    q->timer = oak_loop_add_timer(cm->loop, CRELAY_LOGS_TIMEOUT_MS, on_timeout, q);
    q->next = cm->logreqs;
    cm->logreqs = q;
}

void crelay_logs_answer(cm_t *cm, const char *worker_id, const void *payload, size_t len)
{
    wp_logs_t l;
    oak_err_t err = OAK_ERR_INIT;
    if (wp_parse_logs(payload, len, &l, &err) < 0) {
        log_warn("worker %s: bad logs answer dropped: %s", worker_id, err.msg);
        oak_err_clear(&err);
        return;
    }
    crelay_req_t *q = cm->logreqs;
    while (q && strcmp(q->id, l.request_id) != 0)
        q = q->next;
    if (!q || strcmp(q->worker_id, worker_id) != 0) {
        log_warn("worker %s: logs answer %s matches no request sent to it; dropped", worker_id,
                 l.request_id);
        wp_logs_clear(&l);
        return;
    }
    if (l.ok) {
        json_t *res = json_pack("{s:s, s:b, s:s, s:b}", "request_id", l.request_id, "ok", 1,
                                "node_id", worker_id, "truncated", l.truncated);
        json_object_set_new(res, "logs", json_stringn(l.logs, l.logs_len));
        root_link_logs_result(cm->root, res);
    } else {
        answer_error(cm, l.request_id, worker_id, l.error_code ? l.error_code : 500, "%s",
                     l.error[0] ? l.error : "the worker could not read the logs");
    }
    wp_logs_clear(&l);
    req_free(cm, q);
}

void crelay_stop(cm_t *cm)
{
    while (cm->logreqs)
        req_free(cm, cm->logreqs);
}

/* ---- worker list ---- */

void crelay_tick(cm_t *cm)
{
    double now = oak_wall_time();
    double age = now - cm->workers_sent_at;
    bool changed = cm->workers_dirty || cm->capacity_dirty; /* placements change capacity */
    double min_s = CRELAY_WORKERS_MIN_S + (double)workers_count(cm->workers) / 1000.0;
    if (min_s > CRELAY_WORKERS_EVERY_S)
        min_s = CRELAY_WORKERS_EVERY_S;
    if (age < min_s || (!changed && age < CRELAY_WORKERS_EVERY_S))
        return;
    cm->workers_dirty = false;
    cm->workers_sent_at = now;
    /* instances per worker, from the instance documents */
    json_auto_t *count = json_object();
    json_auto_t *all = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (oak_store_find(cm->store, "instances", NULL, NULL, &all, &err) < 0) {
        log_warn("worker list: %s", err.msg);
        oak_err_clear(&err);
    }
    size_t i;
    json_t *d;
    json_array_foreach(all, i, d)
    {
        const char *wid = oak_json_str(d, "worker_id");
        if (wid)
            json_object_set_new(count, wid,
                                json_integer(oak_json_int(count, wid, 0) + 1));
    }
    json_t *list = json_array();
    for (i = 0; i < workers_count(cm->workers); i++) {
        const worker_t *w = workers_at(cm->workers, i);
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:f, s:I, s:I, s:I, s:f}", "node_id",
                            w->id, "name", w->host, "ip", w->ip, "active", w->online,
                            "architecture", w->arch, "cpu_cores",
                            (json_int_t)(w->cpu_total / 1000), "cpu_percent", w->cpu_percent,
                            "memory_mb", (json_int_t)w->mem_total, "memory_free_mb",
                            (json_int_t)w->mem_free, "instances",
                            (json_int_t)oak_json_int(count, w->id, 0), "last_seen",
                            w->last_seen));
    }
    root_link_workers(cm->root, list);
}
