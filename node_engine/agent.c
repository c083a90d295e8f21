/* The worker agent (see agent.h): registration thread with backoff, the
 * node file, the MQTT session and the periodic reports. Everything but
 * the registration thread runs on the loop thread; the thread owns its
 * reg_t until it posts it back, and agent_stop joins it. */
#include "node_engine/agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_httpc.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_mqtt.h"
#include "node_engine/nodeinfo.h"

#define TICK_MS             1000
#define INFO_SAMPLE_MS      5000 /* how often information is sampled */
#define REG_TIMEOUT_MS      10000
#define REG_BACKOFF_MIN_MS  500
#define REG_BACKOFF_MAX_MS  30000
#define RESOURCES_PER_MSG   1000 /* keeps a resources report far below 256 KiB */
#define NODE_FILE           "node.json"
#define DEFAULT_KEEPALIVE_S 5

/* One registration attempt series, owned by its thread until posted. */
typedef struct {
    agent_t *a;
    char *url, *token, *node_name, *node_ip, *cluster_address, *state_dir, *runc_path;
    char *node_id; /* stored id or NULL */
    int cluster_port, node_port;
    int max_cores;
    long long max_memory_mb;
    /* result */
    bool fatal;
    json_t *answer; /* the 200 body */
    char msg[600];
} reg_t;

struct agent {
    oak_loop_t *loop;
    ninst_t *ni;
    agent_fatal_fn fatal;
    void *ctx;
    /* options */
    char *cluster_address, *worker_token, *state_dir, *node_name, *node_ip, *runc_path;
    int cluster_port, node_port, info_period_s, usage_period_s, heartbeat_s;
    /* registration */
    char node_id[WP_NODE_ID_MAX + 1];
    char *mqtt_user, *mqtt_password;
    int mqtt_port, keepalive_s;
    reg_t *reg;
    pthread_t reg_th;
    bool reg_active;
    int cancel; /* atomic: the registration thread gives up */
    bool stopping;
    /* MQTT */
    oak_mqtt_t *mqtt;
    bool connected;
    bool reregister_pending;
    uint64_t last_pub_ms, last_info_ms, next_sample_ms, next_usage_ms;
    nodeinfo_sampler_t sampler;
    nodeinfo_t sent; /* what the cluster was told last */
    uint64_t tick_timer;
};

static void start_registration(agent_t *a);

/* ---- node file ---- */

static char *node_file(const char *state_dir)
{
    return xasprintf("%s/%s", state_dir, NODE_FILE);
}

static void load_node_file(agent_t *a)
{
    _cleanup_free_ char *path = node_file(a->state_dir);
    json_auto_t *j = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (access(path, F_OK) != 0)
        return;
    if (oak_json_load_file(path, 65536, &j, &err) < 0) {
        log_warn("ignoring %s: %s", path, err.msg);
        oak_err_clear(&err);
        return;
    }
    const char *id = oak_json_str(j, "id");
    if (id && wp_node_id_valid(id))
        snprintf(a->node_id, sizeof(a->node_id), "%s", id);
}

static int save_node_file(agent_t *a, oak_err_t *err)
{
    _cleanup_free_ char *path = node_file(a->state_dir);
    json_auto_t *j = json_pack(
        "{s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:i, s:f}", "id", a->node_id, "host", a->node_name,
        "cluster_address", a->cluster_address, "cluster_port", a->cluster_port, "mqtt_username",
        a->mqtt_user, "mqtt_password", a->mqtt_password, "mqtt_port", a->mqtt_port,
        "mqtt_keepalive_s", a->keepalive_s, "registered_at", oak_wall_time());
    return oak_json_save_file(path, j, 0600, err);
}

/* ---- registration thread ---- */

static bool cancelled(const reg_t *r)
{
    return __atomic_load_n(&r->a->cancel, __ATOMIC_ACQUIRE) != 0;
}

/* Sleeps ms in short slices; false when cancelled meanwhile. */
static bool nap(const reg_t *r, long ms)
{
    for (long t = 0; t < ms; t += 100) {
        if (cancelled(r))
            return false;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return !cancelled(r);
}

/* The local address the kernel would use to reach host:port. */
static int route_source(const char *host, int port, char *out, size_t len, oak_err_t *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g != 0)
        return oak_err_set(err, OAK_E_UNAVAILABLE, "cannot resolve %s: %s", host, gai_strerror(g));
    int rc = -1;
    for (struct addrinfo *ai = res; ai && rc < 0; ai = ai->ai_next) {
        _cleanup_close_ int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
            getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
            continue;
        const void *addr = ss.ss_family == AF_INET6
                               ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                               : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
        if (inet_ntop(ss.ss_family, addr, out, (socklen_t)len))
            rc = 0;
    }
    freeaddrinfo(res);
    if (rc < 0)
        return oak_err_set(err, OAK_E_UNAVAILABLE, "no route to %s", host);
    return 0;
}

