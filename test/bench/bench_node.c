/* Benchmark: the worker tier. Starts the real system-manager, mosquitto,
 * cluster-manager, a local registry holding the busybox test image and one
 * real node-engine (the build directory's, release in `make bench`), all
 * with their default timings, then measures:
 *   1. idle with no instance: RSS (VmRSS of /proc/<pid>/status, with its
 *      anonymous and file-backed parts) and CPU (utime + stime of
 *      /proc/<pid>/stat over the window, % of one core) of the node-engine,
 *      and over the same window of the cluster-manager, the system-manager
 *      and mosquitto (the cluster has this one worker);
 *   2. the same with 50 instances of `sh -c 'sleep 100000'` RUNNING (one
 *      service with "replicas": 50, memory 16, vcpus 0);
 *   3. deploy latency with the image cached: N times POST
 *      /api/service/<id>/instance at the root, then GET the service every
 *      5 ms until one more instance is RUNNING (both schedulers, the worker
 *      and the status back to the root); also from the moment the worker's
 *      desired-state file of the instance appears (seen by the same 5 ms
 *      poll) to RUNNING at the root: the worker's share, an upper bound of
 *      the container start;
 *   4. pull of the test image into fresh image stores (in this process,
 *      through node_engine/image.c, plain HTTP from the local registry).
 * Everything is undeployed, the node engine drained and its runc root,
 * cgroups and mounts removed at the end; on SIGINT/SIGTERM the daemons are
 * stopped too. Single-threaded.
 *
 * Usage: bench_node [--seconds S] [--deploys N]   (defaults 20, 50)
 * Prints:
 *   <daemon>_idle instances=0|50 seconds=S rss_kb=.. cpu_percent=.. rss_anon_kb=.. rss_file_kb=..
 *     (daemon: node_engine, cluster_manager, system_manager, mosquitto)
 *   deploy_latency n=N p50_ms=.. p95_ms=.. min_ms=.. max_ms=..
 *   deploy_latency_worker n=N p50_ms=.. p95_ms=..
 *   image_pull bytes=.. blobs=.. p50_ms=.. bytes_per_s=..
 * and the result lines (test/bench/bench.h)
 *   RESULT idle<0|50>_<daemon>_{rss,rss_anon,rss_file} <kB> kB, ..._cpu <x> percent
 *   RESULT deploy_{p50,p95,min,max} <ms> ms, deploy_n <n> count,
 *          deploy_worker_{p50,p95} <ms> ms, deploy_worker_n <n> count
 *   RESULT image_pull_{p50,min} <ms> ms, image_pull_bytes <n> B, image_pull_blobs <n> count */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_err.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"
#include "node_engine/image.h"
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
#define REPLICAS     50

typedef struct {
    char *dir;
    th_daemon_t root, cm;
    th_mosquitto_t mq;
    th_registry_t reg;
    th_ne_t ne;
    bool ne_init;
    char *admin;
    char image[128];
    char insecure[64];
    char *sids[2];
} fx_t;

static fx_t *volatile current;

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

static void on_fatal_signal(int sig)
{
    fx_t *f = current;
    if (f) {
        pid_t pids[] = {f->ne.pid, f->cm.pid, f->root.pid, f->mq.pid, f->reg.pid};
        for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++)
            if (pids[i] > 0)
                kill(pids[i], SIGTERM);
    }
    _exit(128 + sig);
}

static bool cluster_active(fx_t *f)
{
    json_auto_t *l = NULL;
    th_http(f->root.api_port, "GET", "/api/clusters/active", f->admin, NULL, &l);
    return json_array_size(l) == 1 && oak_json_bool(json_array_get(l, 0), "connected", false);
}

