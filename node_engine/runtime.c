/* The container runtime (runtime.h): the table of containers this node
 * engine watches, their lifecycle through runc (node_engine/runc.c) on
 * bundles built by node_engine/bundle.c, exit reporting, log rotation,
 * adoption, cgroup usage and log reading.
 *
 * Watching: each container's init is watched through a pidfd on the loop
 * (opened right after `runc create`, before the workload runs, so even an
 * instant exit is seen). The process is a child subreaper, so the init is
 * our child once `runc create` exited, and waitid(P_PIDFD) reaps it with
 * its status; for an adopted init that is not our child only the exit is
 * seen (code RUNTIME_EXIT_UNKNOWN). Waiting on the pidfd, not on a pid,
 * rules out pid reuse.
 *
 * Stopping is asynchronous: SIGTERM through `runc kill`, a timer for the
 * SIGKILL, and the removal (runc delete, unmount, bundle) when the pidfd
 * fires; on_exit is called last, after the container is gone from the
 * table, so it may start a new container with the same id.
 *
 * Logs: the container's stdout and stderr are a file opened O_APPEND that
 * runc passes to the init, so nothing of the node engine sits between a
 * workload and its output and the workload survives a node-engine restart.
 * Rotation is copy-and-truncate from a periodic check: the last
 * log_max_bytes go to log.1 (from a line start), the log is truncated, and
 * the writer's O_APPEND offset follows. Bytes written between the copy and
 * the truncation can be lost (a catch-up copy keeps that window to
 * microseconds).
 *
 * Threading: loop thread only. */
#include "node_engine/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "node_engine/bundle.h"
#include "node_engine/runc.h"

#define RT_P_PIDFD 3 /* idtype_t of waitid(2) for a pidfd (Linux 5.4) */
#define LOGS_READ  (4u << 20)

typedef struct inst {
    struct inst *next;
    runtime_t *rt;
    char id[RUNTIME_ID_MAX + 1];
    char *dir;
    pid_t pid;     /* init's pid while watched, else 0 */
    int pidfd;     /* -1 when not watched */
    bool stopping; /* runtime_stop under way: remove on exit */
    uint64_t kill_timer;
    char *cg_cpu; /* cgroup directories, resolved while running */
    char *cg_mem;
} inst_t;

typedef struct {
    char *mnt;  /* mount point of the hierarchy */
    char *root; /* cgroup path mounted there (usually "/") */
} cg_mount_t;

struct runtime {
    oak_loop_t *loop;
    char *containers_dir;
    char *runc_root;
    char *cgroup_parent;
    char *runc_path;
    runc_t runc;
    size_t log_max;
    int log_check_ms;
    bool keep_logs;
    runtime_exit_fn on_exit;
    void *ctx;
    inst_t *insts;
    uint64_t rotate_timer;
    int cg_version; /* 1, 2, or 0 when no cgroup hierarchy was found */
    cg_mount_t cg_cpu, cg_mem, cg_unified;
};

bool runtime_id_valid(const char *id)
{
    if (!id)
        return false;
    size_t n = strlen(id);
    if (n == 0 || n > RUNTIME_ID_MAX || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return false;
    return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

char *runtime_bundle_dir(const runtime_t *rt, const char *id)
{
    return xasprintf("%s/%s", rt->containers_dir, id);
}

/* ---- small file helpers ---- */

static int mkdir_p(const char *path, oak_err_t *err)
{
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return oak_err_errno(err, errno, "mkdir %s", p);
        *s = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return oak_err_errno(err, errno, "mkdir %s", p);
    return 0;
}

/* Reads at most max bytes from the end of path (owned, NUL-terminated;
 * *cut set when the start was dropped). Pseudo files that report size 0
 * (cgroup files) are read from the start, at most max bytes. NULL when the
 * file cannot be read. */
static char *read_tail(const char *path, size_t max, size_t *len, bool *cut)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return NULL;
    size_t size = (size_t)st.st_size;
    bool pseudo = size == 0;
    off_t from = size > max ? (off_t)(size - max) : 0;
    size_t want = pseudo ? (max < 65536 ? max : 65536) : size - (size_t)from;
    char *buf = xmalloc(want + 1);
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, from + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    *len = got;
    if (cut)
        *cut = from > 0;
    return buf;
}

static int read_ull(const char *path, unsigned long long *v)
{
    size_t len = 0;
    _cleanup_free_ char *s = read_tail(path, 4096, &len, NULL);
    if (!s)
        return -1;
    char *end;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno || end == s ? -1 : 0;
}

/* value of "key N" in a flat-keyed cgroup file (memory.stat, cpu.stat) */
static int read_keyed(const char *path, const char *key, unsigned long long *v)
{
    size_t len = 0;
    _cleanup_free_ char *s = read_tail(path, 1 << 16, &len, NULL);
    if (!s)
        return -1;
    size_t kl = strlen(key);
    for (char *p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
            *v = strtoull(p + kl + 1, NULL, 10);
            return 0;
        }
    }
    return -1;
}

