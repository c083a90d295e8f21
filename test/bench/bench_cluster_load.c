/* Benchmark: the cluster manager's load under N simulated idle workers.
 * For each worker count: starts system-manager, issues a join token,
 * starts mosquitto (as the cluster configures it) and the real
 * cluster-manager, then runs the worker simulator (test/tools/worker_sim)
 * with N workers reporting information every info period. Measures the
 * registration throughput, the time until GET /api/cluster/status shows
 * every worker online, then the cluster manager's CPU (utime + stime from
 * /proc/<pid>/stat over the window, as % of one core) and RSS, with the
 * broker's and the simulator's CPU for context.
 *
 * --broker-only runs the simulator against a plain mosquitto without
 * authentication (no cluster), to measure the simulator and the broker.
 *
 * Usage: bench_cluster_load [--broker-only] [--seconds S] [--info-period-ms P]
 *                           [--max-wait-s W] [workers...]
 *        (defaults: 20 s, 2000 ms, 2400 s, 1000 10000). W bounds the wait for
 *        every worker to register and connect (a minute without progress
 *        ends it too): registering 10,000 workers takes about 25 minutes,
 *        bound by mosquitto's dynamic-security plugin rewriting its whole
 *        JSON file on every change.
 * Prints per count:
 *   cluster_register workers=N seconds=X rate_per_s=Y all_online_s=Z
 *   cluster_load workers=N info_period_ms=P cm_cpu_percent=X cm_rss_kb=Y
 *   cluster_load_aux workers=N mosquitto_cpu_percent=X sim_cpu_percent=Y ...
 * and result lines RESULT cluster_load_<N>_<what> <value> <unit> (with
 * --broker-only: broker_load_<N>_<what>), <what> one of register_ok,
 * register_s, register_rate, all_online_s, cm_cpu, cm_rss, workers_online,
 * mosquitto_cpu, mosquitto_rss, sim_cpu, sim_rss, msgs_per_s, reconnects. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
#include "test/common/msim.h"

#define ADMIN_USER   "bench-admin"
#define ADMIN_PW     "bench-admin-password"
#define WORKER_TOKEN "bench-worker-token-0123456789"

typedef struct {
    bool broker_only;
    int seconds;
    int info_period_ms;
    int max_wait_s; /* for every worker to register and connect */
} bench_opts_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long workers_online(int port)
{
    json_auto_t *out = NULL;
    if (th_http(port, "GET", "/api/cluster/status", NULL, NULL, &out) != 200)
        return -1;
    return oak_json_int(out, "workers_online", -1);
}

/* The simulator's registration summary, once printed. */
static bool registration(const char *log_path, double *secs, double *rate, int *ok)
{
    _cleanup_free_ char *log = th_read_file(log_path, NULL);
    const char *l = log ? strstr(log, "worker_sim registration ") : NULL;
    return l && sscanf(l,
                       "worker_sim registration workers=%*d ok=%d failed=%*d seconds=%lf "
                       "rate_per_s=%lf",
                       ok, secs, rate) == 3;
}

static void tail_log(const char *path)
{
    _cleanup_free_ char *log = th_read_file(path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s (last 2000 bytes) ----\n%s\n----\n", path,
            log ? log + (n > 2000 ? n - 2000 : 0) : "(none)");
}

typedef struct {
    th_mosquitto_t mq;
    th_daemon_t root, cm;
    pid_t sim;
    char *dir;
    char sim_log[300];
} run_t;

/* The current run, for the signal handler: the daemons the harness starts
 * do not die with this process. */
static run_t *volatile current;

static void on_fatal_signal(int sig)
{
    run_t *r = current;
    if (r) {
        pid_t pids[] = {r->sim, r->cm.pid, r->root.pid, r->mq.pid};
        for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++)
            if (pids[i] > 0)
                kill(pids[i], SIGTERM);
    }
    _exit(128 + sig);
}

