/* Integration tests of node_engine/runtime.c with the real runc (root,
 * cgroups, overlayfs): containers on a busybox layer run their command
 * with the given environment and hostname; exit codes (plain, by signal)
 * are reported; a running container is stopped (SIGTERM, SIGKILL after the
 * grace) and leaves no bundle, mount, runc state or cgroup; memory and cpu
 * limits appear in the container's cgroup files; logs rotate; a second
 * runtime adopts the containers of a freed one and reports their exit;
 * two runtimes with their own runc roots and cgroup parents do not see
 * each other's containers; layer order, network namespaces, keep_logs,
 * and the error cases. Every test tears down whatever it left (containers
 * under its runc roots, mounts under its directory, its cgroups). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_loop.h"
#include "node_engine/runtime.h"
#include "test/common/harness.h"
#include "test/common/rootfs.h"

#define WAIT_MS 10000
#define MAX_RT  2

typedef struct {
    char id[RUNTIME_ID_MAX + 1];
    int code;
} exit_rec_t;

typedef struct {
    char id[RUNTIME_ID_MAX + 1];
    char status[16];
    int pid;
} adopt_rec_t;

typedef struct {
    char *dir;
    char *layer;
    char *state[MAX_RT];
    char *runc_root[MAX_RT];
    char cgparent[MAX_RT][64];
    oak_loop_t *loop;
    runtime_t *rt[MAX_RT];
    exit_rec_t exits[64];
    int nexits;
    adopt_rec_t adopted[32];
    int nadopted;
} fx_t;

static bool available;

/* ---- fixture ---- */

static void on_exit_cb(const char *id, int code, void *ctx)
{
    fx_t *fx = ctx;
    assert_true(fx->nexits < 64);
    snprintf(fx->exits[fx->nexits].id, sizeof(fx->exits[0].id), "%s", id);
    fx->exits[fx->nexits].code = code;
    fx->nexits++;
}

static void on_adopt_cb(const char *id, const char *status, int pid, void *ctx)
{
    fx_t *fx = ctx;
    assert_true(fx->nadopted < 32);
    adopt_rec_t *a = &fx->adopted[fx->nadopted++];
    snprintf(a->id, sizeof(a->id), "%s", id);
    snprintf(a->status, sizeof(a->status), "%s", status);
    a->pid = pid;
}

static runtime_t *fx_runtime(fx_t *fx, int i, size_t log_max, int check_ms, bool keep_logs)
{
    runtime_opts_t o = {.state_dir = fx->state[i],
                        .runc_root = fx->runc_root[i],
                        .cgroup_parent = fx->cgparent[i],
                        .log_max_bytes = log_max,
                        .log_check_ms = check_ms,
                        .keep_logs = keep_logs};
    runtime_t *rt = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (runtime_new(fx->loop, &o, on_exit_cb, fx, &rt, &err) < 0)
        fail_msg("runtime_new: %s", err.msg);
    fx->rt[i] = rt;
    return rt;
}

static int setup(void **state)
{
    if (!available) {
        *state = NULL;
        return 0;
    }
    static int counter;
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->dir = th_tmpdir("oak-rt");
    fx->layer = xasprintf("%s/layer", fx->dir);
    if (th_rootfs_busybox(fx->layer) < 0)
        fail_msg("cannot build the busybox layer");
    for (int i = 0; i < MAX_RT; i++) {
        fx->state[i] = xasprintf("%s/state%d", fx->dir, i);
        fx->runc_root[i] = xasprintf("%s/runc%d", fx->dir, i);
        snprintf(fx->cgparent[i], sizeof(fx->cgparent[i]), "oak-rt-%d-%d-%d", (int)getpid(),
                 ++counter, i);
    }
    fx->loop = oak_loop_new();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    for (int i = 0; i < MAX_RT; i++)
        runtime_free(fx->rt[i]);
    for (int i = 0; i < MAX_RT; i++)
        th_runc_cleanup(fx->runc_root[i], fx->cgparent[i], fx->dir);
    assert_int_equal(th_mounts_under(fx->dir), 0);
    th_rmtree(fx->dir);
    oak_loop_free(fx->loop);
    for (int i = 0; i < MAX_RT; i++) {
        free(fx->state[i]);
        free(fx->runc_root[i]);
    }
    free(fx->layer);
    free(fx->dir);
    free(fx);
    return 0;
}

