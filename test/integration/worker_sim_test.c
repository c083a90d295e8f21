/* Integration tests of the worker simulator (test/tools/worker_sim,
 * test/common/msim) against a real mosquitto configured as the cluster's
 * broker, observed by a client with the cluster manager's rights:
 *
 * - broker only (workers' broker clients made by the simulator itself):
 *   every worker connects with its credentials and announces itself
 *   (status online, information full and then partial, state); a deploy
 *   is answered with job CREATED and RUNNING, a repeated deploy re-reports
 *   RUNNING, a delete with UNDEPLOYED, and the next state lists what runs;
 *   SIGKILL makes the broker publish every worker's last will;
 *   --kill-after-ms drops exactly the asked number of workers; SIGTERM
 *   publishes offline for each and exits 0.
 * - with the real root and cluster-manager: 20 simulated workers register
 *   over HTTP and show online in GET /api/cluster/status; killing the
 *   simulator takes them offline within seconds. Skipped while the
 *   cluster-manager binary is not built. */
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
#include <unistd.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"
#include "test/common/harness.h"
#include "test/common/mosquitto.h"
#include "test/common/msim.h"

#define ADMIN_USER "oak-admin"
#define ADMIN_PW   "admin-secret-1"
#define SID        "0123456789abcdef01234567"

typedef struct {
    char *dir;
    th_mosquitto_t mq;
    th_mqtt_t *obs; /* the cluster manager's view: nodes/# */
    pid_t sim;
    char log[300];
    bool keep;
} fx_t;

static void dump(const char *path)
{
    _cleanup_free_ char *log = th_read_file(path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s (last 3000 bytes) ----\n%s\n----\n", path,
            log ? log + (n > 3000 ? n - 3000 : 0) : "(none)");
}

