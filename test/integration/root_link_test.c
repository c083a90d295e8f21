/* Integration tests of cluster_orchestrator/root_link against the real
 * system-manager over real gRPC: joining, a capacity report leading to a
 * PLACE command delivered to the app, acknowledgement of applied commands,
 * instance statuses reaching the root's REST API, a root restart (same
 * ports, same state) with statuses queued meanwhile, a link restart
 * resuming after the stored applied sequence, a refused join token, and a
 * root that is down when the link starts. The test thread runs the event
 * loop in short slices (pump) between its REST calls; each test has its own
 * root, state directory and cluster store, and requires the root to exit
 * cleanly. */
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

#include "cluster_orchestrator/root_link.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "lib/oak_store.h"
#include "test/common/harness.h"

#define WAIT_MS 15000

enum {
    PLACE = OAK__CLUSTER__V1__COMMAND__KIND__PLACE,
    REMOVE = OAK__CLUSTER__V1__COMMAND__KIND__REMOVE
};

typedef struct {
    uint64_t seq;
    int kind;
    char sid[64];
    int n;
    uint64_t gen;
    bool has_service_json;
} cmd_rec_t;

typedef struct {
    th_daemon_t d;
    char *dir, *cdir;
    char *admin;
    int api_port, grpc_port; /* of the first start; restarts reuse them */
    char env_api[32], env_grpc[32];
    oak_loop_t *loop;
    oak_store_t *store;
    root_link_t *link;
    bool keep;
    /* what the app saw */
    cmd_rec_t cmds[32];
    int ncmds;
    int nconnect, ndisconnect, nresync;
    char detail[1024];
    json_t *resync_cap; /* reported with every resync (NULL: none) */
} fx_t;

/* ---- fixture ---- */

static void dump_log(const fx_t *fx)
{
    char *log = th_read_file(fx->d.log_path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s (last 4000 bytes) ----\n%s\n----\n", fx->d.log_path,
            log ? log + (n > 4000 ? n - 4000 : 0) : "(none)");
    free(log);
}

/* Starts the root; after the first start on the same ports. */
static void root_start(fx_t *fx)
{
    const char *env[3] = {NULL, NULL, NULL};
    if (fx->api_port) {
        snprintf(fx->env_api, sizeof(fx->env_api), "OAK_API_PORT=%d", fx->api_port);
        snprintf(fx->env_grpc, sizeof(fx->env_grpc), "OAK_GRPC_PORT=%d", fx->grpc_port);
        env[0] = fx->env_api;
        env[1] = fx->env_grpc;
    }
    if (th_start_root(&fx->d, fx->dir, env) < 0) {
        fx->keep = true;
        dump_log(fx);
        fail_msg("system-manager did not start");
    }
    if (fx->api_port) {
        assert_int_equal(fx->d.api_port, fx->api_port);
        assert_int_equal(fx->d.grpc_port, fx->grpc_port);
    }
    fx->api_port = fx->d.api_port;
    fx->grpc_port = fx->d.grpc_port;
}

static void root_stop(fx_t *fx)
{
    int st = th_stop(&fx->d, SIGTERM);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fx->keep = true;
        dump_log(fx);
        fail_msg("system-manager did not exit cleanly (wait status %d)", st);
    }
}

static void on_stop_timer(oak_loop_t *loop, void *data)
{
    oak_loop_stop(loop);
}

/* Runs the loop for ms. */
static void pump(fx_t *fx, long ms)
{
    oak_loop_add_timer(fx->loop, (uint64_t)ms, on_stop_timer, NULL);
    oak_loop_run(fx->loop);
}

/* Pumps until cond holds or WAIT_MS pass; evaluates to cond. */
#define WAIT_FOR(fx, cond)                                                                         \
    ({                                                                                             \
        uint64_t end_ = oak_now_ms() + WAIT_MS;                                                    \
        bool ok_;                                                                                  \
        while (!(ok_ = (cond)) && oak_now_ms() < end_)                                             \
            pump(fx, 50);                                                                          \
        ok_;                                                                                       \
    })

static int setup(void **state)
{
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->dir = th_tmpdir("oak-link-root");
    fx->cdir = th_tmpdir("oak-link-cluster");
    root_start(fx);
    fx->admin = th_login(fx->api_port, "Admin", fx->d.admin_password);
    if (!fx->admin) {
        th_stop(&fx->d, SIGKILL);
        dump_log(fx);
        fail_msg("Admin cannot log in");
    }
    fx->loop = oak_loop_new();
    _cleanup_free_ char *uri = xasprintf("sqlite:%s/cluster.db", fx->cdir);
    oak_err_t err = OAK_ERR_INIT;
    if (oak_store_open(uri, &fx->store, &err) < 0)
        fail_msg("store: %s", err.msg);
    *state = fx;
    return 0;
}