static int setup(fx_t *f)
{
    char sd[300];
    f->dir = th_tmpdir("bench-node");
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
                          "OAK_LOG_LEVEL=warn",
                          NULL};
    snprintf(sd, sizeof(sd), "%s/cluster", f->dir);
    if (th_start_cluster(&f->cm, sd, cenv) < 0) {
        dump(f->cm.log_path);
        return -1;
    }
    for (int t = 0; t < 10000 && !cluster_active(f); t += 50)
        sleep_ms(50);
    if (!cluster_active(f)) {
        fprintf(stderr, "bench_node: the cluster did not become active\n");
        return -1;
    }
    snprintf(sd, sizeof(sd), "%s/registry", f->dir);
    if (th_registry_start(&f->reg, sd, TH_REGISTRY_OPEN, NULL, NULL) < 0 ||
        th_testimage_push(f->reg.port, "v1", "test/busybox", "v1", false) < 0)
        return -1;
    snprintf(f->insecure, sizeof(f->insecure), "127.0.0.1:%d", f->reg.port);
    snprintf(f->image, sizeof(f->image), "127.0.0.1:%d/test/busybox:v1", f->reg.port);

    char name[64], images[300], sock[300];
    snprintf(name, sizeof(name), "bench-ne-%d", (int)getpid());
    snprintf(sd, sizeof(sd), "%s/ne", f->dir);
    snprintf(images, sizeof(images), "%s/images", f->dir);
    snprintf(sock, sizeof(sock), "%s/no-net-manager.sock", f->dir);
    th_ne_init(&f->ne, name, sd, f->cm.api_port, WORKER_TOKEN);
    f->ne_init = true;
    th_ne_setenv(&f->ne, "OAK_INSECURE_REGISTRIES", f->insecure);
    th_ne_setenv(&f->ne, "OAK_IMAGE_DIR", images);
    th_ne_setenv(&f->ne, "OAK_NETMANAGER_SOCKET", sock);
    th_ne_setenv(&f->ne, "OAK_STOP_TIMEOUT_S", "1");
    th_ne_setenv(&f->ne, "OAK_LOG_LEVEL", "info");
    return th_ne_start(&f->ne, true, 20000);
}

static void teardown(fx_t *f)
{
    if (f->ne.pid > 0) {
        int st;
        const char *args[] = {"stop", "--drain", NULL};
        free(th_ne_cmd(&f->ne, args, &st));
        th_ne_wait(&f->ne, 30000);
        if (f->ne.pid > 0)
            th_ne_stop(&f->ne, SIGKILL);
    }
    if (f->ne_init)
        th_ne_cleanup(&f->ne);
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
    free(f->sids[0]);
    free(f->sids[1]);
}

/* Registers an application with one service running sleep; returns its id
 * (owned) or NULL. */
static char *create_service(fx_t *f, int replicas)
{
    static int seq;
    char sla[2048], rep[32] = "";
    if (replicas > 0)
        snprintf(rep, sizeof(rep), ",\"replicas\":%d", replicas);
    snprintf(sla, sizeof(sla),
             "{\"sla_version\":\"v2.0\",\"customerID\":\"Admin\",\"applications\":[{"
             "\"applicationID\":\"\",\"application_name\":\"bench%d\",\"application_namespace\":"
             "\"bench\",\"application_desc\":\"\",\"microservices\":[{\"microserviceID\":\"\","
             "\"microservice_name\":\"sleep\",\"microservice_namespace\":\"bench\","
             "\"virtualization\":\"container\",\"code\":\"%s\",\"cmd\":[\"sh\",\"-c\","
             "\"sleep 100000\"],\"memory\":16,\"vcpus\":0%s}]}]}",
             ++seq, f->image, rep);
    json_auto_t *out = NULL;
    long st = th_http_raw(f->root.api_port, "POST", "/api/application/", f->admin, sla, strlen(sla),
                          &out);
    json_t *app = json_array_get(out, json_array_size(out) - 1);
    const char *sid = json_string_value(json_array_get(json_object_get(app, "microservices"), 0));
    if (st != 200 || !sid) {
        fprintf(stderr, "bench_node: create application: %ld\n", st);
        return NULL;
    }
    return xstrdup(sid);
}

/* Instances of sid at the root (new reference or NULL). */
static json_t *instances(fx_t *f, const char *sid)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/service/%s", sid);
    json_auto_t *s = NULL;
    if (th_http(f->root.api_port, "GET", path, f->admin, NULL, &s) != 200)
        return NULL;
    return json_incref(json_object_get(s, "instance_list"));
}

static int count_status(const json_t *list, const char *status)
{
    size_t i;
    json_t *in;
    int n = 0;
    json_array_foreach(list, i, in)
    {
        const char *st = oak_json_str(in, "status");
        n += st && !strcmp(st, status);
    }
    return n;
}

static int wait_running(fx_t *f, const char *sid, int n, int ms)
{
    for (int t = 0;; t += 100) {
        json_auto_t *l = instances(f, sid);
        if (count_status(l, "RUNNING") >= n)
            return 0;
        if (t >= ms) {
            fprintf(stderr, "bench_node: %d of %d instances RUNNING\n", count_status(l, "RUNNING"),
                    n);
            dump(f->cm.log_path);
            th_ne_dump(&f->ne);
            return -1;
        }
        sleep_ms(100);
    }
}

/* Idle CPU (utime + stime over the window, % of one core) and RSS of the
 * node engine, the cluster manager, the system manager and the broker,
 * measured together over the same window. */
