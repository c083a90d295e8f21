/* system-manager: the root orchestrator. Parses its configuration, opens
 * the store, bootstraps the Admin account, starts the REST API and the
 * gRPC service for clusters, and runs the event loop that owns all state. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/oak_fs.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_config.h"
#include "lib/oak_grpc.h"
#include "lib/oak_http.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "lib/oak_store.h"
#include "root_orchestrator/api_apps.h"
#include "root_orchestrator/auth.h"
#include "root_orchestrator/cluster_rpc.h"
#include "root_orchestrator/clusters.h"
#include "root_orchestrator/instances.h"
#include "root_orchestrator/openapi.h"
#include "root_orchestrator/relay.h"
#include "root_orchestrator/root.h"

#define TICK_MS 1000

static oak_cfg_opt_t opts[] = {
    {"api_port", OAK_CFG_INT, "10000", 0, 65535, "OAK_API_PORT|MY_PORT",
     "REST API port (0: any free port)"},
    {"grpc_port", OAK_CFG_INT, "50052", 0, 65535, "OAK_GRPC_PORT|MY_PORT_GRPC",
     "gRPC port for clusters"},
    {"bind", OAK_CFG_STR, "0.0.0.0", 0, 0, "OAK_BIND", "address to listen on"},
    {"state_dir", OAK_CFG_STR, "/var/lib/oak/root", 0, 0, "OAK_STATE_DIR",
     "state directory (store, keys, admin password)"},
    {"store", OAK_CFG_STR, NULL, 0, 0, "OAK_STORE",
     "store URI: sqlite:<path> or mongodb://... (default sqlite:<state_dir>/root.db)"},
    {"admin_password", OAK_CFG_STR, NULL, 0, 0, "OAK_ADMIN_PASSWORD",
     "password of user Admin on first start (default: generated)"},
    {"access_ttl_s", OAK_CFG_INT, "900", 60, 86400, "OAK_ACCESS_TTL_S", "access token lifetime"},
    {"refresh_ttl_s", OAK_CFG_INT, "604800", 300, 31536000, "OAK_REFRESH_TTL_S",
     "refresh token lifetime"},
    {"cluster_stale_s", OAK_CFG_INT, "15", 2, 3600, "OAK_CLUSTER_STALE_S",
     "a cluster without a report for this long is inactive"},
    {"cluster_grace_s", OAK_CFG_INT, "60", 0, 86400, "OAK_CLUSTER_GRACE_S",
     "an inactive cluster's instances are rescheduled after this"},
    {"logs_timeout_ms", OAK_CFG_INT, "8000", 100, 120000, "OAK_LOGS_TIMEOUT_MS",
     "an instance logs request its cluster does not answer in time gets 504"},
    {"join_token_ttl_s", OAK_CFG_INT, "604800", 60, 31536000, "OAK_JOIN_TOKEN_TTL_S",
     "default lifetime of cluster join tokens"},
    {"max_body", OAK_CFG_INT, "1048576", 1024, 67108864, "OAK_MAX_BODY",
     "largest accepted request body in bytes"},
    {"log_level", OAK_CFG_STR, "info", 0, 0, "OAK_LOG_LEVEL", "error, warn, info or debug"},
    {"log_json", OAK_CFG_BOOL, "false", 0, 0, "OAK_LOG_JSON", "log JSON lines"},
    OAK_CFG_END,
};

static void on_signal(oak_loop_t *loop, int signo, void *data)
{
    log_info("signal %d: shutting down", signo);
    oak_loop_stop(loop);
}

static void stop_loop(oak_loop_t *loop, void *data)
{
    oak_loop_stop(loop);
}

static void tick(oak_loop_t *loop, void *data)
{
    root_t *r = data;
    static unsigned n;
    cluster_rpc_tick(r);
    if (++n % 10 == 0)
        r->sched_dirty = true; /* periodic retry of waiting instances */
    if (r->sched_dirty)
        inst_schedule_pending(r);
    oak_loop_add_timer(loop, TICK_MS, tick, r);
}

