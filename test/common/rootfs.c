/* Test helpers for container tests with the real runc (rootfs.h): a
 * busybox rootfs layer, host-side cgroup paths, mount inspection and a
 * teardown that leaves no container, mount or cgroup behind. Runs runc
 * through fork/exec with a pipe for its output. Single-threaded. */
#include "test/common/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/oak_alloc.h"

static const char *const applets[] = {
    "sh",    "ash",  "echo",  "cat",   "env",   "hostname", "sleep", "ls",   "kill",
    "seq",   "yes",  "head",  "tail",  "true",  "false",    "wc",    "grep", "printf",
    "mkdir", "rm",   "touch", "id",    "ps",    "ip",       "dd",    "sed",  "test",
    "[",     "date", "pwd",   "uname", "mount", "tr",       "cut",   "awk",  "nproc",
};

static bool static_busybox(void)
{
    FILE *f = fopen("/bin/busybox", "rb");
    if (!f)
        return false;
    /* a static ELF has no PT_INTERP program header: look for the loader name */
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n < 4 || memcmp(buf, "\177ELF", 4) != 0)
        return false;
    for (size_t i = 0; i + 10 < n; i++)
        if (memcmp(buf + i, "/lib64/ld-", 10) == 0 || memcmp(buf + i, "/lib/ld-", 8) == 0)
            return false;
    return true;
}

static bool in_path(const char *bin)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/sbin:/usr/bin:/sbin:/bin";
    char *copy = xstrdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = xasprintf("%s/%s", d, bin);
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(copy);
    return found;
}

