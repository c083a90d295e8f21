/* OCI bundles for runc: config.json generation, the overlayfs root of a
 * bundle, and bundle removal.
 *
 * config.json follows `runc spec` for the Linux defaults (mounts, masked
 * and read-only paths, devices denied but runc's defaults) with Docker's
 * default capability set, so images written for Docker behave the same;
 * the namespaces are pid, ipc, uts, mount and network (joined when a path
 * is given, else new: runc brings up its loopback).
 *
 * The rootfs is an overlayfs mounted by this process in its own mount
 * namespace, so it survives the node engine and is visible to runc. The
 * mount options are limited to a page: longer layer lists are mounted by
 * a short-lived child that changes into <bundle>/layers, where one
 * relative symlink per layer keeps the option string short.
 *
 * No global state; everything here is thread-safe except that the
 * long-option mount forks (async-signal-safe calls only in the child). */
#include "node_engine/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

#define MOUNT_DATA_MAX 4000 /* a page, less the kernel's margin */
#define HOSTNAME_MAX   64
#define NOFILE_SOFT    1024
#define NOFILE_HARD    524288

/* Docker's default capability set. */
static const char *const default_caps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

static const char *const masked_paths[] = {
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
};

static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static bool path_ok(const char *p)
{
    return p && p[0] == '/' && !strpbrk(p, ",:\\") && strlen(p) < PATH_MAX;
}

