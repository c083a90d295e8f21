/* Benchmark: failover time after a worker dies. Starts the real
 * system-manager, mosquitto (dynamic security), cluster-manager, a local
 * registry with the busybox test image and two real node-engines (the
 * build directory's, default timings, one image store shared so the image
 * is cached on both), deploys one instance of `sh -c 'sleep 100000'`, then
 * per round kills the worker hosting it and measures the time from the
 * kill until the root API (GET /api/service/<id>, polled every 5 ms) shows
 * the instance RUNNING on the other worker. Two kinds of death:
 *   kill    the node-engine gets SIGKILL and its containers' init
 *           processes SIGKILL (the kernel closes the worker's broker
 *           connection: a crashed worker on a live host);
 *   freeze  the node-engine gets SIGSTOP and its containers SIGKILL (the
 *           connection stays open and silent, as when a host loses power
 *           or its network: the broker's keepalive must lapse).
 * Also recorded: when the root first stops showing the instance RUNNING on
 * the dead worker (detection + report, within the 5 ms poll). After each
 * round the dead worker is killed for good, its containers deleted, and it
 * is started again with the same state (it comes back as the same node,
 * restarts the instance from its desired state and gets the cluster's
 * delete); the next round kills whichever worker then hosts the instance.
 * Everything is undeployed and removed at the end, also after SIGINT or
 * SIGTERM (the loops stop at the next poll). Single-threaded.
 *
 * Usage: bench_failover [--rounds N]   (default 10 of each kind)
 * Prints per kind:
 *   failover kind=kill rounds=N p50_ms=.. p95_ms=.. min_ms=.. max_ms=.. detect_p50_ms=..
 * and the result lines (test/bench/bench.h)
 *   RESULT failover_<kind>_{p50,p95,min,max,detect_p50} <ms> ms, failover_<kind>_n <n> count */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"
#include "test/bench/bench.h"
#include "test/common/harness.h"
#include "test/common/mosquitto.h"
#include "test/common/nodeengine.h"
#include "test/common/registry.h"
#include "test/common/rootfs.h"
#include "test/common/testimage.h"

#define WORKER_TOKEN "bench-worker-token-0123456789"
#define MQ_ADMIN     "bench-admin"
#define MQ_PASSWORD  "bench-admin-password"
#define MAX_CONT     16
#define ROUND_MS     30000 /* a failover not done by then fails the benchmark */

