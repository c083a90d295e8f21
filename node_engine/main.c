/* node-engine: the worker agent. Without a subcommand (or with `run`) it
 * parses its configuration, takes the state directory's pid lock, opens
 * the instance table (image store and runc runtime; the process becomes
 * the child subreaper of its containers), re-adopts what a previous run
 * left, registers with the cluster and runs the event loop that owns all
 * state. SIGTERM/SIGINT stop the daemon and leave the containers running;
 * SIGUSR1 (`node-engine stop --drain`) stops every instance first.
 *
 * Subcommands that do not need the daemon: `version`, `config` (the
 * effective configuration), `status` (node file and instances from the
 * state directory), `logs <instance> [--tail N]`, `stop [--drain]`. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_config.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "node_engine/agent.h"
#include "node_engine/netmgr.h"
#include "node_engine/ninst.h"
#include "node_engine/nodeinfo.h"

#ifndef OAK_VERSION
#define OAK_VERSION "0.1.0"
#endif

#define PID_FILE       "node-engine.pid"
#define STOP_WAIT_MS   30000
#define DRAIN_WAIT_MS  300000
#define LOG_TAIL_LIMIT (64u << 20)

static oak_cfg_opt_t opts[] = {
    {"cluster_address", OAK_CFG_STR, NULL, 0, 0, "OAK_CLUSTER_ADDRESS|CLUSTER_MANAGER_URL",
     "cluster manager host name or address (required)"},
    {"cluster_port", OAK_CFG_INT, "10100", 1, 65535, "OAK_CLUSTER_PORT|CLUSTER_MANAGER_PORT",
     "cluster manager worker-registration port"},
    {"worker_token", OAK_CFG_STR, NULL, 0, 0, "OAK_WORKER_TOKEN",
     "the cluster's worker join token (required)"},
    {"state_dir", OAK_CFG_STR, "/var/lib/oak/worker", 0, 0, "OAK_STATE_DIR",
     "state directory (node file, desired state, containers)"},
    {"image_dir", OAK_CFG_STR, NULL, 0, 0, "OAK_IMAGE_DIR",
     "image store (default <state_dir>/images; may be shared by several node "
     "engines)"},
    {"runc_root", OAK_CFG_STR, NULL, 0, 0, "OAK_RUNC_ROOT",
     "runc state root (default /run/oak-<node_name>)"},
    {"runc_path", OAK_CFG_STR, "runc", 0, 0, "OAK_RUNC", "the runc binary"},
    {"cgroup_parent", OAK_CFG_STR, NULL, 0, 0, "OAK_CGROUP_PARENT",
     "cgroup of this worker's containers (default oak-<node_name>)"},
    {"node_name", OAK_CFG_STR, NULL, 0, 0, "OAK_NODE_NAME",
     "this worker's name (default: host name)"},
    {"node_ip", OAK_CFG_STR, NULL, 0, 0, "OAK_NODE_IP",
     "address announced to the cluster (default: the one used to reach it)"},
    {"node_port", OAK_CFG_INT, "50103", 1, 65535, "OAK_NODE_PORT",
     "port announced to the cluster (net-manager's)"},
    {"insecure_registries", OAK_CFG_STR, NULL, 0, 0, "OAK_INSECURE_REGISTRIES",
     "comma-separated host:port registries allowed over plain HTTP"},
    {"oci_root", OAK_CFG_STR, NULL, 0, 0, "OAK_OCI_ROOT",
     "oci:<dir>:<tag> image references only below this directory (default: none)"},
    {"netmanager_socket", OAK_CFG_STR, NETMGR_DEFAULT_SOCKET, 0, 0, "OAK_NETMANAGER_SOCKET",
     "net-manager's API socket (absent: instances get an isolated network)"},
    {"info_period_s", OAK_CFG_INT, "30", 1, 3600, "OAK_INFO_PERIOD_S",
     "node information is sent when it changes by > 5 %, or every this many "
     "seconds"},
    {"usage_period_s", OAK_CFG_INT, "10", 1, 3600, "OAK_USAGE_PERIOD_S",
     "instance usage report period"},
    {"heartbeat_s", OAK_CFG_INT, "3", 1, 3600, "OAK_HEARTBEAT_S",
     "longest silence towards the cluster (keep below its worker_dead_s)"},
    {"stop_timeout_s", OAK_CFG_INT, "10", 0, 3600, "OAK_STOP_TIMEOUT_S",
     "grace between SIGTERM and SIGKILL when an instance is stopped"},
    {"max_cpu_cores", OAK_CFG_INT, "0", 0, WP_MAX_CORES, "OAK_MAX_CPU_CORES",
     "offer at most this many cores to the cluster (0: all of the machine's)"},
    {"max_memory_mb", OAK_CFG_INT, "0", 0, WP_MAX_MEMORY_MB, "OAK_MAX_MEMORY_MB",
     "offer at most this much memory in MB to the cluster (0: all of the machine's)"},
    {"log_level", OAK_CFG_STR, "info", 0, 0, "OAK_LOG_LEVEL", "error, warn, info or debug"},
    {"log_json", OAK_CFG_BOOL, "false", 0, 0, "OAK_LOG_JSON", "log JSON lines"},
    OAK_CFG_END,
};

typedef struct {
    oak_loop_t *loop;
    agent_t *agent;
    ninst_t *ni;
    int rc;
    bool draining;
} app_t;

/* ---- configuration ---- */

