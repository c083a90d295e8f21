/* Cluster-side instance lifecycle (see cinstances.h).
 *
 * PLACE stores the instance (REQUESTED) together with the applied command
 * sequence, then schedules it on a worker: the worker's reservation is
 * taken, the instance becomes NODE_SCHEDULED, is persisted, and the deploy
 * message is published. When no worker fits, the instance waits (retried
 * on every tick and when capacity changes) and after handback_s goes back
 * to the root with NO_WORKER_CAPACITY / NO_QUALIFIED_WORKER_FOUND.
 * FAILED and DEAD instances are restarted (FAILED ones elsewhere) up to
 * max_restarts times; a lost worker's instances are rescheduled at once. */
#include "cluster_orchestrator/cinstances.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster_orchestrator/root_link.h"
#include "cluster_orchestrator/sched_worker.h"
#include "cluster_orchestrator/worker_proto.h"
#include "cluster_orchestrator/wlink.h"
#include "cluster_orchestrator/workers.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "lib/oak_mqtt.h"

#define COLL "instances"

static void inst_id(const char *service_id, int n, char *buf, size_t len)
{
    snprintf(buf, len, "%s-%d", service_id, n);
}

static json_t *load(cm_t *cm, const char *service_id, int n)
{
    char id[64];
    json_t *d = NULL;
    oak_err_t err = OAK_ERR_INIT;
    inst_id(service_id, n, id, sizeof(id));
    if (oak_store_get(cm->store, COLL, id, &d, &err) < 0) {
        if (err.code != OAK_E_NOT_FOUND)
            log_warn("instance %s: %s", id, err.msg);
        oak_err_clear(&err);
        return NULL;
    }
    return d;
}

static int save(cm_t *cm, json_t *d, oak_err_t *err)
{
    json_object_set_new(d, "updated_at", json_real(oak_wall_time()));
    return oak_store_upsert(cm->store, COLL, d, err);
}

/* The InstanceStatus JSON of a stored instance (new reference). */
static json_t *status_json(const json_t *d)
{
    const char *det = oak_json_str(d, "status_detail");
    json_t *in = json_pack("{s:s, s:i, s:s, s:s, s:I}", "service_id", oak_json_str(d, "service_id"),
                           "instance_number", (int)oak_json_int(d, "instance_number", 0), "status",
                           oak_json_str(d, "status"), "status_detail", det ? det : "", "generation",
                           (json_int_t)oak_json_int(d, "generation", 0));
    if (oak_json_str(d, "worker_id"))
        json_object_set_new(in, "worker_id", json_string(oak_json_str(d, "worker_id")));
    if (oak_json_str(d, "host_ip"))
        json_object_set_new(in, "host_ip", json_string(oak_json_str(d, "host_ip")));
    return in;
}

/* Sends one instance's status to the root. */
static void report(cm_t *cm, const json_t *d)
{
    root_link_report(cm->root, NULL, json_pack("[o]", status_json(d)), false);
}

static void set_status(json_t *d, const char *status, const char *detail)
{
    json_object_set_new(d, "status", json_string(status));
    json_object_set_new(d, "status_detail", json_string(detail ? detail : ""));
}

static void release(cm_t *cm, json_t *d)
{
    json_t *res = json_object_get(d, "reserved");
    worker_t *w = oak_json_str(d, "worker_id")
                      ? workers_get(cm->workers, oak_json_str(d, "worker_id"))
                      : NULL;
    if (res && w)
        worker_reserve(w, oak_json_int(res, "cpu", 0), oak_json_int(res, "mem", 0),
                       (int)oak_json_int(res, "gpu", 0), -1);
    json_object_del(d, "reserved");
    cm->capacity_dirty = true;
}

static void publish(cm_t *cm, const char *worker_id, wp_kind_t kind, json_t *payload)
{
    oak_err_t err = OAK_ERR_INIT;
    if (wlink_publish(cm, worker_id, kind, payload, &err) < 0) {
        log_warn("publish %s to %s: %s", wp_kind_name(kind), worker_id, err.msg);
        oak_err_clear(&err);
    }
}

static void publish_delete(cm_t *cm, const char *worker_id, const char *service_id, int n,
                           uint64_t generation, const char *job_name)
{
    wp_delete_t del = {.instance_number = n, .generation = generation};
    snprintf(del.service_id, sizeof(del.service_id), "%s", service_id);
    snprintf(del.job_name, sizeof(del.job_name), "%s", job_name ? job_name : "");
    publish(cm, worker_id, WP_DELETE, wp_build_delete(&del));
}

