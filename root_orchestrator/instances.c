/* Instance lifecycle at the root (see instances.h). Every decision is
 * written to the store, together with the command it produces, before the
 * command is sent. Each placement bumps the instance's generation; reports
 * about older generations are ignored, and instances a cluster reports that
 * the root no longer wants there get a REMOVE command. */
#include "root_orchestrator/instances.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "root_orchestrator/sched_cluster.h"

/* a cluster that handed an instance back for want of the `direct` node is
 * not asked again for this long, for want of capacity for 5 s, unless its
 * number of workers changes (meanwhile, unless another cluster can take
 * it, the instance waits) */
#define HANDBACK_BACKOFF_S 30

static const char *pending_states[] = {"REQUESTED",
                                       "NO_CLUSTER_CAPACITY",
                                       "TargetClusterNotFound",
                                       "TargetClusterNotActive",
                                       "TargetClusterNoCapacity",
                                       NULL};

static bool is_pending(const char *s)
{
    for (int i = 0; s && pending_states[i]; i++)
        if (strcmp(s, pending_states[i]) == 0)
            return true;
    return false;
}

static int rank(const char *s)
{
    static const char *order[] = {"REQUESTED", "CLUSTER_SCHEDULED", "NODE_SCHEDULED",
                                  "CREATED",   "RUNNING",           NULL};
    for (int i = 0; order[i]; i++)
        if (strcmp(s, order[i]) == 0)
            return i;
    return -1;
}

void service_refresh_status(json_t *svc)
{
    json_t *list = json_object_get(svc, "instance_list");
    size_t i, n = json_array_size(list), running = 0, completed = 0;
    json_t *in;
    char failed[512] = "";
    const char *lowest = NULL, *lowest_detail = NULL, *other = NULL, *other_detail = NULL;
    if (n == 0) {
        json_object_set_new(svc, "status", json_string("UNDEPLOYED"));
        json_object_set_new(svc, "status_detail", json_string("no instances requested"));
        return;
    }
    json_array_foreach(list, i, in)
    {
        const char *st = oak_json_str(in, "status");
        const char *det = oak_json_str(in, "status_detail");
        if (!st)
            st = "REQUESTED";
        if (strcmp(st, "RUNNING") == 0)
            running++;
        else if (strcmp(st, "COMPLETED") == 0)
            completed++;
        if (strcmp(st, "FAILED") == 0 || strcmp(st, "DEAD") == 0) {
            size_t len = strlen(failed);
            snprintf(failed + len, sizeof(failed) - len, "%s%lld", len ? "," : "",
                     oak_json_int(in, "instance_number", -1));
        }
        int rk = rank(st);
        if (rk >= 0) {
            if (!lowest || rk < rank(lowest)) {
                lowest = st;
                lowest_detail = det;
            }
        } else if (strcmp(st, "COMPLETED") != 0 && !other) {
            other = st;
            other_detail = det;
        }
    }
    const char *st, *det;
    char buf[600];
    if (failed[0]) {
        st = "FAILED";
        snprintf(buf, sizeof(buf), "Failed instance(s): %s", failed);
        det = buf;
    } else if (running == n) {
        st = "RUNNING";
        det = "all instances running";
    } else if (completed == n) {
        st = "COMPLETED";
        det = "all instances completed";
    } else if (other) {
        st = other;
        det = other_detail;
    } else {
        st = lowest ? lowest : "REQUESTED";
        det = lowest_detail;
    }
    json_object_set_new(svc, "status", json_string(st));
    json_object_set_new(svc, "status_detail", json_string(det ? det : ""));
}

static json_t *find_instance(json_t *svc, int n, size_t *idx)
{
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(svc, "instance_list"), i, in)
    {
        if (oak_json_int(in, "instance_number", -1) == n) {
            if (idx)
                *idx = i;
            return in;
        }
    }
    return NULL;
}

static void set_status(json_t *in, const char *status, const char *detail)
{
    json_object_set_new(in, "status", json_string(status));
    json_object_set_new(in, "status_detail", json_string(detail ? detail : ""));
    json_object_set_new(in, "last_modified_timestamp", json_real(oak_wall_time()));
}