static void set_opt(const char *name, const char *value, const char *source)
{
    for (oak_cfg_opt_t *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) {
            free(o->str);
            o->str = xstrdup(value);
            o->source = source;
        }
}

static bool host_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= WP_MAX_HOST &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"
                     "789._-") == n;
}

/* Fills the options whose default derives from others. */
static int derive(oak_err_t *err)
{
    const char *name = oak_config_str(opts, "node_name");
    if (!name || !*name) {
        char h[256] = "";
        if (gethostname(h, sizeof(h) - 1) < 0 || !*h)
            snprintf(h, sizeof(h), "worker");
        set_opt("node_name", h, "derived");
        name = oak_config_str(opts, "node_name");
    }
    if (!host_name_ok(name))
        return oak_err_set(err, OAK_E_INVALID,
                           "option node_name: '%s' must be 1 to 64 of [A-Za-z0-9._-]", name);
    const char *sd = oak_config_str(opts, "state_dir");
    if (!sd || sd[0] != '/')
        return oak_err_set(err, OAK_E_INVALID, "option state_dir: must be an absolute path");
    _cleanup_free_ char *images = xasprintf("%s/images", sd);
    _cleanup_free_ char *runc_root = xasprintf("/run/oak-%s", name);
    _cleanup_free_ char *cg = xasprintf("oak-%s", name);
    const struct {
        const char *opt, *def;
    } d[] = {{"image_dir", images}, {"runc_root", runc_root}, {"cgroup_parent", cg}};
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        const char *v = oak_config_str(opts, d[i].opt);
        if (!v || !*v)
            set_opt(d[i].opt, d[i].def, "derived");
    }
    oak_log_level_t lvl;
    if (oak_log_level_parse(oak_config_str(opts, "log_level"), &lvl) < 0)
        return oak_err_set(err, OAK_E_INVALID,
                           "option log_level: '%s' is not one of error, warn, info, debug",
                           oak_config_str(opts, "log_level"));
    return 0;
}

static int require(const char *name)
{
    const char *v = oak_config_str(opts, name);
    if (v && *v)
        return 0;
    fprintf(stderr, "node-engine: option %s is required (see --help)\n", name);
    return -1;
}

/* ---- pid file ---- */

static char *pid_path(void)
{
    return xasprintf("%s/%s", oak_config_str(opts, "state_dir"), PID_FILE);
}

static pid_t read_pid(int fd)
{
    char buf[32] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return (pid_t)atol(buf);
}