/* ---- running the loop until something happened ---- */

typedef bool (*pred_fn)(fx_t *fx, const void *arg);

typedef struct {
    fx_t *fx;
    pred_fn pred;
    const void *arg;
    uint64_t deadline;
    bool ok;
} wait_t;

static void wait_tick(oak_loop_t *loop, void *data)
{
    wait_t *w = data;
    if (w->pred(w->fx, w->arg)) {
        w->ok = true;
        oak_loop_stop(loop);
        return;
    }
    if (oak_now_ms() >= w->deadline) {
        oak_loop_stop(loop);
        return;
    }
    oak_loop_add_timer(loop, 5, wait_tick, w);
}

static bool run_until(fx_t *fx, pred_fn pred, const void *arg, int ms)
{
    wait_t w = {.fx = fx, .pred = pred, .arg = arg, .deadline = oak_now_ms() + (uint64_t)ms};
    oak_loop_add_timer(fx->loop, 0, wait_tick, &w);
    oak_loop_run(fx->loop);
    return w.ok;
}

static const exit_rec_t *find_exit(fx_t *fx, const char *id)
{
    for (int i = 0; i < fx->nexits; i++)
        if (strcmp(fx->exits[i].id, id) == 0)
            return &fx->exits[i];
    return NULL;
}

static bool exited(fx_t *fx, const void *id)
{
    return find_exit(fx, id) != NULL;
}

/* waits for the exit of id and returns its code */
static int wait_exit(fx_t *fx, const char *id)
{
    if (!run_until(fx, exited, id, WAIT_MS))
        fail_msg("no exit reported for %s within %d ms", id, WAIT_MS);
    return find_exit(fx, id)->code;
}

typedef struct {
    runtime_t *rt;
    const char *id;
    const char *text;
} log_wait_t;

static bool log_has(fx_t *fx, const void *arg)
{
    (void)fx;
    const log_wait_t *lw = arg;
    char *out = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (runtime_logs(lw->rt, lw->id, 0, &out, &err) < 0)
        return false;
    bool has = strstr(out, lw->text) != NULL;
    free(out);
    return has;
}

static void wait_log(fx_t *fx, runtime_t *rt, const char *id, const char *text)
{
    log_wait_t lw = {rt, id, text};
    if (!run_until(fx, log_has, &lw, WAIT_MS))
        fail_msg("%s never wrote '%s'", id, text);
}

/* ---- starting containers ---- */

typedef struct {
    const char *hostname;
    const char *const *env;
    size_t nenv;
    long long memory_mb;
    double vcpus;
    const char *netns_path;
    const char *const *lowerdirs;
    size_t nlower;
} extra_t;

static int start_sh(fx_t *fx, runtime_t *rt, const char *id, const char *script, const extra_t *x,
                    oak_err_t *err)
{
    char *args[] = {"sh", "-c", (char *)script};
    const char *layers[] = {fx->layer};
    instance_spec_t spec = {.id = id,
                            .lowerdirs = x && x->lowerdirs ? x->lowerdirs : layers,
                            .nlower = x && x->lowerdirs ? x->nlower : 1,
                            .args = args,
                            .nargs = 3,
                            .env = x ? (char *const *)x->env : NULL,
                            .nenv = x ? x->nenv : 0,
                            .hostname = x ? x->hostname : NULL,
                            .memory_mb = x ? x->memory_mb : 0,
                            .vcpus = x ? x->vcpus : 0,
                            .netns_path = x ? x->netns_path : NULL};
    return runtime_start(rt, &spec, err);
}

static void must_start(fx_t *fx, runtime_t *rt, const char *id, const char *script,
                       const extra_t *x)
{
    oak_err_t err = OAK_ERR_INIT;
    if (start_sh(fx, rt, id, script, x, &err) < 0)
        fail_msg("start %s: %s", id, err.msg);
}

