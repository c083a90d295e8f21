/* The worker's instances (see ninst.h).
 *
 * Each instance is an inst_t keyed by (service_id, instance_number) with
 * the generation it runs, the parsed deploy command, its container id
 * ("<service_id>-<n>-<generation>"), the last status reported and a phase:
 *
 *   PULLING   the image is being pulled on a job thread
 *   ATTACHING the container exists (runc create); net-manager is being
 *             given its network namespace on a job thread
 *   RUNNING   started; its exit comes through the runtime's on_exit
 *   STOPPING  runtime_stop is under way; `after` says what follows
 *             (remove it, deploy the next generation, drain, or start it
 *             again)
 *   ENDED     nothing runs (COMPLETED, DEAD or FAILED); its desired-state
 *             file and logs stay until a delete or a newer deploy
 *
 * Every change of the desired state or of the reported status is written
 * to the instance's file first (atomically), then acted on. Job threads
 * (pull, net-manager calls) only compute and post back; a result whose
 * instance has gone or moved on (op counter) is dropped. Everything else
 * runs on the loop thread. The table is a list searched linearly: a
 * worker holds at most a few thousand instances (worker-protocol.md). */
#include "node_engine/ninst.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/oak_fs.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "node_engine/bundle.h"
#include "node_engine/image.h"
#include "node_engine/image_ref.h"
#include "node_engine/netmgr.h"
#include "node_engine/runtime.h"

#define FILE_MAX      (WP_MAX_PAYLOAD + 64 * 1024)
#define STOP_GRACE_MS 10000
#define HOSTNAME_LEN  63
#define INST_KEY_LEN  (WP_ID_LEN + 12)

typedef enum { PH_PULLING, PH_ATTACHING, PH_RUNNING, PH_STOPPING, PH_ENDED } phase_t;
typedef enum { AFTER_NONE, AFTER_REMOVE, AFTER_REDEPLOY, AFTER_DRAIN, AFTER_RESTART } after_t;

typedef struct inst {
    char key[INST_KEY_LEN]; /* "<service_id>-<n>": file name and map key */
    char service_id[WP_ID_LEN + 1];
    int n;
    uint64_t gen;
    wp_deploy_t d; /* the deploy command of gen */
    json_t *raw;   /* its payload as received */
    char cid[RUNTIME_ID_MAX + 1];
    bool reported; /* a status was reported for gen */
    wp_status_t status;
    char detail[WP_MAX_DETAIL + 1];
    int exit_code;
    bool has_exit;
    phase_t phase;
    after_t after;
    wp_deploy_t next_d; /* AFTER_REDEPLOY: the generation that replaces this one */
    json_t *next_raw;
    uint64_t op;   /* bumped whenever a pending job result becomes stale */
    bool attached; /* net-manager took its namespace */
    /* usage */
    unsigned long long cpu_ns;
    uint64_t cpu_at_us;
    double cpu_pct;
    long long mem_mb;
    bool usage_valid;
    double sent_cpu;
    long long sent_mem;
    bool sent_usage;
    struct inst *next;
} inst_t;

typedef enum { JOB_PULL, JOB_ATTACH, JOB_DETACH } job_kind_t;

typedef struct job {
    ninst_t *ni;
    job_kind_t kind;
    pthread_t th;
    bool joined;
    struct job *next;
    char key[INST_KEY_LEN];
    uint64_t op;
    /* inputs */
    char *image_ref, *service_name, *ports;
    int n;
    pid_t pid;
    /* outputs */
    int rc;
    oak_err_t err;
    image_t *img;
} job_t;

struct ninst {
    oak_loop_t *loop;
    ninst_report_fn report;
    void *ctx;
    char *state_dir, *inst_dir, *netmanager_socket;
    int stop_grace_ms;
    image_store_t *images;
    char *oci_root;
    char **insecure; /* NULL-terminated */
    runtime_t *rt;
    inst_t *list;
    size_t count;
    job_t *jobs;
    bool stopping;
    bool draining;
    oak_loop_cb drain_done;
    void *drain_data;
};

static void begin(ninst_t *ni, inst_t *in);

/* ---- table ---- */

static inst_t *find(ninst_t *ni, const char *service_id, int n)
{
    for (inst_t *in = ni->list; in; in = in->next)
        if (in->n == n && strcmp(in->service_id, service_id) == 0)
            return in;
    return NULL;
}

static inst_t *find_key(ninst_t *ni, const char *key)
{
    for (inst_t *in = ni->list; in; in = in->next)
        if (strcmp(in->key, key) == 0)
            return in;
    return NULL;
}

static inst_t *find_cid(ninst_t *ni, const char *cid)
{
    for (inst_t *in = ni->list; in; in = in->next)
        if (in->cid[0] && strcmp(in->cid, cid) == 0)
            return in;
    return NULL;
}

static void set_cid(inst_t *in)
{
    snprintf(in->cid, sizeof(in->cid), "%s-%d-%" PRIu64, in->service_id, in->n, in->gen);
}

static inst_t *inst_add(ninst_t *ni, const char *service_id, int n)
{
    inst_t *in = xcalloc(1, sizeof(*in));
    snprintf(in->service_id, sizeof(in->service_id), "%s", service_id);
    in->n = n;
    snprintf(in->key, sizeof(in->key), "%s-%d", service_id, n);
    in->next = ni->list;
    ni->list = in;
    ni->count++;
    return in;
}

static void inst_free(inst_t *in)
{
    wp_deploy_clear(&in->d);
    wp_deploy_clear(&in->next_d);
    json_decref(in->raw);
    json_decref(in->next_raw);
    free(in);
}

