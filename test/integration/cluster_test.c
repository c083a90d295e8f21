/* Integration tests of the cluster tier: the real system-manager, the real
 * cluster-manager and a real mosquitto (dynamic security), with test
 * workers speaking the worker protocol over raw MQTT (test/common's
 * th_mqtt client) and HTTP. Covers worker registration with and without a
 * valid token, placement through both schedulers to RUNNING, undeploy,
 * a worker dying (rescheduled elsewhere within 5 s), a forged publish on
 * another worker's topic (dropped by the broker, no effect), restarts of
 * the cluster-manager and of the root with nothing lost, a deploy the
 * worker never got (sent again after a restart), and a worker counted dead
 * by silence that speaks again (its old copy is deleted). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"
#include "lib/oak_httpc.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"
#include "test/common/harness.h"
#include "test/common/mosquitto.h"

#define WORKER_TOKEN "test-worker-token-0123456789"
#define MQ_ADMIN     "oak-admin"
#define MQ_PASSWORD  "mq-admin-password"

typedef struct {
    char id[32];
    char host[32];
    th_mqtt_t *c;
    int running; /* instances it runs */
    int deploys; /* deploy messages received */
    char last_service[32];
    int last_n;
    unsigned long long last_gen;
    struct {
        char sid[32];
        int n;
        unsigned long long gen;
    } inst[16]; /* what it runs, for its state reports */
    int state_reqs; /* control/state messages received */
} tw_t;