static bool path_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* nothing of id is left: bundle, runc state, mounts */
static void assert_gone(fx_t *fx, int i, const char *id)
{
    char *dir = runtime_bundle_dir(fx->rt[i], id);
    assert_false(path_exists(dir));
    free(dir);
    char *st = xasprintf("%s/%s", fx->runc_root[i], id);
    assert_false(path_exists(st));
    free(st);
    char *list = NULL;
    int rc = th_runc(fx->runc_root[i], &list, "list", "-q", NULL);
    if (rc != 0)
        fail_msg("runc list: exit %d, %s", rc, list);
    assert_null(strstr(list, id));
    free(list);
    char *cdir = xasprintf("%s/containers/%s", fx->state[i], id);
    assert_int_equal(th_mounts_under(cdir), 0);
    free(cdir);
}

/* whole file, also for pseudo files whose size reads as 0 (cgroups) */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot read %s", path);
    size_t len = 0, cap = 4096;
    char *s = xmalloc(cap);
    size_t n;
    while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2)
            s = xrealloc(s, cap *= 2);
    }
    s[len] = '\0';
    fclose(f);
    return s;
}

/* ---- tests ---- */

static void test_env_hostname_logs(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    const char *env[] = {"GREETING=bonjour", "EMPTY="};
    extra_t x = {.hostname = "oak-host", .env = env, .nenv = 2};
    must_start(fx, rt, "hello", "echo hello; env; hostname", &x);
    assert_int_equal(wait_exit(fx, "hello"), 0);

    char *out = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_logs(rt, "hello", 0, &out, &err), 0);
    assert_non_null(strstr(out, "hello\n"));
    assert_non_null(strstr(out, "GREETING=bonjour\n"));
    assert_non_null(strstr(out, "EMPTY=\n"));
    assert_non_null(strstr(out, "PATH=/usr/local/sbin:"));
    assert_non_null(strstr(out, "HOSTNAME=oak-host\n"));
    assert_non_null(strstr(out, "oak-host\n"));
    free(out);
    assert_int_equal(runtime_logs(rt, "hello", 1, &out, &err), 0);
    assert_string_equal(out, "oak-host\n");
    free(out);

    char status[16];
    int pid = -1;
    assert_int_equal(runtime_state(rt, "hello", status, sizeof(status), &pid, &err), 0);
    assert_string_equal(status, "stopped");
    assert_int_equal(pid, 0);

    /* removal of an exited container is immediate */
    assert_int_equal(runtime_stop(rt, "hello", 1000, &err), 1);
    assert_gone(fx, 0, "hello");
    assert_int_equal(fx->nexits, 1);
    assert_int_equal(runtime_state(rt, "hello", status, sizeof(status), &pid, &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
}

static void test_exit_codes(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    must_start(fx, rt, "three", "exit 3", NULL);
    /* pid 1 of a pid namespace cannot kill itself; a signal from outside can */
    must_start(fx, rt, "killed", "exec sleep 1000", NULL);
    must_start(fx, rt, "zero", "true", NULL);
    int pid = 0;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_state(rt, "killed", NULL, 0, &pid, &err), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(wait_exit(fx, "three"), 3);
    assert_int_equal(wait_exit(fx, "killed"), 128 + SIGKILL);
    assert_int_equal(wait_exit(fx, "zero"), 0);
    assert_int_equal(runtime_stop(rt, "three", 0, &err), 1);
    assert_int_equal(runtime_stop(rt, "killed", 0, &err), 1);
    assert_int_equal(runtime_stop(rt, "zero", 0, &err), 1);
    assert_gone(fx, 0, "three");
    assert_gone(fx, 0, "killed");
    assert_int_equal(fx->nexits, 3);
}

static void test_stop_running(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    uint64_t t_start = oak_now_us();
    must_start(fx, rt, "sleeper", "exec sleep 1000", NULL);
    printf("runtime_start (bundle, overlay, runc create + start) took %.1f ms\n",
           (double)(oak_now_us() - t_start) / 1000.0);
    char status[16];
    int pid = 0;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_state(rt, "sleeper", status, sizeof(status), &pid, &err), 0);
    assert_string_equal(status, "running");
    assert_true(pid > 0);
    /* detached from the engine: own session and process group */
    assert_true(getsid(pid) != getsid(0));
    assert_true(getpgid(pid) != getpgrp());
    char *cg = th_cgroup_dir(pid, "memory");
    assert_non_null(cg);
    assert_true(path_exists(cg));

    /* pid 1 of the container ignores SIGTERM: SIGKILL after the grace */
    uint64_t t0 = oak_now_ms();
    assert_int_equal(runtime_stop(rt, "sleeper", 300, &err), 0);
    assert_int_equal(runtime_stop(rt, "sleeper", 300, &err), 0); /* already stopping */
    assert_int_equal(wait_exit(fx, "sleeper"), 128 + SIGKILL);
    assert_true(oak_now_ms() - t0 >= 300);
    assert_gone(fx, 0, "sleeper");
    assert_false(path_exists(cg));
    free(cg);

    /* a workload that handles SIGTERM exits with its own code, before the grace */
    must_start(fx, rt, "polite", "trap 'exit 7' TERM; echo up; while true; do sleep 0.05; done",
               NULL);
    wait_log(fx, rt, "polite", "up");
    t0 = oak_now_ms();
    assert_int_equal(runtime_stop(rt, "polite", 20000, &err), 0);
    assert_int_equal(wait_exit(fx, "polite"), 7);
    assert_true(oak_now_ms() - t0 < 5000);
    assert_gone(fx, 0, "polite");
}

