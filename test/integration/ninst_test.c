/* Tests of the worker's instance table (node_engine/ninst) driven
 * directly, with the real runtime (runc) and the busybox test image from
 * its local OCI layout (oci:<dir>:v1), no cluster: the command rules of
 * docs/worker-protocol.md (idempotency on service, instance and
 * generation: a repeated deploy re-reports, a newer generation replaces,
 * an older one and a stale delete are ignored, a delete of an unknown
 * instance reports UNDEPLOYED, a dead instance deployed again restarts),
 * one-shot completion, usage, the state report, re-adoption by a new
 * table over the same directories, oci: references outside oci_root
 * refused, and drain. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "node_engine/ninst.h"
#include "test/common/harness.h"
#include "test/common/rootfs.h"
#include "test/common/testimage.h"

#define SID_A       "aaaaaaaaaaaaaaaaaaaaaaaa"
#define SID_B       "bbbbbbbbbbbbbbbbbbbbbbbb"
#define SID_C       "cccccccccccccccccccccccc"
#define MAX_REPORTS 256

typedef struct {
    char *dir, *oci_root, *image;
    char runc_root[128], cgroup_parent[128], state_dir[300], image_dir[300];
    oak_loop_t *loop;
    ninst_t *ni;
    wp_job_t reports[MAX_REPORTS];
    int nreports;
    bool drained;
} fx_t;

static void on_report(const wp_job_t *job, void *ctx)
{
    fx_t *f = ctx;
    if (f->nreports < MAX_REPORTS)
        f->reports[f->nreports++] = *job;
}

static int open_table(fx_t *f)
{
    oak_err_t err = OAK_ERR_INIT;
    ninst_opts_t o = {.state_dir = f->state_dir,
                      .image_dir = f->image_dir,
                      .runc_root = f->runc_root,
                      .cgroup_parent = f->cgroup_parent,
                      .oci_root = f->oci_root,
                      .stop_timeout_s = 1};
    if (ninst_new(f->loop, &o, on_report, f, &f->ni, &err) < 0 || ninst_recover(f->ni, &err) < 0) {
        fprintf(stderr, "ninst: %s\n", err.msg);
        oak_err_clear(&err);
        return -1;
    }
    return 0;
}

static void stop_loop(oak_loop_t *loop, void *data)
{
    oak_loop_stop(loop);
}

static void close_table(fx_t *f)
{
    ninst_shutdown(f->ni);
    oak_loop_post(f->loop, stop_loop, NULL);
    oak_loop_run(f->loop);
    ninst_free(f->ni);
    f->ni = NULL;
}

static int setup(void **state)
{
    if (!th_runc_available() || !th_testimage_available())
        return 0;
    const char *layout = th_testimage_layout();
    if (!layout)
        return -1;
    oak_log_init("ninst-test", OAK_LOG_WARN, false);
    fx_t *f = xcalloc(1, sizeof(*f));
    f->dir = th_tmpdir("ninst-test");
    char *copy = xstrdup(layout);
    f->oci_root = xstrdup(dirname(copy));
    free(copy);
    f->image = xasprintf("oci:%s:v1", layout);
    snprintf(f->runc_root, sizeof(f->runc_root), "/run/oak-test-ninst-%d", (int)getpid());
    snprintf(f->cgroup_parent, sizeof(f->cgroup_parent), "oak-test-ninst-%d", (int)getpid());
    snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->dir);
    snprintf(f->image_dir, sizeof(f->image_dir), "%s/images", f->dir);
    f->loop = oak_loop_new();
    if (open_table(f) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (!f)
        return 0;
    if (f->ni)
        close_table(f);
    th_runc_cleanup(f->runc_root, f->cgroup_parent, f->dir);
    rmdir(f->runc_root);
    oak_loop_free(f->loop);
    th_rmtree(f->dir);
    free(f->dir);
    free(f->oci_root);
    free(f->image);
    free(f);
    return 0;
}

#define FIXTURE(f)                                                                                 \
    fx_t *f = *state;                                                                              \
    if (!f) {                                                                                      \
        printf("SKIPPED: %s needs root, runc, umoci and skopeo\n", __func__);                      \
        return;                                                                                    \
    }

typedef struct {
    fx_t *f;
    bool (*pred)(fx_t *, const void *);
    const void *arg;
    uint64_t deadline;
    bool ok;
} wait_t;

static void poll_cb(oak_loop_t *loop, void *data)
{
    wait_t *w = data;
    if (w->pred(w->f, w->arg)) {
        w->ok = true;
        oak_loop_stop(loop);
    } else if (oak_now_ms() >= w->deadline) {
        oak_loop_stop(loop);
    } else {
        oak_loop_add_timer(loop, 10, poll_cb, w);
    }
}

/* Runs the loop until pred holds or ms pass; returns pred's last value. */
static bool run_until(fx_t *f, bool (*pred)(fx_t *, const void *), const void *arg, int ms)
{
    wait_t w = {f, pred, arg, oak_now_ms() + (uint64_t)ms, false};
    oak_loop_add_timer(f->loop, 0, poll_cb, &w);
    oak_loop_run(f->loop);
    return w.ok;
}