/* Takes the daemon lock of the state directory: *fd holds it until exit. */
static int pidfile_take(int *fd_out, oak_err_t *err)
{
    _cleanup_free_ char *path = pid_path();
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return oak_err_errno(err, errno, "cannot open %s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        pid_t other = read_pid(fd);
        close(fd);
        return oak_err_set(err, OAK_E_CONFLICT,
                           "another node-engine (pid %ld) runs with state directory %s",
                           (long)other, oak_config_str(opts, "state_dir"));
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return oak_err_errno(err, e, "cannot write %s", path);
    }
    *fd_out = fd;
    return 0;
}

/* The pid of the daemon running on the state directory, 0 when none. */
static pid_t daemon_pid(int *fd_out)
{
    _cleanup_free_ char *path = pid_path();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        close(fd);
        return 0;
    }
    pid_t pid = read_pid(fd);
    if (fd_out)
        *fd_out = fd;
    else
        close(fd);
    return pid;
}

/* ---- the daemon ---- */

static void stop_loop(oak_loop_t *loop, void *data)
{
    oak_loop_stop(loop);
}

static void drained(oak_loop_t *loop, void *data)
{
    app_t *app = data;
    log_info("drained: every instance is stopped");
    agent_say_offline(app->agent);
    oak_loop_stop(loop);
}

static void on_signal(oak_loop_t *loop, int signo, void *data)
{
    app_t *app = data;
    if (signo == SIGUSR1) {
        if (app->draining)
            return;
        log_info("signal %d: stopping every instance, then exiting", signo);
        app->draining = true;
        ninst_drain(app->ni, drained, app);
        return;
    }
    log_info("signal %d: shutting down (instances keep running)", signo);
    oak_loop_stop(loop);
}

static void on_report(const wp_job_t *job, void *ctx)
{
    app_t *app = ctx;
    agent_report(app->agent, job);
}

static void on_fatal(const char *msg, void *ctx)
{
    app_t *app = ctx;
    app->rc = 1;
    oak_loop_stop(app->loop);
}

static int run_daemon(void)
{
    oak_err_t err = OAK_ERR_INIT;
    app_t app = {.rc = 1};
    _cleanup_close_ int pidfd = -1;
    if (require("cluster_address") < 0 || require("worker_token") < 0)
        return 2;
    oak_log_level_t lvl = OAK_LOG_INFO;
    oak_log_level_parse(oak_config_str(opts, "log_level"), &lvl);
    oak_log_init("node-engine", lvl, oak_config_bool(opts, "log_json"));
    signal(SIGPIPE, SIG_IGN);
    umask(022); /* container root filesystems are made here */

    const char *state_dir = oak_config_str(opts, "state_dir");
    const char *runc_path = oak_config_str(opts, "runc_path");
    nodeinfo_sampler_t s = {0};
    nodeinfo_t info;
    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
        oak_err_errno(&err, errno, "cannot create %s", state_dir);
        goto out;
    }
    if (pidfile_take(&pidfd, &err) < 0)
        goto out;
    if (nodeinfo_read(&s, state_dir, runc_path, &info, &err) < 0)
        goto out;
    if (!info.container) {
        oak_err_set(&err, OAK_E_UNAVAILABLE,
                    "runc not found ('%s'): install it (apt-get install runc) or "
                    "set runc_path",
                    runc_path);
        goto out;
    }
    app.loop = oak_loop_new();
    static const int sigs[] = {SIGINT, SIGTERM, SIGUSR1};
    if (oak_loop_signals(app.loop, sigs, 3, on_signal, &app, &err) < 0)
        goto out;
    ninst_opts_t no = {.state_dir = state_dir,
                       .image_dir = oak_config_str(opts, "image_dir"),
                       .runc_root = oak_config_str(opts, "runc_root"),
                       .cgroup_parent = oak_config_str(opts, "cgroup_parent"),
                       .runc_path = runc_path,
                       .netmanager_socket = oak_config_str(opts, "netmanager_socket"),
                       .insecure_registries = oak_config_str(opts, "insecure_registries"),
                       .oci_root = oak_config_str(opts, "oci_root"),
                       .stop_timeout_s = (int)oak_config_int(opts, "stop_timeout_s")};
    if (ninst_new(app.loop, &no, on_report, &app, &app.ni, &err) < 0)
        goto out;
    if (!netmgr_present(no.netmanager_socket))
        log_info("net-manager is not running (no socket at %s): instances get an "
                 "isolated "
                 "network namespace",
                 no.netmanager_socket);
    if (ninst_recover(app.ni, &err) < 0)
        goto out;
    agent_opts_t ao = {.cluster_address = oak_config_str(opts, "cluster_address"),
                       .cluster_port = (int)oak_config_int(opts, "cluster_port"),
                       .worker_token = oak_config_str(opts, "worker_token"),
                       .state_dir = state_dir,
                       .node_name = oak_config_str(opts, "node_name"),
                       .node_ip = oak_config_str(opts, "node_ip"),
                       .node_port = (int)oak_config_int(opts, "node_port"),
                       .runc_path = runc_path,
                       .info_period_s = (int)oak_config_int(opts, "info_period_s"),
                       .usage_period_s = (int)oak_config_int(opts, "usage_period_s"),
                       .heartbeat_s = (int)oak_config_int(opts, "heartbeat_s"),
                       .max_cpu_cores = (int)oak_config_int(opts, "max_cpu_cores"),
                       .max_memory_mb = oak_config_int(opts, "max_memory_mb")};
    if (agent_start(app.loop, &ao, app.ni, on_fatal, &app, &app.agent, &err) < 0)
        goto out;
    printf("node-engine started node_name=%s state_dir=%s pid=%ld\n", ao.node_name, state_dir,
           (long)getpid());
    fflush(stdout);
    log_info("node %s: cluster %s:%d, runc root %s, cgroup parent %s, images in %s", ao.node_name,
             ao.cluster_address, ao.cluster_port, no.runc_root, no.cgroup_parent, no.image_dir);
    app.rc = 0;
    oak_loop_run(app.loop);