bool th_runc_available(void)
{
    const char *why = NULL;
    if (geteuid() != 0)
        why = "not root";
    else if (!in_path("runc"))
        why = "runc is not installed";
    else if (!static_busybox())
        why = "no static /bin/busybox (package busybox-static)";
    else if (access("/sys/module/overlay", F_OK) != 0 && access("/proc/filesystems", R_OK) == 0) {
        FILE *f = fopen("/proc/filesystems", "r");
        char line[128];
        bool ov = false;
        while (f && fgets(line, sizeof(line), f))
            ov |= strstr(line, "overlay") != NULL;
        if (f)
            fclose(f);
        if (!ov)
            why = "no overlayfs";
    }
    if (why) {
        printf("SKIPPED: container tests need root, runc, busybox-static, overlayfs: %s\n", why);
        return false;
    }
    return true;
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int rc = in >= 0 && out >= 0 ? 0 : -1;
    char buf[65536];
    ssize_t n;
    while (rc == 0 && (n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0)
        rc = -1;
    if (rc == 0)
        chmod(to, mode);
    return rc;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

int th_rootfs_busybox(const char *dir)
{
    static const char *const dirs[] = {"",     "/bin", "/etc",  "/tmp", "/proc",
                                       "/dev", "/sys", "/root", "/usr", "/usr/bin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char *p = xasprintf("%s%s", dir, dirs[i]);
        int rc = mkdir(p, strcmp(dirs[i], "/tmp") == 0 ? 01777 : 0755);
        if (rc < 0 && errno != EEXIST) {
            fprintf(stderr, "mkdir %s: %s\n", p, strerror(errno));
            free(p);
            return -1;
        }
        free(p);
    }
    char *bb = xasprintf("%s/bin/busybox", dir);
    int rc = copy_file("/bin/busybox", bb, 0755);
    free(bb);
    if (rc < 0) {
        fprintf(stderr, "copy /bin/busybox into %s failed\n", dir);
        return -1;
    }
    for (size_t i = 0; i < sizeof(applets) / sizeof(applets[0]); i++) {
        char *p = xasprintf("%s/bin/%s", dir, applets[i]);
        unlink(p);
        if (symlink("busybox", p) < 0) {
            fprintf(stderr, "symlink %s: %s\n", p, strerror(errno));
            free(p);
            return -1;
        }
        free(p);
    }
    char *passwd = xasprintf("%s/etc/passwd", dir);
    char *group = xasprintf("%s/etc/group", dir);
    rc = write_text(passwd, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n");
    if (rc == 0)
        rc = write_text(group, "root:x:0:\nnogroup:x:65534:\n");
    free(passwd);
    free(group);
    return rc;
}

/* mount point and mounted root of the cgroup hierarchy with controller
 * (NULL: cgroup2) */
static bool cg_mount(const char *controller, char *mnt, char *root)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        char r[PATH_MAX], m[PATH_MAX], fstype[64], super[1024];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", r, m) != 2 ||
            sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
            continue;
        if (!controller && strcmp(fstype, "cgroup2") == 0) {
            found = true;
        } else if (controller && strcmp(fstype, "cgroup") == 0) {
            char *save = NULL;
            for (char *t = strtok_r(super, ",", &save); t && !found; t = strtok_r(NULL, ",", &save))
                found = strcmp(t, controller) == 0;
        }
        if (found) {
            strcpy(mnt, m);
            strcpy(root, r);
        }
    }
    fclose(f);
    return found;
}

static bool has_ctrl(const char *list, const char *c)
{
    char *copy = xstrdup(list), *save = NULL;
    bool found = false;
    for (char *t = strtok_r(copy, ",", &save); t && !found; t = strtok_r(NULL, ",", &save))
        found = strcmp(t, c) == 0;
    free(copy);
    return found;
}

char *th_cgroup_dir(pid_t pid, const char *controller)
{
    char mnt[PATH_MAX], root[PATH_MAX];
    bool v1 = controller && cg_mount(controller, mnt, root);
    if (!v1 && !cg_mount(NULL, mnt, root))
        return NULL;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char line[4096];
    char *out = NULL;
    while (!out && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *cgp = c2 + 1;
        bool match = v1 ? has_ctrl(ctrls, controller) : (ctrls[0] == '\0' && line[0] == '0');
        if (!match)
            continue;
        size_t rl = strlen(root);
        if (strcmp(root, "/") != 0 && strncmp(cgp, root, rl) == 0)
            cgp += rl;
        out = xasprintf("%s%s", mnt, strcmp(cgp, "/") == 0 ? "" : cgp);
    }
    fclose(f);
    return out;
}

/* mount points (unescaped) at or below dir, deepest last */
static char **mounts_under(const char *dir, size_t *n)
{
    *n = 0;
    char **v = NULL;
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return NULL;
    char line[8192];
    size_t dl = strlen(dir);
    while (fgets(line, sizeof(line), f)) {
        char m[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", m) != 1)
            continue;
        /* unescape \040 and friends */
        char u[PATH_MAX], *o = u;
        for (const char *p = m; *p; p++) {
            if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
                *o++ = (char)(((p[1] - '0') << 6) | ((p[2] - '0') << 3) | (p[3] - '0'));
                p += 3;
            } else {
                *o++ = *p;
            }
        }
        *o = '\0';
        if (strncmp(u, dir, dl) == 0 && (u[dl] == '\0' || u[dl] == '/')) {
            v = xrealloc(v, (*n + 1) * sizeof(*v));
            v[(*n)++] = xstrdup(u);
        }
    }
    fclose(f);
    return v;
}

int th_mounts_under(const char *dir)
{
    size_t n = 0;
    char **v = mounts_under(dir, &n);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return (int)n;
}

static int run_argv(char *const *argv, char **out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int dn = open("/dev/null", O_RDWR);
        dup2(dn, 0);
        dup2(p[1], 1);
        dup2(dn, 2);
        setsid();
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0, cap = 4096;
    char *buf = xmalloc(cap);
    ssize_t n;
    while ((n = read(p[0], buf + len, cap - len - 1)) > 0 || (n < 0 && errno == EINTR)) {
        if (n < 0)
            continue;
        len += (size_t)n;
        if (cap - len < 2)
            buf = xrealloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int th_runc(const char *runc_root, char **out, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = "runc";
    argv[n++] = "--root";
    argv[n++] = (char *)runc_root;
    va_list ap;
    va_start(ap, out);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return run_argv(argv, out);
}

static int rmdir_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)f;
    if (flag == FTW_DP)
        rmdir(p);
    return 0;
}

/* cgroup directories hold only pseudo files: removing the directories
 * bottom-up is enough (busy ones stay) */
static void rmdir_tree(const char *path)
{
    nftw(path, rmdir_cb, 16, FTW_DEPTH | FTW_PHYS);
}

void th_runc_cleanup(const char *runc_root, const char *cgroup_parent, const char *dir)
{
    if (runc_root) {
        char *ids = NULL;
        if (th_runc(runc_root, &ids, "list", "-q", NULL) == 0 && ids) {
            char *save = NULL;
            for (char *id = strtok_r(ids, "\n", &save); id; id = strtok_r(NULL, "\n", &save))
                th_runc(runc_root, NULL, "delete", "--force", id, NULL);
        }
        free(ids);
    }
    if (dir) {
        size_t n = 0;
        char **v = mounts_under(dir, &n);
        for (size_t i = n; i-- > 0;) {
            if (umount2(v[i], 0) < 0)
                umount2(v[i], MNT_DETACH);
            free(v[i]);
        }
        free(v);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    if (cgroup_parent) {
        static const char *const ctrls[] = {
            "cpu",   "cpuacct", "memory",       "pids",    "devices",  "freezer",
            "blkio", "cpuset",  "hugetlb",      "net_cls", "net_prio", "perf_event",
            "rdma",  "misc",    "name=systemd", NULL,
        };
        for (size_t i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++) {
            char *base = th_cgroup_dir(getpid(), ctrls[i]);
            if (!base)
                continue;
            char *p = xasprintf("%s/%s", base, cgroup_parent);
            rmdir_tree(p);
            free(p);
            free(base);
        }
    }
}