typedef struct {
    char *dir;
    th_daemon_t root, cm;
    th_mosquitto_t mq;
    char *admin;
    char root_env_api[64], root_env_grpc[64];
    char env[16][160];
    const char *envp[17];
    char *join_token;
    tw_t w[3];
    int nw;
} fx_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void dump(const char *path)
{
    char *log = th_read_file(path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s ----\n%s\n----\n", path, log ? log + (n > 6000 ? n - 6000 : 0) : "");
    free(log);
}

static int start_cm(fx_t *f)
{
    char sd[300];
    snprintf(sd, sizeof(sd), "%s/cluster", f->dir);
    int rc = th_start_cluster(&f->cm, sd, f->envp);
    if (rc < 0)
        dump(f->cm.log_path);
    return rc;
}

static int start_root(fx_t *f)
{
    char sd[300];
    snprintf(sd, sizeof(sd), "%s/root", f->dir);
    const char *env[] = {"OAK_ADMIN_PASSWORD=admin-password",
                         f->root_env_api[0] ? f->root_env_api : NULL,
                         f->root_env_grpc[0] ? f->root_env_grpc : NULL, NULL};
    return th_start_root(&f->root, sd, env);
}

/* Polls GET path on the root until pred(json) or timeout; returns the last body. */
static json_t *root_get(fx_t *f, const char *path)
{
    json_t *out = NULL;
    th_http(f->root.api_port, "GET", path, f->admin, NULL, &out);
    return out;
}

static bool cluster_active(fx_t *f)
{
    json_t *l = root_get(f, "/api/clusters/active");
    bool ok = json_array_size(l) == 1 && oak_json_bool(json_array_get(l, 0), "connected", false);
    json_decref(l);
    return ok;
}

static bool wait_for(bool (*pred)(fx_t *), fx_t *f, int ms)
{
    for (int t = 0; t < ms; t += 50) {
        if (pred(f))
            return true;
        sleep_ms(50);
    }
    return pred(f);
}

static int setup(void **state)
{
    if (!th_mosquitto_available())
        return -1;
    fx_t *f = xcalloc(1, sizeof(*f));
    f->dir = th_tmpdir("cluster-test");
    if (start_root(f) < 0)
        return -1;
    snprintf(f->root_env_api, sizeof(f->root_env_api), "OAK_API_PORT=%d", f->root.api_port);
    snprintf(f->root_env_grpc, sizeof(f->root_env_grpc), "OAK_GRPC_PORT=%d", f->root.grpc_port);
    f->admin = th_login(f->root.api_port, "Admin", "admin-password");
    json_t *b = json_pack("{s:s}", "cluster_name", "c1"), *out = NULL;
    assert_int_equal(th_http(f->root.api_port, "POST", "/api/clusters/token", f->admin, b, &out),
                     201);
    f->join_token = xstrdup(oak_json_str(out, "token"));
    json_decref(b);
    json_decref(out);
    char mqdir[300];
    snprintf(mqdir, sizeof(mqdir), "%s/mq", f->dir);
    if (th_mosquitto_start(&f->mq, mqdir, MQ_ADMIN, MQ_PASSWORD) < 0)
        return -1;
    int k = 0;
    snprintf(f->env[k++], 160, "CLUSTER_NAME=c1");
    snprintf(f->env[k++], 160, "CLUSTER_LOCATION=48.1,11.6,1000");
    snprintf(f->env[k++], 160, "SYSTEM_MANAGER_URL=127.0.0.1");
    snprintf(f->env[k++], 160, "SYSTEM_MANAGER_GRPC_PORT=%d", f->root.grpc_port);
    snprintf(f->env[k++], 160, "OAK_JOIN_TOKEN=%s", f->join_token);
    snprintf(f->env[k++], 160, "MQTT_BROKER_URL=127.0.0.1");
    snprintf(f->env[k++], 160, "MQTT_BROKER_PORT=%d", f->mq.port);
    snprintf(f->env[k++], 160, "OAK_MQTT_ADMIN_USER=%s", MQ_ADMIN);
    snprintf(f->env[k++], 160, "OAK_MQTT_ADMIN_PASSWORD=%s", MQ_PASSWORD);
    snprintf(f->env[k++], 160, "OAK_WORKER_TOKEN=%s", WORKER_TOKEN);
    snprintf(f->env[k++], 160, "OAK_REPORT_INTERVAL_MS=500");
    snprintf(f->env[k++], 160, "OAK_HANDBACK_S=2");
    for (int i = 0; i < k; i++)
        f->envp[i] = f->env[i];
    f->envp[k] = NULL;
    if (start_cm(f) < 0)
        return -1;
    if (!wait_for(cluster_active, f, 10000)) {
        dump(f->cm.log_path);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (!f)
        return 0;
    for (int i = 0; i < f->nw; i++)
        th_mqtt_close(f->w[i].c);
    int st_cm = th_stop(&f->cm, SIGTERM);
    int st_root = th_stop(&f->root, SIGTERM);
    th_mosquitto_stop(&f->mq);
    bool clean = WIFEXITED(st_cm) && WEXITSTATUS(st_cm) == 0 && WIFEXITED(st_root) &&
                 WEXITSTATUS(st_root) == 0;
    if (!clean) {
        dump(f->cm.log_path);
        dump(f->root.log_path);
    }
    th_rmtree(f->dir);
    free(f->dir);
    free(f->admin);
    free(f->join_token);
    free(f);
    assert_true(clean);
    return 0;
}

/* POST /api/node/register on the cluster manager; returns the status. */
static long cm_register(fx_t *f, const char *token, const char *body, json_t **out)
{
    char url[128], auth[160];
    const char *hdr[3] = {"Content-Type: application/json", NULL, NULL};
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/node/register", f->cm.api_port);
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdr[1] = auth;
    }
    oak_httpc_resp_t r = {0};
    oak_err_t err = OAK_ERR_INIT;
    if (oak_httpc_request("POST", url, hdr, body, strlen(body), 5000, &r, &err) < 0) {
        oak_err_clear(&err);
        return -1;
    }
    if (out)
        *out = json_loads(r.body, 0, NULL);
    long st = r.status;
    oak_httpc_resp_free(&r);
    return st;
}

static void publish_json(tw_t *w, const char *suffix, json_t *payload)
{
    char topic[96];
    snprintf(topic, sizeof(topic), "nodes/%s/%s", w->id, suffix);
    char *s = json_dumps(payload, JSON_COMPACT);
    assert_int_equal(th_mqtt_publish(w->c, topic, s), 0);
    free(s);
    json_decref(payload);
}

/* Registers and connects a test worker with cores and memory. */
static tw_t *add_worker(fx_t *f, const char *host, int cores, int memory)
{
    tw_t *w = &f->w[f->nw++];
    snprintf(w->host, sizeof(w->host), "%s", host);
    char body[512];
    snprintf(body, sizeof(body),
             "{\"host\":\"%s\",\"ip\":\"127.0.0.1\",\"port\":50103,\"architecture\":\"amd64\","
             "\"virtualization\":[\"container\"],\"cpu_cores\":%d,\"memory\":%d}",
             host, cores, memory);
    json_t *out = NULL;
    assert_int_equal(cm_register(f, WORKER_TOKEN, body, &out), 200);
    snprintf(w->id, sizeof(w->id), "%s", oak_json_str(out, "id"));
    assert_string_equal(oak_json_str(out, "mqtt_username"), w->id);
    assert_int_equal(atoi(oak_json_str(out, "MQTT_BROKER_PORT")), f->mq.port);
    char will[96];
    snprintf(will, sizeof(will), "nodes/%s/status", w->id);
    assert_int_equal(th_mqtt_connect_will(f->mq.port, w->id, w->id,
                                          oak_json_str(out, "mqtt_password"), 60, will,
                                          "{\"status\":\"offline\"}", &w->c),
                     0);
    json_decref(out);
    char sub[96];
    snprintf(sub, sizeof(sub), "nodes/%s/control/#", w->id);
    assert_in_range(th_mqtt_subscribe(w->c, sub), 0, 2);
    publish_json(w, "status", json_pack("{s:s}", "status", "online"));
    publish_json(w, "information",
                 json_pack("{s:i, s:f, s:i, s:i, s:s, s:[s]}", "cpu_cores", cores, "cpu_percent",
                           0.0, "memory", memory, "memory_total", memory, "architecture", "amd64",
                           "virtualization", "container"));
    publish_json(w, "state", json_pack("{s:[]}", "instances"));
    return w;
}

static int inst_find(const tw_t *w, const char *sid, int n)
{
    for (int i = 0; i < w->running; i++)
        if (!strcmp(w->inst[i].sid, sid) && w->inst[i].n == n)
            return i;
    return -1;
}

static void inst_drop(tw_t *w, int i)
{
    w->inst[i] = w->inst[--w->running];
}

static void publish_state(tw_t *w)
{
    json_t *list = json_array();
    for (int i = 0; i < w->running; i++)
        json_array_append_new(list, json_pack("{s:s, s:i, s:I, s:s}", "service_id", w->inst[i].sid,
                                              "instance_number", w->inst[i].n, "generation",
                                              (json_int_t)w->inst[i].gen, "status", "RUNNING"));
    publish_json(w, "state", json_pack("{s:o}", "instances", list));
}

/* Handles the control messages that arrived within ms as a node engine
 * would: deploy -> CREATED, RUNNING (a repeated deploy of what runs is not
 * started twice); delete -> UNDEPLOYED; state request -> state report.
 * Returns how many were handled. */
static int serve(tw_t *w, int ms)
{
    int handled = 0;
    char prefix[96];
    snprintf(prefix, sizeof(prefix), "nodes/%s/control/", w->id);
    char *topic = NULL, *p;
    while ((p = th_mqtt_take(w->c, prefix, &topic, ms))) {
        oak_err_t err = OAK_ERR_INIT;
        if (strstr(topic, "/deploy")) {
            wp_deploy_t d;
            assert_int_equal(wp_parse_deploy(p, strlen(p), &d, &err), 0);
            w->deploys++;
            int i = inst_find(w, d.service_id, d.instance_number);
            if (i >= 0 && w->inst[i].gen != d.generation)
                inst_drop(w, i), i = -1;
            if (i < 0) {
                assert_true(w->running < 16);
                i = w->running++;
                snprintf(w->inst[i].sid, sizeof(w->inst[i].sid), "%s", d.service_id);
                w->inst[i].n = d.instance_number;
                w->inst[i].gen = d.generation;
            }
            snprintf(w->last_service, sizeof(w->last_service), "%s", d.service_id);
            w->last_n = d.instance_number;
            w->last_gen = (unsigned long long)d.generation;
            const char *states[] = {"CREATED", "RUNNING"};
            for (int k = 0; k < 2; k++)
                publish_json(w, "job",
                             json_pack("{s:s, s:i, s:I, s:s, s:s}", "service_id", d.service_id,
                                       "instance_number", d.instance_number, "generation",
                                       (json_int_t)d.generation, "status", states[k], "job_name",
                                       d.job_name ? d.job_name : ""));
            wp_deploy_clear(&d);
        } else if (strstr(topic, "/delete")) {
            wp_delete_t d;
            assert_int_equal(wp_parse_delete(p, strlen(p), &d, &err), 0);
            int i = inst_find(w, d.service_id, d.instance_number);
            if (i >= 0 && w->inst[i].gen == d.generation)
                inst_drop(w, i);
            publish_json(w, "job",
                         json_pack("{s:s, s:i, s:I, s:s}", "service_id", d.service_id,
                                   "instance_number", d.instance_number, "generation",
                                   (json_int_t)d.generation, "status", "UNDEPLOYED"));
        } else if (strstr(topic, "/state")) {
            wp_state_req_t q;
            assert_int_equal(wp_parse_state_req(p, strlen(p), &q, &err), 0);
            w->state_reqs++;
            publish_state(w);
        }
        free(topic);
        free(p);
        handled++;
        ms = 200; /* drain what follows closely */
    }
    return handled;
}

static char *create_service(fx_t *f, int vcpus, int memory)
{
    char sla[1024];
    snprintf(sla, sizeof(sla),
             "{\"sla_version\":\"v2.0\",\"customerID\":\"Admin\",\"applications\":[{"
             "\"applicationID\":\"\",\"application_name\":\"app%d\",\"application_namespace\":"
             "\"test\",\"application_desc\":\"\",\"microservices\":[{\"microserviceID\":\"\","
             "\"microservice_name\":\"svc\",\"microservice_namespace\":\"test\","
             "\"virtualization\":\"container\",\"code\":\"registry.local:5000/demo:1\","
             "\"vcpus\":%d,\"memory\":%d}]}]}",
             rand() % 100000, vcpus, memory);
    json_t *out = NULL;
    assert_int_equal(th_http_raw(f->root.api_port, "POST", "/api/application/", f->admin, sla,
                                 strlen(sla), &out),
                     200);
    json_t *app = json_array_get(out, json_array_size(out) - 1);
    char *sid =
        xstrdup(json_string_value(json_array_get(json_object_get(app, "microservices"), 0)));
    json_decref(out);
    return sid;
}

static json_t *instance(fx_t *f, const char *sid, int n)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/service/%s", sid);
    json_t *s = root_get(f, path), *found = NULL;
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(s, "instance_list"), i,
                       in) if (oak_json_int(in, "instance_number", -1) == n) found =
        json_incref(in);
    json_decref(s);
    return found;
}