out:
    if (err.code != OAK_E_OK) {
        fprintf(stderr, "node-engine: %s\n", err.msg);
        app.rc = app.rc ? app.rc : 1;
    }
    oak_err_clear(&err);
    agent_stop(app.agent);
    ninst_shutdown(app.ni);
    if (app.loop) {
        /* deliver what worker threads posted (FIFO: before stop_loop) */
        oak_loop_post(app.loop, stop_loop, NULL);
        oak_loop_run(app.loop);
    }
    agent_free(app.agent);
    ninst_free(app.ni);
    oak_loop_free(app.loop);
    return app.rc;
}

/* ---- subcommands ---- */

static int cmd_config(void)
{
    oak_config_dump(opts, stdout);
    return 0;
}

static int cmd_status(bool as_json)
{
    oak_err_t err = OAK_ERR_INIT;
    const char *sd = oak_config_str(opts, "state_dir");
    _cleanup_free_ char *np = xasprintf("%s/node.json", sd);
    json_auto_t *node = NULL;
    if (access(np, F_OK) == 0 && oak_json_load_file(np, 65536, &node, &err) < 0) {
        fprintf(stderr, "node-engine: %s\n", err.msg);
        oak_err_clear(&err);
    }
    if (node)
        json_object_del(node, "mqtt_password");
    json_t *list = NULL;
    if (ninst_list(sd, &list, &err) < 0) {
        fprintf(stderr, "node-engine: %s\n", err.msg);
        oak_err_clear(&err);
        return 1;
    }
    pid_t pid = daemon_pid(NULL);
    json_auto_t *all = json_pack(
        "{s:s, s:s, s:b, s:o, s:o}", "node_name", oak_config_str(opts, "node_name"), "state_dir",
        sd, "running", pid > 0, "node", node ? json_incref(node) : json_null(), "instances", list);
    if (pid > 0)
        json_object_set_new(all, "pid", json_integer(pid));
    if (as_json) {
        json_dumpf(all, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        return 0;
    }
    printf("node      %s (%s)\n", oak_config_str(opts, "node_name"),
           node && oak_json_str(node, "id") ? oak_json_str(node, "id") : "not registered");
    if (node)
        printf("cluster   %s:%lld (MQTT port %lld)\n", oak_json_str(node, "cluster_address"),
               oak_json_int(node, "cluster_port", 0), oak_json_int(node, "mqtt_port", 0));
    if (pid > 0)
        printf("daemon    running (pid %ld)\n", (long)pid);
    else
        printf("daemon    not running\n");
    printf("instances %zu\n", json_array_size(list));
    size_t i;
    json_t *e;
    if (json_array_size(list) > 0)
        printf("\n%-30s %5s %-11s %-40s %s\n", "INSTANCE", "GEN", "STATUS", "IMAGE", "DETAIL");
    json_array_foreach(list, i, e)
    {
        printf("%-30s %5lld %-11s %-40s %s\n", oak_json_str(e, "instance"),
               oak_json_int(e, "generation", 0), oak_json_str(e, "status"),
               oak_json_str(e, "image"), oak_json_str(e, "status_detail"));
    }
    return 0;
}

/* Appends the file at path to buf (bounded). */
static void append_file(const char *path, char **buf, size_t *len)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && *len < LOG_TAIL_LIMIT) {
        *buf = xrealloc(*buf, *len + n + 1);
        memcpy(*buf + *len, chunk, n);
        *len += n;
        (*buf)[*len] = 0;
    }
}

