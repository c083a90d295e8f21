/* gRPC handlers of the root for its clusters. Join checks the join token
 * and returns the cluster id and a session token; Report applies
 * acknowledgements first (releasing reservations), then capacity, then
 * instance statuses; Commands attaches the stream to the cluster and
 * (re)sends every command after the cluster's last applied one.
 * Loop thread only. */
#include "root_orchestrator/cluster_rpc.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "proto/cluster.pb-c.h"
#include "root_orchestrator/clusters.h"
#include "root_orchestrator/instances.h"
#include "root_orchestrator/relay.h"

#define SVC "/oak.cluster.v1.ClusterService/"

/* "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678" -> "1.2.3.4" / "::1" */
static void peer_ip(const char *peer, char *out, size_t n)
{
    const char *p = peer ? strchr(peer, ':') : NULL;
    out[0] = 0;
    if (!p)
        return;
    p++;
    if (*p == '[') {
        const char *e = strchr(p, ']');
        if (e)
            snprintf(out, n, "%.*s", (int)(e - p - 1), p + 1);
        if (strncmp(out, "::ffff:", 7) == 0)
            memmove(out, out + 7, strlen(out + 7) + 1);
        return;
    }
    const char *e = strrchr(p, ':');
    snprintf(out, n, "%.*s", e ? (int)(e - p) : (int)strlen(p), p);
}

static void on_join(oak_grpc_call_t *call, const ProtobufCMessage *m, void *ctx)
{
    root_t *r = ctx;
    const Oak__Cluster__V1__RegisterRequest *req = (const void *)m;
    oak_err_t err = OAK_ERR_INIT;
    char ip[64];
    cluster_t *c = NULL;
    char *session = NULL;
    peer_ip(oak_grpc_call_peer(call), ip, sizeof(ip));
    if (clusters_join(r, req->join_token, req->cluster_name, req->cluster_location, ip,
                      req->manager_port, req->network_component_port, &c, &session, &err) < 0) {
        log_warn("cluster join from %s (%s) refused: %s", ip,
                 req->cluster_name ? req->cluster_name : "", err.msg);
        oak_grpc_fail_err(call, &err);
        oak_err_clear(&err);
        return;
    }
    Oak__Cluster__V1__RegisterReply rep = OAK__CLUSTER__V1__REGISTER_REPLY__INIT;
    rep.cluster_id = c->id;
    rep.session_token = session;
    rep.last_seq = c->last_seq;
    oak_grpc_reply(call, &rep.base);
    free(session);
    r->sched_dirty = true;
}

/* json_real refuses NaN and infinities (and json_pack with it), which would
 * drop a whole report, e.g. from a cluster averaging over zero workers. */
static double finite_or_zero(double v)
{
    return isfinite(v) ? v : 0;
}

json_t *cluster_rpc_capacity_json(const Oak__Cluster__V1__Capacity *cap)
{
    json_t *virt = json_array();
    for (size_t i = 0; i < cap->n_virtualization; i++)
        json_array_append_new(virt, json_string(cap->virtualization[i]));
    json_t *pa = json_array();
    for (size_t i = 0; i < cap->n_per_arch; i++) {
        const Oak__Cluster__V1__ArchCapacity *a = cap->per_arch[i];
        json_t *av = json_array();
        for (size_t k = 0; k < a->n_virtualization; k++)
            json_array_append_new(av, json_string(a->virtualization[k]));
        json_array_append_new(pa, json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:i, s:i, s:i}",
                                            "architecture", a->architecture, "virtualization", av,
                                            "cpu_millis_total", (json_int_t)a->cpu_millis_total,
                                            "cpu_millis_free", (json_int_t)a->cpu_millis_free,
                                            "memory_mb_total", (json_int_t)a->memory_mb_total,
                                            "memory_mb_free", (json_int_t)a->memory_mb_free,
                                            "gpu_total", a->gpu_total, "gpu_free", a->gpu_free,
                                            "workers", a->workers));
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:o, s:o, s:f, s:f}", "cpu_millis_total",
                     (json_int_t)cap->cpu_millis_total, "cpu_millis_free",
                     (json_int_t)cap->cpu_millis_free, "memory_mb_total",
                     (json_int_t)cap->memory_mb_total, "memory_mb_free",
                     (json_int_t)cap->memory_mb_free, "gpu_total", cap->gpu_total, "gpu_free",
                     cap->gpu_free, "active_workers", cap->active_workers, "virtualization", virt,
                     "per_arch", pa, "cpu_percent", finite_or_zero(cap->cpu_percent),
                     "memory_percent", finite_or_zero(cap->memory_percent));
}

