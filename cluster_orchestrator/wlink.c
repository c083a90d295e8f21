/* Worker link: MQTT dispatch, liveness and HTTP registration (see wlink.h).
 * A worker is online from its first message after connecting until its
 * last will ({"status":"offline"}, published by the broker 1.5 keepalives
 * after the connection dies) or worker_dead_s of silence. Whenever a worker
 * comes back online by any message but its connect sequence (status, then
 * state), it is asked for its state (control/state), so that instances moved
 * away meanwhile are deleted there and deploys it missed are sent again;
 * the same happens for every worker after this manager restarts. */
#include "cluster_orchestrator/wlink.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "cluster_orchestrator/broker.h"
#include "cluster_orchestrator/cinstances.h"
#include "cluster_orchestrator/crelay.h"
#include "cluster_orchestrator/root_link.h"
#include "cluster_orchestrator/worker_proto.h"
#include "cluster_orchestrator/workers.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_jwt.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_mqtt.h"

int wlink_publish(cm_t *cm, const char *worker_id, wp_kind_t kind, json_t *payload,
                  oak_err_t *err)
{
    _cleanup_free_ char *topic = wp_topic(worker_id, kind);
    _cleanup_free_ char *s = oak_json_dump(payload);
    json_decref(payload);
    if (!cm->mqtt)
        return oak_err_set(err, OAK_E_UNAVAILABLE, "not connected to the broker");
    return oak_mqtt_publish(cm->mqtt, topic, s, strlen(s), 1, false, err);
}

static void request_state(cm_t *cm, worker_t *w, const char *reason)
{
    wp_state_req_t q;
    oak_err_t err = OAK_ERR_INIT;
    snprintf(q.reason, sizeof(q.reason), "%s", reason);
    if (wlink_publish(cm, w->id, WP_STATE_REQ, wp_build_state_req(&q), &err) < 0) {
        log_warn("asking worker %s for its state: %s", w->id, err.msg);
        oak_err_clear(&err);
    }
}

/* resync: ask the worker for its state when it comes back online (not
 * needed when the message is its state, or its connect status, which the
 * worker follows with its state). */
static void set_online(cm_t *cm, worker_t *w, bool online, const char *why, bool resync)
{
    if (w->online == online)
        return;
    bool was_unconfirmed = w->unconfirmed;
    w->online = online;
    w->unconfirmed = false;
    cm->capacity_dirty = true;
    cm->workers_dirty = true;
    log_info("worker %s (%s) is %s%s%s", w->host ? w->host : "", w->id,
             online ? "online" : "offline", why ? ": " : "", why ? why : "");
    if (!online)
        cinst_on_worker_lost(cm, w->id, why ? why : "offline");
    else if (resync)
        request_state(cm, w,
                      was_unconfirmed ? "the cluster manager restarted" : "back online after silence");
}

static void on_msg(const char *topic, const void *payload, size_t len, void *ctx)
{
    cm_t *cm = ctx;
    char id[WP_NODE_ID_MAX + 1];
    wp_kind_t kind;
    oak_err_t err = OAK_ERR_INIT;
    if (wp_topic_parse(topic, id, &kind) < 0)
        return;
    worker_t *w = workers_get(cm->workers, id);
    if (!w) {
        log_debug("message on %s from an unknown worker ignored", topic);
        return;
    }
    w->last_seen = oak_wall_time();
    switch (kind) {
    case WP_STATUS: {
        bool online = false;
        if (wp_parse_status(payload, len, &online, &err) < 0)
            break;
        set_online(cm, w, online, online ? NULL : "its connection to the broker broke (last will)",
                   false);
        return;
    }
    case WP_INFORMATION: {
        json_t *info = NULL;
        if (wp_parse_information(payload, len, (int)(w->cpu_total / 1000), &info, &err) < 0)
            break;
        if (worker_apply_info(w, info))
            cm->capacity_dirty = true;
        json_decref(info);
        set_online(cm, w, true, NULL, true);
        return;
    }
    case WP_STATE: {
        wp_inst_t *v = NULL;
        size_t n = 0;
        if (wp_parse_state(payload, len, &v, &n, &err) < 0)
            break;
        set_online(cm, w, true, NULL, false);
        cinst_on_worker_state(cm, w->id, v, n);
        free(v);
        return;
    }
    case WP_JOB: {
        wp_job_t job;
        if (wp_parse_job(payload, len, &job, &err) < 0)
            break;
        set_online(cm, w, true, NULL, true);
        cinst_on_worker_status(cm, w->id, job.service_id, job.instance_number, job.generation,
                               wp_status_name(job.status), job.status_detail);
        return;
    }
    case WP_RESOURCES:
        set_online(cm, w, true, NULL, true);
        return;
    case WP_LOGS:
        crelay_logs_answer(cm, w->id, payload, len);
        return;
    default:
        return;
    }
    log_warn("dropped message on %s: %s", topic, err.msg);
    oak_err_clear(&err);
}

static void on_conn(bool connected, const char *reason, void *ctx)
{
    cm_t *cm = ctx;
    if (connected) {
        /* deploys and deletes may have been lost while we were away (or
         * before a restart): every worker we know reconciles with us */
        size_t asked = 0;
        for (size_t i = 0; i < workers_count(cm->workers); i++) {
            worker_t *w = workers_at(cm->workers, i);
            if (w->online || w->unconfirmed) {
                request_state(cm, w,
                              w->unconfirmed ? "the cluster manager restarted"
                                             : "the cluster manager reconnected to the broker");
                asked++;
            }
        }
        log_info("connected to the MQTT broker; asked %zu worker(s) for their state", asked);
    } else
        log_warn("MQTT broker connection lost: %s", reason ? reason : "unknown");
}