static void send_delete(cm_t *cm, const json_t *d)
{
    const char *w = oak_json_str(d, "worker_id");
    if (w)
        publish_delete(cm, w, oak_json_str(d, "service_id"),
                       (int)oak_json_int(d, "instance_number", 0),
                       (uint64_t)oak_json_int(d, "generation", 0),
                       oak_json_str(json_object_get(d, "service"), "job_name"));
}

/* Publishes the deploy message of stored instance d to worker_id. */
static void send_deploy(cm_t *cm, const char *worker_id, const json_t *d)
{
    json_t *payload = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (wp_build_deploy(json_object_get(d, "service"), (int)oak_json_int(d, "instance_number", 0),
                        (uint64_t)oak_json_int(d, "generation", 0), &payload, &err) < 0) {
        log_warn("instance %s: cannot build the deploy message: %s", oak_json_str(d, "_id"),
                 err.msg);
        oak_err_clear(&err);
        return;
    }
    publish(cm, worker_id, WP_DEPLOY, payload);
}

/* Tries to put instance d on a worker; persists and publishes on success.
 * Returns true when placed. */
static bool schedule(cm_t *cm, json_t *d)
{
    wsched_req_t req;
    char status[64], detail[512];
    json_t *svc = json_object_get(d, "service");
    wsched_req_from_service(svc, &req);
    req.exclude = json_object_get(d, "excluded_workers");
    worker_t *w =
        sched_worker_pick(cm->workers, &req, cm->sched_spread ? WSCHED_SPREAD : WSCHED_BESTFIT,
                          status, sizeof(status), detail, sizeof(detail));
    if (!w && json_array_size(req.exclude) > 0) {
        json_object_del(d, "excluded_workers");
        req.exclude = NULL;
        w = sched_worker_pick(cm->workers, &req, cm->sched_spread ? WSCHED_SPREAD : WSCHED_BESTFIT,
                              status, sizeof(status), detail, sizeof(detail));
    }
    oak_err_t err = OAK_ERR_INIT;
    if (!w) {
        if (!json_object_get(d, "waiting_since"))
            json_object_set_new(d, "waiting_since", json_real(oak_wall_time()));
        json_object_set_new(d, "waiting_status", json_string(status));
        char buf[600];
        snprintf(buf, sizeof(buf), "waiting for a worker: %s", detail);
        const char *old = oak_json_str(d, "status_detail");
        bool changed = !old || strcmp(old, buf) != 0;
        set_status(d, "CLUSTER_SCHEDULED", buf);
        if (changed && save(cm, d, &err) < 0) {
            log_warn("saving %s: %s", oak_json_str(d, "_id"), err.msg);
            oak_err_clear(&err);
        }
        if (changed)
            report(cm, d);
        return false;
    }
    worker_reserve(w, req.cpu_millis, req.mem_mb, req.gpu, +1);
    json_object_set_new(d, "reserved",
                        json_pack("{s:I, s:I, s:i}", "cpu", (json_int_t)req.cpu_millis, "mem",
                                  (json_int_t)req.mem_mb, "gpu", req.gpu));
    json_object_set_new(d, "worker_id", json_string(w->id));
    json_object_set_new(d, "host_ip", json_string(w->ip ? w->ip : ""));
    json_object_del(d, "waiting_since");
    json_object_del(d, "waiting_status");
    char msg[160];
    snprintf(msg, sizeof(msg), "deployed to worker %s", w->host ? w->host : w->id);
    set_status(d, "NODE_SCHEDULED", msg);
    if (save(cm, d, &err) < 0) {
        log_warn("saving %s: %s", oak_json_str(d, "_id"), err.msg);
        oak_err_clear(&err);
        release(cm, d);
        return false;
    }
    cm->capacity_dirty = true;
    send_deploy(cm, w->id, d);
    log_info("instance %s generation %lld: NODE_SCHEDULED on %s", oak_json_str(d, "_id"),
             oak_json_int(d, "generation", 0), w->host ? w->host : w->id);
    report(cm, d);
    return true;
}