int bundle_check_spec(const instance_spec_t *spec, oak_err_t *err)
{
    if (!spec)
        return oak_err_set(err, OAK_E_INVALID, "no instance spec");
    if (!runtime_id_valid(spec->id))
        return oak_err_set(err, OAK_E_INVALID,
                           "id: must be 1-%d characters of [A-Za-z0-9_.-], not . or ..",
                           RUNTIME_ID_MAX);
    if (spec->nlower == 0 || !spec->lowerdirs)
        return oak_err_set(err, OAK_E_INVALID, "lowerdirs: at least one image layer is needed");
    for (size_t i = 0; i < spec->nlower; i++)
        if (!path_ok(spec->lowerdirs[i]))
            return oak_err_set(err, OAK_E_INVALID,
                               "lowerdirs[%zu]: must be an absolute path without ',' ':' '\\'", i);
    if (spec->nargs == 0 || !spec->args || !spec->args[0] || !spec->args[0][0])
        return oak_err_set(err, OAK_E_INVALID, "args: a command is needed");
    for (size_t i = 0; i < spec->nargs; i++)
        if (!spec->args[i])
            return oak_err_set(err, OAK_E_INVALID, "args[%zu]: must not be NULL", i);
    for (size_t i = 0; i < spec->nenv; i++) {
        const char *e = spec->env[i];
        if (!e || !strchr(e, '=') || e[0] == '=')
            return oak_err_set(err, OAK_E_INVALID, "env[%zu]: must be KEY=VALUE", i);
    }
    if (spec->cwd && spec->cwd[0] != '/')
        return oak_err_set(err, OAK_E_INVALID, "cwd: must be an absolute path");
    if (spec->hostname) {
        size_t n = strlen(spec->hostname);
        if (n == 0 || n > HOSTNAME_MAX ||
            strspn(spec->hostname, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789.-_") != n)
            return oak_err_set(err, OAK_E_INVALID,
                               "hostname: must be 1-%d characters of [A-Za-z0-9._-]", HOSTNAME_MAX);
    }
    if (spec->memory_mb < 0 || spec->memory_mb > (1LL << 40))
        return oak_err_set(err, OAK_E_INVALID, "memory_mb: must be >= 0 (0: no limit)");
    if (!isfinite(spec->vcpus) || spec->vcpus < 0 || spec->vcpus > 4096)
        return oak_err_set(err, OAK_E_INVALID, "vcpus: must be >= 0 (0: no limit)");
    if (spec->netns_path && spec->netns_path[0] != '/')
        return oak_err_set(err, OAK_E_INVALID, "netns_path: must be an absolute path");
    return 0;
}

static json_t *str_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *mount_entry(const char *dest, const char *type, const char *source,
                           const char *const *opts, size_t nopts)
{
    return json_pack("{s:s, s:s, s:s, s:o}", "destination", dest, "type", type, "source", source,
                     "options", str_array(opts, nopts));
}

#define MOUNT(dest, type, src, ...)                                                                \
    mount_entry(dest, type, src, (const char *const[]){__VA_ARGS__},                               \
                sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static json_t *default_mounts(void)
{
    json_t *m = json_array();
    json_array_append_new(m, MOUNT("/proc", "proc", "proc", "nosuid", "noexec", "nodev"));
    json_array_append_new(
        m, MOUNT("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"));
    json_array_append_new(m, MOUNT("/dev/pts", "devpts", "devpts", "nosuid", "noexec",
                                   "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"));
    json_array_append_new(m, MOUNT("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev",
                                   "mode=1777", "size=65536k"));
    json_array_append_new(m, MOUNT("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"));
    json_array_append_new(m, MOUNT("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"));
    json_array_append_new(m, MOUNT("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec",
                                   "nodev", "relatime", "ro"));
    return m;
}

static json_t *process_json(const instance_spec_t *spec)
{
    json_t *env = json_array();
    bool have_path = false, have_host = false;
    for (size_t i = 0; i < spec->nenv; i++) {
        have_path |= strncmp(spec->env[i], "PATH=", 5) == 0;
        have_host |= strncmp(spec->env[i], "HOSTNAME=", 9) == 0;
        json_array_append_new(env, json_string(spec->env[i]));
    }
    if (!have_path)
        json_array_insert_new(env, 0, json_string(BUNDLE_DEFAULT_PATH));
    if (!have_host) {
        _cleanup_free_ char *h =
            xasprintf("HOSTNAME=%s", spec->hostname ? spec->hostname : spec->id);
        json_array_append_new(env, json_string(h));
    }

    size_t ncaps = sizeof(default_caps) / sizeof(default_caps[0]);
    /* a non-root user gets the bounding set only, as with Docker */
    size_t neff = spec->uid == 0 ? ncaps : 0;
    json_t *caps =
        json_pack("{s:o, s:o, s:o}", "bounding", str_array(default_caps, ncaps), "effective",
                  str_array(default_caps, neff), "permitted", str_array(default_caps, neff));
    /* never above the engine's own hard limit: raising it needs
     * CAP_SYS_RESOURCE, which a node engine may not have */
    json_int_t hard = NOFILE_HARD, soft = NOFILE_SOFT;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        (json_int_t)rl.rlim_max < hard)
        hard = (json_int_t)rl.rlim_max;
    if (soft > hard)
        soft = hard;
    json_t *rlimits =
        json_pack("[{s:s, s:I, s:I}]", "type", "RLIMIT_NOFILE", "hard", hard, "soft", soft);
    return json_pack("{s:b, s:{s:I, s:I}, s:o, s:o, s:s, s:o, s:o, s:b}", "terminal", 0, "user",
                     "uid", (json_int_t)spec->uid, "gid", (json_int_t)spec->gid, "args",
                     str_array((const char *const *)spec->args, spec->nargs), "env", env, "cwd",
                     spec->cwd ? spec->cwd : "/", "capabilities", caps, "rlimits", rlimits,
                     "noNewPrivileges", 0);
}

static json_t *linux_json(const instance_spec_t *spec, const char *cgroups_path)
{
    json_t *res = json_pack("{s:[{s:b, s:s}]}", "devices", "allow", 0, "access", "rwm");
    if (spec->memory_mb > 0)
        json_object_set_new(res, "memory",
                            json_pack("{s:I}", "limit", (json_int_t)spec->memory_mb << 20));
    if (spec->vcpus > 0) {
        long long quota = llround(spec->vcpus * BUNDLE_CPU_PERIOD);
        if (quota < BUNDLE_CPU_MIN_QUOTA)
            quota = BUNDLE_CPU_MIN_QUOTA;
        json_object_set_new(res, "cpu",
                            json_pack("{s:I, s:I}", "quota", (json_int_t)quota, "period",
                                      (json_int_t)BUNDLE_CPU_PERIOD));
    }
    json_t *net = json_pack("{s:s}", "type", "network");
    if (spec->netns_path)
        json_object_set_new(net, "path", json_string(spec->netns_path));
    json_t *ns = json_pack("[{s:s}, o, {s:s}, {s:s}, {s:s}]", "type", "pid", net, "type", "ipc",
                           "type", "uts", "type", "mount");
    return json_pack("{s:o, s:s, s:o, s:o, s:o}", "resources", res, "cgroupsPath", cgroups_path,
                     "namespaces", ns, "maskedPaths",
                     str_array(masked_paths, sizeof(masked_paths) / sizeof(masked_paths[0])),
                     "readonlyPaths",
                     str_array(readonly_paths, sizeof(readonly_paths) / sizeof(readonly_paths[0])));
}

json_t *bundle_config(const instance_spec_t *spec, const char *cgroups_path)
{
    return json_pack("{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:o}", "ociVersion", "1.0.2", "process",
                     process_json(spec), "root", "path", "rootfs", "readonly", 0, "hostname",
                     spec->hostname ? spec->hostname : spec->id, "mounts", default_mounts(),
                     "linux", linux_json(spec, cgroups_path));
}

static int mkdir_p1(const char *path, oak_err_t *err)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return oak_err_errno(err, errno, "mkdir %s", path);
    return 0;
}

/* mount from a child that changed into cwd, so relative paths resolve there */
static int mount_in_dir(const char *cwd, const char *target, const char *data, oak_err_t *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return oak_err_errno(err, errno, "fork");
    if (pid == 0) {
        if (chdir(cwd) < 0)
            _exit(errno & 0xff);
        if (mount("overlay", target, "overlay", 0, data) < 0)
            _exit(errno & 0xff);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return oak_err_errno(err, errno, "waitpid");
    if (!WIFEXITED(st))
        return oak_err_set(err, OAK_E_IO, "mount overlay on %s: helper died", target);
    if (WEXITSTATUS(st) != 0)
        return oak_err_errno(err, WEXITSTATUS(st), "mount overlay on %s (%zu bytes of options)",
                             target, strlen(data));
    return 0;
}

int bundle_mount_rootfs(const char *dir, const char *const *lowerdirs, size_t nlower,
                        oak_err_t *err)
{
    if (nlower == 0)
        return oak_err_set(err, OAK_E_INVALID, "lowerdirs: at least one image layer is needed");
    for (size_t i = 0; i < nlower; i++)
        if (!path_ok(lowerdirs[i]))
            return oak_err_set(err, OAK_E_INVALID, "lowerdirs[%zu]: unusable path", i);
    _cleanup_free_ char *rootfs = xasprintf("%s/rootfs", dir);
    _cleanup_free_ char *upper = xasprintf("%s/upper", dir);
    _cleanup_free_ char *work = xasprintf("%s/work", dir);
    if (mkdir_p1(rootfs, err) < 0 || mkdir_p1(upper, err) < 0 || mkdir_p1(work, err) < 0)
        return -1;

    /* overlayfs lists the topmost lower directory first */
    size_t len = 64 + strlen(upper) + strlen(work);
    for (size_t i = 0; i < nlower; i++)
        len += strlen(lowerdirs[i]) + 1;
    if (len <= MOUNT_DATA_MAX) {
        char *data = xmalloc(len), *p = data;
        p += sprintf(p, "lowerdir=");
        for (size_t i = nlower; i-- > 0;)
            p += sprintf(p, "%s%s", lowerdirs[i], i ? ":" : "");
        sprintf(p, ",upperdir=%s,workdir=%s", upper, work);
        int rc = mount("overlay", rootfs, "overlay", 0, data);
        int e = errno;
        free(data);
        if (rc < 0)
            return oak_err_errno(err, e, "mount overlay on %s", rootfs);
        return 0;
    }

    _cleanup_free_ char *ldir = xasprintf("%s/layers", dir);
    if (mkdir_p1(ldir, err) < 0)
        return -1;
    size_t cap = 64 + nlower * 8, used = 0;
    _cleanup_free_ char *data = xmalloc(cap);
    used += sprintf(data, "lowerdir=");
    for (size_t i = nlower; i-- > 0;) {
        _cleanup_free_ char *lpath = xasprintf("%s/%zu", ldir, i);
        if (unlink(lpath) < 0 && errno != ENOENT)
            return oak_err_errno(err, errno, "unlink %s", lpath);
        if (symlink(lowerdirs[i], lpath) < 0)
            return oak_err_errno(err, errno, "symlink %s", lpath);
        used += sprintf(data + used, "%zu%s", i, i ? ":" : "");
    }
    used += sprintf(data + used, ",upperdir=../upper,workdir=../work");
    if (used > MOUNT_DATA_MAX)
        return oak_err_set(err, OAK_E_INVALID, "lowerdirs: %zu layers are too many", nlower);
    return mount_in_dir(ldir, rootfs, data, err);
}

static char *mountinfo_unescape(const char *s, size_t n)
{
    char *o = xmalloc(n + 1), *p = o;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3') {
            *p++ = (char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
            i += 3;
        } else {
            *p++ = s[i];
        }
    }
    *p = '\0';
    return o;
}

bool bundle_is_mountpoint(const char *path)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        /* id parent maj:min root mountpoint ... */
        const char *p = line;
        for (int field = 0; field < 4 && p; field++) {
            p = strchr(p, ' ');
            if (p)
                p++;
        }
        if (!p)
            continue;
        size_t n = strcspn(p, " ");
        _cleanup_free_ char *mp = mountinfo_unescape(p, n);
        if (strcmp(mp, path) == 0)
            return true;
    }
    return false;
}