typedef struct {
    char *dir;
    th_daemon_t root, cm;
    th_mosquitto_t mq;
    th_registry_t reg;
    th_ne_t ne[2];
    bool ne_init[2];
    char *admin;
    char image[128];
    char *sid;
} fx_t;

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    stopping = sig;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void dump(const char *path)
{
    _cleanup_free_ char *log = th_read_file(path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s ----\n%s\n----\n", path, log ? log + (n > 4000 ? n - 4000 : 0) : "");
}

static bool cluster_active(fx_t *f)
{
    json_auto_t *l = NULL;
    th_http(f->root.api_port, "GET", "/api/clusters/active", f->admin, NULL, &l);
    return json_array_size(l) == 1 && oak_json_bool(json_array_get(l, 0), "connected", false);
}

static long long workers_online(fx_t *f)
{
    json_auto_t *out = NULL;
    if (th_http(f->cm.api_port, "GET", "/api/cluster/status", NULL, NULL, &out) != 200)
        return -1;
    return oak_json_int(out, "workers_online", -1);
}

static int setup(fx_t *f)
{
    char sd[300];
    f->dir = th_tmpdir("bench-failover");
    snprintf(sd, sizeof(sd), "%s/root", f->dir);
    const char *renv[] = {"OAK_ADMIN_PASSWORD=bench-password", "OAK_LOG_LEVEL=warn", NULL};
    if (th_start_root(&f->root, sd, renv) < 0)
        return -1;
    f->admin = th_login(f->root.api_port, "Admin", "bench-password");
    json_auto_t *b = json_pack("{s:s}", "cluster_name", "bench"), *tok = NULL;
    if (!f->admin ||
        th_http(f->root.api_port, "POST", "/api/clusters/token", f->admin, b, &tok) != 201)
        return -1;
    snprintf(sd, sizeof(sd), "%s/mq", f->dir);
    if (th_mosquitto_start(&f->mq, sd, MQ_ADMIN, MQ_PASSWORD) < 0)
        return -1;
    _cleanup_free_ char *e_tok = xasprintf("OAK_JOIN_TOKEN=%s", oak_json_str(tok, "token"));
    _cleanup_free_ char *e_grpc = xasprintf("SYSTEM_MANAGER_GRPC_PORT=%d", f->root.grpc_port);
    _cleanup_free_ char *e_mport = xasprintf("MQTT_BROKER_PORT=%d", f->mq.port);
    const char *cenv[] = {"CLUSTER_NAME=bench",
                          "SYSTEM_MANAGER_URL=127.0.0.1",
                          e_grpc,
                          e_tok,
                          "MQTT_BROKER_URL=127.0.0.1",
                          e_mport,
                          "OAK_MQTT_ADMIN_USER=" MQ_ADMIN,
                          "OAK_MQTT_ADMIN_PASSWORD=" MQ_PASSWORD,
                          "OAK_WORKER_TOKEN=" WORKER_TOKEN,
                          "OAK_LOG_LEVEL=info",
                          NULL};
    snprintf(sd, sizeof(sd), "%s/cluster", f->dir);
    if (th_start_cluster(&f->cm, sd, cenv) < 0) {
        dump(f->cm.log_path);
        return -1;
    }
    for (int t = 0; t < 10000 && !cluster_active(f) && !stopping; t += 50)
        sleep_ms(50);
    if (!cluster_active(f)) {
        fprintf(stderr, "bench_failover: the cluster did not become active\n");
        return -1;
    }
    snprintf(sd, sizeof(sd), "%s/registry", f->dir);
    if (th_registry_start(&f->reg, sd, TH_REGISTRY_OPEN, NULL, NULL) < 0 ||
        th_testimage_push(f->reg.port, "v1", "test/busybox", "v1", false) < 0)
        return -1;
    char insecure[64], images[300], sock[300];
    snprintf(insecure, sizeof(insecure), "127.0.0.1:%d", f->reg.port);
    snprintf(f->image, sizeof(f->image), "127.0.0.1:%d/test/busybox:v1", f->reg.port);
    snprintf(images, sizeof(images), "%s/images", f->dir);
    snprintf(sock, sizeof(sock), "%s/no-net-manager.sock", f->dir);
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof(name), "bench-fo-%d-%c", (int)getpid(), 'a' + i);
        snprintf(sd, sizeof(sd), "%s/ne-%c", f->dir, 'a' + i);
        th_ne_init(&f->ne[i], name, sd, f->cm.api_port, WORKER_TOKEN);
        f->ne_init[i] = true;
        th_ne_setenv(&f->ne[i], "OAK_INSECURE_REGISTRIES", insecure);
        th_ne_setenv(&f->ne[i], "OAK_IMAGE_DIR", images);
        th_ne_setenv(&f->ne[i], "OAK_NETMANAGER_SOCKET", sock);
        th_ne_setenv(&f->ne[i], "OAK_STOP_TIMEOUT_S", "1");
        th_ne_setenv(&f->ne[i], "OAK_LOG_LEVEL", "info");
        if (th_ne_start(&f->ne[i], true, 20000) < 0)
            return -1;
    }
    return 0;
}

/* Stops a node engine for good (SIGCONT first, in case it is frozen) and
 * removes its containers, mounts and cgroups. */
static void ne_remove(th_ne_t *ne, bool drain)
{
    if (ne->pid > 0 && drain) {
        int st;
        const char *args[] = {"stop", "--drain", NULL};
        kill(ne->pid, SIGCONT);
        free(th_ne_cmd(ne, args, &st));
        th_ne_wait(ne, 30000);
    }
    if (ne->pid > 0) {
        kill(ne->pid, SIGCONT);
        th_ne_stop(ne, SIGKILL);
    }
    th_ne_cleanup(ne);
}