static unsigned long long read_ull_file(const char *dir, const char *name)
{
    char *p = xasprintf("%s/%s", dir, name);
    char *s = read_text(p);
    unsigned long long v = strtoull(s, NULL, 10);
    free(s);
    free(p);
    return v;
}

static void test_limits_and_usage(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    extra_t x = {.memory_mb = 64, .vcpus = 0.5};
    must_start(fx, rt, "limited",
               "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo ready; exec sleep 1000", &x);
    must_start(fx, rt, "free", "exec sleep 1000", NULL);
    wait_log(fx, rt, "limited", "ready");
    oak_err_t err = OAK_ERR_INIT;
    int pid = 0, pid_free = 0;
    char status[16];
    assert_int_equal(runtime_state(rt, "limited", status, sizeof(status), &pid, &err), 0);
    assert_int_equal(runtime_state(rt, "free", status, sizeof(status), &pid_free, &err), 0);

    char *suffix = xasprintf("/%s/limited", fx->cgparent[0]);
    char *mem = th_cgroup_dir(pid, "memory");
    char *cpu = th_cgroup_dir(pid, "cpu");
    assert_non_null(mem);
    assert_non_null(cpu);
    assert_non_null(strstr(mem, suffix));
    char *v1 = xasprintf("%s/memory.limit_in_bytes", mem);
    if (path_exists(v1)) {
        assert_int_equal(read_ull_file(mem, "memory.limit_in_bytes"), 64ULL << 20);
        assert_int_equal(read_ull_file(cpu, "cpu.cfs_quota_us"), 50000);
        assert_int_equal(read_ull_file(cpu, "cpu.cfs_period_us"), 100000);
        char *cpu_free = th_cgroup_dir(pid_free, "cpu");
        char *p = xasprintf("%s/cpu.cfs_quota_us", cpu_free);
        char *q = read_text(p);
        assert_int_equal(atoi(q), -1);
        free(q);
        free(p);
        free(cpu_free);
    } else {
        char *p = xasprintf("%s/memory.max", mem);
        char *s = read_text(p);
        assert_int_equal(strtoull(s, NULL, 10), 64ULL << 20);
        free(s);
        free(p);
        p = xasprintf("%s/cpu.max", cpu);
        s = read_text(p);
        assert_string_equal(s, "50000 100000\n");
        free(s);
        free(p);
    }
    free(v1);

    unsigned long long cpu_ns = 0, mem_bytes = 0;
    assert_int_equal(runtime_usage(rt, "limited", &cpu_ns, &mem_bytes, &err), 0);
    assert_true(cpu_ns > 1000000ULL); /* the loop took well over 1 ms */
    assert_true(mem_bytes > 0);
    assert_true(mem_bytes < (64ULL << 20));
    assert_int_equal(runtime_usage(rt, "nosuch", &cpu_ns, &mem_bytes, &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);

    assert_int_equal(runtime_stop(rt, "limited", 0, &err), 0);
    assert_int_equal(runtime_stop(rt, "free", 0, &err), 0);
    assert_int_equal(wait_exit(fx, "limited"), 128 + SIGKILL);
    assert_int_equal(wait_exit(fx, "free"), 128 + SIGKILL);
    assert_false(path_exists(mem));
    assert_false(path_exists(cpu));
    free(suffix);
    free(mem);
    free(cpu);
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

typedef struct {
    const char *rotated, *log;
} rot_t;

static bool rotated_and_marked(fx_t *fx, const void *arg)
{
    const rot_t *r = arg;
    return file_size(r->rotated) > 0 && file_size(r->log) <= 4096 &&
           log_has(fx, &(log_wait_t){fx->rt[0], "chatty", "tail-marker"});
}

static void test_log_rotation(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 4096, 50, false);
    must_start(fx, rt, "chatty",
               "i=0; while [ $i -lt 300 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
               "i=$((i+1)); done; sleep 0.5; echo tail-marker; exec sleep 1000",
               NULL);
    char *dir = runtime_bundle_dir(rt, "chatty");
    char *log = xasprintf("%s/log", dir);
    char *log1 = xasprintf("%s/log.1", dir);
    rot_t r = {log1, log};
    if (!run_until(fx, rotated_and_marked, &r, WAIT_MS))
        fail_msg("log not rotated: log %ld bytes, log.1 %ld bytes", file_size(log),
                 file_size(log1));
    /* 300 lines of ~50 bytes went through a 4 KiB log; the rotated file
     * keeps about 4 KiB (plus what arrived during the copy) */
    assert_true(file_size(log1) <= 2 * 4096);
    assert_true(file_size(log) <= 4096);
    char *rot = read_text(log1);
    char *cur = read_text(log);
    /* the last line is kept: in the rotated file, or in the current one when
     * a later rotation check found the log still small (timing under load) */
    assert_true(strstr(rot, "line-299-") || strstr(cur, "line-299-"));
    free(cur);
    assert_null(strstr(rot, "line-0-"));
    assert_true(strncmp(rot, "line-", 5) == 0); /* starts on a line */
    free(rot);

    char *out = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_logs(rt, "chatty", 2, &out, &err), 0);
    assert_string_equal(out, "line-299-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\ntail-marker\n");
    free(out);
    assert_int_equal(runtime_logs(rt, "chatty", 0, &out, &err), 0);
    assert_true(strlen(out) <= 3 * 4096);
    free(out);

    assert_int_equal(runtime_stop(rt, "chatty", 0, &err), 0);
    wait_exit(fx, "chatty");
    assert_gone(fx, 0, "chatty");
    free(log);
    free(log1);
    free(dir);
}