int bundle_unmount_rootfs(const char *dir, oak_err_t *err)
{
    _cleanup_free_ char *rootfs = xasprintf("%s/rootfs", dir);
    for (int tries = 0; tries < 8 && bundle_is_mountpoint(rootfs); tries++) {
        if (umount2(rootfs, 0) == 0)
            continue;
        if (errno == EINVAL || errno == ENOENT)
            break;
        if (errno == EBUSY && umount2(rootfs, MNT_DETACH) == 0)
            continue;
        return oak_err_errno(err, errno, "umount %s", rootfs);
    }
    if (bundle_is_mountpoint(rootfs))
        return oak_err_set(err, OAK_E_IO, "%s is still mounted", rootfs);
    return 0;
}

static bool is_log_name(const char *name)
{
    return strcmp(name, "log") == 0 || strcmp(name, "log.1") == 0 || strcmp(name, "runc.log") == 0;
}

/* nftw carries no user pointer: the walk is per call, so a thread-local
 * frame holds its parameters */
static __thread struct {
    const char *top;
    bool keep_logs;
    int err;
    char path[PATH_MAX];
} rm_frame;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    if (ftw->level == 0 && rm_frame.keep_logs)
        return 0;
    if (ftw->level == 1 && rm_frame.keep_logs && is_log_name(path + ftw->base))
        return 0;
    int rc = (flag == FTW_DP || flag == FTW_D) ? rmdir(path) : unlink(path);
    if (rc < 0 && errno != ENOENT && !rm_frame.err) {
        rm_frame.err = errno;
        snprintf(rm_frame.path, sizeof(rm_frame.path), "%s", path);
    }
    return 0;
}

int bundle_remove(const char *dir, bool keep_logs, oak_err_t *err)
{
    struct stat st;
    if (lstat(dir, &st) < 0)
        return errno == ENOENT ? 0 : oak_err_errno(err, errno, "stat %s", dir);
    _cleanup_free_ char *rootfs = xasprintf("%s/rootfs", dir);
    if (bundle_is_mountpoint(rootfs))
        return oak_err_set(err, OAK_E_IO, "%s is still mounted", rootfs);
    rm_frame.top = dir;
    rm_frame.keep_logs = keep_logs;
    rm_frame.err = 0;
    rm_frame.path[0] = '\0';
    if (nftw(dir, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
        return oak_err_errno(err, errno, "remove %s", dir);
    if (rm_frame.err)
        return oak_err_errno(err, rm_frame.err, "remove %s", rm_frame.path);
    return 0;
}