/* ---- cgroups ---- */

static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, word, n) == 0 &&
            (p[n] == ',' || p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
            return true;
    return false;
}

static void cg_mount_set(cg_mount_t *m, const char *mnt, const char *root)
{
    if (m->mnt)
        return;
    m->mnt = xstrdup(mnt);
    m->root = xstrdup(root);
}

/* Finds the cgroup v1 hierarchies of cpuacct and memory and the v2 mount
 * in /proc/self/mountinfo; the version is 1 when v1 has a memory
 * hierarchy (hybrid systems: runc uses v1 there). */
static void cg_detect(runtime_t *rt)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char root[PATH_MAX], mnt[PATH_MAX], fstype[64], super[1024];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
            sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
            continue;
        if (strcmp(fstype, "cgroup2") == 0) {
            cg_mount_set(&rt->cg_unified, mnt, root);
        } else if (strcmp(fstype, "cgroup") == 0) {
            if (has_word(super, "cpuacct"))
                cg_mount_set(&rt->cg_cpu, mnt, root);
            if (has_word(super, "memory"))
                cg_mount_set(&rt->cg_mem, mnt, root);
        }
    }
    rt->cg_version = rt->cg_mem.mnt ? 1 : rt->cg_unified.mnt ? 2 : 0;
}

static char *cg_host_path(const cg_mount_t *m, const char *cgpath)
{
    if (!m->mnt)
        return NULL;
    size_t rl = strlen(m->root);
    const char *rel = cgpath;
    if (strcmp(m->root, "/") != 0 && strncmp(cgpath, m->root, rl) == 0)
        rel = cgpath + rl;
    return xasprintf("%s%s%s", m->mnt, rel[0] == '/' ? "" : "/", rel);
}

/* The cgroup directories of a process (pid > 0), or of the container id
 * from the node engine's own cgroup (pid 0: the container's init is gone
 * but runc has not deleted its cgroup yet). */
static int cg_paths(runtime_t *rt, pid_t pid, const char *id, char **cpu, char **mem)
{
    *cpu = *mem = NULL;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", pid > 0 ? (int)pid : (int)getpid());
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *cgp = c2 + 1;
        _cleanup_free_ char *full =
            pid > 0
                ? xstrdup(cgp)
                : xasprintf("%s/%s/%s", strcmp(cgp, "/") == 0 ? "" : cgp, rt->cgroup_parent, id);
        if (rt->cg_version == 2 && ctrls[0] == '\0' && line[0] == '0') {
            *cpu = cg_host_path(&rt->cg_unified, full);
            *mem = cg_host_path(&rt->cg_unified, full);
        } else if (rt->cg_version == 1) {
            if (!*cpu && has_word(ctrls, "cpuacct"))
                *cpu = cg_host_path(&rt->cg_cpu, full);
            if (!*mem && has_word(ctrls, "memory"))
                *mem = cg_host_path(&rt->cg_mem, full);
        }
    }
    return *cpu || *mem ? 0 : -1;
}

/* ---- the table ---- */

