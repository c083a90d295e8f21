/* Running the runc binary (see runc.h). Each command is a posix_spawn'd
 * child in its own session (so signals for the node engine's process
 * group never reach runc or, through it, a container), with the signal
 * mask emptied and every disposition reset to default (the node engine
 * blocks signals for its signalfd and ignores SIGPIPE; a container must
 * not inherit either), stdin on /dev/null and no descriptor above 2.
 * stdout and stderr are read through pipes with poll() until runc exits
 * or RUNC_TIMEOUT_MS passes. No state; thread-safe. */
#include "node_engine/runc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"

#define ERR_MAX (64u << 10)

extern char **environ;

typedef struct {
    char *buf;
    size_t len, cap, max;
} sbuf_t;

static void sbuf_add(sbuf_t *b, const char *p, size_t n)
{
    if (b->len + n > b->max)
        n = b->max - b->len;
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->buf = xrealloc(b->buf, b->cap);
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

enum { RD_DATA, RD_AGAIN, RD_EOF };

static int drain(int fd, sbuf_t *b)
{
    char tmp[8192];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n > 0) {
        sbuf_add(b, tmp, (size_t)n);
        return RD_DATA;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return RD_AGAIN;
    return RD_EOF;
}

/* Reads what the non-blocking fd holds; closes it at end of file, or once
 * the writer has exited (a process it left behind may keep the pipe). */
static void pump(int *fd, sbuf_t *b, bool exited)
{
    int r;
    while ((r = drain(*fd, b)) == RD_DATA)
        ;
    if (r == RD_EOF || exited) {
        close(*fd);
        *fd = -1;
    }
}

/* The message of the last error runc logged in text (JSON lines, or plain
 * lines as runc's fatal() prints them next to a --log file). */
static char *runc_message(const char *text)
{
    char *json_msg = NULL, *plain = NULL;
    const char *p = text;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 0 && p[0] == '{') {
            json_t *j = json_loadb(p, n, 0, NULL);
            const char *lvl = oak_json_str(j, "level");
            const char *msg = oak_json_str(j, "msg");
            if (msg && lvl && (strcmp(lvl, "error") == 0 || strcmp(lvl, "fatal") == 0)) {
                free(json_msg);
                json_msg = xstrdup(msg);
            }
            json_decref(j);
        } else if (n > 0) {
            free(plain);
            plain = xstrndup(p, n);
        }
        p = nl ? nl + 1 : NULL;
    }
    if (json_msg) {
        free(plain);
        return json_msg;
    }
    return plain;
}

static int fail_code(const char *msg)
{
    if (strstr(msg, "does not exist") || strstr(msg, "not found in container"))
        return OAK_E_NOT_FOUND;
    if (strstr(msg, "container with id exists") || strstr(msg, "already exists"))
        return OAK_E_CONFLICT;
    return OAK_E_INTERNAL;
}

static int spawn(const runc_t *r, const char *const *argv, int fd0, int fd1, int fd2, pid_t *pid,
                 oak_err_t *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, fd0, 0);
    posix_spawn_file_actions_adddup2(&fa, fd1, 1);
    posix_spawn_file_actions_adddup2(&fa, fd2, 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const char *bin = r->path ? r->path : "runc";
    int rc = posix_spawnp(pid, bin, &fa, &at, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0)
        return oak_err_errno(err, rc, "cannot run %s", bin);
    return 0;
}