static bool instance_is(fx_t *f, const char *sid, int n, const char *status, const char *worker)
{
    json_t *in = instance(f, sid, n);
    bool ok = in && !strcmp(oak_json_str(in, "status"), status) &&
              (!worker ||
               (oak_json_str(in, "worker_id") && !strcmp(oak_json_str(in, "worker_id"), worker)));
    json_decref(in);
    return ok;
}

static void request_instance(fx_t *f, const char *sid)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/service/%s/instance", sid);
    assert_int_equal(th_http(f->root.api_port, "POST", path, f->admin, NULL, NULL), 200);
}

/* Serves both workers until instance n of sid is RUNNING at the root. */
static tw_t *until_running(fx_t *f, const char *sid, int n, int ms)
{
    for (int t = 0; t < ms; t += 100) {
        for (int i = 0; i < f->nw; i++)
            if (f->w[i].c)
                serve(&f->w[i], 50);
        json_t *in = instance(f, sid, n);
        const char *st = in ? oak_json_str(in, "status") : NULL;
        if (st && !strcmp(st, "RUNNING")) {
            const char *wid = oak_json_str(in, "worker_id");
            for (int i = 0; i < f->nw; i++)
                if (wid && !strcmp(f->w[i].id, wid)) {
                    json_decref(in);
                    return &f->w[i];
                }
        }
        json_decref(in);
    }
    json_t *in = instance(f, sid, n);
    fprintf(stderr, "instance %s/%d not RUNNING: %s\n", sid, n, in ? json_dumps(in, 0) : "(none)");
    dump(f->cm.log_path);
    fail();
    return NULL;
}