static void link_stop(fx_t *fx)
{
    root_link_stop(fx->link);
    fx->link = NULL;
    pump(fx, 20); /* frees the events still queued */
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    link_stop(fx);
    oak_loop_free(fx->loop);
    oak_store_close(fx->store);
    if (fx->d.pid > 0)
        root_stop(fx);
    json_decref(fx->resync_cap);
    if (!fx->keep) {
        th_rmtree(fx->dir);
        th_rmtree(fx->cdir);
    }
    free(fx->dir);
    free(fx->cdir);
    free(fx->admin);
    free(fx);
    return 0;
}

/* ---- the app side ---- */

/* Applies a command the way the cluster manager does: its effect and the
 * applied sequence in one store transaction. */
static void on_command(const Oak__Cluster__V1__Command *c, void *ctx)
{
    fx_t *fx = ctx;
    assert_true(fx->ncmds < 32);
    cmd_rec_t *r = &fx->cmds[fx->ncmds++];
    r->seq = c->seq;
    r->kind = (int)c->kind;
    snprintf(r->sid, sizeof(r->sid), "%s", c->service_id);
    r->n = c->instance_number;
    r->gen = c->generation;
    r->has_service_json = c->service_json && *c->service_json;
    oak_err_t err = OAK_ERR_INIT;
    char id[128];
    snprintf(id, sizeof(id), "%s.%d", c->service_id, c->instance_number);
    json_auto_t *doc = json_pack("{s:s, s:I, s:i}", "_id", id, "generation",
                                 (json_int_t)c->generation, "kind", (int)c->kind);
    assert_int_equal(oak_store_begin(fx->store, &err), 0);
    assert_int_equal(oak_store_upsert(fx->store, "instances", doc, &err), 0);
    root_link_applied(fx->link, c->seq);
    assert_int_equal(oak_store_commit(fx->store, &err), 0);
}

static void on_state(bool connected, const char *detail, void *ctx)
{
    fx_t *fx = ctx;
    if (connected)
        fx->nconnect++;
    else
        fx->ndisconnect++;
    snprintf(fx->detail, sizeof(fx->detail), "%s", detail);
}

static void on_resync(void *ctx)
{
    fx_t *fx = ctx;
    fx->nresync++;
    root_link_report(fx->link, fx->resync_cap ? json_deep_copy(fx->resync_cap) : NULL, json_array(),
                     true);
}

static void link_start(fx_t *fx, const char *token, long interval_ms)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", fx->grpc_port);
    root_link_opts_t o = {.target = target,
                          .join_token = token,
                          .cluster_name = "edge1",
                          .cluster_location = "48.1,11.6,1000",
                          .manager_port = 10100,
                          .network_port = 10101,
                          .report_interval_ms = interval_ms,
                          .backoff_max_ms = 1000};
    root_link_cb_t cb = {on_command, on_state, on_resync};
    oak_err_t err = OAK_ERR_INIT;
    if (root_link_start(fx->loop, fx->store, &o, &cb, fx, &fx->link, &err) < 0)
        fail_msg("root_link_start: %s", err.msg);
}

static json_t *capacity(int64_t cpu_free, int64_t mem_free)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:[s], s:[{s:s, s:[s], s:I, s:I, s:I, "
                     "s:I, s:i, s:i, s:i}], s:f, s:f}",
                     "cpu_millis_total", (json_int_t)4000, "cpu_millis_free", (json_int_t)cpu_free,
                     "memory_mb_total", (json_int_t)8192, "memory_mb_free", (json_int_t)mem_free,
                     "gpu_total", 0, "gpu_free", 0, "active_workers", 1, "virtualization",
                     "container", "per_arch", "architecture", "amd64", "virtualization",
                     "container", "cpu_millis_total", (json_int_t)4000, "cpu_millis_free",
                     (json_int_t)cpu_free, "memory_mb_total", (json_int_t)8192, "memory_mb_free",
                     (json_int_t)mem_free, "gpu_total", 0, "gpu_free", 0, "workers", 1,
                     "cpu_percent", 12.5, "memory_percent", 30.0);
}

