/* node-engine test helper (see nodeengine.h). */
#include "test/common/nodeengine.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "test/common/harness.h"
#include "test/common/rootfs.h"

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void th_ne_setenv(th_ne_t *ne, const char *name, const char *value)
{
    size_t nl = strlen(name);
    for (int i = 0; i < ne->nenv; i++)
        if (!strncmp(ne->env[i], name, nl) && ne->env[i][nl] == '=') {
            snprintf(ne->env[i], sizeof(ne->env[i]), "%s=%s", name, value);
            return;
        }
    if (ne->nenv < TH_NE_MAX_ENV)
        snprintf(ne->env[ne->nenv++], sizeof(ne->env[0]), "%s=%s", name, value);
}

void th_ne_init(th_ne_t *ne, const char *name, const char *state_dir, int cluster_port,
                const char *worker_token)
{
    memset(ne, 0, sizeof(*ne));
    snprintf(ne->name, sizeof(ne->name), "%s", name);
    snprintf(ne->state_dir, sizeof(ne->state_dir), "%s", state_dir);
    snprintf(ne->log_path, sizeof(ne->log_path), "%s.log", state_dir);
    snprintf(ne->runc_root, sizeof(ne->runc_root), "/run/oak-test-%s", name);
    snprintf(ne->cgroup_parent, sizeof(ne->cgroup_parent), "oak-test-%s", name);
    mkdir(state_dir, 0700);
    char port[16];
    snprintf(port, sizeof(port), "%d", cluster_port);
    th_ne_setenv(ne, "OAK_STATE_DIR", state_dir);
    th_ne_setenv(ne, "OAK_NODE_NAME", name);
    th_ne_setenv(ne, "OAK_RUNC_ROOT", ne->runc_root);
    th_ne_setenv(ne, "OAK_CGROUP_PARENT", ne->cgroup_parent);
    th_ne_setenv(ne, "OAK_CLUSTER_ADDRESS", "127.0.0.1");
    th_ne_setenv(ne, "OAK_CLUSTER_PORT", port);
    th_ne_setenv(ne, "OAK_WORKER_TOKEN", worker_token);
    th_ne_setenv(ne, "OAK_LOG_LEVEL", "debug");
}

static void child_env(const th_ne_t *ne)
{
    for (int i = 0; i < ne->nenv; i++) {
        char *eq = strchr(ne->env[i], '=');
        if (!eq)
            continue;
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)(eq - ne->env[i]), ne->env[i]);
        setenv(name, eq + 1, 1);
    }
}

static char *bin_path(void)
{
    return xasprintf("%s/bin/node-engine", th_build_dir());
}

void th_ne_dump(const th_ne_t *ne)
{
    char *log = th_read_file(ne->log_path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s ----\n%s\n----\n", ne->log_path,
            log ? log + (n > 8000 ? n - 8000 : 0) : "");
    free(log);
}

int th_ne_start(th_ne_t *ne, bool wait_registered, int ms)
{
    char *bin = bin_path();
    struct stat st;
    off_t start = stat(ne->log_path, &st) == 0 ? st.st_size : 0;
    pid_t pid = fork();
    if (pid < 0) {
        free(bin);
        return -1;
    }
    if (pid == 0) {
        int fd = open(ne->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        child_env(ne);
        execl(bin, bin, (char *)NULL);
        perror(bin);
        _exit(127);
    }
    free(bin);
    ne->pid = pid;
    const char *marker =
        wait_registered ? "node-engine registered node_id=" : "node-engine started";
    for (int t = 0; t < ms; t += 50) {
        char *log = th_read_file(ne->log_path, NULL);
        char *line = log && (off_t)strlen(log) >= start ? strstr(log + start, marker) : NULL;
        if (line) {
            if (wait_registered)
                sscanf(line + strlen(marker), "%31s", ne->node_id);
            free(log);
            return 0;
        }
        free(log);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "node-engine %s exited early (status 0x%x)\n", ne->name, status);
            ne->pid = 0;
            th_ne_dump(ne);
            return -1;
        }
        nap_ms(50);
    }
    fprintf(stderr, "node-engine %s: no '%s' line within %d ms\n", ne->name, marker, ms);
    th_ne_dump(ne);
    return -1;
}

int th_ne_wait(th_ne_t *ne, int ms)
{
    int status = -1;
    if (ne->pid <= 0)
        return -1;
    for (int t = 0; t <= ms; t += 20) {
        if (waitpid(ne->pid, &status, WNOHANG) == ne->pid) {
            ne->pid = 0;
            return status;
        }
        nap_ms(20);
    }
    return -1;
}

int th_ne_stop(th_ne_t *ne, int sig)
{
    if (ne->pid <= 0)
        return -1;
    kill(ne->pid, sig);
    int status = th_ne_wait(ne, 10000);
    if (status == -1 && ne->pid > 0) {
        kill(ne->pid, SIGKILL);
        waitpid(ne->pid, &status, 0);
        ne->pid = 0;
    }
    return status;
}

char *th_ne_cmd(const th_ne_t *ne, const char *const *args, int *status)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return NULL;
    char *bin = bin_path();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        child_env(ne);
        const char *argv[32] = {bin};
        int n = 1;
        for (const char *const *a = args; a && *a && n < 31; a++)
            argv[n++] = *a;
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    free(bin);
    close(pfd[1]);
    size_t len = 0, cap = 4096;
    char *out = xmalloc(cap);
    ssize_t r;
    while ((r = read(pfd[0], out + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 1024)
            out = xrealloc(out, cap *= 2);
    }
    out[len] = 0;
    close(pfd[0]);
    int st = -1;
    waitpid(pid, &st, 0);
    if (status)
        *status = st;
    return out;
}

void th_ne_cleanup(th_ne_t *ne)
{
    th_runc_cleanup(ne->runc_root, ne->cgroup_parent, ne->state_dir);
    rmdir(ne->runc_root);
}

bool th_ne_available(void)
{
    return th_runc_available();
}