static void test_registration(void **state)
{
    fx_t *f = *state;
    const char *body = "{\"host\":\"w-x\",\"ip\":\"127.0.0.1\",\"port\":50103,\"architecture\":"
                       "\"amd64\",\"virtualization\":[\"container\"],\"cpu_cores\":2,"
                       "\"memory\":1024}";
    json_t *out = NULL;
    assert_int_equal(cm_register(f, NULL, body, &out), 401);
    json_decref(out);
    assert_int_equal(cm_register(f, "wrong-token-wrong-token-wrong", body, &out), 401);
    json_decref(out);
    assert_int_equal(cm_register(f, WORKER_TOKEN, "{\"host\":\"w x\",\"cpu_cores\":-1}", &out),
                     422);
    assert_non_null(json_object_get(out, "errors"));
    json_decref(out);
    assert_int_equal(cm_register(f, WORKER_TOKEN, "not json", &out), 400);
    json_decref(out);
    /* nothing was registered by the refused attempts */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/cluster/status", f->cm.api_port);
    long st = 0;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_httpc_json("GET", url, NULL, NULL, 5000, &st, &out, &err), 0);
    assert_int_equal(oak_json_int(out, "workers", -1), 0);
    json_decref(out);
    tw_t *w = add_worker(f, "worker-a", 4, 4096);
    /* a wrong MQTT password is refused by the broker */
    th_mqtt_t *bad = NULL;
    int rc = th_mqtt_connect(f->mq.port, "intruder", w->id, "not-the-password", &bad);
    assert_true(rc == 4 || rc == 5);
    rc = th_mqtt_connect(f->mq.port, "anon", NULL, NULL, &bad);
    assert_true(rc == 4 || rc == 5);
    assert_int_equal(oak_httpc_json("GET", url, NULL, NULL, 5000, &st, &out, &err), 0);
    assert_int_equal(oak_json_int(out, "workers", -1), 1);
    json_decref(out);
}