static void on_report(oak_grpc_call_t *call, const ProtobufCMessage *m, void *ctx)
{
    root_t *r = ctx;
    const Oak__Cluster__V1__ReportRequest *req = (const void *)m;
    oak_err_t err = OAK_ERR_INIT;
    cluster_t *c = NULL;
    if (clusters_auth(r, req->cluster_id, req->session_token, &c, &err) < 0) {
        oak_grpc_fail_err(call, &err);
        oak_err_clear(&err);
        return;
    }
    if (req->ack_seq > c->last_seq) {
        oak_grpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                      "ack_seq is ahead of every command issued to this cluster");
        return;
    }
    if (clusters_ack(r, c, req->ack_seq, &err) < 0) {
        oak_grpc_fail_err(call, &err);
        oak_err_clear(&err);
        return;
    }
    if (c->lost) {
        log_info("cluster %s is back", c->name);
        c->lost = false;
    }
    c->last_seen = oak_wall_time();
    if (req->capacity) {
        json_auto_t *cap = cluster_rpc_capacity_json(req->capacity);
        clusters_set_capacity(r, c, cap);
        r->sched_dirty = true;
    }
    for (size_t i = 0; i < req->n_instances; i++) {
        const Oak__Cluster__V1__InstanceStatus *s = req->instances[i];
        json_auto_t *extra = json_object();
        if (s->worker_id && *s->worker_id)
            json_object_set_new(extra, "worker_id", json_string(s->worker_id));
        if (s->host_ip && *s->host_ip)
            json_object_set_new(extra, "host_ip", json_string(s->host_ip));
        if (s->cpu_percent > 0)
            json_object_set_new(extra, "cpu_percent", json_real(s->cpu_percent));
        if (s->memory_mb > 0)
            json_object_set_new(extra, "memory_mb", json_integer(s->memory_mb));
        inst_on_report(r, c, s->service_id, s->instance_number, s->status, s->status_detail,
                       s->generation, extra);
    }
    if (req->workers_included)
        relay_set_workers(r, c, req->workers, req->n_workers);
    for (size_t i = 0; i < req->n_logs; i++)
        relay_logs_result(r, c, req->logs[i]);
    if (clusters_save(r, c, &err) < 0) {
        log_warn("cluster %s: saving report: %s", c->name, err.msg);
        oak_err_clear(&err);
    }
    Oak__Cluster__V1__ReportReply rep = OAK__CLUSTER__V1__REPORT_REPLY__INIT;
    rep.last_seq = c->last_seq;
    oak_grpc_reply(call, &rep.base);
}

static void on_stream_close(oak_grpc_stream_t *s, void *data)
{
    root_t *r = data;
    for (size_t i = 0; i < r->clusters->n; i++) {
        cluster_t *c = r->clusters->v[i];
        if (c->stream == s) {
            log_info("cluster %s: command stream closed", c->name);
            clusters_detach_stream(r, c, s);
        }
    }
}

static void on_commands(oak_grpc_stream_t *s, const ProtobufCMessage *m, void *ctx)
{
    root_t *r = ctx;
    const Oak__Cluster__V1__CommandsRequest *req = (const void *)m;
    oak_err_t err = OAK_ERR_INIT;
    cluster_t *c = NULL;
    if (clusters_auth(r, req->cluster_id, req->session_token, &c, &err) < 0) {
        oak_grpc_stream_finish(s, oak_grpc_status_from_oak(err.code), err.msg);
        oak_err_clear(&err);
        return;
    }
    if (req->after_seq > c->last_seq) {
        oak_grpc_stream_finish(s, GRPC_STATUS_INVALID_ARGUMENT,
                               "after_seq is ahead of every command issued to this cluster");
        return;
    }
    oak_grpc_stream_on_close(s, on_stream_close, r);
    if (c->lost) {
        log_info("cluster %s is back", c->name);
        c->lost = false;
    }
    log_info("cluster %s: command stream open (after seq %llu, %llu issued)", c->name,
             (unsigned long long)req->after_seq, (unsigned long long)c->last_seq);
    clusters_attach_stream(r, c, s, req->after_seq);
    r->sched_dirty = true;
}

oak_grpc_server_t *cluster_rpc_start(root_t *r, const char *addr, oak_err_t *err)
{
    oak_grpc_server_t *s = oak_grpc_server_new(r->loop, addr, err);
    if (!s)
        return NULL;
    if (oak_grpc_server_add_unary(s, SVC "Join", &oak__cluster__v1__register_request__descriptor,
                                  &oak__cluster__v1__register_reply__descriptor, on_join, r,
                                  err) < 0 ||
        oak_grpc_server_add_unary(s, SVC "Report", &oak__cluster__v1__report_request__descriptor,
                                  &oak__cluster__v1__report_reply__descriptor, on_report, r,
                                  err) < 0 ||
        oak_grpc_server_add_stream(
            s, SVC "Commands", &oak__cluster__v1__commands_request__descriptor,
            &oak__cluster__v1__command__descriptor, on_commands, r, err) < 0) {
        oak_grpc_server_shutdown(s);
        return NULL;
    }
    oak_grpc_server_start(s);
    return s;
}

void cluster_rpc_tick(root_t *r)
{
    double now = oak_wall_time();
    for (size_t i = 0; i < r->clusters->n; i++) {
        cluster_t *c = r->clusters->v[i];
        if (c->lost || c->stream || c->last_seen <= 0)
            continue;
        /* a restarted root gives every known cluster a fresh grace period to
         * reconnect before its instances are moved; until then such a
         * cluster is simply inactive (not offered to the scheduler) */
        double since = c->last_seen > r->started_at ? c->last_seen : r->started_at;
        if (now - since > (double)(r->cluster_stale_s + r->cluster_grace_s)) {
            oak_err_t err = OAK_ERR_INIT;
            c->lost = true;
            if (clusters_save(r, c, &err) < 0) {
                log_warn("cluster %s: %s", c->name, err.msg);
                oak_err_clear(&err);
            }
            inst_cluster_lost(r, c);
        }
    }
}