static const adopt_rec_t *find_adopted(fx_t *fx, const char *id)
{
    for (int i = 0; i < fx->nadopted; i++)
        if (strcmp(fx->adopted[i].id, id) == 0)
            return &fx->adopted[i];
    return NULL;
}

static void test_adopt_after_restart(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    must_start(fx, rt, "survivor", "echo alive; exec sleep 1000", NULL);
    must_start(fx, rt, "done", "exit 5", NULL);
    assert_int_equal(wait_exit(fx, "done"), 5);
    wait_log(fx, rt, "survivor", "alive");
    int pid = 0;
    char status[16];
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_state(rt, "survivor", status, sizeof(status), &pid, &err), 0);

    /* the engine goes away: the container does not notice */
    runtime_free(rt);
    fx->rt[0] = NULL;
    assert_int_equal(kill(pid, 0), 0);
    char *ghost = xasprintf("%s/containers/ghost", fx->state[0]);
    assert_int_equal(mkdir(ghost, 0700), 0);

    rt = fx_runtime(fx, 0, 0, 0, false);
    assert_int_equal(runtime_adopt(rt, on_adopt_cb, fx, &err), 0);
    assert_int_equal(fx->nadopted, 3);
    const adopt_rec_t *a = find_adopted(fx, "survivor");
    assert_non_null(a);
    assert_string_equal(a->status, "running");
    assert_int_equal(a->pid, pid);
    a = find_adopted(fx, "done");
    assert_non_null(a);
    assert_string_equal(a->status, "stopped");
    a = find_adopted(fx, "ghost");
    assert_non_null(a);
    assert_string_equal(a->status, "absent");
    assert_int_equal(a->pid, 0);

    /* its exit reaches the new runtime (this process is still its parent,
     * so the code is known) */
    assert_int_equal(th_runc(fx->runc_root[0], NULL, "kill", "survivor", "KILL", NULL), 0);
    assert_int_equal(wait_exit(fx, "survivor"), 128 + SIGKILL);
    assert_int_equal(runtime_stop(rt, "survivor", 0, &err), 1);
    assert_int_equal(runtime_stop(rt, "done", 0, &err), 1);
    assert_int_equal(runtime_stop(rt, "ghost", 0, &err), 1);
    assert_false(path_exists(ghost));
    assert_gone(fx, 0, "survivor");
    assert_gone(fx, 0, "done");
    free(ghost);
}