static void run_stop(run_t *r)
{
    if (r->sim > 0) {
        kill(r->sim, SIGTERM);
        for (int i = 0; i < 100 && waitpid(r->sim, NULL, WNOHANG) != r->sim; i++)
            sleep_ms(50);
        kill(r->sim, SIGKILL);
        waitpid(r->sim, NULL, 0);
        r->sim = 0;
    }
    if (r->cm.pid > 0)
        th_stop(&r->cm, SIGTERM);
    if (r->root.pid > 0)
        th_stop(&r->root, SIGTERM);
    th_mosquitto_stop(&r->mq);
    th_rmtree(r->dir);
    free(r->dir);
    r->dir = NULL;
}

/* A mosquitto without authentication on a free port (r->mq.pid, port). */
static int start_open_broker(run_t *r)
{
    struct passwd *pw = getpwuid(getuid());
    r->mq.port = th_free_port();
    snprintf(r->mq.log_path, sizeof(r->mq.log_path), "%s/mosquitto.log", r->dir);
    _cleanup_free_ char *conf = xasprintf("%s/mosquitto.conf", r->dir);
    _cleanup_fclose_ FILE *f = fopen(conf, "w");
    if (!f || r->mq.port < 0)
        return -1;
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nuser %s\n",
            r->mq.port, pw ? pw->pw_name : "root");
    fflush(f);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(r->mq.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    r->mq.pid = pid;
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)r->mq.port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        sleep_ms(10);
    }
    tail_log(r->mq.log_path);
    return -1;
}

/* Starts root, broker and cluster manager (or only an open broker). */
static int run_start(run_t *r, const bench_opts_t *o)
{
    r->dir = th_tmpdir("bench-cluster-load");
    if (o->broker_only)
        return start_open_broker(r);
    _cleanup_free_ char *mqdir = xasprintf("%s/broker", r->dir);
    if (th_mosquitto_start(&r->mq, mqdir, ADMIN_USER, ADMIN_PW) < 0)
        return -1;
    _cleanup_free_ char *rdir = xasprintf("%s/root", r->dir);
    _cleanup_free_ char *cdir = xasprintf("%s/cluster", r->dir);
    const char *renv[] = {"OAK_ADMIN_PASSWORD=bench-password", "OAK_LOG_LEVEL=warn", NULL};
    if (th_start_root(&r->root, rdir, renv) < 0)
        return -1;
    _cleanup_free_ char *admin = th_login(r->root.api_port, "Admin", "bench-password");
    json_auto_t *b = json_pack("{s:s}", "cluster_name", "bench"), *tok = NULL;
    if (!admin || th_http(r->root.api_port, "POST", "/api/clusters/token", admin, b, &tok) != 201) {
        fprintf(stderr, "bench_cluster_load: no join token from the root\n");
        return -1;
    }
    _cleanup_free_ char *e_tok = xasprintf("OAK_JOIN_TOKEN=%s", oak_json_str(tok, "token"));
    _cleanup_free_ char *e_grpc = xasprintf("SYSTEM_MANAGER_GRPC_PORT=%d", r->root.grpc_port);
    _cleanup_free_ char *e_mport = xasprintf("MQTT_BROKER_PORT=%d", r->mq.port);
    const char *cenv[] = {"CLUSTER_NAME=bench",
                          "SYSTEM_MANAGER_URL=127.0.0.1",
                          e_grpc,
                          e_tok,
                          "MQTT_BROKER_URL=127.0.0.1",
                          e_mport,
                          "OAK_MQTT_ADMIN_USER=" ADMIN_USER,
                          "OAK_MQTT_ADMIN_PASSWORD=" ADMIN_PW,
                          "OAK_WORKER_TOKEN=" WORKER_TOKEN,
                          "OAK_LOG_LEVEL=warn",
                          NULL};
    if (th_start_cluster(&r->cm, cdir, cenv) < 0) {
        tail_log(r->cm.log_path);
        return -1;
    }
    return 0;
}

