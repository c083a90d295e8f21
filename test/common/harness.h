/* Test harness for integration tests and benchmarks: starts real daemon
 * binaries from the build directory on free ports with their own state
 * directories, waits for their "listening" line, and stops them. */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int api_port;
    int grpc_port;
    char state_dir[256];
    char log_path[300];
    char admin_password[128];
} th_daemon_t;

/* Directory of the build (env OAK_BUILD_DIR, default "build/san"). */
const char *th_build_dir(void);
/* Directory of shared/ (env OAK_SHARED_DIR, default "../shared"). */
const char *th_shared_dir(void);
/* A fresh temporary directory (mkdtemp under /tmp), owned by the caller. */
char *th_tmpdir(const char *prefix);
/* Removes a directory tree. */
void th_rmtree(const char *path);

/* Starts build/bin/system-manager with OAK_STATE_DIR=state_dir (created
 * if needed), ports 0, and the extra "NAME=value" environment entries (NULL
 * terminated, may be NULL). Waits up to 10 s for its listening line. Output
 * goes to <state_dir>/daemon.log. Returns 0 or -1 (with a message on
 * stderr). */
int th_start_root(th_daemon_t *d, const char *state_dir, const char *const *env);
/* Starts build/bin/cluster-manager with OAK_STATE_DIR=state_dir, API port
 * 0 and the extra environment entries (which must name the root, the join
 * token, the broker and its admin password). Waits up to 10 s for its
 * listening line; d->api_port is its worker-registration port. */
int th_start_cluster(th_daemon_t *d, const char *state_dir, const char *const *env);
/* Sends sig and waits for the process (SIGKILL after 10 s). Returns the
 * exit status as from waitpid, or -1. */
int th_stop(th_daemon_t *d, int sig);

/* JSON request to http://127.0.0.1:<port><path>. body may be NULL. Returns
 * the HTTP status (or -1 on transport error); *out gets the parsed body or
 * NULL. */
long th_http(int port, const char *method, const char *path, const char *token, const json_t *body,
             json_t **out);
/* As th_http with a raw body (not necessarily JSON). */
long th_http_raw(int port, const char *method, const char *path, const char *token,
                 const char *body, size_t len, json_t **out);
/* A TCP port of 127.0.0.1 free at the time of the call, or -1. */
int th_free_port(void);
/* True when something accepts TCP connections on 127.0.0.1:port. */
bool th_port_accepts(int port);
/* Logs in and returns the access token (owned) or NULL. */
char *th_login(int port, const char *user, const char *password);
/* Reads a whole file (owned, NUL-terminated) or NULL. */
char *th_read_file(const char *path, size_t *len);

#endif