/* One attempt. Returns 0 when registered (r->answer set), 1 when it is
 * worth retrying (r->msg says why), -1 when fatal (r->msg). */
static int register_once(reg_t *r)
{
    oak_err_t err = OAK_ERR_INIT;
    char ip[INET6_ADDRSTRLEN] = "";
    if (r->node_ip && *r->node_ip) {
        snprintf(ip, sizeof(ip), "%s", r->node_ip);
    } else if (route_source(r->cluster_address, r->cluster_port, ip, sizeof(ip), &err) < 0) {
        snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
        oak_err_clear(&err);
        return 1;
    }
    nodeinfo_sampler_t s = {.max_cores = r->max_cores, .max_memory_mb = r->max_memory_mb};
    nodeinfo_t info;
    if (nodeinfo_read(&s, r->state_dir, r->runc_path, &info, &err) < 0) {
        snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
        oak_err_clear(&err);
        return 1;
    }
    char *virt[] = {"container"};
    json_auto_t *sys = json_pack("{s:s}", "kernel_version", info.kernel_version);
    if (info.os_version[0])
        json_object_set_new(sys, "os_version", json_string(info.os_version));
    wp_register_t reg = {.host = r->node_name,
                         .ip = ip,
                         .node_id = r->node_id,
                         .arch = info.architecture,
                         .virt = virt,
                         .nvirt = 1,
                         .port = r->node_port,
                         .cpu_cores = info.cpu_cores,
                         .memory_mb = info.memory_mb,
                         .gpus = info.gpus,
                         .system_info = sys};
    json_auto_t *body = wp_build_register(&reg);
    long status = 0;
    json_t *out = NULL;
    if (oak_httpc_json("POST", r->url, r->token, body, REG_TIMEOUT_MS, &status, &out, &err) < 0) {
        snprintf(r->msg, sizeof(r->msg), "cluster manager at %s unreachable: %s", r->url, err.msg);
        oak_err_clear(&err);
        return 1;
    }
    const char *m = oak_json_str(out, "message");
    if (status == 200) {
        const char *id = oak_json_str(out, "id");
        if (!id || !wp_node_id_valid(id) || !oak_json_str(out, "mqtt_password")) {
            snprintf(r->msg, sizeof(r->msg),
                     "the cluster's registration answer lacks an id or "
                     "MQTT credentials");
            json_decref(out);
            return 1;
        }
        r->answer = out;
        return 0;
    }
    int rc = 1;
    if (status == 401) {
        snprintf(r->msg, sizeof(r->msg),
                 "the cluster manager at %s refused the worker token (401): set worker_token "
                 "(OAK_WORKER_TOKEN) to the cluster's worker join token",
                 r->url);
        rc = -1;
    } else if (status == 400 || status == 413 || status == 422) {
        json_t *e0 = json_array_get(json_object_get(out, "errors"), 0);
        snprintf(r->msg, sizeof(r->msg),
                 "the cluster manager refused the node description (%ld): %s%s%s%s", status,
                 m ? m : "", e0 ? " (" : "", e0 ? oak_json_str(e0, "field") : "", e0 ? ")" : "");
        rc = -1;
    } else {
        snprintf(r->msg, sizeof(r->msg), "registration answered %ld%s%s", status, m ? ": " : "",
                 m ? m : "");
    }
    json_decref(out);
    return rc;
}

static void reg_done(oak_loop_t *loop, void *data);

static void *reg_main(void *arg)
{
    reg_t *r = arg;
    long backoff = REG_BACKOFF_MIN_MS;
    char last[sizeof(r->msg)] = "";
    for (;;) {
        if (cancelled(r))
            return NULL;
        int rc = register_once(r);
        if (rc <= 0) {
            r->fatal = rc < 0;
            break;
        }
        if (strcmp(last, r->msg) != 0) /* say it once per distinct reason */
            log_warn("registration failed, retrying: %s", r->msg);
        snprintf(last, sizeof(last), "%s", r->msg);
        long jitter = backoff / 5 > 0 ? random() % (backoff / 5) : 0;
        if (!nap(r, backoff + jitter))
            return NULL;
        backoff = backoff * 2 > REG_BACKOFF_MAX_MS ? REG_BACKOFF_MAX_MS : backoff * 2;
    }
    oak_loop_post(r->a->loop, reg_done, r);
    return NULL;
}