/* The spec sent to clusters: the service without its instance list. */
static char *service_spec(const json_t *svc)
{
    json_auto_t *copy = json_copy((json_t *)svc);
    json_object_del(copy, "instance_list");
    json_object_del(copy, "_version");
    return oak_json_dump(copy);
}

/* Writes svc and queues cmd for cluster c in one transaction. c may be NULL
 * for a plain save. On success *cmd_out is committed to memory and sent. */
static int save_with_cmd(root_t *r, json_t *svc, cluster_t *c, cmd_kind_t kind, int n, uint64_t gen,
                         bool with_spec, int64_t cpu, int64_t mem, int gpu, oak_err_t *err)
{
    cmd_t *cmd = NULL;
    _cleanup_free_ char *spec = with_spec ? service_spec(svc) : NULL;
    if (oak_store_begin(r->store, err) < 0)
        return -1;
    if (oak_store_update(r->store, "services", svc, oak_json_int(svc, "_version", 0), err) < 0)
        goto fail;
    if (c && clusters_cmd_prepare(r, c, kind, oak_json_str(svc, "_id"), n, gen, spec, cpu, mem, gpu,
                                  &cmd, err) < 0)
        goto fail;
    if (oak_store_commit(r->store, err) < 0)
        goto fail;
    if (cmd)
        clusters_cmd_commit(r, c, cmd);
    return 0;
fail:
    oak_store_rollback(r->store);
    if (cmd)
        clusters_cmd_abort(r, c, cmd);
    return -1;
}

/* Whether a cluster that handed `in` back has gained or lost workers since
 * (then it may take the instance now). */
static bool excluded_changed(root_t *r, const json_t *in)
{
    const char *id;
    json_t *n;
    json_object_foreach((json_t *)json_object_get(in, "excluded_workers"), id, n)
    {
        cluster_t *c = clusters_by_id(r->clusters, id);
        if (c && c->active_workers != json_integer_value(n))
            return true;
    }
    return false;
}

/* Tries to place instance `in` of svc; persists the outcome. */
static int place(root_t *r, json_t *svc, json_t *in, oak_err_t *err)
{
    sched_req_t req;
    char status[64], detail[512];
    sched_req_from_service(svc, &req);
    req.excluded = json_object_get(in, "excluded_clusters");
    cluster_t *c = sched_pick(r, &req, status, sizeof(status), detail, sizeof(detail));
    int n = (int)oak_json_int(in, "instance_number", 0);
    if (!c && json_array_size(req.excluded) > 0) {
        if (oak_wall_time() < oak_json_num(in, "excluded_until", 0) &&
            !excluded_changed(r, in)) {
            /* every candidate handed it back a moment ago: asking them again
             * at once would bounce it between root and cluster; it waits, and
             * its detail keeps saying why (set at the hand-back) */
            const char *why = oak_json_str(in, "status_detail");
            if (why)
                snprintf(detail, sizeof(detail), "%s", why);
        } else {
            /* clusters that handed it back are avoided for a while; then all
             * are tried again */
            json_object_del(in, "excluded_clusters");
            json_object_del(in, "excluded_until");
            json_object_del(in, "excluded_workers");
            req.excluded = NULL;
            c = sched_pick(r, &req, status, sizeof(status), detail, sizeof(detail));
        }
    }
    if (!c) {
        const char *old = oak_json_str(in, "status"), *olddet = oak_json_str(in, "status_detail");
        if (old && olddet && strcmp(old, status) == 0 && strcmp(olddet, detail) == 0)
            return 0; /* nothing changed: no write */
        set_status(in, status, detail);
        service_refresh_status(svc);
        log_info("service %s instance %d: %s (%s)", oak_json_str(svc, "job_name"), n, status,
                 detail);
        return save_with_cmd(r, svc, NULL, CMD_PLACE, n, 0, false, 0, 0, 0, err);
    }
    uint64_t gen = (uint64_t)oak_json_int(in, "generation", 0) + 1;
    json_object_set_new(in, "generation", json_integer((json_int_t)gen));
    json_object_set_new(in, "cluster_id", json_string(c->id));
    json_object_set_new(in, "cluster_name", json_string(c->name));
    json_object_set_new(in, "cluster_location", json_string(c->location ? c->location : ""));
    char msg[128];
    snprintf(msg, sizeof(msg), "placed on cluster %s", c->name);
    set_status(in, "CLUSTER_SCHEDULED", msg);
    service_refresh_status(svc);
    if (save_with_cmd(r, svc, c, CMD_PLACE, n, gen, true, req.cpu_millis, req.mem_mb, req.gpu,
                      err) < 0)
        return -1;
    log_info("service %s instance %d: CLUSTER_SCHEDULED on %s (generation %" PRIu64 ")",
             oak_json_str(svc, "job_name"), n, c->name, gen);
    return 0;
}

