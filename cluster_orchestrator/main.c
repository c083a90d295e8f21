/* cluster-manager: the cluster orchestrator. Parses its configuration,
 * opens the store, connects to its mosquitto broker (administration and
 * its own session), registers with the root over gRPC, serves worker
 * registration over HTTP, and runs the event loop that owns all state.
 * `cluster-manager broker-config DIR PORT` writes a mosquitto
 * configuration for the cluster's broker and exits. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster_orchestrator/broker.h"
#include "cluster_orchestrator/cinstances.h"
#include "cluster_orchestrator/cm.h"
#include "cluster_orchestrator/crelay.h"
#include "cluster_orchestrator/root_link.h"
#include "cluster_orchestrator/wlink.h"
#include "cluster_orchestrator/workers.h"
#include "lib/oak_fs.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_config.h"
#include "lib/oak_http.h"
#include "lib/oak_jwt.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "lib/oak_mqtt.h"

#define TICK_MS 1000
#define TRIM_EVERY_TICKS 10
#define TRIM_MIN_WORKERS 100

static oak_cfg_opt_t opts[] = {
    {"cluster_name", OAK_CFG_STR, NULL, 0, 0, "CLUSTER_NAME", "name of this cluster (required)"},
    {"cluster_location", OAK_CFG_STR, "", 0, 0, "CLUSTER_LOCATION", "\"lat,long,radius\""},
    {"root_address", OAK_CFG_STR, NULL, 0, 0, "SYSTEM_MANAGER_URL",
     "root (system manager) host (required)"},
    {"root_grpc_port", OAK_CFG_INT, "50052", 1, 65535, "SYSTEM_MANAGER_GRPC_PORT",
     "root gRPC port"},
    {"join_token", OAK_CFG_STR, NULL, 0, 0, "OAK_JOIN_TOKEN",
     "cluster join token issued by the root (required)"},
    {"api_port", OAK_CFG_INT, "10100", 0, 65535, "OAK_API_PORT|MY_PORT",
     "HTTP port for worker registration"},
    {"bind", OAK_CFG_STR, "0.0.0.0", 0, 0, "OAK_BIND", "address to listen on"},
    {"mqtt_host", OAK_CFG_STR, "127.0.0.1", 0, 0, "MQTT_BROKER_URL",
     "the cluster's mosquitto broker host"},
    {"mqtt_port", OAK_CFG_INT, "10003", 1, 65535, "MQTT_BROKER_PORT",
     "broker port (also told to workers)"},
    {"mqtt_admin_user", OAK_CFG_STR, "oak-admin", 0, 0, "OAK_MQTT_ADMIN_USER",
     "broker dynamic-security admin"},
    {"mqtt_admin_password", OAK_CFG_STR, NULL, 0, 0, "OAK_MQTT_ADMIN_PASSWORD",
     "its password (required)"},
    {"state_dir", OAK_CFG_STR, "/var/lib/oak/cluster", 0, 0, "OAK_STATE_DIR", "state directory"},
    {"store", OAK_CFG_STR, NULL, 0, 0, "OAK_STORE",
     "store URI (default sqlite:<state_dir>/cluster.db)"},
    {"worker_token", OAK_CFG_STR, NULL, 0, 0, "OAK_WORKER_TOKEN",
     "worker join token (default: generated into <state_dir>/worker-token)"},
    {"sched_policy", OAK_CFG_STR, "bestfit", 0, 0, "OAK_SCHED_POLICY", "bestfit or spread"},
    {"worker_keepalive_s", OAK_CFG_INT, "2", 1, 60, "OAK_WORKER_KEEPALIVE_S",
     "MQTT keepalive told to workers"},
    {"worker_dead_s", OAK_CFG_INT, "10", 2, 3600, "OAK_WORKER_DEAD_S",
     "a worker silent this long is dead"},
    {"handback_s", OAK_CFG_INT, "5", 0, 3600, "OAK_HANDBACK_S",
     "an instance no worker can take goes back to the root after this"},
    {"max_restarts", OAK_CFG_INT, "5", 0, 1000, "OAK_MAX_RESTARTS",
     "restarts of a failing instance before it stays FAILED"},
    {"report_interval_ms", OAK_CFG_INT, "5000", 100, 60000, "OAK_REPORT_INTERVAL_MS",
     "heartbeat report period to the root"},
    {"log_level", OAK_CFG_STR, "info", 0, 0, "OAK_LOG_LEVEL", "error, warn, info or debug"},
    {"log_json", OAK_CFG_BOOL, "false", 0, 0, "OAK_LOG_JSON", "log JSON lines"},
    OAK_CFG_END,
};

static void on_signal(oak_loop_t *loop, int signo, void *data)
{
    log_info("signal %d: shutting down", signo);
    oak_loop_stop(loop);
}

static void tick(oak_loop_t *loop, void *data)
{
    cm_t *cm = data;
    wlink_tick(cm);
    cinst_tick(cm);
    crelay_tick(cm);
    if (cm->capacity_dirty) {
        cm->capacity_dirty = false;
        root_link_report(cm->root, workers_capacity(cm->workers), NULL, false);
    }
    /* Large clusters build big transient documents (the worker list, bursts
     * of worker messages); glibc keeps the freed pages of every arena mapped
     * until told otherwise. Hand them back now and then. */
    static unsigned n;
    if (++n % TRIM_EVERY_TICKS == 0 && workers_count(cm->workers) >= TRIM_MIN_WORKERS)
        malloc_trim(0);
    oak_loop_add_timer(loop, TICK_MS, tick, cm);
}