static void inst_remove(ninst_t *ni, inst_t *in)
{
    for (inst_t **p = &ni->list; *p; p = &(*p)->next)
        if (*p == in) {
            *p = in->next;
            ni->count--;
            break;
        }
    inst_free(in);
}

/* Takes the deploy command d (moved: d is zeroed) and its raw payload
 * (a new reference is taken) as the instance's desired state. */
static void set_desired(inst_t *in, wp_deploy_t *d, json_t *raw)
{
    wp_deploy_clear(&in->d);
    json_decref(in->raw);
    in->d = *d;
    memset(d, 0, sizeof(*d));
    in->raw = json_incref(raw);
    in->gen = in->d.generation;
    in->reported = false;
    in->detail[0] = 0;
    in->has_exit = false;
    in->usage_valid = in->sent_usage = false;
    in->attached = false;
    set_cid(in);
}

/* ---- persistence ---- */

static char *inst_path(const ninst_t *ni, const inst_t *in)
{
    return xasprintf("%s/%s.json", ni->inst_dir, in->key);
}

static void persist(ninst_t *ni, inst_t *in)
{
    json_auto_t *j = json_pack("{s:O, s:s, s:f}", "deploy", in->raw, "container_id", in->cid,
                               "updated_at", oak_wall_time());
    if (in->reported) {
        json_object_set_new(j, "status", json_string(wp_status_name(in->status)));
        json_object_set_new(j, "status_detail", json_string(in->detail));
        if (in->has_exit)
            json_object_set_new(j, "exit_code", json_integer(in->exit_code));
    }
    _cleanup_free_ char *path = inst_path(ni, in);
    oak_err_t err = OAK_ERR_INIT;
    if (oak_json_save_file(path, j, 0600, &err) < 0) {
        log_error("instance %s: cannot save its desired state: %s", in->key, err.msg);
        oak_err_clear(&err);
    }
}

static void unpersist(ninst_t *ni, inst_t *in)
{
    _cleanup_free_ char *path = inst_path(ni, in);
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("instance %s: cannot remove %s: %s", in->key, path, strerror(errno));
}

/* ---- reports ---- */

static void send_report(ninst_t *ni, const inst_t *in, uint64_t gen, wp_status_t st,
                        const char *detail, bool has_exit, int exit_code)
{
    wp_job_t j = {.instance_number = in->n,
                  .generation = gen,
                  .status = st,
                  .exit_code = exit_code,
                  .has_exit_code = has_exit};
    snprintf(j.service_id, sizeof(j.service_id), "%s", in->service_id);
    snprintf(j.job_name, sizeof(j.job_name), "%s", in->d.job_name ? in->d.job_name : "");
    snprintf(j.status_detail, sizeof(j.status_detail), "%s", detail ? detail : "");
    if (ni->report)
        ni->report(&j, ni->ctx);
}

/* Records a new status of the current generation, persists, reports. */
static void set_status(ninst_t *ni, inst_t *in, wp_status_t st, const char *detail, bool has_exit,
                       int exit_code)
{
    in->reported = true;
    in->status = st;
    snprintf(in->detail, sizeof(in->detail), "%s", detail ? detail : "");
    in->has_exit = has_exit;
    in->exit_code = exit_code;
    persist(ni, in);
    log_info("instance %s generation %" PRIu64 ": %s%s%s", in->key, in->gen, wp_status_name(st),
             in->detail[0] ? " - " : "", in->detail);
    send_report(ni, in, in->gen, st, in->detail, has_exit, exit_code);
}

static void rereport(ninst_t *ni, const inst_t *in)
{
    if (in->reported)
        send_report(ni, in, in->gen, in->status, in->detail, in->has_exit, in->exit_code);
}

/* ---- job threads ---- */

static void job_free(job_t *j)
{
    free(j->image_ref);
    free(j->service_name);
    free(j->ports);
    image_free(j->img);
    oak_err_clear(&j->err);
    free(j);
}

static void job_done(oak_loop_t *loop, void *data);

/* Pulls ref on a job thread: plain HTTP only for a registry listed as
 * insecure. */
static int pull(ninst_t *ni, const char *ref, image_t **out, oak_err_t *err)
{
    image_ref_t r;
    if (image_ref_parse(ref, &r, err) < 0)
        return -1;
    bool insecure = false;
    for (char **p = ni->insecure; r.registry && p && *p && !insecure; p++)
        insecure = strcmp(*p, r.registry) == 0;
    image_ref_clear(&r);
    image_pull_opts_t o = {.insecure = insecure, .oci_root = ni->oci_root};
    return image_pull(ni->images, ref, &o, out, err);
}

static void *job_main(void *arg)
{
    job_t *j = arg;
    bool done = false;
    switch (j->kind) {
    case JOB_PULL:
        j->rc = pull(j->ni, j->image_ref, &j->img, &j->err);
        break;
    case JOB_ATTACH:
        j->rc = netmgr_attach(j->ni->netmanager_socket, j->pid, j->service_name, j->n, j->ports,
                              &done, &j->err);
        break;
    case JOB_DETACH:
        j->rc = netmgr_detach(j->ni->netmanager_socket, j->service_name, j->n, &done, &j->err);
        break;
    }
    oak_loop_post(j->ni->loop, job_done, j);
    return NULL;
}

static job_t *job_new(ninst_t *ni, job_kind_t kind, const inst_t *in)
{
    job_t *j = xcalloc(1, sizeof(*j));
    j->ni = ni;
    j->kind = kind;
    snprintf(j->key, sizeof(j->key), "%s", in->key);
    j->op = in->op;
    j->n = in->n;
    j->service_name = xstrdup(in->d.job_name ? in->d.job_name : in->key);
    return j;
}