static int reload(root_t *r, json_t **svc, oak_err_t *err)
{
    json_t *fresh = NULL;
    if (oak_store_get(r->store, "services", oak_json_str(*svc, "_id"), &fresh, err) < 0)
        return -1;
    json_object_update(*svc, fresh);
    json_decref(fresh);
    return 0;
}

int inst_add(json_t *svc, int count, oak_err_t *err)
{
    long long next = oak_json_int(svc, "next_instance_progressive_number", 0);
    json_t *list = json_object_get(svc, "instance_list");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(svc, "instance_list", list);
    }
    if (json_array_size(list) + (size_t)count > 1000)
        return oak_err_set(err, OAK_E_UNPROCESSABLE,
                           "a service can have at most 1000 instances (has %zu, %d requested)",
                           json_array_size(list), count);
    for (int i = 0; i < count; i++) {
        json_t *in =
            json_pack("{s:I, s:s, s:s, s:I, s:f}", "instance_number", (json_int_t)(next + i),
                      "status", "REQUESTED", "status_detail", "Waiting for scheduling decision",
                      "generation", (json_int_t)0, "last_modified_timestamp", oak_wall_time());
        json_array_append_new(list, in);
    }
    json_object_set_new(svc, "next_instance_progressive_number", json_integer(next + count));
    service_refresh_status(svc);
    return (int)next;
}

void inst_place_new(root_t *r, json_t *svc, int first, int count)
{
    for (int i = 0; i < count; i++) {
        json_t *in = find_instance(svc, first + i, NULL);
        oak_err_t e = OAK_ERR_INIT;
        if (in && place(r, svc, in, &e) < 0) {
            /* stays REQUESTED in the store; retried by the scheduler tick */
            log_warn("placing %s/%d failed: %s", oak_json_str(svc, "_id"), first + i, e.msg);
            oak_err_clear(&e);
            reload(r, &svc, &e);
            oak_err_clear(&e);
            r->sched_dirty = true;
        }
    }
}

int inst_request(root_t *r, json_t *svc, int count, oak_err_t *err)
{
    int first = inst_add(svc, count, err);
    if (first < 0)
        return -1;
    if (oak_store_update(r->store, "services", svc, oak_json_int(svc, "_version", 0), err) < 0) {
        /* restore the in-memory document to what is stored */
        oak_err_t e2 = OAK_ERR_INIT;
        reload(r, &svc, &e2);
        oak_err_clear(&e2);
        return -1;
    }
    inst_place_new(r, svc, first, count);
    return 0;
}

int inst_undeploy(root_t *r, json_t *svc, int n, oak_err_t *err)
{
    json_t *list = json_object_get(svc, "instance_list");
    if (n >= 0 && !find_instance(svc, n, NULL))
        return oak_err_set(err, OAK_E_NOT_FOUND, "service %s has no instance %d",
                           oak_json_str(svc, "_id"), n);
    /* one transaction per removed instance keeps command prepare simple */
    for (;;) {
        size_t i, idx = 0;
        json_t *in, *victim = NULL;
        json_array_foreach(list, i, in)
        {
            if (n < 0 || oak_json_int(in, "instance_number", -1) == n) {
                victim = in;
                idx = i;
                break;
            }
        }
        if (!victim)
            break;
        int num = (int)oak_json_int(victim, "instance_number", 0);
        uint64_t gen = (uint64_t)oak_json_int(victim, "generation", 0);
        const char *cid = oak_json_str(victim, "cluster_id");
        cluster_t *c = cid && !is_pending(oak_json_str(victim, "status"))
                           ? clusters_by_id(r->clusters, cid)
                           : NULL;
        json_incref(victim);
        json_array_remove(list, idx);
        service_refresh_status(svc);
        if (save_with_cmd(r, svc, c, CMD_REMOVE, num, gen, false, 0, 0, 0, err) < 0) {
            json_array_insert_new(list, idx, victim);
            return -1;
        }
        json_decref(victim);
        log_info("service %s instance %d undeployed", oak_json_str(svc, "job_name"), num);
        if (n >= 0)
            break;
    }
    return 0;
}