static void teardown(fx_t *f)
{
    if (f->sid) {
        char path[200];
        snprintf(path, sizeof(path), "/api/service/%s/instance/0", f->sid);
        th_http(f->root.api_port, "DELETE", path, f->admin, NULL, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (f->ne_init[i])
            ne_remove(&f->ne[i], true);
    if (f->cm.pid > 0)
        th_stop(&f->cm, SIGTERM);
    if (f->root.pid > 0)
        th_stop(&f->root, SIGTERM);
    th_mosquitto_stop(&f->mq);
    if (f->reg.pid > 0)
        th_registry_stop(&f->reg);
    if (f->dir)
        th_rmtree(f->dir);
    free(f->dir);
    free(f->admin);
    free(f->sid);
}

/* Registers an application with one service running sleep (no instance
 * yet); returns its id (owned) or NULL. */
static char *create_service(fx_t *f)
{
    char sla[2048];
    snprintf(sla, sizeof(sla),
             "{\"sla_version\":\"v2.0\",\"customerID\":\"Admin\",\"applications\":[{"
             "\"applicationID\":\"\",\"application_name\":\"failover\",\"application_namespace\":"
             "\"bench\",\"application_desc\":\"\",\"microservices\":[{\"microserviceID\":\"\","
             "\"microservice_name\":\"sleep\",\"microservice_namespace\":\"bench\","
             "\"virtualization\":\"container\",\"code\":\"%s\",\"cmd\":[\"sh\",\"-c\","
             "\"sleep 100000\"],\"memory\":16,\"vcpus\":0}]}]}",
             f->image);
    json_auto_t *out = NULL;
    long st = th_http_raw(f->root.api_port, "POST", "/api/application/", f->admin, sla, strlen(sla),
                          &out);
    json_t *app = json_array_get(out, json_array_size(out) - 1);
    const char *sid = json_string_value(json_array_get(json_object_get(app, "microservices"), 0));
    if (st != 200 || !sid) {
        fprintf(stderr, "bench_failover: create application: %ld\n", st);
        return NULL;
    }
    return xstrdup(sid);
}

/* Status and worker of instance 0 at the root into st and worker (empty
 * when unknown). */
static void instance0(fx_t *f, char *st, size_t stlen, char *worker, size_t wlen)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/service/%s", f->sid);
    json_auto_t *s = NULL;
    st[0] = worker[0] = 0;
    if (th_http(f->root.api_port, "GET", path, f->admin, NULL, &s) != 200)
        return;
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(s, "instance_list"), i, in)
    {
        if (oak_json_int(in, "instance_number", -1) != 0)
            continue;
        const char *v = oak_json_str(in, "status"), *w = oak_json_str(in, "worker_id");
        snprintf(st, stlen, "%s", v ? v : "");
        snprintf(worker, wlen, "%s", w ? w : "");
    }
}

/* Init pids of ne's containers (at most max) from `runc list`; returns
 * how many, or -1 when runc cannot be asked. */
static int container_pids(const th_ne_t *ne, pid_t *pids, int max)
{
    _cleanup_free_ char *out = NULL;
    if (th_runc(ne->runc_root, &out, "list", "-f", "json", NULL) != 0)
        return -1;
    json_auto_t *l = out ? json_loads(out, 0, NULL) : NULL;
    int n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(l, i, c)
    {
        pid_t pid = (pid_t)oak_json_int(c, "pid", 0);
        if (pid > 0 && n < max)
            pids[n++] = pid;
    }
    return n;
}

/* Waits until instance 0 is RUNNING at the root on one of the workers,
 * both workers are online and the other one runs no container. Returns
 * the index of the hosting worker, or -1 after ms. */
static int wait_settled(fx_t *f, int ms)
{
    char st[32], w[64];
    for (int t = 0; t <= ms && !stopping; t += 100) {
        instance0(f, st, sizeof(st), w, sizeof(w));
        int h = !strcmp(w, f->ne[0].node_id) ? 0 : !strcmp(w, f->ne[1].node_id) ? 1 : -1;
        pid_t pids[MAX_CONT];
        if (!strcmp(st, "RUNNING") && h >= 0 && workers_online(f) == 2 &&
            container_pids(&f->ne[1 - h], pids, MAX_CONT) == 0)
            return h;
        sleep_ms(100);
    }
    fprintf(stderr, "bench_failover: not settled after %d ms (instance %s on '%s')\n", ms, st, w);
    return -1;
}

/* One failover: kills (or freezes) the worker hosting the instance and its
 * containers, waits for RUNNING on the other worker, then brings the dead
 * one back. *ms and *detect_ms get the failover and detection times. */