static void on_command(const Oak__Cluster__V1__Command *cmd, void *ctx)
{
    cinst_on_command(ctx, cmd);
}

static void on_logs(const Oak__Cluster__V1__Command *cmd, void *ctx)
{
    crelay_logs_request(ctx, cmd);
}

static void on_state(bool connected, const char *detail, void *ctx)
{
    if (connected)
        log_info("connected to the root");
    else
        log_warn("not connected to the root: %s", detail ? detail : "");
}

static void on_resync(void *ctx)
{
    cinst_report_all(ctx);
}

/* Reads <state_dir>/<name> or creates it with a random secret (0600). */
static int state_secret(const char *dir, const char *name, char *out, size_t len, bool *created,
                        oak_err_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    _cleanup_fclose_ FILE *f = fopen(path, "r");
    *created = false;
    if (f) {
        if (!fgets(out, (int)len, f))
            return oak_err_set(err, OAK_E_IO, "%s is empty", path);
        out[strcspn(out, "\n")] = 0;
        return 0;
    }
    _cleanup_free_ char *tok = oak_random_token(24);
    snprintf(out, len, "%s", tok);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return oak_err_errno(err, errno, "cannot create %s", path);
    _cleanup_free_ char *line = xasprintf("%s\n", out);
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fsync(fd) < 0)
        return oak_err_errno(err, errno, "cannot write %s", path);
    *created = true;
    return 0;
}

