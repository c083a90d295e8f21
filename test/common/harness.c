/* Integration-test harness (see harness.h). Single-threaded use. */
#include "test/common/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_httpc.h"
#include "lib/oak_json.h"

const char *th_build_dir(void)
{
    const char *b = getenv("OAK_BUILD_DIR");
    return b && *b ? b : "build/san";
}

const char *th_shared_dir(void)
{
    const char *s = getenv("OAK_SHARED_DIR");
    return s && *s ? s : "../shared";
}

char *th_tmpdir(const char *prefix)
{
    char *t = xasprintf("/tmp/%s-XXXXXX", prefix);
    if (!mkdtemp(t)) {
        perror("mkdtemp");
        abort();
    }
    return t;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

void th_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = xmalloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = fread(buf, 1, (size_t)(n > 0 ? n : 0), f);
    buf[got] = 0;
    fclose(f);
    if (len)
        *len = got;
    return buf;
}

static int start_daemon(th_daemon_t *d, const char *binary, const char *state_dir,
                        const char *const *env)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->state_dir, sizeof(d->state_dir), "%s", state_dir);
    mkdir(state_dir, 0700);
    snprintf(d->log_path, sizeof(d->log_path), "%s/daemon.log", state_dir);
    char bin[512];
    snprintf(bin, sizeof(bin), "%s/bin/%s", th_build_dir(), binary);
    off_t start = 0;
    struct stat st;
    if (stat(d->log_path, &st) == 0)
        start = st.st_size;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("OAK_STATE_DIR", state_dir, 1);
        setenv("OAK_API_PORT", "0", 1);
        if (strcmp(binary, "system-manager") == 0)
            setenv("OAK_GRPC_PORT", "0", 1);
        setenv("OAK_BIND", "127.0.0.1", 1);
        for (const char *const *e = env; e && *e; e++)
            putenv((char *)*e);
        execl(bin, bin, (char *)NULL);
        perror(bin);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 200; i++) {
        char *log = th_read_file(d->log_path, NULL);
        char marker[64];
        snprintf(marker, sizeof(marker), "%s listening api_port=", binary);
        char *line = log ? strstr(log + start, marker) : NULL;
        if (line &&
            sscanf(line + strlen(marker), "%d grpc_port=%d", &d->api_port, &d->grpc_port) >= 1) {
            free(log);
            char pwpath[300];
            snprintf(pwpath, sizeof(pwpath), "%s/admin-password", state_dir);
            char *pw = th_read_file(pwpath, NULL);
            if (pw) {
                pw[strcspn(pw, "\n")] = 0;
                snprintf(d->admin_password, sizeof(d->admin_password), "%s", pw);
                free(pw);
            }
            return 0;
        }
        free(log);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "%s exited early (status %d); log %s\n", binary, status, d->log_path);
            d->pid = 0;
            return -1;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "%s did not start within 10 s; log %s\n", binary, d->log_path);
    th_stop(d, SIGKILL);
    return -1;
}

int th_start_root(th_daemon_t *d, const char *state_dir, const char *const *env)
{
    return start_daemon(d, "system-manager", state_dir, env);
}

int th_start_cluster(th_daemon_t *d, const char *state_dir, const char *const *env)
{
    return start_daemon(d, "cluster-manager", state_dir, env);
}

int th_stop(th_daemon_t *d, int sig)
{
    int status = -1;
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    for (int i = 0; i < 200; i++) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            return status;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &status, 0);
    d->pid = 0;
    return status;
}

long th_http_raw(int port, const char *method, const char *path, const char *token,
                 const char *body, size_t len, json_t **out)
{
    char url[1024], auth[2048];
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    oak_httpc_resp_t resp = {0};
    oak_err_t err = OAK_ERR_INIT;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers[1] = auth;
    }
    if (out)
        *out = NULL;
    if (oak_httpc_request(method, url, headers, body, len, 10000, &resp, &err) < 0) {
        fprintf(stderr, "%s %s: %s\n", method, url, err.msg);
        oak_err_clear(&err);
        return -1;
    }
    if (out && resp.body_len > 0)
        *out = json_loadb(resp.body, resp.body_len, 0, NULL);
    long status = resp.status;
    oak_httpc_resp_free(&resp);
    return status;
}

long th_http(int port, const char *method, const char *path, const char *token, const json_t *body,
             json_t **out)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    long st = th_http_raw(port, method, path, token, s, s ? strlen(s) : 0, out);
    free(s);
    return st;
}

char *th_login(int port, const char *user, const char *password)
{
    json_t *b = json_pack("{s:s, s:s}", "username", user, "password", password), *out = NULL;
    long st = th_http(port, "POST", "/api/auth/login", NULL, b, &out);
    json_decref(b);
    char *tok = NULL;
    if (st == 200 && oak_json_str(out, "token"))
        tok = xstrdup(oak_json_str(out, "token"));
    json_decref(out);
    return tok;
}

int th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

bool th_port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}