static void place(cm_t *cm, const Oak__Cluster__V1__Command *cmd)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *old = load(cm, cmd->service_id, cmd->instance_number);
    if (old && (uint64_t)oak_json_int(old, "generation", 0) >= cmd->generation) {
        root_link_applied(cm->root, cmd->seq); /* a repeat */
        return;
    }
    json_t *svc = NULL;
    if (oak_json_parse_object(cmd->service_json, strlen(cmd->service_json), 4 << 20, &svc, &err) <
        0) {
        log_warn("PLACE %s/%d: bad service document: %s", cmd->service_id, cmd->instance_number,
                 err.msg);
        oak_err_clear(&err);
        root_link_applied(cm->root, cmd->seq);
        json_t *d = json_pack("{s:s, s:i, s:I, s:s, s:s}", "service_id", cmd->service_id,
                              "instance_number", cmd->instance_number, "generation",
                              (json_int_t)cmd->generation, "status", "FAILED", "status_detail",
                              "the service document from the root is not valid JSON");
        report(cm, d);
        json_decref(d);
        return;
    }
    if (old && oak_json_str(old, "worker_id")) {
        /* an older generation still placed here: remove it first */
        send_delete(cm, old);
        release(cm, old);
    }
    char id[64];
    inst_id(cmd->service_id, cmd->instance_number, id, sizeof(id));
    json_auto_t *d =
        json_pack("{s:s, s:s, s:i, s:I, s:o, s:s, s:s, s:i}", "_id", id, "service_id",
                  cmd->service_id, "instance_number", cmd->instance_number, "generation",
                  (json_int_t)cmd->generation, "service", svc, "status", "REQUESTED",
                  "status_detail", "received from the root", "restarts", 0);
    if (oak_store_begin(cm->store, &err) < 0)
        goto fail;
    if (save(cm, d, &err) < 0) {
        oak_store_rollback(cm->store);
        goto fail;
    }
    root_link_applied(cm->root, cmd->seq);
    if (oak_store_commit(cm->store, &err) < 0) {
        oak_store_rollback(cm->store);
        goto fail;
    }
    schedule(cm, d);
    return;
fail:
    /* not applied: the root resends it after our next reconnect */
    log_error("PLACE %s: cannot persist: %s", id, err.msg);
    oak_err_clear(&err);
}

static void remove_cmd(cm_t *cm, const Oak__Cluster__V1__Command *cmd)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *d = load(cm, cmd->service_id, cmd->instance_number);
    if (!d || (uint64_t)oak_json_int(d, "generation", 0) > cmd->generation) {
        root_link_applied(cm->root, cmd->seq); /* nothing of that generation here */
        if (!d) {
            json_auto_t *gone = json_pack("{s:s, s:i, s:I, s:s, s:s}", "service_id",
                                          cmd->service_id, "instance_number", cmd->instance_number,
                                          "generation", (json_int_t)cmd->generation, "status",
                                          "UNDEPLOYED", "status_detail", "not on this cluster");
            report(cm, gone);
        }
        return;
    }
    if (oak_store_begin(cm->store, &err) < 0 ||
        oak_store_delete(cm->store, COLL, oak_json_str(d, "_id"), 0, &err) < 0) {
        oak_store_rollback(cm->store);
        log_error("REMOVE %s: %s", oak_json_str(d, "_id"), err.msg);
        oak_err_clear(&err);
        return;
    }
    root_link_applied(cm->root, cmd->seq);
    if (oak_store_commit(cm->store, &err) < 0) {
        oak_store_rollback(cm->store);
        log_error("REMOVE %s: %s", oak_json_str(d, "_id"), err.msg);
        oak_err_clear(&err);
        return;
    }
    send_delete(cm, d);
    release(cm, d);
    set_status(d, "UNDEPLOYED", "removed by the root");
    report(cm, d);
    log_info("instance %s generation %lld removed", oak_json_str(d, "_id"),
             oak_json_int(d, "generation", 0));
}

void cinst_on_command(cm_t *cm, const Oak__Cluster__V1__Command *cmd)
{
    if (!cmd->service_id || !*cmd->service_id) {
        root_link_applied(cm->root, cmd->seq);
        return;
    }
    if (cmd->kind == OAK__CLUSTER__V1__COMMAND__KIND__PLACE)
        place(cm, cmd);
    else
        remove_cmd(cm, cmd);
}

/* Restarts a FAILED/DEAD instance (elsewhere if exclude_worker). */
static void restart(cm_t *cm, json_t *d, bool exclude_worker)
{
    long long restarts = oak_json_int(d, "restarts", 0) + 1;
    oak_err_t err = OAK_ERR_INIT;
    release(cm, d);
    if (restarts > cm->max_restarts) {
        char buf[300];
        snprintf(buf, sizeof(buf), "%s (gave up after %d restarts)",
                 oak_json_str(d, "status_detail") ? oak_json_str(d, "status_detail") : "",
                 cm->max_restarts);
        json_object_set_new(d, "status_detail", json_string(buf));
        json_object_set_new(d, "gave_up", json_true());
        if (save(cm, d, &err) < 0)
            oak_err_clear(&err);
        report(cm, d);
        return;
    }
    json_object_set_new(d, "restarts", json_integer(restarts));
    if (exclude_worker && oak_json_str(d, "worker_id")) {
        json_t *ex = json_object_get(d, "excluded_workers");
        if (!json_is_array(ex)) {
            ex = json_array();
            json_object_set_new(d, "excluded_workers", ex);
        }
        json_array_append_new(ex, json_string(oak_json_str(d, "worker_id")));
    }
    json_object_del(d, "worker_id");
    json_object_del(d, "host_ip");
    schedule(cm, d);
}