static bool never(fx_t *f, const void *arg)
{
    return false;
}

/* Runs the loop for ms. */
static void run_for(fx_t *f, int ms)
{
    run_until(f, never, NULL, ms);
}

typedef struct {
    const char *sid;
    uint64_t gen;
    wp_status_t status;
} want_t;

static int count_reports(fx_t *f, const char *sid, uint64_t gen, wp_status_t st)
{
    int n = 0;
    for (int i = 0; i < f->nreports; i++)
        n += !strcmp(f->reports[i].service_id, sid) && f->reports[i].generation == gen &&
             f->reports[i].status == st;
    return n;
}

static const wp_job_t *last_report(fx_t *f, const char *sid)
{
    for (int i = f->nreports - 1; i >= 0; i--)
        if (!strcmp(f->reports[i].service_id, sid))
            return &f->reports[i];
    return NULL;
}

static bool reported(fx_t *f, const void *arg)
{
    const want_t *w = arg;
    return count_reports(f, w->sid, w->gen, w->status) > 0;
}

static void expect(fx_t *f, const char *sid, uint64_t gen, wp_status_t st, int ms)
{
    want_t w = {sid, gen, st};
    if (!run_until(f, reported, &w, ms)) {
        fprintf(stderr, "no %s report for %s generation %llu; reports:\n", wp_status_name(st), sid,
                (unsigned long long)gen);
        for (int i = 0; i < f->nreports; i++)
            fprintf(stderr, "  %s gen %llu %s %s\n", f->reports[i].service_id,
                    (unsigned long long)f->reports[i].generation,
                    wp_status_name(f->reports[i].status), f->reports[i].status_detail);
        fail();
    }
}

static void deploy(fx_t *f, const char *sid, int n, uint64_t gen, const char *cmd_json,
                   bool one_shot, const char *image)
{
    char raw[2048];
    snprintf(raw, sizeof(raw),
             "{\"service_id\":\"%s\",\"instance_number\":%d,\"generation\":%llu,"
             "\"job_name\":\"app.test.svc%d.test\",\"image\":\"%s\",\"cmd\":%s,"
             "\"environment\":[\"X=%llu\"],\"vcpus\":0,\"memory\":0,\"one_shot\":%s,"
             "\"virtualization\":\"container\",\"service\":{}}",
             sid, n, (unsigned long long)gen, n, image ? image : f->image, cmd_json,
             (unsigned long long)gen, one_shot ? "true" : "false");
    wp_deploy_t d;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(wp_parse_deploy(raw, strlen(raw), &d, &err), 0);
    ninst_deploy(f->ni, &d, raw, strlen(raw));
    wp_deploy_clear(&d);
}

static void delete (fx_t *f, const char *sid, int n, uint64_t gen)
{
    wp_delete_t d = {.instance_number = n, .generation = gen};
    snprintf(d.service_id, sizeof(d.service_id), "%s", sid);
    ninst_delete(f->ni, &d);
}