static int setup(void **state)
{
    if (!th_mosquitto_available()) {
        *state = NULL;
        return 0;
    }
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->dir = th_tmpdir("oak-wsim");
    _cleanup_free_ char *mqdir = xasprintf("%s/broker", fx->dir);
    if (th_mosquitto_start(&fx->mq, mqdir, ADMIN_USER, ADMIN_PW) < 0)
        fail_msg("mosquitto did not start");
    snprintf(fx->log, sizeof(fx->log), "%s/worker_sim.log", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    if (fx->sim > 0) {
        kill(fx->sim, SIGKILL);
        waitpid(fx->sim, NULL, 0);
    }
    th_mqtt_close(fx->obs);
    th_mosquitto_stop(&fx->mq);
    if (fx->keep)
        fprintf(stderr, "kept %s\n", fx->dir);
    else
        th_rmtree(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void observe(fx_t *fx)
{
    assert_int_equal(th_mqtt_connect(fx->mq.port, "observer", ADMIN_USER, ADMIN_PW, &fx->obs), 0);
    assert_int_equal(th_mqtt_subscribe(fx->obs, "nodes/#"), 1);
}

/* Starts worker_sim in broker-only mode with n workers named t-0.. plus
 * extra arguments (NULL-terminated). */
static void sim_start(fx_t *fx, int n, ...)
{
    char port[32], workers[16];
    snprintf(port, sizeof(port), "127.0.0.1:%d", fx->mq.port);
    snprintf(workers, sizeof(workers), "%d", n);
    const char *args[32] = {"--broker-admin",   ADMIN_USER ":" ADMIN_PW,
                            "--mqtt",           port,
                            "--workers",        workers,
                            "--prefix",         "t",
                            "--keepalive",      "2",
                            "--info-period-ms", "300",
                            "--seed",           "7"};
    size_t k = 14;
    va_list ap;
    va_start(ap, n);
    const char *a;
    while ((a = va_arg(ap, const char *)) && k < 31)
        args[k++] = a;
    va_end(ap);
    args[k] = NULL;
    fx->sim = msim_spawn(fx->log, args);
    assert_true(fx->sim > 0);
}

/* Reads (and acknowledges) what arrives for ms: the broker has at most 20
 * QoS 1 messages in flight to the observer. */
static void pump(fx_t *fx, int ms)
{
    th_mqtt_received(fx->obs, "nodes/none", NULL, ms);
}

static char *topic(int i, const char *suffix)
{
    return xasprintf("nodes/t-%d/%s", i, suffix);
}

static bool got(fx_t *fx, int i, const char *suffix, const char *payload, int ms)
{
    _cleanup_free_ char *t = topic(i, suffix);
    bool ok = th_mqtt_received(fx->obs, t, payload, ms);
    if (!ok) {
        fx->keep = true;
        fprintf(stderr, "no %s %s within %d ms\n", t, payload ? payload : "(any)", ms);
        dump(fx->log);
    }
    return ok;
}

static char *dump_compact(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static char *job(const char *sid, int n, uint64_t gen, const char *job_name, wp_status_t st)
{
    wp_job_t j = {.instance_number = n, .generation = gen, .status = st};
    snprintf(j.service_id, sizeof(j.service_id), "%s", sid);
    snprintf(j.job_name, sizeof(j.job_name), "%s", job_name);
    return dump_compact(wp_build_job(&j));
}

static void all_online(fx_t *fx, int n)
{
    for (int i = 0; i < n; i++)
        assert_true(got(fx, i, "status", "{\"status\":\"online\"}", 20000));
}

static void test_announce_deploy_delete_will(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    observe(fx);
    sim_start(fx, 20, NULL);
    all_online(fx, 20);
    /* each announces itself: full information, empty state, then partial
     * information reports every period */
    for (int i = 0; i < 20; i++) {
        assert_true(got(fx, i, "state", "{\"instances\":[]}", 5000));
        assert_true(got(fx, i, "information", NULL, 5000));
    }
    pump(fx, 1000);
    _cleanup_free_ char *info7 = topic(7, "information");
    assert_true(th_mqtt_count(fx->obs, info7) >= 3);

    /* deploy instance 2 (generation 3) of a service on t-5 */
    json_auto_t *svc = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "_id", SID, "job_name",
                                 "app.ns.web.ns", "image", "docker.io/library/nginx:latest",
                                 "virtualization", "container", "vcpus", 1, "memory", 100);
    json_t *deploy = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(wp_build_deploy(svc, 2, 3, &deploy, &err), 0);
    _cleanup_free_ char *deploy_s = dump_compact(deploy);
    _cleanup_free_ char *dt = topic(5, "control/deploy");
    assert_int_equal(th_mqtt_publish(fx->obs, dt, deploy_s), 0);
    _cleanup_free_ char *created = job(SID, 2, 3, "app.ns.web.ns", WP_ST_CREATED);
    _cleanup_free_ char *running = job(SID, 2, 3, "app.ns.web.ns", WP_ST_RUNNING);
    assert_true(got(fx, 5, "job", created, 5000));
    assert_true(got(fx, 5, "job", running, 5000));
    /* a deploy it cannot parse changes nothing; a repeated one re-reports */
    assert_int_equal(th_mqtt_publish(fx->obs, dt, "{\"service_id\": 5}"), 0);
    assert_int_equal(th_mqtt_publish(fx->obs, dt, deploy_s), 0);
    pump(fx, 500);
    _cleanup_free_ char *jt = topic(5, "job");
    assert_int_equal(th_mqtt_count(fx->obs, jt), 3);
    _cleanup_free_ char *other = topic(6, "job");
    assert_int_equal(th_mqtt_count(fx->obs, other), 0);
    /* the simulator counts the running instance */
    msim_stats_t st;
    for (int i = 0; i < 30 && (msim_log_stats(fx->log, &st) < 0 || st.running != 1); i++)
        pump(fx, 100);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.connected, 20);

    /* delete it: UNDEPLOYED */
    wp_delete_t d = {.instance_number = 2, .generation = 3};
    snprintf(d.service_id, sizeof(d.service_id), "%s", SID);
    _cleanup_free_ char *del = dump_compact(wp_build_delete(&d));
    _cleanup_free_ char *delt = topic(5, "control/delete");
    assert_int_equal(th_mqtt_publish(fx->obs, delt, del), 0);
    _cleanup_free_ char *undeployed = job(SID, 2, 3, "", WP_ST_UNDEPLOYED);
    assert_true(got(fx, 5, "job", undeployed, 5000));

    /* SIGKILL: the broker publishes every worker's last will */
    kill(fx->sim, SIGKILL);
    waitpid(fx->sim, NULL, 0);
    fx->sim = 0;
    for (int i = 0; i < 20; i++)
        assert_true(got(fx, i, "status", "{\"status\":\"offline\"}", 5000));
}

static void test_state_after_reconnect(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    observe(fx);
    sim_start(fx, 3, NULL);
    all_online(fx, 3);
    json_auto_t *svc = json_pack("{s:s, s:s, s:s, s:s}", "_id", SID, "job_name", "a.b.c.d", "image",
                                 "nginx", "virtualization", "container");
    json_t *deploy = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(wp_build_deploy(svc, 0, 1, &deploy, &err), 0);
    _cleanup_free_ char *deploy_s = dump_compact(deploy);
    _cleanup_free_ char *dt = topic(1, "control/deploy");
    assert_int_equal(th_mqtt_publish(fx->obs, dt, deploy_s), 0);
    _cleanup_free_ char *running = job(SID, 0, 1, "a.b.c.d", WP_ST_RUNNING);
    assert_true(got(fx, 1, "job", running, 5000));
    /* a broker restart drops every connection; the workers reconnect with
     * backoff and report their state again, with the running instance */
    th_mqtt_close(fx->obs);
    fx->obs = NULL;
    assert_int_equal(th_mosquitto_restart(&fx->mq), 0);
    observe(fx);
    wp_inst_t in = {.instance_number = 0, .generation = 1, .status = WP_ST_RUNNING};
    snprintf(in.service_id, sizeof(in.service_id), "%s", SID);
    _cleanup_free_ char *st1 = dump_compact(wp_build_state(&in, 1));
    assert_true(got(fx, 1, "state", st1, 15000));
    assert_true(got(fx, 0, "state", "{\"instances\":[]}", 15000));
    assert_true(got(fx, 2, "status", "{\"status\":\"online\"}", 15000));
}

static void test_kill_after_and_sigterm(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    observe(fx);
    sim_start(fx, 10, "--kill-after-ms", "2500", "--kill-count", "3", NULL);
    all_online(fx, 10);
    /* 3 of the 10 drop dead (their wills), the others stay */
    msim_stats_t st = {0};
    uint64_t end = oak_now_ms() + 8000;
    while ((msim_log_stats(fx->log, &st) < 0 || st.dead < 3) && oak_now_ms() < end)
        pump(fx, 200);
    /* one more status line after the kill, and the wills on their way */
    pump(fx, 1500);
    assert_int_equal(msim_log_stats(fx->log, &st), 0);
    assert_int_equal(st.dead, 3);
    assert_int_equal(st.connected, 7);
    int wills = 0;
    for (int i = 0; i < 10; i++) {
        _cleanup_free_ char *t = topic(i, "status");
        wills += th_mqtt_received(fx->obs, t, "{\"status\":\"offline\"}", 0);
    }
    assert_int_equal(wills, 3);

    /* SIGTERM: the rest publish offline and the process exits 0 */
    kill(fx->sim, SIGTERM);
    int status = -1;
    for (int i = 0; i < 100 && waitpid(fx->sim, &status, WNOHANG) != fx->sim; i++)
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    fx->sim = 0;
    for (int i = 0; i < 10; i++)
        assert_true(got(fx, i, "status", "{\"status\":\"offline\"}", 3000));
    _cleanup_free_ char *log = th_read_file(fx->log, NULL);
    assert_non_null(strstr(log, "worker_sim exit registered=10"));
}

/* ---- with the real cluster manager ---- */

static bool have_cluster_manager(void)
{
    _cleanup_free_ char *bin = xasprintf("%s/bin/cluster-manager", th_build_dir());
    if (access(bin, X_OK) != 0) {
        printf("SKIPPED: %s is not built\n", bin);
        return false;
    }
    return true;
}

/* workers_online of GET /api/cluster/status, or -1. */
static long long workers_online(int port)
{
    json_auto_t *out = NULL;
    if (th_http(port, "GET", "/api/cluster/status", NULL, NULL, &out) != 200)
        return -1;
    return oak_json_int(out, "workers_online", -1);
}

static void test_cluster_register_online_offline(void **state)
{
    fx_t *fx = *state;
    if (!fx || !have_cluster_manager())
        return;
    th_daemon_t root = {0}, cm = {0};
    _cleanup_free_ char *rdir = xasprintf("%s/root", fx->dir);
    _cleanup_free_ char *cdir = xasprintf("%s/cluster", fx->dir);
    const char *renv[] = {"OAK_ADMIN_PASSWORD=root-admin-pw", NULL};
    assert_int_equal(th_start_root(&root, rdir, renv), 0);
    _cleanup_free_ char *admin = th_login(root.api_port, "Admin", "root-admin-pw");
    assert_non_null(admin);
    json_auto_t *b = json_pack("{s:s}", "cluster_name", "edge1"), *tok = NULL;
    assert_int_equal(th_http(root.api_port, "POST", "/api/clusters/token", admin, b, &tok), 201);
    _cleanup_free_ char *e_tok = xasprintf("OAK_JOIN_TOKEN=%s", oak_json_str(tok, "token"));
    _cleanup_free_ char *e_grpc = xasprintf("SYSTEM_MANAGER_GRPC_PORT=%d", root.grpc_port);
    _cleanup_free_ char *e_mport = xasprintf("MQTT_BROKER_PORT=%d", fx->mq.port);
    const char *cenv[] = {"CLUSTER_NAME=edge1",
                          "SYSTEM_MANAGER_URL=127.0.0.1",
                          e_grpc,
                          e_tok,
                          "MQTT_BROKER_URL=127.0.0.1",
                          e_mport,
                          "OAK_MQTT_ADMIN_USER=" ADMIN_USER,
                          "OAK_MQTT_ADMIN_PASSWORD=" ADMIN_PW,
                          "OAK_WORKER_TOKEN=worker-token-0123456789",
                          NULL};
    if (th_start_cluster(&cm, cdir, cenv) < 0) {
        fx->keep = true;
        th_stop(&root, SIGKILL);
        fail_msg("cluster-manager did not start");
    }
    char url[64], mqtt[32];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", cm.api_port);
    snprintf(mqtt, sizeof(mqtt), "127.0.0.1:%d", fx->mq.port);
    const char *args[] = {
        "--cluster", url,        "--token", "worker-token-0123456789", "--mqtt", mqtt, "--workers",
        "20",        "--prefix", "itest",   "--info-period-ms",        "1000",   NULL};
    fx->sim = msim_spawn(fx->log, args);
    assert_true(fx->sim > 0);
    long long online = -1;
    uint64_t end = oak_now_ms() + 30000;
    while ((online = workers_online(cm.api_port)) != 20 && oak_now_ms() < end)
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    if (online != 20) {
        fx->keep = true;
        dump(fx->log);
        dump(cm.log_path);
    }
    assert_int_equal(online, 20);
    /* the simulator's own count agrees (its status line comes every second) */
    msim_stats_t st = {0};
    for (int i = 0; i < 30 && (msim_log_stats(fx->log, &st) < 0 || st.connected != 20); i++)
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    assert_int_equal(st.registered, 20);
    assert_int_equal(st.connected, 20);
    assert_int_equal(st.refused, 0);

    /* the simulator dies: the wills take every worker offline */
    kill(fx->sim, SIGKILL);
    waitpid(fx->sim, NULL, 0);
    fx->sim = 0;
    uint64_t t0 = oak_now_ms();
    end = t0 + 8000;
    while ((online = workers_online(cm.api_port)) != 0 && oak_now_ms() < end)
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    if (online != 0) {
        fx->keep = true;
        dump(cm.log_path);
    }
    assert_int_equal(online, 0);
    printf("workers offline %llu ms after the simulator was killed\n",
           (unsigned long long)(oak_now_ms() - t0));
    int cst = th_stop(&cm, SIGTERM), rst = th_stop(&root, SIGTERM);
    if (!WIFEXITED(cst) || WEXITSTATUS(cst) != 0)
        dump(cm.log_path);
    assert_true(WIFEXITED(cst) && WEXITSTATUS(cst) == 0);
    assert_true(WIFEXITED(rst) && WEXITSTATUS(rst) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_announce_deploy_delete_will, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_after_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_after_and_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_register_online_offline, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