static void reg_free(reg_t *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->token);
    free(r->node_name);
    free(r->node_ip);
    free(r->cluster_address);
    free(r->state_dir);
    free(r->runc_path);
    free(r->node_id);
    json_decref(r->answer);
    free(r);
}

static void start_registration(agent_t *a)
{
    if (a->reg_active || a->stopping)
        return;
    reg_t *r = xcalloc(1, sizeof(*r));
    r->a = a;
    r->url = xasprintf(strchr(a->cluster_address, ':') ? "http://[%s]:%d/api/node/register"
                                                       : "http://%s:%d/api/node/register",
                       a->cluster_address, a->cluster_port);
    r->token = xstrdup(a->worker_token);
    r->node_name = xstrdup(a->node_name);
    r->node_ip = a->node_ip ? xstrdup(a->node_ip) : NULL;
    r->cluster_address = xstrdup(a->cluster_address);
    r->state_dir = xstrdup(a->state_dir);
    r->runc_path = xstrdup(a->runc_path);
    r->node_id = a->node_id[0] ? xstrdup(a->node_id) : NULL;
    r->cluster_port = a->cluster_port;
    r->node_port = a->node_port;
    r->max_cores = a->sampler.max_cores;
    r->max_memory_mb = a->sampler.max_memory_mb;
    a->reg = r;
    __atomic_store_n(&a->cancel, 0, __ATOMIC_RELEASE);
    if (pthread_create(&a->reg_th, NULL, reg_main, r) != 0) {
        log_error("cannot start the registration thread: %s", strerror(errno));
        a->reg = NULL;
        reg_free(r);
        return;
    }
    a->reg_active = true;
}

/* ---- MQTT ---- */

static void publish(agent_t *a, wp_kind_t kind, json_t *payload)
{
    _cleanup_free_ char *topic = wp_topic(a->node_id, kind);
    _cleanup_free_ char *s = oak_json_dump(payload);
    oak_err_t err = OAK_ERR_INIT;
    json_decref(payload);
    if (!a->mqtt || !topic)
        return;
    if (oak_mqtt_publish(a->mqtt, topic, s, strlen(s), 1, false, &err) < 0) {
        log_warn("publish %s: %s", topic, err.msg);
        oak_err_clear(&err);
        return;
    }
    a->last_pub_ms = oak_now_ms();
}

static void publish_state(agent_t *a)
{
    wp_inst_t *v = NULL;
    size_t n = ninst_state(a->ni, &v);
    publish(a, WP_STATE, wp_build_state(v, n));
    free(v);
}

static void publish_full_info(agent_t *a)
{
    nodeinfo_t cur;
    oak_err_t err = OAK_ERR_INIT;
    if (nodeinfo_read(&a->sampler, a->state_dir, a->runc_path, &cur, &err) < 0) {
        log_warn("node information: %s", err.msg);
        oak_err_clear(&err);
        return;
    }
    publish(a, WP_INFORMATION, nodeinfo_json(&cur));
    a->sent = cur;
    a->last_info_ms = oak_now_ms();
}

/* Copies into base the members of cur named in diff (what was sent). */
static void apply_sent(nodeinfo_t *base, const nodeinfo_t *cur, const json_t *diff)
{
    if (json_object_get(diff, "cpu_percent"))
        base->cpu_percent = cur->cpu_percent;
    if (json_object_get(diff, "cpu_cores"))
        base->cpu_cores = cur->cpu_cores;
    if (json_object_get(diff, "load1"))
        base->load1 = cur->load1;
    if (json_object_get(diff, "memory"))
        base->memory_mb = cur->memory_mb;
    if (json_object_get(diff, "memory_total"))
        base->memory_total_mb = cur->memory_total_mb;
    if (json_object_get(diff, "disk_percent"))
        base->disk_percent = cur->disk_percent;
    if (json_object_get(diff, "gpus"))
        base->gpus = cur->gpus;
    if (json_object_get(diff, "architecture"))
        memcpy(base->architecture, cur->architecture, sizeof(base->architecture));
    if (json_object_get(diff, "kernel_version"))
        memcpy(base->kernel_version, cur->kernel_version, sizeof(base->kernel_version));
    if (json_object_get(diff, "virtualization"))
        base->container = cur->container;
}