/* RESULT <kind>_<n>_<what> <v> <unit> */
static void result(const char *kind, int n, const char *what, double v, const char *unit)
{
    char key[96];
    snprintf(key, sizeof(key), "%s_%d_%s", kind, n, what);
    bench_result(key, v, unit);
}

static int bench(int n, const bench_opts_t *o)
{
    run_t r = {0};
    int rc = -1;
    current = &r;
    if (run_start(&r, o) < 0)
        goto out;
    char workers[16], period[16], mqtt[32], url[64];
    snprintf(workers, sizeof(workers), "%d", n);
    snprintf(period, sizeof(period), "%d", o->info_period_ms);
    snprintf(mqtt, sizeof(mqtt), "127.0.0.1:%d", r.mq.port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", r.cm.api_port);
    snprintf(r.sim_log, sizeof(r.sim_log), "%s/worker_sim.log", r.dir);
    const char *full[] = {
        "--cluster", url,        "--token", WORKER_TOKEN,       "--mqtt", mqtt, "--workers",
        workers,     "--prefix", "bench",   "--info-period-ms", period,   NULL};
    const char *broker[] = {
        "--open-broker", "--mqtt", mqtt,          "--workers", workers,
        "--prefix",      "b",      "--keepalive", "2",         "--info-period-ms",
        period,          NULL};
    uint64_t t0 = oak_now_ms();
    r.sim = msim_spawn(r.sim_log, o->broker_only ? broker : full);
    if (r.sim < 0)
        goto out;

    /* registration, then every worker online */
    double reg_s = 0, rate = 0;
    int reg_ok = 0;
    long long online = 0;
    uint64_t deadline = t0 + (uint64_t)o->max_wait_s * 1000, last_change = oak_now_ms();
    int last_online = -1;
    for (;;) {
        bool reg = registration(r.sim_log, &reg_s, &rate, &reg_ok);
        /* the cluster counts a worker online from its registration on;
         * wait for its MQTT session too */
        msim_stats_t st;
        online = msim_log_stats(r.sim_log, &st) == 0 ? st.connected : 0;
        if (!o->broker_only && online >= n)
            online = workers_online(r.cm.api_port);
        if (reg && online >= n)
            break;
        if (online != last_online) {
            last_online = (int)online;
            last_change = oak_now_ms();
        }
        /* give up when nothing moves for a minute (or after max_wait_s) */
        if (oak_now_ms() > deadline || oak_now_ms() - last_change > 60000) {
            fprintf(stderr, "bench_cluster_load: %lld of %d workers online (registration %s)\n",
                    online, n, reg ? "done" : "not done");
            tail_log(r.sim_log);
            if (!o->broker_only)
                tail_log(r.cm.log_path);
            goto out;
        }
        sleep_ms(200);
    }
    double online_s = (double)(oak_now_ms() - t0) / 1000.0;
    printf("cluster_register workers=%d ok=%d seconds=%.2f rate_per_s=%.0f all_online_s=%.1f\n", n,
           reg_ok, reg_s, rate, online_s);
    fflush(stdout);
    const char *kind = o->broker_only ? "broker_load" : "cluster_load";
    result(kind, n, "register_ok", reg_ok, "count");
    result(kind, n, "register_s", reg_s, "s");
    result(kind, n, "register_rate", rate, "per_s");
    result(kind, n, "all_online_s", online_s, "s");

    /* let the connect burst settle, then measure */
    sleep_ms(3000);
    msim_stats_t s0, s1;
    msim_log_stats(r.sim_log, &s0);
    long hz = sysconf(_SC_CLK_TCK);
    long long cm0 = o->broker_only ? 0 : bench_cpu_ticks(r.cm.pid), mq0 = bench_cpu_ticks(r.mq.pid),
              sim0 = bench_cpu_ticks(r.sim);
    uint64_t w0 = oak_now_us();
    sleep_ms(o->seconds * 1000);
    long long cm1 = o->broker_only ? 0 : bench_cpu_ticks(r.cm.pid), mq1 = bench_cpu_ticks(r.mq.pid),
              sim1 = bench_cpu_ticks(r.sim);
    double wall = (double)(oak_now_us() - w0) / 1e6;
    msim_log_stats(r.sim_log, &s1);
#define PCT(a, b) (100.0 * (double)((b) - (a)) / (double)hz / wall)
    if (!o->broker_only) {
        long long still = workers_online(r.cm.api_port);
        long cm_rss = bench_rss_kb(r.cm.pid, NULL, NULL);
        printf("cluster_load workers=%d info_period_ms=%d cm_cpu_percent=%.1f cm_rss_kb=%ld "
               "workers_online=%lld\n",
               n, o->info_period_ms, PCT(cm0, cm1), cm_rss, still);
        result(kind, n, "cm_cpu", PCT(cm0, cm1), "percent");
        result(kind, n, "cm_rss", cm_rss, "kB");
        result(kind, n, "workers_online", still, "count");
    }
    long mq_rss = bench_rss_kb(r.mq.pid, NULL, NULL), sim_rss = bench_rss_kb(r.sim, NULL, NULL);
    double msgs = (double)(s1.msgs_out - s0.msgs_out) / wall;
    printf("cluster_load_aux workers=%d mosquitto_cpu_percent=%.1f mosquitto_rss_kb=%ld "
           "sim_cpu_percent=%.1f sim_rss_kb=%ld msgs_per_s=%.0f reconnects=%llu\n",
           n, PCT(mq0, mq1), mq_rss, PCT(sim0, sim1), sim_rss, msgs,
           (unsigned long long)(s1.reconnects - s0.reconnects));
    fflush(stdout);
    result(kind, n, "mosquitto_cpu", PCT(mq0, mq1), "percent");
    result(kind, n, "mosquitto_rss", mq_rss, "kB");
    result(kind, n, "sim_cpu", PCT(sim0, sim1), "percent");
    result(kind, n, "sim_rss", sim_rss, "kB");
    result(kind, n, "msgs_per_s", msgs, "per_s");
    result(kind, n, "reconnects", (double)(s1.reconnects - s0.reconnects), "count");
    rc = 0;
out:
    run_stop(&r);
    current = NULL;
    return rc;
}

int main(int argc, char **argv)
{
    bench_opts_t o = {.seconds = 20, .info_period_ms = 2000, .max_wait_s = 2400};
    int counts[16], ncounts = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--broker-only") == 0)
            o.broker_only = true;
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            o.seconds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--info-period-ms") == 0 && i + 1 < argc)
            o.info_period_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--max-wait-s") == 0 && i + 1 < argc)
            o.max_wait_s = atoi(argv[++i]);
        else if (atoi(argv[i]) > 0 && ncounts < 16)
            counts[ncounts++] = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: bench_cluster_load [--broker-only] [--seconds S] "
                            "[--info-period-ms P] [--max-wait-s W] [workers...]\n");
            return 2;
        }
    }
    if (ncounts == 0) {
        counts[ncounts++] = 1000;
        counts[ncounts++] = 10000;
    }
    if (o.seconds < 1 || o.info_period_ms < 10)
        return 2;
    if (!th_mosquitto_available())
        return 0;
    if (!o.broker_only) {
        _cleanup_free_ char *bin = xasprintf("%s/bin/cluster-manager", th_build_dir());
        if (access(bin, X_OK) != 0) {
            printf("SKIPPED: %s is not built\n", bin);
            return 0;
        }
    }
    /* the broker (started from here) holds one socket per worker */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t need = 0;
        for (int i = 0; i < ncounts; i++)
            if ((rlim_t)counts[i] + 4096 > need)
                need = (rlim_t)counts[i] + 4096;
        if (rl.rlim_max < need)
            rl.rlim_max = need;
        if (rl.rlim_cur < need)
            rl.rlim_cur = need;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    int rc = 0;
    for (int i = 0; i < ncounts; i++)
        if (bench(counts[i], &o) < 0)
            rc = 1;
    return rc;
}