static inst_t *inst_find(runtime_t *rt, const char *id)
{
    for (inst_t *in = rt->insts; in; in = in->next)
        if (strcmp(in->id, id) == 0)
            return in;
    return NULL;
}

static inst_t *inst_add(runtime_t *rt, const char *id)
{
    inst_t *in = xcalloc(1, sizeof(*in));
    in->rt = rt;
    snprintf(in->id, sizeof(in->id), "%s", id);
    in->dir = runtime_bundle_dir(rt, id);
    in->pidfd = -1;
    in->next = rt->insts;
    rt->insts = in;
    return in;
}

static void unwatch(inst_t *in)
{
    if (in->pidfd >= 0) {
        oak_loop_del_fd(in->rt->loop, in->pidfd);
        close(in->pidfd);
        in->pidfd = -1;
    }
    if (in->kill_timer) {
        oak_loop_cancel_timer(in->rt->loop, in->kill_timer);
        in->kill_timer = 0;
    }
}

static void inst_drop(runtime_t *rt, inst_t *in)
{
    for (inst_t **pp = &rt->insts; *pp; pp = &(*pp)->next) {
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    }
    unwatch(in);
    free(in->dir);
    free(in->cg_cpu);
    free(in->cg_mem);
    free(in);
}

/* exit code of a reaped child from waitid's siginfo */
static int exit_code(const siginfo_t *si)
{
    if (si->si_code == CLD_EXITED)
        return si->si_status;
    if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED)
        return 128 + si->si_status;
    return RUNTIME_EXIT_UNKNOWN;
}

/* Reaps the exited process behind pidfd (when it is our child). */
static int reap_pidfd(int pidfd, bool block)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    int flags = WEXITED | (block ? 0 : WNOHANG);
    while (waitid((idtype_t)RT_P_PIDFD, (id_t)pidfd, &si, flags) < 0) {
        if (errno != EINTR)
            return RUNTIME_EXIT_UNKNOWN; /* ECHILD: not ours */
    }
    if (si.si_pid == 0 && !block) {
        /* readable but not yet a zombie: cannot last */
        memset(&si, 0, sizeof(si));
        if (waitid((idtype_t)RT_P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0)
            return RUNTIME_EXIT_UNKNOWN;
    }
    return exit_code(&si);
}

/* runc delete --force, unmount, bundle removal (logs kept with keep_logs) */
static int remove_container(runtime_t *rt, const char *id, oak_err_t *err)
{
    oak_err_t e = OAK_ERR_INIT;
    if (runc_run(&rt->runc, NULL, -1, (const char *const[]){"delete", "--force", id, NULL}, NULL,
                 &e) < 0 &&
        e.code != OAK_E_NOT_FOUND) {
        if (err)
            *err = e;
        return -1;
    }
    oak_err_clear(&e);
    _cleanup_free_ char *dir = runtime_bundle_dir(rt, id);
    if (bundle_unmount_rootfs(dir, err) < 0)
        return -1;
    return bundle_remove(dir, rt->keep_logs, err);
}

static void on_init_exit(oak_loop_t *loop, int fd, uint32_t events, void *data);

static int watch(inst_t *in, pid_t pid, oak_err_t *err)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return oak_err_errno(err, errno, "pidfd_open %d", (int)pid);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (oak_loop_add_fd(in->rt->loop, fd, EPOLLIN, on_init_exit, in, err) < 0) {
        close(fd);
        return -1;
    }
    in->pidfd = fd;
    in->pid = pid;
    free(in->cg_cpu);
    free(in->cg_mem);
    cg_paths(in->rt, pid, in->id, &in->cg_cpu, &in->cg_mem);
    return 0;
}