static void info_tick(agent_t *a, uint64_t now)
{
    nodeinfo_t cur;
    oak_err_t err = OAK_ERR_INIT;
    if (nodeinfo_read(&a->sampler, a->state_dir, a->runc_path, &cur, &err) < 0) {
        log_warn("node information: %s", err.msg);
        oak_err_clear(&err);
        return;
    }
    bool periodic = now - a->last_info_ms >= (uint64_t)a->info_period_s * 1000;
    json_t *d = nodeinfo_diff(&a->sent, &cur, periodic);
    if (periodic)
        a->last_info_ms = now;
    if (json_object_size(d) == 0) {
        json_decref(d);
        return;
    }
    apply_sent(&a->sent, &cur, d);
    publish(a, WP_INFORMATION, d);
}

static void usage_tick(agent_t *a)
{
    wp_usage_t *v = NULL;
    size_t n = ninst_usage(a->ni, true, &v);
    for (size_t i = 0; i < n; i += RESOURCES_PER_MSG)
        publish(a, WP_RESOURCES,
                wp_build_resources(v + i, n - i > RESOURCES_PER_MSG ? RESOURCES_PER_MSG : n - i));
    free(v);
}

/* Answers a logs request from the cluster on nodes/<id>/logs. */
static void answer_logs(agent_t *a, const wp_logs_req_t *q)
{
    wp_logs_t l = {.ok = true};
    snprintf(l.request_id, sizeof(l.request_id), "%s", q->request_id);
    oak_err_t err = OAK_ERR_INIT;
    char *text = NULL;
    if (ninst_logs(a->ni, q->service_id, q->instance_number, q->tail, &text, &err) < 0) {
        l.ok = false;
        l.error_code = err.code == OAK_E_NOT_FOUND ? 404 : 500;
        snprintf(l.error, sizeof(l.error), "%s", err.msg);
        oak_err_clear(&err);
    } else {
        l.logs = text;
        l.logs_len = strlen(text);
    }
    publish(a, WP_LOGS, wp_build_logs(&l));
    free(text);
}

static void on_msg(const char *topic, const void *payload, size_t len, void *ctx)
{
    agent_t *a = ctx;
    char id[WP_NODE_ID_MAX + 1];
    wp_kind_t kind;
    oak_err_t err = OAK_ERR_INIT;
    if (wp_topic_parse(topic, id, &kind) < 0 || strcmp(id, a->node_id) != 0)
        return;
    if (kind == WP_DEPLOY) {
        wp_deploy_t d;
        if (wp_parse_deploy(payload, len, &d, &err) == 0) {
            ninst_deploy(a->ni, &d, payload, len);
            wp_deploy_clear(&d);
            return;
        }
    } else if (kind == WP_DELETE) {
        wp_delete_t d;
        if (wp_parse_delete(payload, len, &d, &err) == 0) {
            ninst_delete(a->ni, &d);
            return;
        }
    } else if (kind == WP_LOGS_REQ) {
        wp_logs_req_t q;
        if (wp_parse_logs_req(payload, len, &q, &err) == 0) {
            answer_logs(a, &q);
            return;
        }
    } else if (kind == WP_STATE_REQ) {
        wp_state_req_t q;
        if (wp_parse_state_req(payload, len, &q, &err) == 0) {
            log_info("the cluster asks for our state%s%s", q.reason[0] ? ": " : "", q.reason);
            publish_state(a);
            return;
        }
    } else {
        return;
    }
    json_t *e0 = json_array_get(err.details, 0);
    log_warn("dropped message on %s: %s%s%s", topic, err.msg, e0 ? ": " : "",
             e0 ? oak_json_str(e0, "field") : "");
    oak_err_clear(&err);
}

static void reregister(oak_loop_t *loop, void *data)
{
    agent_t *a = data;
    a->reregister_pending = false;
    if (a->stopping || !a->mqtt)
        return;
    oak_mqtt_free(a->mqtt);
    a->mqtt = NULL;
    a->connected = false;
    start_registration(a);
}