static void test_place_undeploy(void **state)
{
    fx_t *f = *state;
    add_worker(f, "worker-a", 4, 4096);
    add_worker(f, "worker-b", 4, 4096);
    char *sid = create_service(f, 1, 256);
    request_instance(f, sid);
    tw_t *w = until_running(f, sid, 0, 10000);
    assert_int_equal(w->running, 1);
    assert_string_equal(w->last_service, sid);
    assert_int_equal(w->last_gen, 1);
    /* undeploy: the worker gets the delete, the root forgets the instance */
    char path[160];
    snprintf(path, sizeof(path), "/api/service/%s/instance/0", sid);
    assert_int_equal(th_http(f->root.api_port, "DELETE", path, f->admin, NULL, NULL), 200);
    for (int t = 0; t < 50 && w->running > 0; t++)
        serve(w, 100);
    assert_int_equal(w->running, 0);
    json_t *in = instance(f, sid, 0);
    assert_null(in);
    free(sid);
}

static void test_worker_dies(void **state)
{
    fx_t *f = *state;
    add_worker(f, "worker-a", 4, 4096);
    add_worker(f, "worker-b", 4, 4096);
    char *sid = create_service(f, 1, 256);
    request_instance(f, sid);
    tw_t *victim = until_running(f, sid, 0, 10000);
    tw_t *other = victim == &f->w[0] ? &f->w[1] : &f->w[0];
    uint64_t t0 = oak_now_ms();
    th_mqtt_abort(victim->c);
    victim->c = NULL;
    tw_t *now = until_running(f, sid, 0, 5000);
    uint64_t dt = oak_now_ms() - t0;
    fprintf(stderr, "worker killed -> instance RUNNING elsewhere in %llu ms\n",
            (unsigned long long)dt);
    assert_ptr_equal(now, other);
    assert_true(dt <= 5000);
    free(sid);
}