static void on_init_exit(oak_loop_t *loop, int fd, uint32_t events, void *data)
{
    (void)loop;
    (void)fd;
    (void)events;
    inst_t *in = data;
    runtime_t *rt = in->rt;
    int code = reap_pidfd(in->pidfd, false);
    oak_loop_del_fd(rt->loop, in->pidfd);
    close(in->pidfd);
    in->pidfd = -1;
    in->pid = 0;
    if (in->kill_timer) {
        oak_loop_cancel_timer(rt->loop, in->kill_timer);
        in->kill_timer = 0;
    }
    char id[RUNTIME_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", in->id);
    log_debug("container %s exited with %d", id, code);
    if (in->stopping) {
        inst_drop(rt, in);
        oak_err_t e = OAK_ERR_INIT;
        if (remove_container(rt, id, &e) < 0) {
            log_warn("container %s: removal after stop failed: %s", id, e.msg);
            oak_err_clear(&e);
        }
    }
    if (rt->on_exit)
        rt->on_exit(id, code, rt->ctx);
}

static void on_kill_timer(oak_loop_t *loop, void *data)
{
    (void)loop;
    inst_t *in = data;
    in->kill_timer = 0;
    oak_err_t e = OAK_ERR_INIT;
    if (runc_run(&in->rt->runc, NULL, -1, (const char *const[]){"kill", in->id, "KILL", NULL}, NULL,
                 &e) < 0) {
        log_debug("container %s: kill: %s", in->id, e.msg);
        oak_err_clear(&e);
    }
}

/* ---- log rotation ---- */

static int copy_range(int from_fd, int to_fd, off_t off, size_t n)
{
    char buf[65536];
    while (n > 0) {
        ssize_t r = pread(from_fd, buf, n < sizeof(buf) ? n : sizeof(buf), off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -1 : 0;
        for (ssize_t w = 0; w < r;) {
            ssize_t k = write(to_fd, buf + w, (size_t)(r - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return -1;
            w += k;
        }
        off += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Keeps the last log_max bytes of <dir>/log (from a line start) in
 * <dir>/log.1 and truncates the log when it grew past log_max. */
static void rotate(runtime_t *rt, const char *dir)
{
    _cleanup_free_ char *log = xasprintf("%s/log", dir);
    struct stat st;
    if (stat(log, &st) < 0 || (size_t)st.st_size <= rt->log_max)
        return;
    _cleanup_close_ int fd = open(log, O_RDWR | O_CLOEXEC);
    _cleanup_free_ char *tmp = xasprintf("%s/log.1.tmp", dir);
    _cleanup_close_ int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || out < 0 || fstat(fd, &st) < 0)
        return;
    off_t size = st.st_size;
    off_t from = size - (off_t)rt->log_max;
    if (from > 0) {
        /* start after the first newline of the kept window, if any */
        char buf[4096];
        ssize_t n = pread(fd, buf, sizeof(buf), from - 1);
        if (n > 0) {
            char *nl = buf[0] == '\n' ? buf : memchr(buf, '\n', (size_t)n);
            if (nl)
                from += nl - buf;
        }
    } else {
        from = 0;
    }
    if (copy_range(fd, out, from, (size_t)(size - from)) < 0)
        return;
    /* catch up with what was appended meanwhile, then cut */
    if (fstat(fd, &st) == 0 && st.st_size > size)
        copy_range(fd, out, size, (size_t)(st.st_size - size));
    if (ftruncate(fd, 0) < 0)
        return;
    _cleanup_free_ char *rotated = xasprintf("%s/log.1", dir);
    if (rename(tmp, rotated) < 0)
        unlink(tmp);
}

static void on_rotate_timer(oak_loop_t *loop, void *data)
{
    runtime_t *rt = data;
    for (inst_t *in = rt->insts; in; in = in->next)
        if (in->pidfd >= 0)
            rotate(rt, in->dir);
    rt->rotate_timer = oak_loop_add_timer(loop, (uint64_t)rt->log_check_ms, on_rotate_timer, rt);
}

/* ---- public API ---- */

static bool cgroup_parent_ok(const char *p)
{
    if (!p || !p[0] || p[0] == '/' || strstr(p, ".."))
        return false;
    return strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") ==
           strlen(p);
}

int runtime_new(oak_loop_t *loop, const runtime_opts_t *o, runtime_exit_fn on_exit, void *ctx,
                runtime_t **out, oak_err_t *err)
{
    if (!o || !o->state_dir || !o->runc_root)
        return oak_err_set(err, OAK_E_INVALID, "runtime: state_dir and runc_root are required");
    if (!cgroup_parent_ok(o->cgroup_parent))
        return oak_err_set(err, OAK_E_INVALID,
                           "runtime: cgroup_parent must be a relative path of [A-Za-z0-9_.-/]");
    _cleanup_free_ char *cdir = xasprintf("%s/containers", o->state_dir);
    if (mkdir_p(cdir, err) < 0 || mkdir_p(o->runc_root, err) < 0)
        return -1;
    char abs_c[PATH_MAX], abs_r[PATH_MAX];
    if (!realpath(cdir, abs_c))
        return oak_err_errno(err, errno, "realpath %s", cdir);
    if (!realpath(o->runc_root, abs_r))
        return oak_err_errno(err, errno, "realpath %s", o->runc_root);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        return oak_err_errno(err, errno, "prctl(PR_SET_CHILD_SUBREAPER)");

    runtime_t *rt = xcalloc(1, sizeof(*rt));
    rt->loop = loop;
    rt->containers_dir = xstrdup(abs_c);
    rt->runc_root = xstrdup(abs_r);
    rt->cgroup_parent = xstrdup(o->cgroup_parent);
    rt->runc_path = o->runc_path ? xstrdup(o->runc_path) : NULL;
    rt->runc.path = rt->runc_path;
    rt->runc.root = rt->runc_root;
    rt->log_max = o->log_max_bytes ? o->log_max_bytes : RUNTIME_LOG_MAX_DEFAULT;
    rt->log_check_ms = o->log_check_ms > 0 ? o->log_check_ms : RUNTIME_LOG_CHECK_DEFAULT;
    rt->keep_logs = o->keep_logs;
    rt->on_exit = on_exit;
    rt->ctx = ctx;
    cg_detect(rt);
    rt->rotate_timer = oak_loop_add_timer(loop, (uint64_t)rt->log_check_ms, on_rotate_timer, rt);
    *out = rt;
    return 0;
}

void runtime_free(runtime_t *rt)
{
    if (!rt)
        return;
    while (rt->insts)
        inst_drop(rt, rt->insts);
    if (rt->rotate_timer)
        oak_loop_cancel_timer(rt->loop, rt->rotate_timer);
    cg_mount_t *ms[] = {&rt->cg_cpu, &rt->cg_mem, &rt->cg_unified};
    for (size_t i = 0; i < 3; i++) {
        free(ms[i]->mnt);
        free(ms[i]->root);
    }
    free(rt->containers_dir);
    free(rt->runc_root);
    free(rt->cgroup_parent);
    free(rt->runc_path);
    free(rt);
}

static bool runc_knows(runtime_t *rt, const char *id)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", rt->runc_root, id);
    struct stat st;
    return stat(p, &st) == 0;
}

int runtime_create(runtime_t *rt, const instance_spec_t *spec, pid_t *pid_out, oak_err_t *err)
{
    if (bundle_check_spec(spec, err) < 0)
        return -1;
    const char *id = spec->id;
    if (inst_find(rt, id) || runc_knows(rt, id))
        return oak_err_set(err, OAK_E_CONFLICT, "container %s exists", id);

    _cleanup_free_ char *dir = runtime_bundle_dir(rt, id);
    _cleanup_free_ char *cgpath = xasprintf("%s/%s", rt->cgroup_parent, id);
    _cleanup_free_ char *config_path = xasprintf("%s/config.json", dir);
    _cleanup_free_ char *log_path = xasprintf("%s/log", dir);
    _cleanup_free_ char *runc_log = xasprintf("%s/runc.log", dir);
    _cleanup_free_ char *pid_path = xasprintf("%s/pid", dir);
    _cleanup_free_ char *pidtext = NULL;
    _cleanup_close_ int logfd = -1;
    json_auto_t *config = bundle_config(spec, cgpath);
    inst_t *in = NULL;
    size_t len = 0;
    long pid = 0;

    /* leftovers of an earlier container of this id (its logs stay) */
    if (bundle_unmount_rootfs(dir, err) < 0 || bundle_remove(dir, true, err) < 0)
        return -1;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return oak_err_errno(err, errno, "mkdir %s", dir);
    if (json_dump_file(config, config_path, JSON_COMPACT) < 0) {
        oak_err_errno(err, errno, "write %s", config_path);
        goto fail_dir;
    }
    if (bundle_mount_rootfs(dir, spec->lowerdirs, spec->nlower, err) < 0)
        goto fail_dir;
    logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    if (logfd < 0) {
        oak_err_errno(err, errno, "open %s", log_path);
        goto fail_mount;
    }
    if (runc_run(&rt->runc, runc_log, logfd,
                 (const char *const[]){"create", "--bundle", dir, "--pid-file", pid_path, id, NULL},
                 NULL, err) < 0)
        goto fail_mount;

    pidtext = read_tail(pid_path, 64, &len, NULL);
    pid = pidtext ? strtol(pidtext, NULL, 10) : 0;
    in = inst_add(rt, id);
    if (pid <= 0) {
        oak_err_set(err, OAK_E_INTERNAL, "runc create %s: no pid file", id);
        goto fail_runc;
    }
    if (watch(in, (pid_t)pid, err) < 0)
        goto fail_runc;
    log_debug("container %s created, init pid %ld", id, pid);
    if (pid_out)
        *pid_out = (pid_t)pid;
    return 0;

fail_runc:
    inst_drop(rt, in);
    runc_run(&rt->runc, NULL, -1, (const char *const[]){"delete", "--force", id, NULL}, NULL, NULL);
fail_mount:
    bundle_unmount_rootfs(dir, NULL);
fail_dir:
    bundle_remove(dir, rt->keep_logs, NULL);
    return -1;
}

int runtime_start_created(runtime_t *rt, const char *id, oak_err_t *err)
{
    if (!runtime_id_valid(id) || !inst_find(rt, id))
        return oak_err_set(err, OAK_E_NOT_FOUND, "no container %s", id ? id : "(null)");
    return runc_run(&rt->runc, NULL, -1, (const char *const[]){"start", id, NULL}, NULL, err);
}

int runtime_start(runtime_t *rt, const instance_spec_t *spec, oak_err_t *err)
{
    if (runtime_create(rt, spec, NULL, err) < 0)
        return -1;
    if (runtime_start_created(rt, spec->id, err) == 0)
        return 0;
    /* not started: no exit is reported for it */
    inst_t *in = inst_find(rt, spec->id);
    int pidfd = in->pidfd;
    in->pidfd = -1;
    oak_loop_del_fd(rt->loop, pidfd);
    /* SIGKILL through the pidfd reaches exactly this init, so the wait
     * that follows cannot hang */
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0 || errno == ESRCH)
        reap_pidfd(pidfd, true);
    close(pidfd);
    inst_drop(rt, in);
    remove_container(rt, spec->id, NULL);
    return -1;
}

int runtime_stop(runtime_t *rt, const char *id, int grace_ms, oak_err_t *err)
{
    if (!runtime_id_valid(id))
        return oak_err_set(err, OAK_E_NOT_FOUND, "no container %s", id ? id : "(null)");
    inst_t *in = inst_find(rt, id);
    if (!in) {
        /* not watched: known to runc (not adopted), or a leftover directory */
        json_auto_t *st = NULL;
        oak_err_t e = OAK_ERR_INIT;
        if (runc_state(&rt->runc, id, &st, &e) == 0) {
            const char *status = oak_json_str(st, "status");
            long long pid = oak_json_int(st, "pid", 0);
            in = inst_add(rt, id);
            if (status && strcmp(status, "stopped") != 0 && pid > 0 &&
                watch(in, (pid_t)pid, &e) < 0) {
                log_debug("container %s: %s", id, e.msg);
                oak_err_clear(&e);
            }
        } else if (e.code == OAK_E_NOT_FOUND) {
            oak_err_clear(&e);
            _cleanup_free_ char *dir = runtime_bundle_dir(rt, id);
            struct stat sb;
            if (stat(dir, &sb) < 0)
                return oak_err_set(err, OAK_E_NOT_FOUND, "no container %s", id);
            return remove_container(rt, id, err) < 0 ? -1 : 1;
        } else {
            if (err)
                *err = e;
            return -1;
        }
    }
    if (in->pidfd >= 0) {
        if (in->stopping)
            return 0;
        in->stopping = true;
        oak_err_t e = OAK_ERR_INIT;
        if (runc_run(&rt->runc, NULL, -1, (const char *const[]){"kill", id, "TERM", NULL}, NULL,
                     &e) < 0) {
            log_debug("container %s: kill: %s", id, e.msg);
            oak_err_clear(&e);
        }
        in->kill_timer =
            oak_loop_add_timer(rt->loop, grace_ms > 0 ? (uint64_t)grace_ms : 0, on_kill_timer, in);
        return 0;
    }
    inst_drop(rt, in);
    return remove_container(rt, id, err) < 0 ? -1 : 1;
}

int runtime_state(runtime_t *rt, const char *id, char *status, size_t len, int *pid, oak_err_t *err)
{
    if (!runtime_id_valid(id))
        return oak_err_set(err, OAK_E_NOT_FOUND, "no container %s", id ? id : "(null)");
    json_auto_t *st = NULL;
    if (runc_state(&rt->runc, id, &st, err) < 0)
        return -1;
    const char *s = oak_json_str(st, "status");
    static const char *const known[] = {"running", "created", "stopped", "paused"};
    const char *out = "unknown";
    for (size_t i = 0; s && i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(s, known[i]) == 0)
            out = known[i];
    if (status && len)
        snprintf(status, len, "%s", out);
    if (pid)
        *pid = (int)oak_json_int(st, "pid", 0);
    return 0;
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int runtime_adopt(runtime_t *rt, runtime_adopt_fn cb, void *ctx, oak_err_t *err)
{
    json_auto_t *list = NULL;
    if (runc_list(&rt->runc, &list, err) < 0)
        return -1;
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *id = oak_json_str(c, "id");
        const char *status = oak_json_str(c, "status");
        long long pid = oak_json_int(c, "pid", 0);
        if (!runtime_id_valid(id) || !status)
            continue;
        inst_t *in = inst_find(rt, id);
        if (!in)
            in = inst_add(rt, id);
        bool alive = strcmp(status, "stopped") != 0 && pid > 0;
        if (alive && in->pidfd < 0) {
            oak_err_t e = OAK_ERR_INIT;
            if (watch(in, (pid_t)pid, &e) < 0) {
                /* gone since runc looked */
                log_debug("container %s: %s", id, e.msg);
                oak_err_clear(&e);
                status = "stopped";
                pid = 0;
            }
        }
        if (cb)
            cb(id, status, (int)pid, ctx);
    }

    /* directories runc does not know: leftovers */
    _cleanup_(closedirp) DIR *d = opendir(rt->containers_dir);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!runtime_id_valid(de->d_name) || inst_find(rt, de->d_name))
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrdup(de->d_name);
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t k = 0; k < n; k++) {
        if (cb && !runc_knows(rt, names[k]))
            cb(names[k], "absent", 0, ctx);
        free(names[k]);
    }
    free(names);
    return 0;
}

int runtime_usage(runtime_t *rt, const char *id, unsigned long long *cpu_ns,
                  unsigned long long *mem_bytes, oak_err_t *err)
{
    if (!runtime_id_valid(id))
        return oak_err_set(err, OAK_E_NOT_FOUND, "no container %s", id ? id : "(null)");
    _cleanup_free_ char *cpu = NULL, *mem = NULL;
    inst_t *in = inst_find(rt, id);
    if (in && in->pidfd >= 0 && (in->cg_cpu || in->cg_mem)) {
        cpu = in->cg_cpu ? xstrdup(in->cg_cpu) : NULL;
        mem = in->cg_mem ? xstrdup(in->cg_mem) : NULL;
    } else {
        cg_paths(rt, 0, id, &cpu, &mem);
    }
    unsigned long long c = 0, m = 0, inactive = 0;
    int rc_c = -1, rc_m = -1;
    if (rt->cg_version == 1) {
        if (cpu) {
            _cleanup_free_ char *p = xasprintf("%s/cpuacct.usage", cpu);
            rc_c = read_ull(p, &c);
        }
        if (mem) {
            _cleanup_free_ char *p = xasprintf("%s/memory.usage_in_bytes", mem);
            _cleanup_free_ char *s = xasprintf("%s/memory.stat", mem);
            rc_m = read_ull(p, &m);
            read_keyed(s, "total_inactive_file", &inactive);
        }
    } else if (rt->cg_version == 2) {
        if (cpu) {
            _cleanup_free_ char *p = xasprintf("%s/cpu.stat", cpu);
            rc_c = read_keyed(p, "usage_usec", &c);
            c *= 1000;
        }
        if (mem) {
            _cleanup_free_ char *p = xasprintf("%s/memory.current", mem);
            _cleanup_free_ char *s = xasprintf("%s/memory.stat", mem);
            rc_m = read_ull(p, &m);
            read_keyed(s, "inactive_file", &inactive);
        }
    }
    if (rc_c < 0 && rc_m < 0)
        return oak_err_set(err, OAK_E_NOT_FOUND, "no cgroup for container %s", id);
    if (cpu_ns)
        *cpu_ns = c;
    if (mem_bytes)
        *mem_bytes = m > inactive ? m - inactive : m;
    return 0;
}

int runtime_logs(runtime_t *rt, const char *id, size_t tail_lines, char **out, oak_err_t *err)
{
    if (!runtime_id_valid(id))
        return oak_err_set(err, OAK_E_NOT_FOUND, "no logs of container %s", id ? id : "(null)");
    _cleanup_free_ char *dir = runtime_bundle_dir(rt, id);
    _cleanup_free_ char *p1 = xasprintf("%s/log.1", dir);
    _cleanup_free_ char *p0 = xasprintf("%s/log", dir);
    size_t cap = rt->log_max * 2 > LOGS_READ ? rt->log_max * 2 : LOGS_READ;
    size_t l1 = 0, l0 = 0;
    bool cut1 = false, cut0 = false;
    _cleanup_free_ char *b1 = read_tail(p1, cap, &l1, &cut1);
    _cleanup_free_ char *b0 = read_tail(p0, cap, &l0, &cut0);
    if (!b0 && !b1)
        return oak_err_set(err, OAK_E_NOT_FOUND, "no logs of container %s", id);
    char *all = xmalloc(l1 + l0 + 1);
    size_t n = 0;
    const char *src1 = b1;
    if (b1 && cut1 && !cut0) {
        /* drop the partial first line of a cut read */
        const char *nl = memchr(b1, '\n', l1);
        l1 = nl ? l1 - (size_t)(nl + 1 - b1) : 0;
        src1 = nl ? nl + 1 : b1;
    }
    if (b1 && !cut0) {
        memcpy(all, src1, l1);
        n = l1;
    }
    if (b0) {
        const char *src0 = b0;
        if (cut0) {
            const char *nl = memchr(b0, '\n', l0);
            l0 = nl ? l0 - (size_t)(nl + 1 - b0) : 0;
            src0 = nl ? nl + 1 : b0;
        }
        memcpy(all + n, src0, l0);
        n += l0;
    }
    all[n] = '\0';
    size_t start = 0;
    if (tail_lines > 0) {
        size_t end = n > 0 && all[n - 1] == '\n' ? n - 1 : n, seen = 0;
        for (size_t k = end; k-- > 0;) {
            if (all[k] == '\n' && ++seen == tail_lines) {
                start = k + 1;
                break;
            }
        }
    }
    if (start > 0)
        memmove(all, all + start, n - start + 1);
    *out = all;
    return 0;
}