int wlink_start(cm_t *cm, const char *uri, const char *user, const char *password, oak_err_t *err)
{
    static const char *const subs[] = {"nodes/+/status", "nodes/+/information",    "nodes/+/state",
                                       "nodes/+/job",    "nodes/+/jobs/resources", "nodes/+/logs", NULL};
    _cleanup_free_ char *cid = xasprintf("cluster-manager-%s", cm->cluster_name);
    oak_mqtt_opts_t o = {.uri = uri,
                         .client_id = cid,
                         .username = user,
                         .password = password,
                         .keepalive_s = 5,
                         .clean_session = false,
                         .subscriptions = subs};
    return oak_mqtt_new(cm->loop, &o, on_msg, on_conn, cm, &cm->mqtt, err);
}

void wlink_tick(cm_t *cm)
{
    double now = oak_wall_time();
    for (size_t i = 0; i < workers_count(cm->workers); i++) {
        worker_t *w = workers_at(cm->workers, i);
        if (w->online && now - w->last_seen > (double)cm->worker_dead_s)
            set_online(cm, w, false, "silent", false);
        else if (w->unconfirmed && now - cm->started > (double)cm->worker_dead_s) {
            /* known from before the restart but silent since: move its instances */
            w->unconfirmed = false;
            cinst_on_worker_lost(cm, w->id, "not heard from since the cluster manager restarted");
        }
    }
}

/* POST /api/node/register */
static void h_register(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    cm_t *cm = ctx;
    oak_err_t err = OAK_ERR_INIT;
    wp_register_t reg;
    /* the token is checked before anything else, so an unauthenticated
     * caller learns nothing about the body's rules */
    const char *auth = oak_http_req_header(req, "Authorization");
    _cleanup_free_ char *tok = NULL;
    if (auth && !strncasecmp(auth, "Bearer ", 7)) {
        tok = xstrdup(auth + 7);
    } else {
        json_auto_t *j = json_loadb(req->body, req->body_len, 0, NULL);
        if (oak_json_str(j, "token"))
            tok = xstrdup(oak_json_str(j, "token"));
    }
    if (!tok || strlen(tok) != strlen(cm->worker_token) ||
        CRYPTO_memcmp(tok, cm->worker_token, strlen(tok)) != 0) {
        oak_http_resp_errorf(resp, OAK_E_UNAUTH, "a valid worker join token is required");
        return;
    }
    if (wp_parse_register(req->body, req->body_len, &reg, &err) < 0) {
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return;
    }
    worker_t *w = NULL;
    if (reg.node_id && *reg.node_id) {
        w = workers_get(cm->workers, reg.node_id);
        if (w && w->host && strcmp(w->host, reg.host) != 0)
            w = NULL; /* an id that belongs to another host: register afresh */
    }
    if (!w) {
        worker_t *same = workers_by_host(cm->workers, reg.host);
        if (same && same->online) {
            wp_register_clear(&reg);
            oak_http_resp_errorf(resp, OAK_E_CONFLICT,
                                 "a live worker named '%s' is already registered", reg.host);
            return;
        }
        w = same ? same : workers_add(cm->workers, NULL, reg.host);
    }
    json_auto_t *info = json_pack("{s:i, s:I, s:i, s:s}", "cpu_cores", reg.cpu_cores, "memory",
                                  (json_int_t)reg.memory_mb, "gpus", reg.gpus, "architecture",
                                  reg.arch ? reg.arch : "amd64");
    json_t *virt = json_array();
    for (size_t i = 0; i < reg.nvirt; i++)
        json_array_append_new(virt, json_string(reg.virt[i]));
    json_object_set_new(info, "virtualization", virt);
    worker_apply_info(w, info);
    free(w->ip);
    w->ip = xstrdup(reg.ip ? reg.ip : req->peer_ip);
    wp_register_clear(&reg);
    _cleanup_free_ char *password = oak_random_token(24);
    if (broker_add_worker(cm->broker, w->id, password, &err) < 0 ||
        workers_save(cm->store, w, &err) < 0) {
        log_error("registering worker %s: %s", w->id, err.msg);
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return;
    }
    /* registering is a sign of life: the worker counts as online (with the
     * capacity it declared) until its MQTT session says otherwise or it
     * stays silent for worker_dead_s */
    w->last_seen = oak_wall_time();
    set_online(cm, w, true, NULL, false); /* it sends its state once connected */
    cm->capacity_dirty = true;
    cm->workers_dirty = true;
    log_info("worker %s registered as %s from %s", w->host, w->id, w->ip);
    char port[16];
    snprintf(port, sizeof(port), "%d", cm->mqtt_port);
    oak_http_resp_json(resp, 200,
                       json_pack("{s:s, s:s, s:s, s:s, s:i}", "id", w->id, "MQTT_BROKER_PORT", port,
                                 "mqtt_username", w->id, "mqtt_password", password,
                                 "mqtt_keepalive_s", cm->worker_keepalive_s));
}

static void h_status(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    cm_t *cm = ctx;
    size_t online = 0;
    for (size_t i = 0; i < workers_count(cm->workers); i++)
        online += workers_at(cm->workers, i)->online;
    oak_http_resp_json(resp, 200,
                       json_pack("{s:s, s:s, s:b, s:I, s:I}", "cluster_name", cm->cluster_name,
                                 "cluster_id", root_link_cluster_id(cm->root), "connected_to_root",
                                 root_link_connected(cm->root), "workers",
                                 (json_int_t)workers_count(cm->workers), "workers_online",
                                 (json_int_t)online));
}

const oak_http_route_t wlink_routes[] = {
    {"POST", "/api/node/register", h_register},
    {"GET", "/api/cluster/status", h_status},
};
const size_t wlink_nroutes = sizeof(wlink_routes) / sizeof(wlink_routes[0]);