/* The init pid of container cid, 0 when not running. */
static pid_t cpid(fx_t *f, const char *cid)
{
    char *out = NULL;
    if (th_runc(f->runc_root, &out, "state", cid, NULL) != 0) {
        free(out);
        return 0;
    }
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    pid_t pid = !strcmp(oak_json_str(j, "status") ? oak_json_str(j, "status") : "", "running")
                    ? (pid_t)oak_json_int(j, "pid", 0)
                    : 0;
    json_decref(j);
    return pid;
}

static void test_generations(void **state)
{
    FIXTURE(f);
    const char *sleep_cmd = "[\"sleep\",\"1000\"]";
    f->nreports = 0;
    deploy(f, SID_A, 0, 1, sleep_cmd, false, NULL);
    expect(f, SID_A, 1, WP_ST_CREATED, 20000);
    expect(f, SID_A, 1, WP_ST_RUNNING, 5000);
    pid_t p1 = cpid(f, SID_A "-0-1");
    assert_true(p1 > 0);

    /* the same generation again: re-reported, nothing restarted */
    int before = f->nreports;
    deploy(f, SID_A, 0, 1, sleep_cmd, false, NULL);
    assert_int_equal(f->nreports, before + 1);
    assert_int_equal(last_report(f, SID_A)->status, WP_ST_RUNNING);
    assert_int_equal(cpid(f, SID_A "-0-1"), p1);

    /* the state report */
    wp_inst_t *v = NULL;
    size_t n = ninst_state(f->ni, &v);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].service_id, SID_A);
    assert_int_equal(v[0].generation, 1);
    assert_int_equal(v[0].status, WP_ST_RUNNING);
    free(v);

    /* usage: the second sample has a cpu delta */
    wp_usage_t *u = NULL;
    ninst_usage(f->ni, true, &u);
    free(u);
    run_for(f, 200);
    n = ninst_usage(f->ni, true, &u);
    assert_int_equal(n, 1);
    assert_int_equal(u[0].generation, 1);
    assert_true(u[0].cpu_percent >= 0 && u[0].memory_mb >= 0);
    free(u);

    /* a newer generation replaces it */
    deploy(f, SID_A, 0, 2, sleep_cmd, false, NULL);
    expect(f, SID_A, 1, WP_ST_UNDEPLOYED, 10000);
    expect(f, SID_A, 2, WP_ST_RUNNING, 20000);
    assert_int_equal(cpid(f, SID_A "-0-1"), 0);
    assert_int_equal(kill(p1, 0), -1);
    pid_t p2 = cpid(f, SID_A "-0-2");
    assert_true(p2 > 0);

    /* an older deploy and a stale delete change nothing */
    before = f->nreports;
    deploy(f, SID_A, 0, 1, sleep_cmd, false, NULL);
    delete (f, SID_A, 0, 1);
    run_for(f, 200);
    assert_int_equal(f->nreports, before);
    assert_int_equal(cpid(f, SID_A "-0-2"), p2);

    /* delete: UNDEPLOYED, container and desired state gone */
    delete (f, SID_A, 0, 2);
    expect(f, SID_A, 2, WP_ST_UNDEPLOYED, 10000);
    assert_int_equal(cpid(f, SID_A "-0-2"), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/instances/%s-0.json", f->state_dir, SID_A);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(ninst_count(f->ni), 0);

    /* a delete of an unknown instance is answered at once */
    before = f->nreports;
    delete (f, SID_B, 7, 3);
    assert_int_equal(f->nreports, before + 1);
    assert_string_equal(last_report(f, SID_B)->service_id, SID_B);
    assert_int_equal(last_report(f, SID_B)->instance_number, 7);
    assert_int_equal(last_report(f, SID_B)->status, WP_ST_UNDEPLOYED);
}