static json_t *status(const char *sid, int n, const char *st, const char *detail, uint64_t gen)
{
    return json_pack("[{s:s, s:i, s:s, s:s, s:I, s:s, s:s, s:f, s:I}]", "service_id", sid,
                     "instance_number", n, "status", st, "status_detail", detail, "generation",
                     (json_int_t)gen, "worker_id", "worker-a", "host_ip", "10.0.0.7", "cpu_percent",
                     3.5, "memory_mb", (json_int_t)42);
}

/* ---- REST helpers ---- */

static long httpf(fx_t *fx, const char *method, const json_t *body, json_t **out, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
static long httpf(fx_t *fx, const char *method, const json_t *body, json_t **out, const char *fmt,
                  ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return th_http(fx->api_port, method, path, fx->admin, body, out);
}

static json_t *find_by(const json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = oak_json_str(v, key);
        if (s && strcmp(s, value) == 0)
            return v;
    }
    return NULL;
}

static char *join_token(fx_t *fx)
{
    json_auto_t *b = json_pack("{s:s}", "cluster_name", "edge1");
    json_auto_t *out = NULL;
    assert_int_equal(httpf(fx, "POST", b, &out, "/api/clusters/token"), 201);
    assert_non_null(oak_json_str(out, "token"));
    return xstrdup(oak_json_str(out, "token"));
}

/* One container service needing 1 vCPU and 100 MB; returns its id. */
static char *create_service(fx_t *fx, const char *app)
{
    json_auto_t *sla =
        json_pack("{s:s, s:s, s:[{s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:i, s:i, s:[s]}]}]}",
                  "sla_version", "v2.0", "customerID", "Admin", "applications", "application_name",
                  app, "application_namespace", "test", "microservices", "microservice_name", "web",
                  "microservice_namespace", "test", "virtualization", "container", "code",
                  "docker.io/library/nginx:latest", "memory", 100, "vcpus", 1, "cmd", "nginx");
    json_auto_t *out = NULL;
    assert_int_equal(httpf(fx, "POST", sla, &out, "/api/application/"), 200);
    json_t *a = find_by(out, "application_name", app);
    assert_non_null(a);
    return xstrdup(json_string_value(json_array_get(json_object_get(a, "microservices"), 0)));
}

static void request_instance(fx_t *fx, const char *sid)
{
    json_auto_t *b = json_pack("{s:i}", "replicas", 1), *out = NULL;
    assert_int_equal(httpf(fx, "POST", b, &out, "/api/service/%s/instance", sid), 200);
}

/* Instance n of sid (new reference, or NULL). */
static json_t *get_instance(fx_t *fx, const char *sid, int n)
{
    json_auto_t *svc = NULL;
    if (httpf(fx, "GET", NULL, &svc, "/api/service/%s", sid) != 200)
        return NULL;
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(svc, "instance_list"), i, in)
    {
        if (oak_json_int(in, "instance_number", -1) == n)
            return json_incref(in);
    }
    return NULL;
}

static bool instance_is(fx_t *fx, const char *sid, int n, const char *st, const char *detail)
{
    json_auto_t *in = get_instance(fx, sid, n);
    const char *s = oak_json_str(in, "status"), *d = oak_json_str(in, "status_detail");
    return s && !strcmp(s, st) && (!detail || (d && !strcmp(d, detail)));
}

/* The cluster's entry in GET /api/clusters/ (new reference) or NULL. */
static json_t *cluster_entry(fx_t *fx, const char *id)
{
    json_auto_t *list = NULL;
    if (httpf(fx, "GET", NULL, &list, "/api/clusters/") != 200)
        return NULL;
    return json_incref(find_by(list, "_id", id));
}

static long long pending_commands(fx_t *fx, const char *id)
{
    json_auto_t *c = cluster_entry(fx, id);
    return oak_json_int(c, "pending_commands", -1);
}

static void assert_instance(fx_t *fx, const char *sid, int n, const char *st, const char *detail)
{
    if (!WAIT_FOR(fx, instance_is(fx, sid, n, st, detail))) {
        json_auto_t *in = get_instance(fx, sid, n);
        fail_msg("instance %s/%d: %s (%s), want %s (%s)", sid, n, oak_json_str(in, "status"),
                 oak_json_str(in, "status_detail"), st, detail ? detail : "any detail");
    }
}

static void expect_cmd(const fx_t *fx, int i, uint64_t seq, int kind, const char *sid, int n,
                       uint64_t gen)
{
    assert_true(i < fx->ncmds);
    const cmd_rec_t *c = &fx->cmds[i];
    if (c->seq != seq || c->kind != kind || strcmp(c->sid, sid) != 0 || c->n != n || c->gen != gen)
        fail_msg("command %d: seq %llu kind %d %s/%d gen %llu; want seq %llu kind %d %s/%d gen "
                 "%llu",
                 i, (unsigned long long)c->seq, c->kind, c->sid, c->n, (unsigned long long)c->gen,
                 (unsigned long long)seq, kind, sid, n, (unsigned long long)gen);
}