int main(int argc, char **argv)
{
    oak_err_t err = OAK_ERR_INIT;
    root_t r = {0};
    oak_http_server_t *http = NULL;
    oak_grpc_server_t *grpc = NULL;
    int rc = 1;
    _cleanup_free_ char *default_store = NULL;

    int cr =
        oak_config_load(opts, "system-manager", "OAK_CONFIG", argc, argv, stdout, NULL, NULL, &err);
    if (cr == OAK_CFG_EXIT_OK)
        return 0;
    if (cr < 0) {
        fprintf(stderr, "system-manager: %s\n", err.msg);
        return 2;
    }
    oak_log_level_t lvl;
    if (oak_log_level_parse(oak_config_str(opts, "log_level"), &lvl) < 0) {
        fprintf(stderr,
                "system-manager: option log_level: '%s' is not one of error, warn, info, "
                "debug\n",
                oak_config_str(opts, "log_level"));
        return 2;
    }
    oak_log_init("system-manager", lvl, oak_config_bool(opts, "log_json"));
    signal(SIGPIPE, SIG_IGN);
    umask(077); /* the store holds password hashes and tokens */

    r.state_dir = oak_config_str(opts, "state_dir");
    r.access_ttl_s = (long)oak_config_int(opts, "access_ttl_s");
    r.refresh_ttl_s = (long)oak_config_int(opts, "refresh_ttl_s");
    r.cluster_stale_s = (long)oak_config_int(opts, "cluster_stale_s");
    r.cluster_grace_s = (long)oak_config_int(opts, "cluster_grace_s");
    r.logs_timeout_ms = (long)oak_config_int(opts, "logs_timeout_ms");
    r.join_token_ttl_s = (long)oak_config_int(opts, "join_token_ttl_s");
    r.max_body = (size_t)oak_config_int(opts, "max_body");
    r.started_at = oak_wall_time();
    r.loop = oak_loop_new();
    static const int sigs[] = {SIGINT, SIGTERM};
    if (oak_loop_signals(r.loop, sigs, 2, on_signal, &r, &err) < 0)
        goto out;
    if (oak_mkdir_p(r.state_dir, 0700, &err) < 0)
        goto out;
    default_store = xasprintf("sqlite:%s/root.db", r.state_dir);
    const char *store = oak_config_str(opts, "store");
    if (!store || !*store)
        store = default_store;
    if (oak_store_open(store, &r.store, &err) < 0)
        goto out;
    if (auth_load_key(&r, &err) < 0 ||
        auth_bootstrap(&r, oak_config_str(opts, "admin_password"), &err) < 0 ||
        clusters_load(&r, &err) < 0)
        goto out;

    size_t nroutes = auth_nroutes + apps_nroutes + openapi_nroutes;
    oak_http_route_t *routes = xcalloc(nroutes, sizeof(*routes));
    memcpy(routes, auth_routes, auth_nroutes * sizeof(*routes));
    memcpy(routes + auth_nroutes, apps_routes, apps_nroutes * sizeof(*routes));
    memcpy(routes + auth_nroutes + apps_nroutes, openapi_routes, openapi_nroutes * sizeof(*routes));
    const char *bind = oak_config_str(opts, "bind");
    int hrc = oak_http_server_start(r.loop, bind, (int)oak_config_int(opts, "api_port"), routes,
                                    nroutes, &r, r.max_body, &http, &err);
    free(routes);
    if (hrc < 0)
        goto out;
    char gaddr[128];
    snprintf(gaddr, sizeof(gaddr), strchr(bind, ':') ? "[%s]:%lld" : "%s:%lld", bind,
             oak_config_int(opts, "grpc_port"));
    grpc = cluster_rpc_start(&r, gaddr, &err);
    if (!grpc)
        goto out;
    /* machine-readable line for launchers and tests that ask for port 0 */
    printf("system-manager listening api_port=%d grpc_port=%d store=%s\n",
           oak_http_server_port(http), oak_grpc_server_port(grpc), oak_store_backend(r.store));
    fflush(stdout);
    log_info("REST API on %s:%d, gRPC on port %d, store %s", bind, oak_http_server_port(http),
             oak_grpc_server_port(grpc), oak_store_backend(r.store));
    r.sched_dirty = true;
    oak_loop_add_timer(r.loop, 0, tick, &r);
    oak_loop_run(r.loop);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "system-manager: %s\n", err.msg);
    oak_err_clear(&err);
    if (grpc) {
        oak_grpc_server_shutdown(grpc);
        /* deliver the close callbacks of open streams, which the shutdown
         * posted to the loop: they release the streams (run in FIFO order,
         * before stop_loop) */
        oak_loop_post(r.loop, stop_loop, NULL);
        oak_loop_run(r.loop);
        for (size_t i = 0; r.clusters && i < r.clusters->n; i++)
            r.clusters->v[i]->stream = NULL;
    }
    oak_http_server_stop(http);
    relay_stop(&r);
    clusters_free(r.clusters);
    oak_store_close(r.store);
    oak_loop_free(r.loop);
    oak_config_free(opts);
    return rc;
}