static void measure_idle(fx_t *f, int instances_n, int seconds)
{
    static const char *names[] = {"node_engine", "cluster_manager", "system_manager", "mosquitto"};
    pid_t pids[] = {f->ne.pid, f->cm.pid, f->root.pid, f->mq.pid};
    enum { N = sizeof(pids) / sizeof(pids[0]) };
    long long c0[N], c1[N];
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < N; i++)
        c0[i] = bench_cpu_ticks(pids[i]);
    uint64_t w0 = oak_now_us();
    sleep_ms(seconds * 1000);
    for (int i = 0; i < N; i++)
        c1[i] = bench_cpu_ticks(pids[i]);
    double wall = (double)(oak_now_us() - w0) / 1e6;
    char key[96];
    for (int i = 0; i < N; i++) {
        long anon, file, rss = bench_rss_kb(pids[i], &anon, &file);
        double cpu =
            c0[i] < 0 || c1[i] < 0 ? -1 : 100.0 * (double)(c1[i] - c0[i]) / (double)hz / wall;
        printf("%s_idle instances=%d seconds=%d rss_kb=%ld cpu_percent=%.2f rss_anon_kb=%ld "
               "rss_file_kb=%ld\n",
               names[i], instances_n, seconds, rss, cpu, anon, file);
        snprintf(key, sizeof(key), "idle%d_%s_rss", instances_n, names[i]);
        bench_result(key, (double)rss, "kB");
        snprintf(key, sizeof(key), "idle%d_%s_rss_anon", instances_n, names[i]);
        bench_result(key, (double)anon, "kB");
        snprintf(key, sizeof(key), "idle%d_%s_rss_file", instances_n, names[i]);
        bench_result(key, (double)file, "kB");
        snprintf(key, sizeof(key), "idle%d_%s_cpu", instances_n, names[i]);
        bench_result(key, cpu, "percent");
    }
    fflush(stdout);
}

static int deploy_latency(fx_t *f, int n)
{
    f->sids[1] = create_service(f, 0);
    if (!f->sids[1])
        return -1;
    const char *sid = f->sids[1];
    double *lat = xcalloc((size_t)n, sizeof(double)), *wlat = xcalloc((size_t)n, sizeof(double));
    int nw = 0, rc = 0;
    char path[160];
    snprintf(path, sizeof(path), "/api/service/%s/instance", sid);
    for (int i = 0; i < n && rc == 0; i++) {
        uint64_t t0 = oak_now_us(), tw = 0;
        if (th_http(f->root.api_port, "POST", path, f->admin, NULL, NULL) != 200) {
            fprintf(stderr, "bench_node: POST %s failed\n", path);
            rc = -1;
            break;
        }
        /* the instance numbers count from 0 in request order */
        char file[600];
        snprintf(file, sizeof(file), "%s/instances/%s-%d.json", f->ne.state_dir, sid, i);
        for (;;) {
            if (!tw && access(file, F_OK) == 0)
                tw = oak_now_us();
            json_auto_t *l = instances(f, sid);
            if (count_status(l, "RUNNING") >= i + 1)
                break;
            if (oak_now_us() - t0 > 30000000ULL) {
                fprintf(stderr, "bench_node: deployment %d not RUNNING after 30 s\n", i);
                th_ne_dump(&f->ne);
                rc = -1;
                break;
            }
            sleep_ms(5);
        }
        uint64_t t1 = oak_now_us();
        lat[i] = (double)(t1 - t0) / 1000.0;
        if (tw)
            wlat[nw++] = (double)(t1 - tw) / 1000.0;
    }
    if (rc == 0) {
        qsort(lat, (size_t)n, sizeof(double), bench_cmp_double);
        printf("deploy_latency n=%d p50_ms=%.1f p95_ms=%.1f min_ms=%.1f max_ms=%.1f\n", n,
               bench_quantile(lat, n, 0.5), bench_quantile(lat, n, 0.95), lat[0], lat[n - 1]);
        bench_result("deploy_n", n, "count");
        bench_result("deploy_p50", bench_quantile(lat, n, 0.5), "ms");
        bench_result("deploy_p95", bench_quantile(lat, n, 0.95), "ms");
        bench_result("deploy_min", lat[0], "ms");
        bench_result("deploy_max", lat[n - 1], "ms");
        if (nw > 0) {
            qsort(wlat, (size_t)nw, sizeof(double), bench_cmp_double);
            printf("deploy_latency_worker n=%d p50_ms=%.1f p95_ms=%.1f (desired state on the "
                   "worker -> RUNNING at the root)\n",
                   nw, bench_quantile(wlat, nw, 0.5), bench_quantile(wlat, nw, 0.95));
            bench_result("deploy_worker_n", nw, "count");
            bench_result("deploy_worker_p50", bench_quantile(wlat, nw, 0.5), "ms");
            bench_result("deploy_worker_p95", bench_quantile(wlat, nw, 0.95), "ms");
        }
        fflush(stdout);
    }
    free(lat);
    free(wlat);
    return rc;
}