static int cmd_logs(const char *which, long tail)
{
    oak_err_t err = OAK_ERR_INIT;
    const char *sd = oak_config_str(opts, "state_dir");
    json_auto_t *list = NULL;
    if (ninst_list(sd, &list, &err) < 0) {
        fprintf(stderr, "node-engine: %s\n", err.msg);
        oak_err_clear(&err);
        return 1;
    }
    /* an instance by file name (<service_id>-<n>), container id or job
     * name (with "/<n>" or alone when it has one instance here) */
    const char *cid = NULL;
    int matches = 0;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        char named[300];
        snprintf(named, sizeof(named), "%s/%lld", oak_json_str(e, "job_name"),
                 oak_json_int(e, "instance_number", 0));
        if (!strcmp(which, oak_json_str(e, "instance")) ||
            !strcmp(which, oak_json_str(e, "container_id")) || !strcmp(which, named) ||
            !strcmp(which, oak_json_str(e, "job_name"))) {
            cid = oak_json_str(e, "container_id");
            matches++;
        }
    }
    if (matches == 0) {
        fprintf(stderr,
                "node-engine: no instance '%s' on this worker (see node-engine "
                "status)\n",
                which);
        return 1;
    }
    if (matches > 1) {
        fprintf(stderr, "node-engine: '%s' names %d instances: use <service_id>-<n>\n", which,
                matches);
        return 1;
    }
    _cleanup_free_ char *l1 = xasprintf("%s/containers/%s/log.1", sd, cid);
    _cleanup_free_ char *l0 = xasprintf("%s/containers/%s/log", sd, cid);
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    append_file(l1, &buf, &len);
    append_file(l0, &buf, &len);
    if (!buf) {
        fprintf(stderr, "node-engine: instance '%s' has no log yet\n", which);
        return 1;
    }
    const char *start = buf;
    if (tail >= 0) {
        long lines = 0;
        const char *p = buf + len;
        if (p > buf && p[-1] == '\n')
            p--;
        while (p > buf) {
            if (p[-1] == '\n' && ++lines == tail)
                break;
            p--;
        }
        start = tail == 0 ? buf + len : p;
    }
    fwrite(start, 1, (size_t)(buf + len - start), stdout);
    return 0;
}