static void test_forged_publish(void **state)
{
    fx_t *f = *state;
    tw_t *a = add_worker(f, "worker-a", 1, 4096);
    tw_t *b = add_worker(f, "worker-b", 4, 4096);
    char *sid = create_service(f, 2, 256); /* only b has 2 cores */
    request_instance(f, sid);
    assert_ptr_equal(until_running(f, sid, 0, 10000), b);
    int deploys = b->deploys;
    /* a forges a failure of b's instance on b's topic: the broker drops it */
    char topic[96], payload[256];
    snprintf(topic, sizeof(topic), "nodes/%s/job", b->id);
    snprintf(payload, sizeof(payload),
             "{\"service_id\":\"%s\",\"instance_number\":0,\"generation\":%llu,\"status\":"
             "\"FAILED\",\"status_detail\":\"forged\"}",
             sid, b->last_gen);
    assert_int_equal(th_mqtt_publish(a->c, topic, payload), 0);
    /* and on its own topic, about an instance it does not run: ignored */
    snprintf(topic, sizeof(topic), "nodes/%s/job", a->id);
    assert_int_equal(th_mqtt_publish(a->c, topic, payload), 0);
    serve(b, 1500);
    assert_int_equal(b->deploys, deploys);
    assert_true(instance_is(f, sid, 0, "RUNNING", b->id));
    free(sid);
}

static void test_cluster_manager_restart(void **state)
{
    fx_t *f = *state;
    tw_t *a = add_worker(f, "worker-a", 4, 4096);
    char *sid = create_service(f, 1, 256);
    request_instance(f, sid);
    assert_ptr_equal(until_running(f, sid, 0, 10000), a);
    int st = th_stop(&f->cm, SIGTERM);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(start_cm(f), 0);
    assert_true(wait_for(cluster_active, f, 10000));
    /* the worker is still connected to the broker; it reports as it would */
    publish_json(a, "information", json_pack("{s:f}", "cpu_percent", 5.0));
    /* nothing lost, nothing redeployed */
    serve(a, 1500);
    assert_int_equal(a->deploys, 1);
    assert_true(instance_is(f, sid, 0, "RUNNING", a->id));
    /* and it keeps working */
    request_instance(f, sid);
    assert_ptr_equal(until_running(f, sid, 1, 10000), a);
    free(sid);
}

/* The worker never got a deploy (the manager died between deciding and
 * publishing, simulated here by the worker forgetting it): after the
 * manager restarts it asks the worker for its state and deploys again. */
static void test_lost_deploy_resent(void **state)
{
    fx_t *f = *state;
    tw_t *a = add_worker(f, "worker-a", 4, 4096);
    char *sid = create_service(f, 1, 256);
    request_instance(f, sid);
    assert_ptr_equal(until_running(f, sid, 0, 10000), a);
    assert_int_equal(a->deploys, 1);
    inst_drop(a, 0);
    int st = th_stop(&f->cm, SIGTERM);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(start_cm(f), 0);
    for (int t = 0; t < 50 && a->running == 0; t++)
        serve(a, 100);
    assert_true(a->state_reqs >= 1);
    assert_int_equal(a->running, 1);
    assert_int_equal(a->deploys, 2);
    assert_true(instance_is(f, sid, 0, "RUNNING", a->id));
    free(sid);
}

/* A worker counted dead by silence (its MQTT connection stays up) whose
 * instance moved elsewhere speaks again: the manager asks for its state and
 * deletes the old copy, so the instance runs exactly once. */