static void test_exit_codes(void **state)
{
    FIXTURE(f);
    f->nreports = 0;
    deploy(f, SID_B, 0, 1, "[\"sh\",\"-c\",\"echo run $X; exit 3\"]", false, NULL);
    expect(f, SID_B, 1, WP_ST_DEAD, 20000);
    const wp_job_t *j = last_report(f, SID_B);
    assert_true(j->has_exit_code);
    assert_int_equal(j->exit_code, 3);
    assert_non_null(strstr(j->status_detail, "exit code 3"));
    /* the cluster restarts a dead instance with the same generation */
    int dead = count_reports(f, SID_B, 1, WP_ST_DEAD);
    deploy(f, SID_B, 0, 1, "[\"sh\",\"-c\",\"echo run $X; exit 3\"]", false, NULL);
    for (int t = 0; t < 400 && count_reports(f, SID_B, 1, WP_ST_DEAD) == dead; t++)
        run_for(f, 50);
    assert_int_equal(count_reports(f, SID_B, 1, WP_ST_DEAD), dead + 1);
    /* both runs wrote to the instance's log */
    char path[600];
    snprintf(path, sizeof(path), "%s/containers/%s-0-1/log", f->state_dir, SID_B);
    char *log = th_read_file(path, NULL);
    assert_non_null(log);
    char *second = strstr(log, "run 1\n");
    assert_non_null(second);
    assert_non_null(strstr(second + 1, "run 1\n"));
    free(log);
    delete (f, SID_B, 0, 1);
    expect(f, SID_B, 1, WP_ST_UNDEPLOYED, 10000);

    /* one-shot: exit 0 is COMPLETED */
    deploy(f, SID_C, 0, 1, "[\"true\"]", true, NULL);
    expect(f, SID_C, 1, WP_ST_COMPLETED, 20000);
    delete (f, SID_C, 0, 1);
    expect(f, SID_C, 1, WP_ST_UNDEPLOYED, 10000);

    /* an oci: layout outside oci_root is refused */
    f->nreports = 0;
    deploy(f, SID_C, 1, 1, "[\"true\"]", true, "oci:/etc:v1");
    expect(f, SID_C, 1, WP_ST_FAILED, 10000);
    assert_non_null(strstr(last_report(f, SID_C)->status_detail, "cannot pull image"));
    delete (f, SID_C, 1, 1);
    assert_int_equal(ninst_count(f->ni), 0);
}

static bool drained_cb_fired(fx_t *f, const void *arg)
{
    return f->drained;
}

static void on_drained(oak_loop_t *loop, void *data)
{
    ((fx_t *)data)->drained = true;
}

static void test_adopt_and_drain(void **state)
{
    FIXTURE(f);
    f->nreports = 0;
    deploy(f, SID_A, 0, 5, "[\"sleep\",\"1000\"]", false, NULL);
    deploy(f, SID_A, 1, 5, "[\"sleep\",\"1000\"]", false, NULL);
    expect(f, SID_A, 5, WP_ST_RUNNING, 20000);
    for (int t = 0; t < 200 && count_reports(f, SID_A, 5, WP_ST_RUNNING) < 2; t++)
        run_for(f, 50);
    assert_int_equal(count_reports(f, SID_A, 5, WP_ST_RUNNING), 2);
    pid_t p0 = cpid(f, SID_A "-0-5"), p1 = cpid(f, SID_A "-1-5");
    assert_true(p0 > 0 && p1 > 0);

    /* a new table over the same directories adopts both, restarting none */
    close_table(f);
    assert_int_equal(kill(p0, 0), 0);
    f->nreports = 0;
    assert_int_equal(open_table(f), 0);
    run_for(f, 300);
    assert_int_equal(cpid(f, SID_A "-0-5"), p0);
    assert_int_equal(cpid(f, SID_A "-1-5"), p1);
    assert_int_equal(count_reports(f, SID_A, 5, WP_ST_CREATED), 0);
    wp_inst_t *v = NULL;
    assert_int_equal(ninst_state(f->ni, &v), 2);
    assert_int_equal(v[0].status, WP_ST_RUNNING);
    assert_int_equal(v[1].status, WP_ST_RUNNING);
    free(v);

    /* drain: both stopped and reported FAILED, then the callback */
    ninst_drain(f->ni, on_drained, f);
    assert_true(run_until(f, drained_cb_fired, NULL, 15000));
    assert_int_equal(count_reports(f, SID_A, 5, WP_ST_FAILED), 2);
    assert_non_null(strstr(last_report(f, SID_A)->status_detail, "drained"));
    assert_int_equal(ninst_count(f->ni), 0);
    assert_int_equal(kill(p0, 0), -1);
    assert_int_equal(kill(p1, 0), -1);
    assert_int_equal(th_mounts_under(f->state_dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generations),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_adopt_and_drain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