static void test_adopt_unwatched_stop(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    /* a runtime that never adopted can still stop a container it did not start */
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    must_start(fx, rt, "orphan", "exec sleep 1000", NULL);
    runtime_free(rt);
    fx->rt[0] = NULL;
    rt = fx_runtime(fx, 0, 0, 0, false);
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_stop(rt, "orphan", 100, &err), 0);
    assert_int_equal(wait_exit(fx, "orphan"), 128 + SIGKILL);
    assert_gone(fx, 0, "orphan");
}

static void test_two_runtimes_isolated(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *a = fx_runtime(fx, 0, 0, 0, false);
    runtime_t *b = fx_runtime(fx, 1, 0, 0, false);
    must_start(fx, a, "only-a", "exec sleep 1000", NULL);
    must_start(fx, b, "only-b", "exec sleep 1000", NULL);
    /* the same id in both */
    must_start(fx, a, "same", "exec sleep 1000", NULL);
    must_start(fx, b, "same", "exec sleep 1000", NULL);

    assert_int_equal(runtime_adopt(a, on_adopt_cb, fx, NULL), 0);
    assert_int_equal(fx->nadopted, 2);
    assert_non_null(find_adopted(fx, "only-a"));
    assert_null(find_adopted(fx, "only-b"));
    fx->nadopted = 0;
    assert_int_equal(runtime_adopt(b, on_adopt_cb, fx, NULL), 0);
    assert_int_equal(fx->nadopted, 2);
    assert_non_null(find_adopted(fx, "only-b"));
    assert_null(find_adopted(fx, "only-a"));

    char status[16];
    int pa = 0, pb = 0;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_state(a, "only-b", status, sizeof(status), &pa, &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
    assert_int_equal(runtime_state(a, "same", status, sizeof(status), &pa, &err), 0);
    assert_int_equal(runtime_state(b, "same", status, sizeof(status), &pb, &err), 0);
    assert_true(pa != pb);
    char *ca = th_cgroup_dir(pa, "memory");
    char *cb = th_cgroup_dir(pb, "memory");
    char *sa = xasprintf("/%s/same", fx->cgparent[0]);
    char *sb = xasprintf("/%s/same", fx->cgparent[1]);
    assert_non_null(strstr(ca, sa));
    assert_non_null(strstr(cb, sb));
    free(ca);
    free(cb);
    free(sa);
    free(sb);

    /* stopping one leaves the other's namesake running */
    assert_int_equal(runtime_stop(a, "same", 0, &err), 0);
    assert_int_equal(wait_exit(fx, "same"), 128 + SIGKILL);
    assert_int_equal(runtime_state(b, "same", status, sizeof(status), &pb, &err), 0);
    assert_string_equal(status, "running");
    assert_int_equal(runtime_stop(a, "only-b", 0, &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
}

static void test_layers(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    /* 80 layers with long paths: more than a page of mount options */
    enum { N = 80 };
    char *paths[N];
    const char *layers[N];
    paths[0] = xstrdup(fx->layer);
    for (int i = 1; i < N; i++) {
        paths[i] = xasprintf("%s/layers-with-a-rather-long-directory-name/layer-%03d", fx->dir, i);
        char *parent = xasprintf("%s/layers-with-a-rather-long-directory-name", fx->dir);
        mkdir(parent, 0755);
        free(parent);
        assert_int_equal(mkdir(paths[i], 0755), 0);
        char *f = xasprintf("%s/which", paths[i]);
        FILE *fp = fopen(f, "w");
        fprintf(fp, "%d\n", i);
        fclose(fp);
        free(f);
        if (i == 40) {
            f = xasprintf("%s/only40", paths[i]);
            fp = fopen(f, "w");
            fprintf(fp, "forty\n");
            fclose(fp);
            free(f);
        }
    }
    for (int i = 0; i < N; i++)
        layers[i] = paths[i];
    extra_t x = {.lowerdirs = layers, .nlower = N};
    must_start(fx, rt, "layered", "cat /which /only40; echo new > /newfile", &x);
    assert_int_equal(wait_exit(fx, "layered"), 0);
    char *out = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_logs(rt, "layered", 0, &out, &err), 0);
    assert_string_equal(out, "79\nforty\n");
    free(out);
    /* writes land in the container's upper directory, never in a layer */
    char *dir = runtime_bundle_dir(rt, "layered");
    char *upper_new = xasprintf("%s/upper/newfile", dir);
    assert_true(path_exists(upper_new));
    for (int i = 0; i < N; i++) {
        char *p = xasprintf("%s/newfile", paths[i]);
        assert_false(path_exists(p));
        free(p);
    }
    assert_int_equal(runtime_stop(rt, "layered", 0, &err), 1);
    assert_gone(fx, 0, "layered");
    for (int i = 0; i < N; i++)
        free(paths[i]);
    free(upper_new);
    free(dir);
}

static bool have_ip(void)
{
    return access("/usr/sbin/ip", X_OK) == 0 || access("/sbin/ip", X_OK) == 0 ||
           access("/usr/bin/ip", X_OK) == 0 || access("/bin/ip", X_OK) == 0;
}

static void test_network_namespaces(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    must_start(fx, rt, "isolated", "cat /proc/net/dev", NULL);
    assert_int_equal(wait_exit(fx, "isolated"), 0);
    char *out = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_logs(rt, "isolated", 0, &out, &err), 0);
    /* header (2 lines) + lo only */
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3);
    assert_non_null(strstr(out, "lo:"));
    free(out);
    assert_int_equal(runtime_stop(rt, "isolated", 0, &err), 1);

    if (!have_ip()) {
        printf("SKIPPED: joining a named netns: no ip(8)\n");
        return;
    }
    char name[64], cmd[256];
    snprintf(name, sizeof(name), "oak-rt-%d", (int)getpid());
    snprintf(cmd, sizeof(cmd), "ip netns add %s", name);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "ip -n %s link add oakveth0 type veth peer name oakveth1", name);
    int link_rc = system(cmd);
    if (link_rc != 0) {
        snprintf(cmd, sizeof(cmd), "ip netns del %s", name);
        if (system(cmd) != 0)
            fprintf(stderr, "could not delete netns %s\n", name);
        fail_msg("cannot add a veth pair in netns %s", name);
    }
    char *ns = xasprintf("/run/netns/%s", name);
    extra_t x = {.netns_path = ns};
    oak_err_t serr = OAK_ERR_INIT;
    int rc = start_sh(fx, rt, "joined", "cat /proc/net/dev", &x, &serr);
    int code = rc == 0 ? wait_exit(fx, "joined") : -1;
    char *log = NULL;
    if (rc == 0)
        runtime_logs(rt, "joined", 0, &log, &err);
    snprintf(cmd, sizeof(cmd), "ip netns del %s", name);
    if (system(cmd) != 0)
        fprintf(stderr, "could not delete netns %s\n", name);
    free(ns);
    if (rc < 0)
        fail_msg("start in %s: %s", name, serr.msg);
    assert_int_equal(code, 0);
    assert_non_null(strstr(log, "oakveth0:"));
    free(log);
    assert_int_equal(runtime_stop(rt, "joined", 0, &err), 1);
    assert_gone(fx, 0, "joined");
}