static json_t *meta_doc(fx_t *fx)
{
    json_t *d = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (oak_store_get(fx->store, "meta", "root_link", &d, &err) < 0)
        fail_msg("meta/root_link: %s", err.msg);
    return d;
}

/* Connects a fresh link and places instance 0 of a new service on it; the
 * PLACE (seq 1) is applied. Returns the service id. */
static char *connect_and_place(fx_t *fx, long interval_ms)
{
    _cleanup_free_ char *tok = join_token(fx);
    link_start(fx, tok, interval_ms);
    assert_true(WAIT_FOR(fx, root_link_connected(fx->link)));
    char *sid = create_service(fx, "app1");
    request_instance(fx, sid);
    assert_instance(fx, sid, 0, "NO_CLUSTER_CAPACITY", NULL);
    root_link_report(fx->link, capacity(4000, 8192), NULL, false);
    assert_true(WAIT_FOR(fx, fx->ncmds >= 1));
    expect_cmd(fx, 0, 1, PLACE, sid, 0, 1);
    assert_true(fx->cmds[0].has_service_json);
    assert_int_equal(root_link_applied_seq(fx->link), 1);
    return sid;
}

/* ---- tests ---- */

static void test_join_place_ack_status(void **state)
{
    fx_t *fx = *state;
    char *sid = connect_and_place(fx, 200);
    const char *id = root_link_cluster_id(fx->link);
    assert_int_equal(strlen(id), 24);
    assert_int_equal(fx->nconnect, 1);
    assert_int_equal(fx->nresync, 1);

    json_auto_t *ce = cluster_entry(fx, id);
    assert_non_null(ce);
    assert_string_equal(oak_json_str(ce, "cluster_name"), "edge1");
    assert_string_equal(oak_json_str(ce, "cluster_location"), "48.1,11.6,1000");
    assert_int_equal(oak_json_int(ce, "port", 0), 10100);
    assert_true(oak_json_bool(ce, "connected", false));
    assert_true(oak_json_bool(ce, "active", false));

    /* applied -> acknowledged by the next (heartbeat) report */
    assert_true(WAIT_FOR(fx, pending_commands(fx, id) == 0));
    json_auto_t *meta = meta_doc(fx);
    assert_string_equal(oak_json_str(meta, "cluster_id"), id);
    assert_int_equal(oak_json_int(meta, "applied_seq", -1), 1);
    assert_true(strlen(oak_json_str(meta, "session_token")) >= 16);

    /* a status report reaches the root */
    root_link_report(fx->link, capacity(3000, 8092), status(sid, 0, "RUNNING", "up", 1), false);
    assert_instance(fx, sid, 0, "RUNNING", "up");
    json_auto_t *in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "worker_id"), "worker-a");
    assert_string_equal(oak_json_str(in, "host_ip"), "10.0.0.7");
    assert_string_equal(oak_json_str(in, "cluster_id"), id);

    /* heartbeats keep the capacity; nothing is delivered twice */
    pump(fx, 600);
    json_decref(ce);
    ce = cluster_entry(fx, id);
    assert_int_equal(oak_json_int(json_object_get(ce, "capacity"), "cpu_millis_free", -1), 3000);
    assert_int_equal(fx->ncmds, 1);
    free(sid);
}

static void test_root_restart(void **state)
{
    fx_t *fx = *state;
    /* long interval: only the app's reports acknowledge */
    char *sid = connect_and_place(fx, 60000);
    fx->resync_cap = capacity(3000, 8092);
    char id[32];
    snprintf(id, sizeof(id), "%s", root_link_cluster_id(fx->link));
    assert_int_equal(pending_commands(fx, id), 1);

    root_stop(fx);
    assert_true(WAIT_FOR(fx, !root_link_connected(fx->link)));
    assert_true(fx->ndisconnect >= 1);
    /* statuses queue while the root is down */
    root_link_report(fx->link, NULL, status(sid, 0, "CREATING", "step 1", 1), false);
    pump(fx, 100);
    root_link_report(fx->link, NULL, status(sid, 0, "RUNNING", "step 2", 1), false);
    pump(fx, 100);
    root_link_report(fx->link, capacity(3000, 8092), status(sid, 0, "RUNNING", "step 3", 1), false);
    pump(fx, 300);

    root_start(fx);
    assert_true(WAIT_FOR(fx, fx->nconnect == 2));
    assert_int_equal(fx->nresync, 2);
    assert_string_equal(root_link_cluster_id(fx->link), id);
    /* delivered in order: the last one wins; the resync report acknowledged
     * the PLACE, which is not delivered again */
    assert_instance(fx, sid, 0, "RUNNING", "step 3");
    assert_true(WAIT_FOR(fx, pending_commands(fx, id) == 0));
    pump(fx, 1000);
    assert_int_equal(fx->ncmds, 1);
    json_auto_t *ce = cluster_entry(fx, id);
    assert_true(oak_json_bool(ce, "connected", false));
    free(sid);
}