static int broker_config_cmd(int argc, char **argv)
{
    oak_err_t err = OAK_ERR_INIT;
    if (argc < 4) {
        fprintf(stderr, "usage: cluster-manager broker-config DIR PORT [BIND]\n"
                        "  writes DIR/mosquitto.conf for the cluster's broker; the admin\n"
                        "  password is taken from OAK_MQTT_ADMIN_PASSWORD\n");
        return 2;
    }
    const char *pw = getenv("OAK_MQTT_ADMIN_PASSWORD");
    const char *user = getenv("OAK_MQTT_ADMIN_USER");
    if (!pw || !*pw) {
        fprintf(stderr, "cluster-manager: OAK_MQTT_ADMIN_PASSWORD must be set\n");
        return 2;
    }
    char *conf = NULL;
    if (broker_write_config(argv[2], argc > 4 ? argv[4] : "0.0.0.0", atoi(argv[3]),
                            user && *user ? user : "oak-admin", pw, &conf, &err) < 0) {
        fprintf(stderr, "cluster-manager: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", conf);
    free(conf);
    return 0;
}

int main(int argc, char **argv)
{
    oak_err_t err = OAK_ERR_INIT;
    cm_t cm = {0};
    oak_http_server_t *http = NULL;
    int rc = 1;
    _cleanup_free_ char *default_store = NULL, *target = NULL, *uri = NULL;
    char mgr_pw[64];

    if (argc > 1 && strcmp(argv[1], "broker-config") == 0)
        return broker_config_cmd(argc, argv);
    int cr = oak_config_load(opts, "cluster-manager", "OAK_CONFIG", argc, argv, stdout, NULL, NULL,
                             &err);
    if (cr == OAK_CFG_EXIT_OK)
        return 0;
    if (cr < 0) {
        fprintf(stderr, "cluster-manager: %s\n", err.msg);
        return 2;
    }
    const char *missing[] = {"cluster_name", "root_address", "join_token", "mqtt_admin_password",
                             NULL};
    for (int i = 0; missing[i]; i++) {
        const char *v = oak_config_str(opts, missing[i]);
        if (!v || !*v) {
            fprintf(stderr, "cluster-manager: option %s is required (see --help)\n", missing[i]);
            oak_config_free(opts);
            return 2;
        }
    }
    oak_log_level_t lvl;
    if (oak_log_level_parse(oak_config_str(opts, "log_level"), &lvl) < 0) {
        fprintf(stderr,
                "cluster-manager: option log_level: '%s' is not one of error, warn, "
                "info, debug\n",
                oak_config_str(opts, "log_level"));
        oak_config_free(opts);
        return 2;
    }
    const char *policy = oak_config_str(opts, "sched_policy");
    if (strcmp(policy, "bestfit") != 0 && strcmp(policy, "spread") != 0) {
        fprintf(stderr, "cluster-manager: option sched_policy: '%s' is not bestfit or spread\n",
                policy);
        oak_config_free(opts);
        return 2;
    }
    oak_log_init("cluster-manager", lvl, oak_config_bool(opts, "log_json"));
    signal(SIGPIPE, SIG_IGN);
    umask(077);

    cm.cluster_name = oak_config_str(opts, "cluster_name");
    cm.state_dir = oak_config_str(opts, "state_dir");
    cm.mqtt_port = (int)oak_config_int(opts, "mqtt_port");
    cm.worker_keepalive_s = (int)oak_config_int(opts, "worker_keepalive_s");
    cm.worker_dead_s = (long)oak_config_int(opts, "worker_dead_s");
    cm.started = oak_wall_time();
    cm.handback_s = (long)oak_config_int(opts, "handback_s");
    cm.max_restarts = (int)oak_config_int(opts, "max_restarts");
    cm.sched_spread = strcmp(policy, "spread") == 0;
    cm.loop = oak_loop_new();
    static const int sigs[] = {SIGINT, SIGTERM};
    if (oak_loop_signals(cm.loop, sigs, 2, on_signal, &cm, &err) < 0 ||
        oak_mkdir_p(cm.state_dir, 0700, &err) < 0)
        goto out;
    default_store = xasprintf("sqlite:%s/cluster.db", cm.state_dir);
    const char *store = oak_config_str(opts, "store");
    if (oak_store_open(store && *store ? store : default_store, &cm.store, &err) < 0)
        goto out;
    bool created = false;
    const char *wt = oak_config_str(opts, "worker_token");
    if (wt && *wt) {
        snprintf(cm.worker_token, sizeof(cm.worker_token), "%s", wt);
    } else {
        if (state_secret(cm.state_dir, "worker-token", cm.worker_token, sizeof(cm.worker_token),
                         &created, &err) < 0)
            goto out;
        if (created)
            printf("Generated worker join token: %s (also stored in %s/worker-token, mode "
                   "0600)\n",
                   cm.worker_token, cm.state_dir);
    }
    if (state_secret(cm.state_dir, "mqtt-manager-password", mgr_pw, sizeof(mgr_pw), &created,
                     &err) < 0)
        goto out;
    cm.workers = workers_new();
    if (workers_load(cm.workers, cm.store, &err) < 0 || cinst_load(&cm, &err) < 0)
        goto out;

    uri = xasprintf("tcp://%s:%d", oak_config_str(opts, "mqtt_host"), cm.mqtt_port);
    if (broker_open(uri, oak_config_str(opts, "mqtt_admin_user"),
                    oak_config_str(opts, "mqtt_admin_password"), &cm.broker, &err) < 0 ||
        broker_add_manager(cm.broker, "cluster-manager", mgr_pw, &err) < 0 ||
        wlink_start(&cm, uri, "cluster-manager", mgr_pw, &err) < 0)
        goto out;

    target = xasprintf("%s:%lld", oak_config_str(opts, "root_address"),
                       oak_config_int(opts, "root_grpc_port"));
    const char *bind = oak_config_str(opts, "bind");
    if (oak_http_server_start(cm.loop, bind, (int)oak_config_int(opts, "api_port"), wlink_routes,
                              wlink_nroutes, &cm, 256 * 1024, &http, &err) < 0)
        goto out;
    root_link_opts_t lo = {.target = target,
                           .join_token = oak_config_str(opts, "join_token"),
                           .cluster_name = cm.cluster_name,
                           .cluster_location = oak_config_str(opts, "cluster_location"),
                           .manager_port = oak_http_server_port(http),
                           .network_port = 0,
                           .report_interval_ms = (long)oak_config_int(opts, "report_interval_ms")};
    root_link_cb_t cb = {.on_command = on_command,
                         .on_state = on_state,
                         .on_resync = on_resync,
                         .on_logs = on_logs};
    if (root_link_start(cm.loop, cm.store, &lo, &cb, &cm, &cm.root, &err) < 0)
        goto out;
    printf("cluster-manager listening api_port=%d mqtt=%s root=%s\n", oak_http_server_port(http),
           uri, target);
    fflush(stdout);
    cm.capacity_dirty = true;
    oak_loop_add_timer(cm.loop, 0, tick, &cm);
    oak_loop_run(cm.loop);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "cluster-manager: %s\n", err.msg);
    oak_err_clear(&err);
    crelay_stop(&cm);
    if (cm.root)
        root_link_stop(cm.root);
    oak_http_server_stop(http);
    if (cm.mqtt)
        oak_mqtt_free(cm.mqtt);
    if (cm.broker)
        broker_close(cm.broker);
    /* deliver what the library threads posted while stopping */
    oak_loop_stop(cm.loop);
    oak_loop_run(cm.loop);
    workers_free(cm.workers);
    oak_store_close(cm.store);
    oak_loop_free(cm.loop);
    oak_config_free(opts);
    return rc;
}