void cinst_on_worker_status(cm_t *cm, const char *worker_id, const char *service_id, int n,
                            uint64_t generation, const char *status, const char *detail)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *d = load(cm, service_id, n);
    if (!d || (uint64_t)oak_json_int(d, "generation", 0) != generation ||
        !oak_json_str(d, "worker_id") || strcmp(oak_json_str(d, "worker_id"), worker_id) != 0) {
        /* not ours (any more): make sure that worker drops it */
        if (strcmp(status, "UNDEPLOYED") != 0 && strcmp(status, "COMPLETED") != 0)
            publish_delete(cm, worker_id, service_id, n, generation,
                           oak_json_str(json_object_get(d, "service"), "job_name"));
        return;
    }
    const char *old = oak_json_str(d, "status");
    if (old && !strcmp(old, status) &&
        !strcmp(oak_json_str(d, "status_detail") ? oak_json_str(d, "status_detail") : "",
                detail ? detail : ""))
        return;
    set_status(d, status, detail);
    if (!strcmp(status, "COMPLETED") || !strcmp(status, "UNDEPLOYED"))
        release(cm, d);
    if (!strcmp(status, "RUNNING")) {
        json_object_set_new(d, "restarts", json_integer(0));
        json_object_del(d, "gave_up");
    }
    if (save(cm, d, &err) < 0) {
        log_warn("saving %s: %s", oak_json_str(d, "_id"), err.msg);
        oak_err_clear(&err);
    }
    report(cm, d);
    if (!strcmp(status, "FAILED") || !strcmp(status, "DEAD"))
        restart(cm, d, !strcmp(status, "FAILED"));
}

/* Puts waiting instance d back on worker_id, which reports it RUNNING. */
static void adopt(cm_t *cm, json_t *d, const char *worker_id)
{
    worker_t *w = workers_get(cm->workers, worker_id);
    wsched_req_t req;
    oak_err_t err = OAK_ERR_INIT;
    if (!w)
        return;
    wsched_req_from_service(json_object_get(d, "service"), &req);
    worker_reserve(w, req.cpu_millis, req.mem_mb, req.gpu, +1);
    json_object_set_new(d, "reserved",
                        json_pack("{s:I, s:I, s:i}", "cpu", (json_int_t)req.cpu_millis, "mem",
                                  (json_int_t)req.mem_mb, "gpu", req.gpu));
    json_object_set_new(d, "worker_id", json_string(w->id));
    json_object_set_new(d, "host_ip", json_string(w->ip ? w->ip : ""));
    json_object_del(d, "waiting_since");
    json_object_del(d, "waiting_status");
    set_status(d, "RUNNING", "adopted after the worker reconnected");
    if (save(cm, d, &err) < 0) {
        log_warn("saving %s: %s", oak_json_str(d, "_id"), err.msg);
        oak_err_clear(&err);
    }
    cm->capacity_dirty = true;
    log_info("instance %s adopted on worker %s", oak_json_str(d, "_id"), w->id);
    report(cm, d);
}