static void on_conn(bool connected, const char *reason, void *ctx)
{
    agent_t *a = ctx;
    a->connected = connected;
    if (!connected) {
        log_warn("MQTT: not connected: %s", reason ? reason : "unknown");
        if (reason &&
            (strstr(reason, "bad user name or password") || strstr(reason, "not authorized")) &&
            !a->reregister_pending) {
            /* the cluster forgot our credentials (e.g. a new broker): ask
             * for new ones */
            log_warn("MQTT: the broker refuses our credentials; registering again");
            a->reregister_pending = true;
            oak_loop_post(a->loop, reregister, a);
        }
        return;
    }
    log_info("MQTT: connected as %s", a->node_id);
    publish(a, WP_STATUS, wp_build_status(true));
    publish_full_info(a);
    publish_state(a);
    uint64_t now = oak_now_ms();
    a->next_sample_ms = now + INFO_SAMPLE_MS;
    a->next_usage_ms = now + (uint64_t)a->usage_period_s * 1000;
}

static int start_mqtt(agent_t *a, oak_err_t *err)
{
    _cleanup_free_ char *uri =
        xasprintf(strchr(a->cluster_address, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d",
                  a->cluster_address, a->mqtt_port);
    _cleanup_free_ char *will = wp_topic(a->node_id, WP_STATUS);
    _cleanup_free_ char *sub = xasprintf("nodes/%s/control/#", a->node_id);
    json_auto_t *wj = wp_build_status(false);
    _cleanup_free_ char *will_payload = oak_json_dump(wj);
    const char *subs[] = {sub, NULL};
    oak_mqtt_opts_t o = {.uri = uri,
                         .client_id = a->node_id,
                         .username = a->mqtt_user,
                         .password = a->mqtt_password,
                         .keepalive_s = a->keepalive_s,
                         .will_topic = will,
                         .will_payload = will_payload,
                         .clean_session = false,
                         .subscriptions = subs};
    return oak_mqtt_new(a->loop, &o, on_msg, on_conn, a, &a->mqtt, err);
}

static void reg_done(oak_loop_t *loop, void *data)
{
    reg_t *r = data;
    agent_t *a = r->a;
    if (a->stopping)
        return; /* agent_stop joined the thread; agent_free frees r */
    pthread_join(a->reg_th, NULL);
    a->reg_active = false;
    a->reg = NULL;
    if (r->fatal) {
        log_error("%s", r->msg);
        if (a->fatal)
            a->fatal(r->msg, a->ctx);
        reg_free(r);
        return;
    }
    const json_t *ans = r->answer;
    const char *id = oak_json_str(ans, "id");
    bool same = strcmp(a->node_id, id) == 0;
    snprintf(a->node_id, sizeof(a->node_id), "%s", id);
    free(a->mqtt_user);
    free(a->mqtt_password);
    a->mqtt_user =
        xstrdup(oak_json_str(ans, "mqtt_username") ? oak_json_str(ans, "mqtt_username") : id);
    a->mqtt_password = xstrdup(oak_json_str(ans, "mqtt_password"));
    const json_t *bp = json_object_get(ans, "MQTT_BROKER_PORT");
    a->mqtt_port = json_is_string(bp) ? atoi(json_string_value(bp))
                                      : (int)oak_json_int(ans, "MQTT_BROKER_PORT", 10003);
    if (a->mqtt_port <= 0 || a->mqtt_port > 65535)
        a->mqtt_port = 10003;
    a->keepalive_s = (int)oak_json_int(ans, "mqtt_keepalive_s", DEFAULT_KEEPALIVE_S);
    if (a->keepalive_s <= 0 || a->keepalive_s > 3600)
        a->keepalive_s = DEFAULT_KEEPALIVE_S;
    reg_free(r);
    oak_err_t err = OAK_ERR_INIT;
    if (save_node_file(a, &err) < 0) {
        log_warn("cannot save the node file: %s", err.msg);
        oak_err_clear(&err);
    }
    log_info("registered with the cluster as %s%s (broker port %d, keepalive %d s)", a->node_id,
             same ? " (same id as before)" : "", a->mqtt_port, a->keepalive_s);
    printf("node-engine registered node_id=%s host=%s\n", a->node_id, a->node_name);
    fflush(stdout);
    if (start_mqtt(a, &err) < 0) {
        log_error("MQTT: %s", err.msg);
        if (a->fatal)
            a->fatal(err.msg, a->ctx);
        oak_err_clear(&err);
    }
}

/* ---- periodic work ---- */

static void tick(oak_loop_t *loop, void *data)
{
    agent_t *a = data;
    a->tick_timer = 0;
    if (a->stopping)
        return;
    uint64_t now = oak_now_ms();
    if (a->mqtt && a->connected) {
        if (now >= a->next_sample_ms) {
            info_tick(a, now);
            a->next_sample_ms = now + INFO_SAMPLE_MS;
        }
        if (now >= a->next_usage_ms) {
            usage_tick(a);
            a->next_usage_ms = now + (uint64_t)a->usage_period_s * 1000;
        }
        if (now - a->last_pub_ms >= (uint64_t)a->heartbeat_s * 1000)
            publish(a, WP_STATUS, wp_build_status(true));
    }
    a->tick_timer = oak_loop_add_timer(loop, TICK_MS, tick, a);
}

/* ---- public ---- */

int agent_start(oak_loop_t *loop, const agent_opts_t *o, ninst_t *ni, agent_fatal_fn fatal,
                void *ctx, agent_t **out, oak_err_t *err)
{
    if (!o->cluster_address || !*o->cluster_address)
        return oak_err_set(err, OAK_E_INVALID, "the cluster address is required");
    if (!o->worker_token || !*o->worker_token)
        return oak_err_set(err, OAK_E_INVALID, "the worker token is required");
    if (!o->node_name || !*o->node_name || !o->state_dir)
        return oak_err_set(err, OAK_E_INVALID, "node name and state directory are required");
    agent_t *a = xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->ni = ni;
    a->fatal = fatal;
    a->ctx = ctx;
    a->cluster_address = xstrdup(o->cluster_address);
    a->worker_token = xstrdup(o->worker_token);
    a->state_dir = xstrdup(o->state_dir);
    a->node_name = xstrdup(o->node_name);
    a->node_ip = o->node_ip && *o->node_ip ? xstrdup(o->node_ip) : NULL;
    a->runc_path = xstrdup(o->runc_path ? o->runc_path : "runc");
    a->cluster_port = o->cluster_port;
    a->node_port = o->node_port > 0 ? o->node_port : 50103;
    a->info_period_s = o->info_period_s > 0 ? o->info_period_s : 30;
    a->usage_period_s = o->usage_period_s > 0 ? o->usage_period_s : 10;
    a->heartbeat_s = o->heartbeat_s > 0 ? o->heartbeat_s : 3;
    a->sampler.max_cores = o->max_cpu_cores > 0 ? o->max_cpu_cores : 0;
    a->sampler.max_memory_mb = o->max_memory_mb > 0 ? o->max_memory_mb : 0;
    load_node_file(a);
    srandom((unsigned)(oak_now_us() ^ (uint64_t)getpid()));
    start_registration(a);
    a->tick_timer = oak_loop_add_timer(loop, TICK_MS, tick, a);
    *out = a;
    return 0;
}

void agent_report(agent_t *a, const wp_job_t *job)
{
    if (!a || !a->mqtt) {
        log_debug("instance %s/%d: %s not published (not registered yet)", job->service_id,
                  job->instance_number, wp_status_name(job->status));
        return;
    }
    publish(a, WP_JOB, wp_build_job(job));
}

void agent_say_offline(agent_t *a)
{
    if (a && a->mqtt)
        publish(a, WP_STATUS, wp_build_status(false));
}

const char *agent_node_id(const agent_t *a)
{
    return a && a->node_id[0] ? a->node_id : NULL;
}

void agent_stop(agent_t *a)
{
    if (!a || a->stopping)
        return;
    a->stopping = true;
    __atomic_store_n(&a->cancel, 1, __ATOMIC_RELEASE);
    if (a->reg_active) {
        pthread_join(a->reg_th, NULL);
        a->reg_active = false;
    }
    if (a->tick_timer)
        oak_loop_cancel_timer(a->loop, a->tick_timer);
    a->tick_timer = 0;
    if (a->mqtt)
        oak_mqtt_free(a->mqtt);
    a->mqtt = NULL;
}

void agent_free(agent_t *a)
{
    if (!a)
        return;
    agent_stop(a);
    reg_free(a->reg);
    free(a->cluster_address);
    free(a->worker_token);
    free(a->state_dir);
    free(a->node_name);
    free(a->node_ip);
    free(a->runc_path);
    free(a->mqtt_user);
    free(a->mqtt_password);
    free(a);
}