static bool wait_unlocked(int fd, long ms)
{
    for (long t = 0; t < ms; t += 100) {
        if (flock(fd, LOCK_SH | LOCK_NB) == 0)
            return true;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return flock(fd, LOCK_SH | LOCK_NB) == 0;
}

static int cmd_stop(bool drain)
{
    int fd = -1;
    pid_t pid = daemon_pid(&fd);
    if (pid <= 0) {
        fprintf(stderr, "node-engine: not running (state directory %s)\n",
                oak_config_str(opts, "state_dir"));
        return 1;
    }
    if (kill(pid, drain ? SIGUSR1 : SIGTERM) < 0) {
        fprintf(stderr, "node-engine: cannot signal pid %ld: %s\n", (long)pid, strerror(errno));
        close(fd);
        return 1;
    }
    printf("node-engine (pid %ld): %s\n", (long)pid,
           drain ? "stopping every instance, then exiting" : "stopping (instances keep running)");
    fflush(stdout);
    bool ok = wait_unlocked(fd, drain ? DRAIN_WAIT_MS : STOP_WAIT_MS);
    close(fd);
    if (!ok) {
        fprintf(stderr, "node-engine: pid %ld has not exited yet\n", (long)pid);
        return 1;
    }
    printf("node-engine stopped\n");
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: node-engine [run] [options]       run the worker agent\n"
                 "       node-engine version\n"
                 "       node-engine config [options]      print the effective "
                 "configuration\n"
                 "       node-engine status [--json] [options]\n"
                 "       node-engine logs <instance> [--tail N] [options]\n"
                 "       node-engine stop [--drain] [options]\n"
                 "options: see node-engine --help\n");
}

/* Removes argv[i] (and n-1 following) from argv. */
static void drop_args(int *argc, char **argv, int i, int n)
{
    memmove(argv + i, argv + i + n, (size_t)(*argc - i - n + 1) * sizeof(char *));
    *argc -= n;
}

int main(int argc, char **argv)
{
    oak_err_t err = OAK_ERR_INIT;
    const char *cmd = "run";
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        drop_args(&argc, argv, 1, 1);
    }
    if (!strcmp(cmd, "version")) {
        printf("node-engine %s\n", OAK_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    bool drain = false, as_json = false;
    long tail = -1;
    for (int i = 1; i < argc;) {
        if (!strcmp(cmd, "stop") && !strcmp(argv[i], "--drain")) {
            drain = true;
            drop_args(&argc, argv, i, 1);
        } else if (!strcmp(cmd, "status") && !strcmp(argv[i], "--json")) {
            as_json = true;
            drop_args(&argc, argv, i, 1);
        } else if (!strcmp(cmd, "logs") && !strcmp(argv[i], "--tail") && i + 1 < argc) {
            char *end;
            tail = strtol(argv[i + 1], &end, 10);
            if (*end || tail < 0) {
                fprintf(stderr, "node-engine: --tail needs a number >= 0\n");
                return 2;
            }
            drop_args(&argc, argv, i, 2);
        } else {
            i++;
        }
    }
    bool known = !strcmp(cmd, "run") || !strcmp(cmd, "config") || !strcmp(cmd, "status") ||
                 !strcmp(cmd, "logs") || !strcmp(cmd, "stop");
    if (!known) {
        fprintf(stderr, "node-engine: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    int rest_argc = 0;
    char **rest_argv = NULL;
    int cr = oak_config_load(opts, "node-engine", "OAK_CONFIG", argc, argv, stdout, &rest_argc,
                             &rest_argv, &err);
    if (cr == OAK_CFG_EXIT_OK) {
        oak_config_free(opts);
        return 0;
    }
    int rc = 2;
    if (cr < 0 || derive(&err) < 0) {
        fprintf(stderr, "node-engine: %s\n", err.msg);
        goto out;
    }
    if (!strcmp(cmd, "logs")) {
        if (rest_argc != 1) {
            fprintf(stderr, "usage: node-engine logs <instance> [--tail N]\n");
            goto out;
        }
        rc = cmd_logs(rest_argv[0], tail);
        goto out;
    }
    if (rest_argc > 0) {
        fprintf(stderr, "node-engine: unexpected argument '%s'\n", rest_argv[0]);
        goto out;
    }
    if (!strcmp(cmd, "config"))
        rc = cmd_config();
    else if (!strcmp(cmd, "status"))
        rc = cmd_status(as_json);
    else if (!strcmp(cmd, "stop"))
        rc = cmd_stop(drain);
    else
        rc = run_daemon();
out:
    oak_err_clear(&err);
    oak_config_free(opts);
    return rc;
}