void cinst_on_worker_state(cm_t *cm, const char *worker_id, const wp_inst_t *v, size_t n)
{
    /* instances the worker runs that are not (or no longer) placed on it */
    for (size_t i = 0; i < n; i++) {
        json_auto_t *d = load(cm, v[i].service_id, v[i].instance_number);
        const char *w = d ? oak_json_str(d, "worker_id") : NULL;
        bool same_gen = d && (uint64_t)oak_json_int(d, "generation", 0) == v[i].generation;
        if (same_gen && !w && v[i].status == WP_ST_RUNNING) {
            /* still waiting for a worker (its worker was lost) and the worker is back
             * with the instance running: adopt it there instead of redeploying */
            adopt(cm, d, worker_id);
            continue;
        }
        if (!d || !same_gen || !w || strcmp(w, worker_id) != 0) {
            publish_delete(cm, worker_id, v[i].service_id, v[i].instance_number, v[i].generation,
                           oak_json_str(json_object_get(d, "service"), "job_name"));
        } else if (strcmp(wp_status_name(v[i].status), oak_json_str(d, "status")) != 0) {
            cinst_on_worker_status(cm, worker_id, v[i].service_id, v[i].instance_number,
                                   v[i].generation, wp_status_name(v[i].status),
                                   "reported after reconnecting");
        }
    }
    /* instances placed on the worker that it does not run: deploy again */
    oak_err_t err = OAK_ERR_INIT;
    json_t *mine = NULL;
    json_auto_t *wid = json_string(worker_id);
    if (oak_store_find(cm->store, COLL, "worker_id", wid, &mine, &err) < 0) {
        oak_err_clear(&err);
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(mine, i, e)
    {
        const char *st = oak_json_str(e, "status");
        if (!st || !strcmp(st, "COMPLETED") || !strcmp(st, "FAILED") || !strcmp(st, "DEAD"))
            continue;
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = !strcmp(v[k].service_id, oak_json_str(e, "service_id")) &&
                    v[k].instance_number == oak_json_int(e, "instance_number", -1) &&
                    (long long)v[k].generation == oak_json_int(e, "generation", -1);
        if (!found)
            send_deploy(cm, worker_id, e);
    }
    json_decref(mine);
}

void cinst_on_worker_lost(cm_t *cm, const char *worker_id, const char *why)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *mine = NULL;
    json_auto_t *wid = json_string(worker_id);
    if (oak_store_find(cm->store, COLL, "worker_id", wid, &mine, &err) < 0) {
        log_warn("worker %s lost: %s", worker_id, err.msg);
        oak_err_clear(&err);
        return;
    }
    size_t i, moved = 0;
    json_t *d;
    json_array_foreach(mine, i, d)
    {
        const char *st = oak_json_str(d, "status");
        if ((st && !strcmp(st, "COMPLETED")) || oak_json_bool(d, "gave_up", false))
            continue;
        char buf[200];
        snprintf(buf, sizeof(buf), "worker %s lost: %s", worker_id, why);
        set_status(d, "FAILED", buf);
        report(cm, d);
        json_object_set_new(
            d, "restarts",
            json_integer(oak_json_int(d, "restarts", 0) - 1)); /* not the instance's fault */
        restart(cm, d, true);
        moved++;
    }
    json_decref(mine);
    log_warn("worker %s lost (%s): %zu instance(s) rescheduled", worker_id, why, moved);
}

void cinst_tick(cm_t *cm)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *waiting = NULL;
    json_auto_t *st = json_string("CLUSTER_SCHEDULED");
    if (oak_store_find(cm->store, COLL, "status", st, &waiting, &err) < 0) {
        oak_err_clear(&err);
        return;
    }
    size_t i;
    json_t *d;
    double now = oak_wall_time();
    json_array_foreach(waiting, i, d)
    {
        if (schedule(cm, d))
            continue;
        if (now - oak_json_num(d, "waiting_since", now) < (double)cm->handback_s)
            continue;
        /* hand it back to the root */
        const char *why = oak_json_str(d, "waiting_status");
        set_status(d, why ? why : "NO_WORKER_CAPACITY", oak_json_str(d, "status_detail"));
        if (oak_store_delete(cm->store, COLL, oak_json_str(d, "_id"), 0, &err) < 0) {
            oak_err_clear(&err);
            continue;
        }
        log_info("instance %s handed back to the root: %s", oak_json_str(d, "_id"),
                 oak_json_str(d, "status"));
        report(cm, d);
    }
    json_decref(waiting);
}

int cinst_load(cm_t *cm, oak_err_t *err)
{
    json_t *all = NULL;
    if (oak_store_find(cm->store, COLL, NULL, NULL, &all, err) < 0)
        return -1;
    size_t i;
    json_t *d;
    json_array_foreach(all, i, d)
    {
        json_t *res = json_object_get(d, "reserved");
        worker_t *w = oak_json_str(d, "worker_id")
                          ? workers_get(cm->workers, oak_json_str(d, "worker_id"))
                          : NULL;
        if (res && w)
            worker_reserve(w, oak_json_int(res, "cpu", 0), oak_json_int(res, "mem", 0),
                           (int)oak_json_int(res, "gpu", 0), +1);
    }
    json_decref(all);
    return 0;
}

void cinst_report_all(cm_t *cm)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *all = NULL;
    if (oak_store_find(cm->store, COLL, NULL, NULL, &all, &err) < 0) {
        oak_err_clear(&err);
        return;
    }
    json_t *list = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(all, i, d)
    {
        json_t *in = status_json(d);
        json_array_append_new(list, in);
    }
    json_decref(all);
    root_link_report(cm->root, workers_capacity(cm->workers), list, true);
    cm->capacity_dirty = false;
}