static void test_keep_logs(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, true);
    must_start(fx, rt, "kept", "echo first run; exec sleep 1000", NULL);
    wait_log(fx, rt, "kept", "first run");
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(runtime_stop(rt, "kept", 0, &err), 0);
    wait_exit(fx, "kept");
    char *dir = runtime_bundle_dir(rt, "kept");
    char *rootfs = xasprintf("%s/rootfs", dir);
    char *config = xasprintf("%s/config.json", dir);
    assert_false(path_exists(rootfs));
    assert_false(path_exists(config));
    assert_int_equal(th_mounts_under(fx->dir), 0);
    char *out = NULL;
    assert_int_equal(runtime_logs(rt, "kept", 0, &out, &err), 0);
    assert_string_equal(out, "first run\n");
    free(out);
    /* a restart under the same id appends */
    fx->nexits = 0;
    must_start(fx, rt, "kept", "echo second run", NULL);
    assert_int_equal(wait_exit(fx, "kept"), 0);
    assert_int_equal(runtime_logs(rt, "kept", 0, &out, &err), 0);
    assert_string_equal(out, "first run\nsecond run\n");
    free(out);
    assert_int_equal(runtime_stop(rt, "kept", 0, &err), 1);
    /* the leftover directory with only logs: adopt calls it absent; stop removes it */
    fx->nadopted = 0;
    assert_int_equal(runtime_adopt(rt, on_adopt_cb, fx, &err), 0);
    assert_int_equal(fx->nadopted, 1);
    assert_string_equal(fx->adopted[0].status, "absent");
    free(rootfs);
    free(config);
    free(dir);
}