static int failover_round(fx_t *f, bool freeze, double *ms, double *detect_ms)
{
    int h = wait_settled(f, 60000);
    if (h < 0)
        return -1;
    th_ne_t *victim = &f->ne[h], *other = &f->ne[1 - h];
    pid_t pids[MAX_CONT];
    int n = container_pids(victim, pids, MAX_CONT);
    if (n < 1) {
        fprintf(stderr, "bench_failover: no container on the hosting worker %s\n", victim->name);
        return -1;
    }
    sleep_ms(500); /* the last status reports are through */
    uint64_t t0 = oak_now_us(), t_detect = 0, t1 = 0;
    kill(victim->pid, freeze ? SIGSTOP : SIGKILL);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    char st[32], w[64];
    while (!stopping && oak_now_us() - t0 < ROUND_MS * 1000ULL) {
        instance0(f, st, sizeof(st), w, sizeof(w));
        uint64_t now = oak_now_us();
        bool on_victim = !strcmp(st, "RUNNING") && !strcmp(w, victim->node_id);
        if (!on_victim && !t_detect)
            t_detect = now;
        if (!strcmp(st, "RUNNING") && !strcmp(w, other->node_id)) {
            t1 = now;
            break;
        }
        sleep_ms(5);
    }
    /* the dead worker is gone for good: reap it, delete its containers */
    if (freeze)
        kill(victim->pid, SIGCONT);
    th_ne_stop(victim, SIGKILL);
    th_runc_cleanup(victim->runc_root, NULL, victim->state_dir);
    if (!t1) {
        if (!stopping) {
            fprintf(stderr,
                    "bench_failover: instance not RUNNING on %s %d ms after %s %s (now %s on "
                    "'%s')\n",
                    other->name, ROUND_MS, freeze ? "freezing" : "killing", victim->name, st, w);
            dump(f->cm.log_path);
            th_ne_dump(other);
        }
        return -1;
    }
    *ms = (double)(t1 - t0) / 1000.0;
    *detect_ms = (double)(t_detect - t0) / 1000.0;
    /* and back, as the same node with its desired state */
    return th_ne_start(victim, true, 20000);
}

static int bench(fx_t *f, bool freeze, int rounds)
{
    const char *kind = freeze ? "freeze" : "kill";
    double *ms = xcalloc((size_t)rounds, sizeof(double));
    double *det = xcalloc((size_t)rounds, sizeof(double));
    int rc = 0;
    for (int i = 0; i < rounds && rc == 0; i++) {
        rc = failover_round(f, freeze, &ms[i], &det[i]);
        if (rc == 0) {
            printf("failover_round kind=%s round=%d ms=%.1f detect_ms=%.1f\n", kind, i + 1, ms[i],
                   det[i]);
            fflush(stdout);
        }
    }
    if (rc == 0) {
        qsort(ms, (size_t)rounds, sizeof(double), bench_cmp_double);
        qsort(det, (size_t)rounds, sizeof(double), bench_cmp_double);
        double p50 = bench_quantile(ms, rounds, 0.5), p95 = bench_quantile(ms, rounds, 0.95);
        double d50 = bench_quantile(det, rounds, 0.5);
        printf("failover kind=%s rounds=%d p50_ms=%.1f p95_ms=%.1f min_ms=%.1f max_ms=%.1f "
               "detect_p50_ms=%.1f\n",
               kind, rounds, p50, p95, ms[0], ms[rounds - 1], d50);
        char key[64];
        const char *what[] = {"p50", "p95", "min", "max", "detect_p50"};
        double v[] = {p50, p95, ms[0], ms[rounds - 1], d50};
        for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
            snprintf(key, sizeof(key), "failover_%s_%s", kind, what[k]);
            bench_result(key, v[k], "ms");
        }
        snprintf(key, sizeof(key), "failover_%s_n", kind);
        bench_result(key, rounds, "count");
    }
    free(ms);
    free(det);
    return rc;
}

int main(int argc, char **argv)
{
    int rounds = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_failover [--rounds N]\n");
            return 2;
        }
    }
    if (rounds < 1)
        return 2;
    if (!th_mosquitto_available() || !th_ne_available() || !th_registry_available() ||
        !th_testimage_available())
        return 0;
    const char *bins[] = {"cluster-manager", "node-engine", "system-manager"};
    for (size_t i = 0; i < 3; i++) {
        _cleanup_free_ char *bin = xasprintf("%s/bin/%s", th_build_dir(), bins[i]);
        if (access(bin, X_OK) != 0) {
            printf("SKIPPED: %s is not built\n", bin);
            return 0;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fx_t f = {0};
    int rc = 1;
    if (setup(&f) < 0 || stopping)
        goto out;
    f.sid = create_service(&f);
    char path[160];
    snprintf(path, sizeof(path), "/api/service/%s/instance", f.sid ? f.sid : "");
    if (!f.sid || th_http(f.root.api_port, "POST", path, f.admin, NULL, NULL) != 200) {
        fprintf(stderr, "bench_failover: cannot deploy the instance\n");
        goto out;
    }
    if (bench(&f, false, rounds) < 0 || bench(&f, true, rounds) < 0)
        goto out;
    rc = 0;
out:
    teardown(&f);
    if (stopping) {
        fprintf(stderr, "bench_failover: interrupted\n");
        return 128 + stopping;
    }
    return rc;
}