static void queue_remove(root_t *r, cluster_t *c, const char *service_id, int n, uint64_t gen)
{
    cmd_t *cmd = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (oak_store_begin(r->store, &err) == 0 &&
        clusters_cmd_prepare(r, c, CMD_REMOVE, service_id, n, gen, NULL, 0, 0, 0, &cmd, &err) ==
            0 &&
        oak_store_commit(r->store, &err) == 0) {
        clusters_cmd_commit(r, c, cmd);
        return;
    }
    oak_store_rollback(r->store);
    if (cmd)
        clusters_cmd_abort(r, c, cmd);
    log_warn("cannot queue removal of %s/%d on %s: %s", service_id, n, c->name, err.msg);
    oak_err_clear(&err);
}

static bool remove_pending(cluster_t *c, const char *service_id, int n, uint64_t gen)
{
    for (cmd_t *k = c->cmds; k; k = k->next)
        if (k->kind == CMD_REMOVE && k->instance_number == n && k->generation == gen &&
            strcmp(k->service_id, service_id) == 0)
            return true;
    return false;
}

static bool is_handback(const char *s)
{
    return !strcmp(s, "NO_WORKER_CAPACITY") || !strcmp(s, "NO_QUALIFIED_WORKER_FOUND") ||
           !strcmp(s, "NO_NODE_FOUND");
}

void inst_on_report(root_t *r, cluster_t *c, const char *service_id, int n, const char *status,
                    const char *detail, uint64_t generation, const json_t *extra)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *doc = NULL;
    if (!service_id || !status)
        return;
    if (oak_store_get(r->store, "services", service_id, &doc, &err) < 0) {
        oak_err_clear(&err);
        /* the service is gone: the cluster must drop the instance */
        if (generation > 0 && strcmp(status, "UNDEPLOYED") != 0 &&
            !remove_pending(c, service_id, n, generation))
            queue_remove(r, c, service_id, n, generation);
        return;
    }
    json_auto_t *svc = doc;
    json_t *in = find_instance(svc, n, NULL);
    const char *cid = in ? oak_json_str(in, "cluster_id") : NULL;
    uint64_t gen = in ? (uint64_t)oak_json_int(in, "generation", 0) : 0;
    if (!in || !cid || strcmp(cid, c->id) != 0 || generation != gen) {
        if (in && generation > gen)
            log_warn("cluster %s reports %s/%d generation %" PRIu64 " ahead of ours (%" PRIu64 ")",
                     c->name, service_id, n, generation, gen);
        /* a stale placement: the instance lives elsewhere now (or no more) */
        if (generation > 0 && strcmp(status, "UNDEPLOYED") != 0 &&
            !remove_pending(c, service_id, n, generation))
            queue_remove(r, c, service_id, n, generation);
        return;
    }
    if (is_handback(status)) {
        json_t *ex = json_object_get(in, "excluded_clusters");
        if (!json_is_array(ex)) {
            ex = json_array();
            json_object_set_new(in, "excluded_clusters", ex);
        }
        json_array_append_new(ex, json_string(c->id));
        /* a node name rarely appears; capacity may come back soon */
        int backoff = strcmp(status, "NO_NODE_FOUND") == 0 ? HANDBACK_BACKOFF_S : 5;
        json_object_set_new(in, "excluded_until", json_real(oak_wall_time() + (double)backoff));
        json_t *seen = json_object_get(in, "excluded_workers");
        if (!json_is_object(seen)) {
            seen = json_object();
            json_object_set_new(in, "excluded_workers", seen);
        }
        json_object_set_new(seen, c->id, json_integer(c->active_workers));
        char buf[600];
        snprintf(buf, sizeof(buf),
                 "cluster %s handed it back: %s%s%s (it is asked again after %d s, or when its "
                 "workers change)",
                 c->name, status, detail && *detail ? ": " : "", detail ? detail : "", backoff);
        set_status(in, "REQUESTED", buf);
        service_refresh_status(svc);
        if (save_with_cmd(r, svc, NULL, CMD_PLACE, n, 0, false, 0, 0, 0, &err) < 0 ||
            place(r, svc, in, &err) < 0) {
            log_warn("rescheduling %s/%d: %s", service_id, n, err.msg);
            oak_err_clear(&err);
            r->sched_dirty = true;
        }
        return;
    }
    const char *old = oak_json_str(in, "status"), *olddet = oak_json_str(in, "status_detail");
    bool changed =
        !old || strcmp(old, status) != 0 || !olddet || strcmp(olddet, detail ? detail : "") != 0;
    const char *keys[] = {"worker_id", "host_ip", "cpu_percent", "memory_mb", NULL};
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(extra, keys[i]);
        if (v && !json_equal(v, json_object_get(in, keys[i]))) {
            json_object_set(in, keys[i], v);
            if (i < 2)
                changed = true;
        }
    }
    if (!changed)
        return;
    set_status(in, status, detail);
    service_refresh_status(svc);
    if (oak_store_update(r->store, "services", svc, oak_json_int(svc, "_version", 0), &err) < 0) {
        log_warn("saving status of %s/%d: %s", service_id, n, err.msg);
        oak_err_clear(&err);
    }
}