static void test_link_restart(void **state)
{
    fx_t *fx = *state;
    char *sid = connect_and_place(fx, 60000);
    char id[32];
    snprintf(id, sizeof(id), "%s", root_link_cluster_id(fx->link));
    /* stopped before acknowledging: the root still holds seq 1 */
    link_stop(fx);
    assert_int_equal(pending_commands(fx, id), 1);
    /* a second instance is placed meanwhile (seq 2 waits at the root) */
    request_instance(fx, sid);
    assert_instance(fx, sid, 1, "CLUSTER_SCHEDULED", NULL);

    link_start(fx, "ignored-until-join", 200);
    /* the stored identity is known before the first join */
    assert_string_equal(root_link_cluster_id(fx->link), id);
    assert_int_equal(root_link_applied_seq(fx->link), 1);
    root_link_stop(fx->link);
    fx->link = NULL;
    pump(fx, 20);

    _cleanup_free_ char *tok = join_token(fx);
    link_start(fx, tok, 200);
    assert_true(WAIT_FOR(fx, fx->ncmds >= 2));
    expect_cmd(fx, 1, 2, PLACE, sid, 1, 1);
    assert_true(WAIT_FOR(fx, pending_commands(fx, id) == 0));
    pump(fx, 500);
    assert_int_equal(fx->ncmds, 2);
    assert_string_equal(root_link_cluster_id(fx->link), id);
    json_auto_t *meta = meta_doc(fx);
    assert_int_equal(oak_json_int(meta, "applied_seq", -1), 2);
    free(sid);
}

static void test_bad_token(void **state)
{
    fx_t *fx = *state;
    link_start(fx, "not-a-token", 200);
    assert_true(WAIT_FOR(fx, fx->ndisconnect >= 1));
    assert_false(root_link_connected(fx->link));
    assert_non_null(strstr(fx->detail, "token"));
    pump(fx, 1000);
    assert_int_equal(fx->nconnect, 0);
    assert_int_equal(fx->ndisconnect, 1); /* the same failure is not reported again */
    assert_string_equal(root_link_cluster_id(fx->link), "");
    json_auto_t *list = NULL;
    assert_int_equal(httpf(fx, "GET", NULL, &list, "/api/clusters/"), 200);
    assert_int_equal(json_array_size(list), 0);

    /* a token bound to another cluster name is refused as well */
    link_stop(fx);
    json_auto_t *b = json_pack("{s:s}", "cluster_name", "other"), *out = NULL;
    assert_int_equal(httpf(fx, "POST", b, &out, "/api/clusters/token"), 201);
    fx->ndisconnect = 0;
    link_start(fx, oak_json_str(out, "token"), 200);
    assert_true(WAIT_FOR(fx, fx->ndisconnect >= 1));
    assert_non_null(strstr(fx->detail, "token"));
    assert_false(root_link_connected(fx->link));
}

static void test_root_down_at_start(void **state)
{
    fx_t *fx = *state;
    _cleanup_free_ char *tok = join_token(fx);
    root_stop(fx);
    link_start(fx, tok, 200);
    assert_true(WAIT_FOR(fx, fx->ndisconnect >= 1));
    assert_non_null(strstr(fx->detail, "cannot join"));
    assert_false(root_link_connected(fx->link));
    pump(fx, 700);
    root_start(fx);
    assert_true(WAIT_FOR(fx, root_link_connected(fx->link)));
    assert_int_equal(fx->nresync, 1);
    json_auto_t *ce = cluster_entry(fx, root_link_cluster_id(fx->link));
    assert_non_null(ce);
    assert_string_equal(oak_json_str(ce, "cluster_name"), "edge1");
}

int main(void)
{
    if (getenv("OAK_TEST_DEBUG"))
        oak_log_level = OAK_LOG_DEBUG;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_place_ack_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_down_at_start, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