static void test_silent_worker_returns(void **state)
{
    fx_t *f = *state;
    int st = th_stop(&f->cm, SIGTERM);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    int k = 0;
    while (f->envp[k])
        k++;
    snprintf(f->env[k], 160, "OAK_WORKER_DEAD_S=2");
    f->envp[k] = f->env[k];
    f->envp[k + 1] = NULL;
    assert_int_equal(start_cm(f), 0);
    assert_true(wait_for(cluster_active, f, 10000));
    add_worker(f, "worker-a", 4, 4096);
    add_worker(f, "worker-b", 4, 4096);
    char *sid = create_service(f, 1, 256);
    request_instance(f, sid);
    tw_t *v = until_running(f, sid, 0, 10000);
    tw_t *o = v == &f->w[0] ? &f->w[1] : &f->w[0];
    /* v falls silent; o keeps talking until the instance runs on it */
    bool moved = false;
    for (int t = 0; t < 80 && !moved; t++) {
        publish_json(o, "information", json_pack("{s:f}", "cpu_percent", 1.0 + t % 2));
        serve(o, 100);
        moved = instance_is(f, sid, 0, "RUNNING", o->id);
    }
    assert_true(moved);
    assert_int_equal(v->running, 1); /* the stale copy */
    int reqs = v->state_reqs;
    publish_json(v, "information", json_pack("{s:f}", "cpu_percent", 3.0));
    for (int t = 0; t < 50 && v->running > 0; t++)
        serve(v, 100);
    assert_true(v->state_reqs > reqs);
    assert_int_equal(v->running, 0);
    serve(o, 500);
    assert_int_equal(o->running, 1);
    assert_true(instance_is(f, sid, 0, "RUNNING", o->id));
    free(sid);
}

static void test_root_restart(void **state)
{
    fx_t *f = *state;
    tw_t *a = add_worker(f, "worker-a", 4, 4096);
    char *sid = create_service(f, 1, 256);
    request_instance(f, sid);
    assert_ptr_equal(until_running(f, sid, 0, 10000), a);
    int st = th_stop(&f->root, SIGTERM);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(start_root(f), 0);
    free(f->admin);
    f->admin = th_login(f->root.api_port, "Admin", "admin-password");
    assert_true(wait_for(cluster_active, f, 15000));
    assert_true(instance_is(f, sid, 0, "RUNNING", a->id));
    request_instance(f, sid);
    assert_ptr_equal(until_running(f, sid, 1, 10000), a);
    assert_int_equal(a->deploys, 2);
    free(sid);
}

static bool handed_back(fx_t *f, const char *sid)
{
    json_t *in = instance(f, sid, 0);
    const char *st = in ? oak_json_str(in, "status") : NULL;
    bool ok = st && (!strcmp(st, "NO_CLUSTER_CAPACITY") || !strcmp(st, "REQUESTED"));
    json_decref(in);
    return ok;
}

static char *g_sid;
static bool handed_back_pred(fx_t *f)
{
    return handed_back(f, g_sid);
}

static void test_handback(void **state)
{
    fx_t *f = *state;
    tw_t *a = add_worker(f, "worker-a", 4, 4096);
    char *sid = create_service(f, 1, 256);
    request_instance(f, sid);
    assert_ptr_equal(until_running(f, sid, 0, 10000), a);
    /* the only worker dies: no worker can take the instance, so after
     * OAK_HANDBACK_S (2 s) the cluster hands it back to the root */
    th_mqtt_abort(a->c);
    a->c = NULL;
    g_sid = sid;
    assert_true(wait_for(handed_back_pred, f, 10000));
    /* capacity appears: the root places it again and it runs */
    tw_t *b = add_worker(f, "worker-b", 4, 4096);
    assert_ptr_equal(until_running(f, sid, 0, 15000), b);
    free(sid);
}

int main(void)
{
    srand((unsigned)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_place_undeploy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_dies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_manager_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_deploy_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_worker_returns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