static int reap(pid_t pid, int *status)
{
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

int runc_run(const runc_t *r, const char *log_path, int out_fd, const char *const *argv, char **out,
             oak_err_t *err)
{
    size_t n = 0;
    while (argv[n])
        n++;
    const char *full[n + 8];
    size_t k = 0;
    full[k++] = r->path ? r->path : "runc";
    full[k++] = "--root";
    full[k++] = r->root;
    full[k++] = "--log-format";
    full[k++] = "json";
    if (log_path) {
        full[k++] = "--log";
        full[k++] = log_path;
    }
    for (size_t i = 0; i < n; i++)
        full[k++] = argv[i];
    full[k] = NULL;

    _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        return oak_err_errno(err, errno, "open /dev/null");
    /* with out_fd, runc writes to it (its errors too) and only the --log
     * file is read; otherwise two pipes */
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (out_fd < 0 && (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0)) {
        int e = errno;
        if (po[0] >= 0) {
            close(po[0]);
            close(po[1]);
        }
        return oak_err_errno(err, e, "pipe");
    }
    _cleanup_close_ int po_r = po[0], po_w = po[1], pe_r = pe[0], pe_w = pe[1];

    /* only what this run adds to the --log file is read back */
    struct stat lst;
    off_t log_from = log_path && stat(log_path, &lst) == 0 ? lst.st_size : 0;
    pid_t pid;
    if (spawn(r, full, devnull, out_fd >= 0 ? out_fd : po_w, out_fd >= 0 ? out_fd : pe_w, &pid,
              err) < 0)
        return -1;
    if (po_w >= 0) {
        close(po_w);
        close(pe_w);
        po_w = pe_w = -1;
    }

    sbuf_t so = {.max = RUNC_OUT_MAX}, se = {.max = ERR_MAX};
    /* the pipes may outlive runc (a child that kept them): runc's exit,
     * seen through a pidfd, ends the reading */
    _cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (po_r >= 0) {
        fcntl(po_r, F_SETFL, O_NONBLOCK);
        fcntl(pe_r, F_SETFL, O_NONBLOCK);
    }
    uint64_t deadline = oak_now_ms() + RUNC_TIMEOUT_MS;
    bool timed_out = false, exited = false, watch = pidfd >= 0;
    while (po_r >= 0 || pe_r >= 0 || (watch && !exited)) {
        struct pollfd p[3] = {{.fd = po_r, .events = POLLIN},
                              {.fd = pe_r, .events = POLLIN},
                              {.fd = watch && !exited ? pidfd : -1, .events = POLLIN}};
        uint64_t now = oak_now_ms();
        if (now >= deadline) {
            timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        int pr = poll(p, 3, (int)(deadline - now));
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        if (p[2].revents)
            exited = true;
        if (po_r >= 0 && (exited || p[0].revents))
            pump(&po_r, &so, exited);
        if (pe_r >= 0 && (exited || p[1].revents))
            pump(&pe_r, &se, exited);
    }
    int st = 0;
    if (reap(pid, &st) < 0) {
        free(so.buf);
        free(se.buf);
        return oak_err_errno(err, errno, "waitpid runc");
    }
    if (timed_out) {
        free(so.buf);
        free(se.buf);
        return oak_err_set(err, OAK_E_TIMEOUT, "runc %s: no answer within %d ms", argv[0],
                           RUNC_TIMEOUT_MS);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        _cleanup_free_ char *logtext = NULL;
        if (out_fd >= 0 && log_path) {
            /* the last lines of the --log file name the failure */
            _cleanup_fclose_ FILE *f = fopen(log_path, "re");
            if (f) {
                fseek(f, 0, SEEK_END);
                long size = ftell(f);
                long from =
                    size - (long)ERR_MAX > (long)log_from ? size - (long)ERR_MAX : (long)log_from;
                if (from > size)
                    from = size;
                fseek(f, from, SEEK_SET);
                logtext = xcalloc(1, (size_t)(size - from) + 1);
                size_t got = fread(logtext, 1, (size_t)(size - from), f);
                logtext[got] = '\0';
            }
        }
        _cleanup_free_ char *msg = runc_message(logtext ? logtext : (se.buf ? se.buf : ""));
        free(so.buf);
        free(se.buf);
        if (!msg)
            msg = WIFEXITED(st) ? xasprintf("exit status %d", WEXITSTATUS(st))
                                : xasprintf("killed by signal %d", WTERMSIG(st));
        return oak_err_set(err, fail_code(msg), "runc %s: %s", argv[0], msg);
    }
    free(se.buf);
    if (out) {
        *out = so.buf ? so.buf : xstrdup("");
    } else {
        free(so.buf);
    }
    return 0;
}

int runc_state(const runc_t *r, const char *id, json_t **out, oak_err_t *err)
{
    _cleanup_free_ char *text = NULL;
    if (runc_run(r, NULL, -1, (const char *const[]){"state", id, NULL}, &text, err) < 0)
        return -1;
    json_t *j = json_loads(text, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return oak_err_set(err, OAK_E_INTERNAL, "runc state %s: unexpected output", id);
    }
    *out = j;
    return 0;
}

int runc_list(const runc_t *r, json_t **out, oak_err_t *err)
{
    _cleanup_free_ char *text = NULL;
    if (runc_run(r, NULL, -1, (const char *const[]){"list", "--format", "json", NULL}, &text, err) <
        0)
        return -1;
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    if (json_is_null(j)) {
        json_decref(j);
        j = json_array();
    }
    if (!json_is_array(j)) {
        json_decref(j);
        return oak_err_set(err, OAK_E_INTERNAL, "runc list: unexpected output");
    }
    *out = j;
    return 0;
}