/* Undeploys every instance of both services and waits until the worker
 * runs no container. */
static int undeploy_all(fx_t *f)
{
    for (int s = 0; s < 2; s++) {
        if (!f->sids[s])
            continue;
        json_auto_t *l = instances(f, f->sids[s]);
        size_t i;
        json_t *in;
        json_array_foreach(l, i, in)
        {
            char path[200];
            snprintf(path, sizeof(path), "/api/service/%s/instance/%lld", f->sids[s],
                     oak_json_int(in, "instance_number", -1));
            th_http(f->root.api_port, "DELETE", path, f->admin, NULL, NULL);
        }
    }
    for (int t = 0; t < 60000; t += 200) {
        _cleanup_free_ char *out = NULL;
        int st = th_runc(f->ne.runc_root, &out, "list", "-q", NULL);
        if (st == 0 && (!out || strspn(out, " \n") == strlen(out)))
            return 0;
        sleep_ms(200);
    }
    fprintf(stderr, "bench_node: containers left after undeploying everything\n");
    return -1;
}

static int pull_bench(fx_t *f, int rounds)
{
    double *ms = xcalloc((size_t)rounds, sizeof(double));
    uint64_t bytes = 0;
    unsigned blobs = 0;
    int rc = 0;
    for (int i = 0; i < rounds && rc == 0; i++) {
        oak_err_t err = OAK_ERR_INIT;
        _cleanup_free_ char *dir = xasprintf("%s/pull-%d", f->dir, i);
        image_store_t *s = NULL;
        image_t *img = NULL;
        image_pull_opts_t o = {.insecure = true, .policy = IMAGE_PULL_ALWAYS};
        uint64_t t0 = oak_now_us();
        if (image_store_open(dir, &s, &err) < 0 || image_pull(s, f->image, &o, &img, &err) < 0) {
            fprintf(stderr, "bench_node: pull: %s\n", err.msg);
            oak_err_clear(&err);
            rc = -1;
        } else {
            ms[i] = (double)(oak_now_us() - t0) / 1000.0;
            bytes = img->bytes_fetched;
            blobs = img->blobs_fetched;
        }
        image_free(img);
        if (s)
            image_store_close(s);
        th_rmtree(dir);
    }
    if (rc == 0) {
        qsort(ms, (size_t)rounds, sizeof(double), bench_cmp_double);
        double p50 = bench_quantile(ms, rounds, 0.5);
        printf("image_pull fresh_store=1 rounds=%d bytes=%llu blobs=%u p50_ms=%.1f min_ms=%.1f "
               "bytes_per_s=%.0f\n",
               rounds, (unsigned long long)bytes, blobs, p50, ms[0],
               (double)bytes / (p50 / 1000.0));
        bench_result("image_pull_p50", p50, "ms");
        bench_result("image_pull_min", ms[0], "ms");
        bench_result("image_pull_bytes", (double)bytes, "B");
        bench_result("image_pull_blobs", blobs, "count");
        fflush(stdout);
    }
    free(ms);
    return rc;
}

int main(int argc, char **argv)
{
    int seconds = 20, deploys = 50;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--deploys") && i + 1 < argc)
            deploys = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_node [--seconds S] [--deploys N]\n");
            return 2;
        }
    }
    if (seconds < 1 || deploys < 1)
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
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    fx_t f = {0};
    current = &f;
    int rc = 1;
    if (setup(&f) < 0) {
        if (f.ne_init)
            th_ne_dump(&f.ne);
        goto out;
    }
    sleep_ms(3000); /* registration and first reports settle */
    measure_idle(&f, 0, seconds);

    f.sids[0] = create_service(&f, REPLICAS);
    if (!f.sids[0] || wait_running(&f, f.sids[0], REPLICAS, 180000) < 0)
        goto out;
    sleep_ms(3000);
    measure_idle(&f, REPLICAS, seconds);

    if (deploy_latency(&f, deploys) < 0 || undeploy_all(&f) < 0)
        goto out;
    if (pull_bench(&f, 5) < 0)
        goto out;
    rc = 0;
out:
    teardown(&f);
    current = NULL;
    return rc;
}