static void job_run(ninst_t *ni, job_t *j)
{
    if (pthread_create(&j->th, NULL, job_main, j) != 0) {
        /* run it inline rather than lose it: only under thread exhaustion */
        j->joined = true;
        job_main(j);
        return;
    }
    j->next = ni->jobs;
    ni->jobs = j;
}

/* ---- the pipeline ---- */

static void fail(ninst_t *ni, inst_t *in, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(ninst_t *ni, inst_t *in, const char *fmt, ...)
{
    char msg[WP_MAX_DETAIL + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    in->phase = PH_ENDED;
    set_status(ni, in, WP_ST_FAILED, msg, false, 0);
}

/* Removes what the runtime keeps of container cid: a stopped container
 * and its mounts; with logs false, the log files too. Returns 0 when a
 * stop is still under way (its on_exit follows), else 1. */
static int cleanup_container(ninst_t *ni, const char *cid, bool logs)
{
    oak_err_t err = OAK_ERR_INIT;
    int rc = runtime_stop(ni->rt, cid, 0, &err);
    if (rc < 0 && err.code != OAK_E_NOT_FOUND)
        log_warn("container %s: %s", cid, err.msg);
    oak_err_clear(&err);
    if (rc == 0)
        return 0;
    if (!logs) {
        _cleanup_free_ char *dir = runtime_bundle_dir(ni->rt, cid);
        if (bundle_remove(dir, false, &err) < 0) {
            log_warn("container %s: %s", cid, err.msg);
            oak_err_clear(&err);
        }
    }
    return 1;
}

static void begin(ninst_t *ni, inst_t *in)
{
    in->phase = PH_PULLING;
    in->after = AFTER_NONE;
    in->op++;
    persist(ni, in);
    job_t *j = job_new(ni, JOB_PULL, in);
    j->image_ref = xstrdup(in->d.image);
    log_info("instance %s generation %" PRIu64 ": pulling %s", in->key, in->gen, in->d.image);
    job_run(ni, j);
}

/* The image's environment with the SLA's entries replacing those of the
 * same name, then the SLA's; *n entries, owned (free_strv). */
static char **merge_env(const image_t *img, const wp_deploy_t *d, size_t *n)
{
    char **v = xcalloc(img->nenv + d->nenv + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < img->nenv; i++) {
        const char *e = img->env[i];
        const char *eq = strchr(e, '=');
        if (!eq || eq == e)
            continue;
        bool overridden = false;
        for (size_t s = 0; s < d->nenv && !overridden; s++)
            overridden = strncmp(d->env[s], e, (size_t)(eq - e) + 1) == 0;
        if (!overridden)
            v[k++] = xstrdup(e);
    }
    for (size_t s = 0; s < d->nenv; s++)
        v[k++] = xstrdup(d->env[s]);
    *n = k;
    return v;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* A hostname from the job name: [A-Za-z0-9.-_], at most 63 characters. */
static void make_hostname(const inst_t *in, char *out, size_t len)
{
    const char *src = in->d.job_name && *in->d.job_name ? in->d.job_name : in->key;
    size_t k = 0;
    for (; *src && k + 1 < len && k < HOSTNAME_LEN; src++)
        out[k++] =
            isalnum((unsigned char)*src) || *src == '.' || *src == '-' || *src == '_' ? *src : '-';
    out[k] = 0;
}

/* Parses "uid[:gid]" (numeric only; names would need the image's
 * /etc/passwd). Returns -1 for anything else. */
static int parse_user(const char *u, unsigned *uid, unsigned *gid)
{
    *uid = *gid = 0;
    if (!u || !*u)
        return 0;
    char *end;
    unsigned long a = strtoul(u, &end, 10);
    if (end == u || (*end && *end != ':'))
        return -1;
    unsigned long b = a;
    if (*end == ':') {
        const char *g = end + 1;
        b = strtoul(g, &end, 10);
        if (end == g || *end)
            return -1;
    }
    *uid = (unsigned)a;
    *gid = (unsigned)b;
    return 0;
}

static void start_created(ninst_t *ni, inst_t *in)
{
    oak_err_t err = OAK_ERR_INIT;
    if (runtime_start_created(ni->rt, in->cid, &err) < 0) {
        char msg[sizeof(err.msg)];
        snprintf(msg, sizeof(msg), "%s", err.msg);
        oak_err_clear(&err);
        in->phase = PH_ENDED; /* on_exit of the removal is ignored */
        cleanup_container(ni, in->cid, true);
        fail(ni, in, "cannot start the container: %s", msg);
        return;
    }
    in->phase = PH_RUNNING;
    set_status(ni, in, WP_ST_RUNNING, "", false, 0);
}

static void pulled(ninst_t *ni, inst_t *in, job_t *j)
{
    if (j->rc < 0) {
        fail(ni, in, "cannot pull image %s: %s", in->d.image, j->err.msg);
        return;
    }
    const image_t *img = j->img;
    const wp_deploy_t *d = &in->d;
    /* the SLA's cmd replaces the image's entrypoint and cmd (as in
     * Oakestra); without one the image's entrypoint + cmd run */
    size_t nargs = 0;
    char **args = NULL;
    if (d->ncmd > 0) {
        args = xcalloc(d->ncmd + 1, sizeof(char *));
        for (size_t i = 0; i < d->ncmd; i++)
            args[nargs++] = xstrdup(d->cmd[i]);
    } else {
        args = xcalloc(img->nentry + img->ncmd + 1, sizeof(char *));
        for (size_t i = 0; i < img->nentry; i++)
            args[nargs++] = xstrdup(img->entrypoint[i]);
        for (size_t i = 0; i < img->ncmd; i++)
            args[nargs++] = xstrdup(img->cmd[i]);
    }
    if (nargs == 0) {
        free_strv(args, nargs);
        fail(ni, in, "image %s has no command and the service gives none (cmd)", d->image);
        return;
    }
    unsigned uid, gid;
    if (parse_user(img->user, &uid, &gid) < 0) {
        free_strv(args, nargs);
        fail(ni, in,
             "image %s: user '%s' is not numeric (uid[:gid]), which is not "
             "supported",
             d->image, img->user);
        return;
    }
    size_t nenv = 0;
    char **env = merge_env(img, d, &nenv);
    char host[HOSTNAME_LEN + 1];
    make_hostname(in, host, sizeof(host));
    instance_spec_t spec = {.id = in->cid,
                            .lowerdirs = (const char *const *)img->layers,
                            .nlower = img->nlayers,
                            .args = args,
                            .nargs = nargs,
                            .env = env,
                            .nenv = nenv,
                            .cwd = img->workdir && img->workdir[0] == '/' ? img->workdir : "/",
                            .hostname = host,
                            .uid = uid,
                            .gid = gid,
                            .memory_mb = d->memory_mb,
                            .vcpus = (double)d->vcpus,
                            .netns_path = NULL};
    oak_err_t err = OAK_ERR_INIT;
    pid_t pid = 0;
    /* a container left from an earlier run of this generation (a restart
     * after DEAD) is removed first; its log goes on. One still stopping
     * (e.g. found unclaimed at start, then deployed again) is waited for:
     * its on_exit starts this one over. */
    if (cleanup_container(ni, in->cid, true) == 0) {
        free_strv(args, nargs);
        free_strv(env, nenv);
        in->phase = PH_STOPPING;
        in->after = AFTER_RESTART;
        return;
    }
    int rc = runtime_create(ni->rt, &spec, &pid, &err);
    free_strv(args, nargs);
    free_strv(env, nenv);
    if (rc < 0) {
        char msg[sizeof(err.msg)];
        snprintf(msg, sizeof(msg), "%s", err.msg);
        oak_err_clear(&err);
        fail(ni, in, "cannot create the container: %s", msg);
        return;
    }
    set_status(ni, in, WP_ST_CREATED, "", false, 0);
    if (netmgr_present(ni->netmanager_socket)) {
        in->phase = PH_ATTACHING;
        in->op++;
        job_t *a = job_new(ni, JOB_ATTACH, in);
        a->pid = pid;
        a->ports = xstrdup(d->port ? d->port : "");
        job_run(ni, a);
        return;
    }
    start_created(ni, in);
}

static void attached(ninst_t *ni, inst_t *in, job_t *j)
{
    if (j->rc < 0) {
        char msg[sizeof(j->err.msg)];
        snprintf(msg, sizeof(msg), "%s", j->err.msg);
        in->phase = PH_ENDED;
        cleanup_container(ni, in->cid, true);
        fail(ni, in, "cannot connect the network: %s", msg);
        return;
    }
    in->attached = true;
    start_created(ni, in);
}

static void detach(ninst_t *ni, inst_t *in)
{
    if (!in->attached || !netmgr_present(ni->netmanager_socket))
        return;
    in->attached = false;
    job_run(ni, job_new(ni, JOB_DETACH, in));
}

static void job_done(oak_loop_t *loop, void *data)
{
    job_t *j = data;
    ninst_t *ni = j->ni;
    for (job_t **p = &ni->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    if (!j->joined)
        pthread_join(j->th, NULL);
    inst_t *in = ni->stopping ? NULL : find_key(ni, j->key);
    if (j->kind == JOB_DETACH) {
        if (j->rc < 0)
            log_warn("instance %s: net-manager undeploy: %s", j->key, j->err.msg);
    } else if (in && in->op == j->op) {
        if (j->kind == JOB_PULL && in->phase == PH_PULLING)
            pulled(ni, in, j);
        else if (j->kind == JOB_ATTACH && in->phase == PH_ATTACHING)
            attached(ni, in, j);
    }
    job_free(j);
}

/* ---- endings ---- */

static void maybe_drained(ninst_t *ni)
{
    if (ni->draining && ni->count == 0) {
        ni->draining = false;
        if (ni->drain_done)
            oak_loop_post(ni->loop, ni->drain_done, ni->drain_data);
    }
}

/* The instance is gone for good: UNDEPLOYED, desired state and logs
 * removed. */
static void finish_remove(ninst_t *ni, inst_t *in, uint64_t gen)
{
    detach(ni, in);
    cleanup_container(ni, in->cid, false);
    unpersist(ni, in);
    log_info("instance %s generation %" PRIu64 ": UNDEPLOYED", in->key, gen);
    send_report(ni, in, gen, WP_ST_UNDEPLOYED, "", false, 0);
    inst_remove(ni, in);
    maybe_drained(ni);
}

static bool ended_status(const inst_t *in)
{
    return in->reported && (in->status == WP_ST_DEAD || in->status == WP_ST_FAILED ||
                            in->status == WP_ST_COMPLETED);
}

static void finish_drain(ninst_t *ni, inst_t *in)
{
    bool was_active = !ended_status(in);
    detach(ni, in);
    cleanup_container(ni, in->cid, false);
    unpersist(ni, in);
    if (was_active) {
        log_info("instance %s generation %" PRIu64 ": FAILED - worker drained", in->key, in->gen);
        send_report(ni, in, in->gen, WP_ST_FAILED, "worker drained", false, 0);
    }
    inst_remove(ni, in);
    maybe_drained(ni);
}

/* Switches to the pending next generation and starts it. */
static void finish_replace(ninst_t *ni, inst_t *in)
{
    uint64_t old = in->gen;
    detach(ni, in);
    cleanup_container(ni, in->cid, false);
    log_info("instance %s generation %" PRIu64 ": UNDEPLOYED (replaced)", in->key, old);
    send_report(ni, in, old, WP_ST_UNDEPLOYED, "replaced by a newer generation", false, 0);
    json_t *raw = in->next_raw;
    in->next_raw = NULL;
    set_desired(in, &in->next_d, raw);
    json_decref(raw);
    begin(ni, in);
}

/* Stops the container of in (or drops its pending job) and continues with
 * `after` once nothing runs. */
static void stop_then(ninst_t *ni, inst_t *in, after_t after, uint64_t gen)
{
    oak_err_t err = OAK_ERR_INIT;
    in->after = after;
    if (in->phase == PH_STOPPING)
        return; /* on_exit continues with the new `after` */
    in->op++;   /* a pending pull or attach is stale now */
    if (in->phase == PH_RUNNING || in->phase == PH_ATTACHING) {
        int rc = runtime_stop(ni->rt, in->cid, ni->stop_grace_ms, &err);
        if (rc == 0) {
            in->phase = PH_STOPPING;
            return;
        }
        if (rc < 0 && err.code != OAK_E_NOT_FOUND)
            log_warn("instance %s: stopping %s: %s", in->key, in->cid, err.msg);
        oak_err_clear(&err);
    }
    in->phase = PH_ENDED;
    if (after == AFTER_REMOVE)
        finish_remove(ni, in, gen);
    else if (after == AFTER_REDEPLOY)
        finish_replace(ni, in);
    else if (after == AFTER_DRAIN)
        finish_drain(ni, in);
}

static void on_exit_cb(const char *cid, int code, void *ctx)
{
    ninst_t *ni = ctx;
    inst_t *in = ni->stopping ? NULL : find_cid(ni, cid);
    if (!in) {
        if (!ni->stopping) {
            /* an unclaimed container we stopped: remove its logs too */
            _cleanup_free_ char *dir = runtime_bundle_dir(ni->rt, cid);
            oak_err_t err = OAK_ERR_INIT;
            if (bundle_remove(dir, false, &err) < 0) {
                log_warn("container %s: %s", cid, err.msg);
                oak_err_clear(&err);
            }
        }
        return;
    }
    if (in->phase == PH_STOPPING) {
        after_t after = in->after;
        in->phase = PH_ENDED;
        in->after = AFTER_NONE;
        if (after == AFTER_REMOVE)
            finish_remove(ni, in, in->gen);
        else if (after == AFTER_REDEPLOY)
            finish_replace(ni, in);
        else if (after == AFTER_DRAIN)
            finish_drain(ni, in);
        else if (after == AFTER_RESTART)
            begin(ni, in);
        return;
    }
    if (in->phase != PH_RUNNING && in->phase != PH_ATTACHING)
        return; /* the removal of a failed start, or a leftover */
    in->phase = PH_ENDED;
    in->op++;
    cleanup_container(ni, cid, true);
    char detail[128];
    if (code == 0 && in->d.one_shot) {
        set_status(ni, in, WP_ST_COMPLETED, "exit code 0", true, 0);
        return;
    }
    if (code == RUNTIME_EXIT_UNKNOWN) {
        set_status(ni, in, WP_ST_DEAD,
                   "exited while node-engine was not watching (exit code unknown)", false, 0);
        return;
    }
    if (code > 128 && code < 128 + 65)
        snprintf(detail, sizeof(detail), "exit code %d (killed by signal %d)", code, code - 128);
    else
        snprintf(detail, sizeof(detail), "exit code %d", code);
    set_status(ni, in, WP_ST_DEAD, detail, true, code > 255 ? 255 : code < 0 ? 255 : code);
}

/* ---- commands ---- */

void ninst_deploy(ninst_t *ni, const wp_deploy_t *d, const char *raw, size_t len)
{
    json_auto_t *rj = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (oak_json_parse_object(raw, len, WP_MAX_PAYLOAD, &rj, &err) < 0) {
        log_warn("deploy dropped: %s", err.msg);
        oak_err_clear(&err);
        return;
    }
    /* a private parsed copy the instance can own */
    wp_deploy_t mine;
    if (wp_parse_deploy(raw, len, &mine, &err) < 0) {
        log_warn("deploy dropped: %s", err.msg);
        oak_err_clear(&err);
        return;
    }
    if (ni->draining) {
        log_warn("deploy of %s/%d ignored: draining", d->service_id, d->instance_number);
        wp_deploy_clear(&mine);
        return;
    }
    inst_t *in = find(ni, d->service_id, d->instance_number);
    if (!in) {
        in = inst_add(ni, d->service_id, d->instance_number);
        set_desired(in, &mine, rj);
        begin(ni, in);
        return;
    }
    if (d->generation < in->gen) {
        log_info("instance %s: deploy of generation %" PRIu64 " ignored, %" PRIu64 " is newer",
                 in->key, d->generation, in->gen);
        wp_deploy_clear(&mine);
        return;
    }
    if (d->generation == in->gen) {
        if (in->phase == PH_STOPPING && in->after == AFTER_REMOVE) {
            /* deployed again while being removed: started once stopped */
            wp_deploy_clear(&in->next_d);
            json_decref(in->next_raw);
            in->next_d = mine;
            in->next_raw = json_incref(rj);
            in->after = AFTER_REDEPLOY;
            return;
        }
        wp_deploy_clear(&mine);
        if (in->phase == PH_ENDED && in->reported &&
            (in->status == WP_ST_DEAD || in->status == WP_ST_FAILED)) {
            log_info("instance %s generation %" PRIu64 ": restarting (was %s)", in->key, in->gen,
                     wp_status_name(in->status));
            begin(ni, in);
            return;
        }
        rereport(ni, in);
        return;
    }
    /* a newer generation replaces the running one */
    log_info("instance %s: generation %" PRIu64 " replaces %" PRIu64, in->key, d->generation,
             in->gen);
    wp_deploy_clear(&in->next_d);
    json_decref(in->next_raw);
    in->next_d = mine;
    in->next_raw = json_incref(rj);
    stop_then(ni, in, AFTER_REDEPLOY, in->gen);
}

void ninst_delete(ninst_t *ni, const wp_delete_t *d)
{
    inst_t *in = find(ni, d->service_id, d->instance_number);
    if (!in) {
        inst_t tmp = {.n = d->instance_number};
        snprintf(tmp.service_id, sizeof(tmp.service_id), "%s", d->service_id);
        log_info("instance %s-%d: delete of an unknown instance: UNDEPLOYED", d->service_id,
                 d->instance_number);
        send_report(ni, &tmp, d->generation, WP_ST_UNDEPLOYED, "not on this worker", false, 0);
        return;
    }
    if (in->gen > d->generation) {
        log_info("instance %s: delete of generation %" PRIu64 " ignored, it runs %" PRIu64, in->key,
                 d->generation, in->gen);
        return;
    }
    wp_deploy_clear(&in->next_d);
    json_decref(in->next_raw);
    in->next_raw = NULL;
    stop_then(ni, in, AFTER_REMOVE, in->gen);
}

/* ---- queries ---- */

size_t ninst_state(ninst_t *ni, wp_inst_t **out)
{
    wp_inst_t *v = xcalloc(ni->count + 1, sizeof(*v));
    size_t k = 0;
    for (inst_t *in = ni->list; in; in = in->next) {
        if (!in->reported)
            continue; /* still pulling: a repeated deploy changes nothing */
        snprintf(v[k].service_id, sizeof(v[k].service_id), "%s", in->service_id);
        v[k].instance_number = in->n;
        v[k].generation = in->gen;
        v[k].status = in->status;
        k++;
    }
    *out = v;
    return k;
}

int ninst_logs(ninst_t *ni, const char *service_id, int n, int tail, char **out, oak_err_t *err)
{
    inst_t *in = find(ni, service_id, n);
    if (!in || !in->cid[0])
        return oak_err_set(err, OAK_E_NOT_FOUND, "no instance %d of service %s on this worker", n,
                           service_id);
    return runtime_logs(ni->rt, in->cid, tail > 0 ? (size_t)tail : 1, out, err);
}

size_t ninst_count(const ninst_t *ni)
{
    return ni->count;
}

size_t ninst_usage(ninst_t *ni, bool only_changed, wp_usage_t **out)
{
    wp_usage_t *v = xcalloc(ni->count + 1, sizeof(*v));
    size_t k = 0;
    uint64_t now = oak_now_us();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double max_cpu = 100.0 * (double)(cores > 0 ? cores : 1);
    for (inst_t *in = ni->list; in; in = in->next) {
        if (in->phase != PH_RUNNING)
            continue;
        unsigned long long cpu = 0, mem = 0;
        oak_err_t err = OAK_ERR_INIT;
        if (runtime_usage(ni->rt, in->cid, &cpu, &mem, &err) < 0) {
            log_debug("instance %s: usage: %s", in->key, err.msg);
            oak_err_clear(&err);
            continue;
        }
        if (in->cpu_at_us && now > in->cpu_at_us && cpu >= in->cpu_ns) {
            in->cpu_pct =
                100.0 * (double)(cpu - in->cpu_ns) / (1000.0 * (double)(now - in->cpu_at_us));
            in->usage_valid = true;
        }
        in->cpu_ns = cpu;
        in->cpu_at_us = now;
        in->mem_mb = (long long)(mem / (1024 * 1024));
        if (!in->usage_valid)
            continue;
        if (in->cpu_pct > max_cpu)
            in->cpu_pct = max_cpu;
        if (only_changed && in->sent_usage && fabs(in->cpu_pct - in->sent_cpu) < 1.0 &&
            in->mem_mb == in->sent_mem)
            continue;
        in->sent_usage = true;
        in->sent_cpu = in->cpu_pct;
        in->sent_mem = in->mem_mb;
        snprintf(v[k].service_id, sizeof(v[k].service_id), "%s", in->service_id);
        v[k].instance_number = in->n;
        v[k].generation = in->gen;
        v[k].cpu_percent = in->cpu_pct;
        v[k].memory_mb = in->mem_mb;
        k++;
    }
    *out = v;
    return k;
}

/* ---- recovery ---- */

/* Loads one desired-state file; NULL (with a log line) when unusable. */
static inst_t *load_one(ninst_t *ni, const char *path)
{
    json_auto_t *j = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (oak_json_load_file(path, FILE_MAX, &j, &err) < 0) {
        log_warn("ignoring %s: %s", path, err.msg);
        oak_err_clear(&err);
        return NULL;
    }
    json_t *raw = json_object_get(j, "deploy");
    _cleanup_free_ char *s = raw ? oak_json_dump(raw) : NULL;
    wp_deploy_t d;
    if (!s || wp_parse_deploy(s, strlen(s), &d, &err) < 0) {
        log_warn("ignoring %s: its deploy command is invalid: %s", path, s ? err.msg : "missing");
        oak_err_clear(&err);
        return NULL;
    }
    if (find(ni, d.service_id, d.instance_number)) {
        log_warn("ignoring %s: instance %s/%d is listed twice", path, d.service_id,
                 d.instance_number);
        wp_deploy_clear(&d);
        return NULL;
    }
    inst_t *in = inst_add(ni, d.service_id, d.instance_number);
    set_desired(in, &d, raw);
    const char *cid = oak_json_str(j, "container_id");
    if (cid && runtime_id_valid(cid))
        snprintf(in->cid, sizeof(in->cid), "%s", cid);
    const char *st = oak_json_str(j, "status");
    wp_status_t status;
    if (st && wp_status_parse(st, &status) == 0) {
        in->reported = true;
        in->status = status;
        snprintf(in->detail, sizeof(in->detail), "%s",
                 oak_json_str(j, "status_detail") ? oak_json_str(j, "status_detail") : "");
        json_t *ec = json_object_get(j, "exit_code");
        in->has_exit = json_is_integer(ec);
        in->exit_code = (int)json_integer_value(ec);
    }
    return in;
}

/* During recovery, instances whose container has not been seen yet are in
 * phase PH_PULLING with op 0 and no job: `pending` below. */
static bool pending(const inst_t *in)
{
    return in->phase == PH_PULLING && in->op == 0;
}

static void adopt_cb(const char *cid, const char *status, int pid, void *ctx)
{
    ninst_t *ni = ctx;
    oak_err_t err = OAK_ERR_INIT;
    inst_t *in = find_cid(ni, cid);
    if (!in) {
        log_info("container %s (%s): no desired state claims it; removing it", cid, status);
        int rc = runtime_stop(ni->rt, cid, ni->stop_grace_ms, &err);
        if (rc < 0) {
            log_warn("container %s: %s", cid, err.msg);
            oak_err_clear(&err);
        }
        if (rc != 0) { /* removed already (or failed): the logs too */
            _cleanup_free_ char *dir = runtime_bundle_dir(ni->rt, cid);
            if (bundle_remove(dir, false, &err) < 0) {
                log_warn("container %s: %s", cid, err.msg);
                oak_err_clear(&err);
            }
        }
        return;
    }
    if (!pending(in)) {
        /* an ended instance's leftover container: keep only its logs */
        if (strcmp(status, "absent") != 0)
            cleanup_container(ni, cid, true);
        return;
    }
    if (strcmp(status, "running") == 0) {
        in->phase = PH_RUNNING;
        in->op = 1;
        log_info("instance %s generation %" PRIu64 ": adopted running container %s (pid %d)",
                 in->key, in->gen, cid, pid);
        if (!in->reported || in->status != WP_ST_RUNNING)
            set_status(ni, in, WP_ST_RUNNING, "", false, 0);
        return;
    }
    if (strcmp(status, "stopped") == 0) {
        in->phase = PH_ENDED;
        in->op = 1;
        cleanup_container(ni, cid, true);
        if (in->d.one_shot && in->reported && in->status == WP_ST_COMPLETED)
            return;
        set_status(ni, in, WP_ST_DEAD,
                   "exited while node-engine was not running (exit code unknown)", false, 0);
        return;
    }
    /* created but never started, paused, or only its directory is left:
     * removed, and started again below */
    log_info("instance %s: container %s is %s; starting it again", in->key, cid, status);
    int rc = runtime_stop(ni->rt, cid, 0, &err);
    if (rc < 0 && err.code != OAK_E_NOT_FOUND)
        log_warn("container %s: %s", cid, err.msg);
    oak_err_clear(&err);
    if (rc == 0) { /* started once the old one is removed (on_exit) */
        in->phase = PH_STOPPING;
        in->after = AFTER_RESTART;
        in->op = 1;
    }
}

int ninst_recover(ninst_t *ni, oak_err_t *err)
{
    DIR *dir = opendir(ni->inst_dir);
    if (!dir)
        return oak_err_errno(err, errno, "cannot read %s", ni->inst_dir);
    struct dirent *de;
    size_t loaded = 0;
    while ((de = readdir(dir))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        _cleanup_free_ char *path = xasprintf("%s/%s", ni->inst_dir, de->d_name);
        inst_t *in = load_one(ni, path);
        if (!in)
            continue;
        loaded++;
        in->op = 0;
        in->phase = ended_status(in) ? PH_ENDED : PH_PULLING;
    }
    closedir(dir);
    if (runtime_adopt(ni->rt, adopt_cb, ni, err) < 0)
        return -1;
    size_t restarted = 0, adopted = 0;
    for (inst_t *in = ni->list; in; in = in->next) {
        if (pending(in)) {
            log_info("instance %s generation %" PRIu64 ": its container is gone; starting it",
                     in->key, in->gen);
            begin(ni, in);
            restarted++;
        } else if (in->phase == PH_RUNNING) {
            adopted++;
        }
    }
    log_info("recovered %zu instance(s): %zu adopted running, %zu started again", loaded, adopted,
             restarted);
    return 0;
}

/* ---- drain ---- */

void ninst_drain(ninst_t *ni, oak_loop_cb done, void *data)
{
    ni->draining = true;
    ni->drain_done = done;
    ni->drain_data = data;
    log_info("draining %zu instance(s)", ni->count);
    inst_t *next;
    for (inst_t *in = ni->list; in; in = next) {
        next = in->next;
        stop_then(ni, in, AFTER_DRAIN, in->gen);
    }
    maybe_drained(ni);
}

/* ---- lifecycle ---- */

static char **split_list(const char *s)
{
    size_t cap = 4, n = 0;
    char **v = xcalloc(cap + 1, sizeof(char *));
    _cleanup_free_ char *copy = xstrdup(s ? s : "");
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (n == cap) {
            cap *= 2;
            v = xrealloc(v, (cap + 1) * sizeof(char *));
        }
        v[n++] = xstrdup(t);
    }
    v[n] = NULL;
    return v;
}

int ninst_new(oak_loop_t *loop, const ninst_opts_t *o, ninst_report_fn report, void *ctx,
              ninst_t **out, oak_err_t *err)
{
    if (!o->state_dir || !*o->state_dir || !o->image_dir || !*o->image_dir || !o->runc_root ||
        !o->cgroup_parent)
        return oak_err_set(err, OAK_E_INVALID, "state, image and runc directories are required");
    ninst_t *ni = xcalloc(1, sizeof(*ni));
    ni->loop = loop;
    ni->report = report;
    ni->ctx = ctx;
    ni->state_dir = xstrdup(o->state_dir);
    ni->inst_dir = xasprintf("%s/instances", o->state_dir);
    ni->netmanager_socket = xstrdup(o->netmanager_socket ? o->netmanager_socket : "");
    ni->stop_grace_ms = o->stop_timeout_s > 0 ? o->stop_timeout_s * 1000 : STOP_GRACE_MS;
    ni->insecure = split_list(o->insecure_registries);
    ni->oci_root = o->oci_root && *o->oci_root ? xstrdup(o->oci_root) : NULL;
    if (oak_mkdir_p(ni->inst_dir, 0700, err) < 0 ||
        image_store_open(o->image_dir, &ni->images, err) < 0)
        goto fail;
    runtime_opts_t ro = {.state_dir = o->state_dir,
                         .runc_root = o->runc_root,
                         .cgroup_parent = o->cgroup_parent,
                         .runc_path = o->runc_path,
                         .keep_logs = true};
    if (runtime_new(loop, &ro, on_exit_cb, ni, &ni->rt, err) < 0)
        goto fail;
    *out = ni;
    return 0;
fail:
    ninst_free(ni);
    return -1;
}

void ninst_shutdown(ninst_t *ni)
{
    if (!ni || ni->stopping)
        return;
    ni->stopping = true;
    size_t pending_jobs = 0;
    for (job_t *j = ni->jobs; j; j = j->next)
        pending_jobs += !j->joined;
    if (pending_jobs)
        log_info("waiting for %zu image pull(s) or net-manager call(s) to finish", pending_jobs);
    for (job_t *j = ni->jobs; j; j = j->next)
        if (!j->joined) {
            pthread_join(j->th, NULL);
            j->joined = true;
        }
}

void ninst_free(ninst_t *ni)
{
    if (!ni)
        return;
    ninst_shutdown(ni);
    /* results never delivered (the loop was not drained) */
    while (ni->jobs) {
        job_t *j = ni->jobs;
        ni->jobs = j->next;
        job_free(j);
    }
    while (ni->list) {
        inst_t *in = ni->list;
        ni->list = in->next;
        inst_free(in);
    }
    runtime_free(ni->rt);
    image_store_close(ni->images);
    for (char **p = ni->insecure; p && *p; p++)
        free(*p);
    free(ni->insecure);
    free(ni->state_dir);
    free(ni->inst_dir);
    free(ni->netmanager_socket);
    free(ni->oci_root);
    free(ni);
}

/* ---- CLI ---- */

int ninst_list(const char *state_dir, json_t **out, oak_err_t *err)
{
    _cleanup_free_ char *d = xasprintf("%s/instances", state_dir);
    json_t *list = json_array();
    DIR *dir = opendir(d);
    if (!dir) {
        if (errno == ENOENT) {
            *out = list;
            return 0;
        }
        json_decref(list);
        return oak_err_errno(err, errno, "cannot read %s", d);
    }
    struct dirent *de;
    while ((de = readdir(dir))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        _cleanup_free_ char *path = xasprintf("%s/%s", d, de->d_name);
        json_auto_t *j = NULL;
        oak_err_t e = OAK_ERR_INIT;
        if (oak_json_load_file(path, FILE_MAX, &j, &e) < 0) {
            oak_err_clear(&e);
            continue;
        }
        json_t *dep = json_object_get(j, "deploy");
        const char *st = oak_json_str(j, "status");
        json_t *row = json_pack(
            "{s:s%, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s}", "instance", de->d_name, l - 5,
            "service_id", oak_json_str(dep, "service_id") ? oak_json_str(dep, "service_id") : "",
            "instance_number", (json_int_t)oak_json_int(dep, "instance_number", -1), "generation",
            (json_int_t)oak_json_int(dep, "generation", 0), "job_name",
            oak_json_str(dep, "job_name") ? oak_json_str(dep, "job_name") : "", "image",
            oak_json_str(dep, "image") ? oak_json_str(dep, "image") : "", "status",
            st ? st : "PENDING", "status_detail",
            oak_json_str(j, "status_detail") ? oak_json_str(j, "status_detail") : "",
            "container_id", oak_json_str(j, "container_id") ? oak_json_str(j, "container_id") : "");
        if (json_is_integer(json_object_get(j, "exit_code")))
            json_object_set(row, "exit_code", json_object_get(j, "exit_code"));
        json_array_append_new(list, row);
    }
    closedir(dir);
    *out = list;
    return 0;
}
