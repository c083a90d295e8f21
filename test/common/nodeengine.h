/* Test helper: runs the real node-engine binary of the build directory as
 * a worker of a test cluster, with its own state directory, runc root and
 * cgroup parent (so several can run side by side and tests never touch a
 * real worker's containers), and its subcommands. Single-threaded use. */
#ifndef TEST_NODEENGINE_H
#define TEST_NODEENGINE_H

#include <stdbool.h>
#include <sys/types.h>

#define TH_NE_MAX_ENV 24

typedef struct {
    pid_t pid;
    char name[64];           /* node_name */
    char state_dir[256];     /* OAK_STATE_DIR */
    char log_path[300];      /* stdout+stderr, appended across restarts */
    char runc_root[128];     /* /run/oak-test-<name> */
    char cgroup_parent[128]; /* oak-test-<name> */
    char node_id[32];        /* from its "registered" line */
    char env[TH_NE_MAX_ENV][300];
    int nenv;
} th_ne_t;

/* Prepares ne (nothing is started): name must be unique on the machine
 * (runc root and cgroup parent derive from it); state_dir is created. The
 * environment gets OAK_STATE_DIR, OAK_NODE_NAME, OAK_RUNC_ROOT,
 * OAK_CGROUP_PARENT, OAK_CLUSTER_ADDRESS=127.0.0.1, OAK_CLUSTER_PORT and
 * OAK_WORKER_TOKEN, plus OAK_LOG_LEVEL=debug. */
void th_ne_init(th_ne_t *ne, const char *name, const char *state_dir, int cluster_port,
                const char *worker_token);
/* Adds "NAME=value" to the environment of every later start and command. */
void th_ne_setenv(th_ne_t *ne, const char *name, const char *value);

/* Starts build/bin/node-engine; with wait_registered, waits up to ms for
 * its "node-engine registered node_id=" line (fills node_id), else for its
 * "node-engine started" line. Returns 0, or -1 (with its log on stderr)
 * when it exited or did not get there in time. */
int th_ne_start(th_ne_t *ne, bool wait_registered, int ms);
/* Sends sig and waits for the exit (SIGKILL after 10 s); returns the wait
 * status, or -1 when it was not running. */
int th_ne_stop(th_ne_t *ne, int sig);
/* Waits up to ms for the process to exit on its own; returns the wait
 * status or -1. */
int th_ne_wait(th_ne_t *ne, int ms);

/* Runs `node-engine <args...>` (NULL-terminated) with ne's environment
 * and returns its stdout (owned); *status gets the wait status. */
char *th_ne_cmd(const th_ne_t *ne, const char *const *args, int *status);

/* Prints the last part of ne's log to stderr. */
void th_ne_dump(const th_ne_t *ne);

/* Removes whatever ne's containers left behind (th_runc_cleanup of its
 * runc root, cgroup parent and state directory). For teardowns. */
void th_ne_cleanup(th_ne_t *ne);

/* th_runc_available(): root, runc, busybox, overlayfs; else prints a line
 * with SKIPPED and the reason. */
bool th_ne_available(void);

#endif