static void test_errors(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(start_sh(fx, rt, "bad/id", "true", NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(start_sh(fx, rt, "..", "true", NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    extra_t neg = {.memory_mb = -1};
    assert_int_equal(start_sh(fx, rt, "neg", "true", &neg, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    must_start(fx, rt, "dup", "exec sleep 1000", NULL);
    assert_int_equal(start_sh(fx, rt, "dup", "true", NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_CONFLICT);

    /* a missing executable: runc's reason, nothing left behind, no exit */
    char *args[] = {"/bin/no-such-program"};
    const char *layers[] = {fx->layer};
    instance_spec_t spec = {
        .id = "noexec", .lowerdirs = layers, .nlower = 1, .args = args, .nargs = 1};
    assert_int_equal(runtime_start(rt, &spec, &err), -1);
    assert_non_null(strstr(err.msg, "no-such-program"));
    assert_gone(fx, 0, "noexec");

    assert_int_equal(runtime_stop(rt, "unknown", 0, &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
    char status[16];
    assert_int_equal(runtime_state(rt, "unknown", status, sizeof(status), NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
    char *out = NULL;
    assert_int_equal(runtime_logs(rt, "unknown", 0, &out, &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
    assert_int_equal(runtime_start_created(rt, "unknown", &err), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);

    assert_int_equal(runtime_stop(rt, "dup", 0, &err), 0);
    assert_int_equal(wait_exit(fx, "dup"), 128 + SIGKILL);
    assert_int_equal(fx->nexits, 1);
    assert_gone(fx, 0, "dup");
}

static void test_create_then_start(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return;
    runtime_t *rt = fx_runtime(fx, 0, 0, 0, false);
    char *args[] = {"sh", "-c", "echo started; exit 4"};
    const char *layers[] = {fx->layer};
    instance_spec_t spec = {
        .id = "twostep", .lowerdirs = layers, .nlower = 1, .args = args, .nargs = 3};
    oak_err_t err = OAK_ERR_INIT;
    pid_t pid = 0;
    assert_int_equal(runtime_create(rt, &spec, &pid, &err), 0);
    assert_true(pid > 0);
    /* the init exists in its namespaces, the workload has not run */
    char status[16];
    assert_int_equal(runtime_state(rt, "twostep", status, sizeof(status), NULL, &err), 0);
    assert_string_equal(status, "created");
    char *p = xasprintf("/proc/%d/ns/net", (int)pid);
    assert_true(path_exists(p));
    free(p);
    assert_int_equal(runtime_start_created(rt, "twostep", &err), 0);
    assert_int_equal(wait_exit(fx, "twostep"), 4);
    char *out = NULL;
    assert_int_equal(runtime_logs(rt, "twostep", 0, &out, &err), 0);
    assert_string_equal(out, "started\n");
    free(out);

    /* a created container that is stopped before it started */
    spec.id = "never";
    assert_int_equal(runtime_create(rt, &spec, NULL, &err), 0);
    assert_int_equal(runtime_stop(rt, "never", 200, &err), 0);
    wait_exit(fx, "never");
    assert_gone(fx, 0, "never");
    assert_int_equal(runtime_stop(rt, "twostep", 0, &err), 1);
    assert_gone(fx, 0, "twostep");
}

int main(void)
{
    available = th_runc_available();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_env_hostname_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_unwatched_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_runtimes_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_network_namespaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_then_start, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