/* Calls fn(svc, instance) for every instance of every service matching
 * pred; fn may modify and persist svc. */
void inst_schedule_pending(root_t *r)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *all = NULL;
    r->sched_dirty = false;
    if (oak_store_find(r->store, "services", NULL, NULL, &all, &err) < 0) {
        log_warn("scheduler: cannot list services: %s", err.msg);
        oak_err_clear(&err);
        r->sched_dirty = true;
        return;
    }
    size_t i, k;
    json_t *svc, *in;
    json_array_foreach(all, i, svc)
    {
        json_array_foreach(json_object_get(svc, "instance_list"), k, in)
        {
            if (!is_pending(oak_json_str(in, "status")))
                continue;
            if (place(r, svc, in, &err) < 0) {
                log_warn("scheduler: %s", err.msg);
                oak_err_clear(&err);
                r->sched_dirty = true;
                break; /* svc's version is stale now */
            }
        }
    }
    json_decref(all);
}

void inst_cluster_lost(root_t *r, cluster_t *c)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *all = NULL;
    if (oak_store_find(r->store, "services", NULL, NULL, &all, &err) < 0) {
        log_warn("cluster %s lost: cannot list services: %s", c->name, err.msg);
        oak_err_clear(&err);
        return;
    }
    size_t i, k, moved = 0;
    json_t *svc, *in;
    json_array_foreach(all, i, svc)
    {
        json_array_foreach(json_object_get(svc, "instance_list"), k, in)
        {
            const char *cid = oak_json_str(in, "cluster_id");
            const char *st = oak_json_str(in, "status");
            if (!cid || strcmp(cid, c->id) != 0 || is_pending(st) ||
                (st && strcmp(st, "COMPLETED") == 0))
                continue;
            int n = (int)oak_json_int(in, "instance_number", 0);
            uint64_t gen = (uint64_t)oak_json_int(in, "generation", 0);
            char buf[200];
            snprintf(buf, sizeof(buf), "cluster %s lost; rescheduling", c->name);
            set_status(in, "REQUESTED", buf);
            json_object_del(in, "cluster_id");
            service_refresh_status(svc);
            /* the old copy is removed when the cluster comes back */
            if (save_with_cmd(r, svc, c, CMD_REMOVE, n, gen, false, 0, 0, 0, &err) < 0) {
                log_warn("cluster %s lost: %s", c->name, err.msg);
                oak_err_clear(&err);
                continue;
            }
            moved++;
            if (place(r, svc, in, &err) < 0) {
                log_warn("cluster %s lost: placing %s/%d: %s", c->name, oak_json_str(svc, "_id"), n,
                         err.msg);
                oak_err_clear(&err);
                r->sched_dirty = true;
            }
        }
    }
    json_decref(all);
    log_warn("cluster %s lost for more than %lds: %zu instance(s) rescheduled", c->name,
             r->cluster_grace_s, moved);
}
