/* The container runtime of the node engine: runs instances with runc from
 * generated OCI bundles (node_engine/bundle.c), watches their init
 * processes, reports their exit codes, rotates their logs, re-adopts the
 * containers a previous node-engine process left running, and reads their
 * usage from their cgroups.
 *
 * Layout (docs/runtime.md): each container lives in
 * <state_dir>/containers/<id>/ (config.json, rootfs/ = overlayfs of the
 * image layers with upper/ and work/ beside it, log and log.1, runc.log,
 * pid); runc keeps its own state under runc_root; cgroups are
 * "<cgroup_parent>/<id>" relative to the node engine's own cgroup.
 *
 * Exit reporting: runtime_new makes the process a child subreaper, so the
 * init of every container this process created becomes its child when
 * `runc create` exits; its exit is seen through a pidfd on the loop and
 * the status is reaped with waitpid on that pid. Nothing else in the
 * process may reap children it did not start (waitpid(-1), SIGCHLD set to
 * SIG_IGN), or exit codes are lost. A container adopted from an earlier
 * process is not our child: its exit is still seen, with exit code -1
 * (unknown).
 *
 * Threading: everything runs on the loop thread. runc create/start/kill/
 * delete run as child processes waited for synchronously (tens of ms);
 * waiting for a container never blocks. */
#ifndef RUNTIME_H
#define RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/oak_err.h"
#include "lib/oak_loop.h"

#define RUNTIME_ID_MAX            64
#define RUNTIME_LOG_MAX_DEFAULT   (1u << 20)
#define RUNTIME_LOG_CHECK_DEFAULT 1000
/* exit code reported when the status of an init we did not parent is lost */
#define RUNTIME_EXIT_UNKNOWN (-1)

typedef struct runtime runtime_t;

typedef struct {
    const char *state_dir;     /* containers under <state_dir>/containers/<id>/ */
    const char *runc_root;     /* runc --root: one per node engine */
    const char *cgroup_parent; /* cgroupsPath "<cgroup_parent>/<id>" (relative) */
    const char *runc_path;     /* NULL: "runc" from PATH */
    size_t log_max_bytes;      /* rotation threshold; 0: RUNTIME_LOG_MAX_DEFAULT */
    int log_check_ms;          /* how often log sizes are checked; 0: default 1 s */
    bool keep_logs;            /* removal leaves log, log.1 and runc.log in place */
} runtime_opts_t;

/* Called on the loop thread once per watched container when its init has
 * exited: exit_code is its status (128+signal when killed by a signal) or
 * RUNTIME_EXIT_UNKNOWN. For a container being stopped it comes after the
 * container was removed. id is borrowed for the call. */
typedef void (*runtime_exit_fn)(const char *id, int exit_code, void *ctx);

/* Called by runtime_adopt for each container found. status is runc's
 * ("running", "created", "stopped", "paused") or "absent" for a container
 * directory that runc does not know (leftover; pid 0). */
typedef void (*runtime_adopt_fn)(const char *id, const char *status, int pid, void *ctx);

typedef struct {
    const char *id;               /* [A-Za-z0-9_.-]{1,64}, not "." or ".."; the runc id */
    const char *const *lowerdirs; /* image layer directories, bottom to top (read-only) */
    size_t nlower;                /* >= 1 */
    char *const *args;            /* process args, nargs >= 1 */
    size_t nargs;
    char *const *env; /* KEY=VALUE; PATH is added when missing */
    size_t nenv;
    const char *cwd;        /* absolute; NULL: "/" */
    const char *hostname;   /* NULL: the id */
    unsigned uid, gid;      /* process user, 0: root */
    long long memory_mb;    /* 0: no limit */
    double vcpus;           /* 0: no limit; quota = vcpus x 100 ms period */
    const char *netns_path; /* join this netns; NULL: a new one (loopback only) */
} instance_spec_t;

/* Creates a runtime: the directories (created if missing; paths are made
 * absolute), the subreaper flag of the process, the log rotation timer.
 * Options are copied; on_exit may be NULL. No container is touched (see
 * runtime_adopt). Errors: OAK_E_INVALID for missing options, OAK_E_IO when
 * a directory cannot be created. */
int runtime_new(oak_loop_t *loop, const runtime_opts_t *o, runtime_exit_fn on_exit, void *ctx,
                runtime_t **out, oak_err_t *err);

/* Frees the runtime and stops watching; the containers keep running and
 * a later runtime on the same directories can adopt them. NULL ignored. */
void runtime_free(runtime_t *rt);

/* Builds the bundle (overlayfs root on the layers, config.json) and runs
 * `runc create`: the container's init exists (its pid in *pid when pid is
 * not NULL) and waits for runtime_start_created; its exit is watched from
 * now on. On failure nothing is left behind but the logs (keep_logs).
 * Errors: OAK_E_INVALID for a bad spec, OAK_E_CONFLICT when the id is
 * taken, OAK_E_IO for files and mounts, OAK_E_INTERNAL with runc's
 * message when runc fails (also written to the instance's log). */
int runtime_create(runtime_t *rt, const instance_spec_t *spec, pid_t *pid, oak_err_t *err);

/* `runc start` of a created container: the workload runs. Errors:
 * OAK_E_NOT_FOUND, OAK_E_INTERNAL with runc's message. A failed start
 * leaves the container to runtime_stop. */
int runtime_start_created(runtime_t *rt, const char *id, oak_err_t *err);

/* runtime_create + runtime_start_created; on a failed start the container
 * is removed again. Errors as both. */
int runtime_start(runtime_t *rt, const instance_spec_t *spec, oak_err_t *err);

/* Stops and removes a container: SIGTERM to its init, SIGKILL after
 * grace_ms, then `runc delete`, unmount, bundle removed (logs kept with
 * keep_logs). Returns 0 when the stop is under way (on_exit follows once
 * everything is removed), 1 when nothing was running and the container
 * (or its leftover directory) has been removed already (no on_exit). Never
 * blocks for the grace. Errors: OAK_E_NOT_FOUND when neither runc nor the
 * state directory know the id, OAK_E_INTERNAL/OAK_E_IO when removal fails. */
int runtime_stop(runtime_t *rt, const char *id, int grace_ms, oak_err_t *err);

/* Status from `runc state`: "running", "created", "stopped", "paused" or
 * "unknown", written to status (len bytes); *pid the init's pid (0 when
 * stopped). pid may be NULL. Errors: OAK_E_NOT_FOUND when runc does not
 * know the id, OAK_E_INTERNAL otherwise. */
int runtime_state(runtime_t *rt, const char *id, char *status, size_t len, int *pid,
                  oak_err_t *err);

/* Lists the containers under runc_root (`runc list`), calls cb for each,
 * and watches the running and created ones not watched yet so their exit
 * is reported through on_exit. Then calls cb with "absent" for each
 * directory under <state_dir>/containers that runc does not know. cb may
 * be NULL. Errors: OAK_E_INTERNAL when runc fails. */
int runtime_adopt(runtime_t *rt, runtime_adopt_fn cb, void *ctx, oak_err_t *err);

/* Usage of a container from its cgroup: cumulative cpu time in ns
 * (cgroup v1 cpuacct.usage, v2 cpu.stat usage_usec) and memory in bytes
 * without inactive page cache (v1 memory.usage_in_bytes minus
 * total_inactive_file, v2 memory.current minus inactive_file). Errors:
 * OAK_E_NOT_FOUND when the container or its cgroup does not exist. */
int runtime_usage(runtime_t *rt, const char *id, unsigned long long *cpu_ns,
                  unsigned long long *mem_bytes, oak_err_t *err);

/* The last tail_lines lines (0: all that is kept) of the container's
 * output, the rotated file included, at most 2 x log_max_bytes + what
 * was written since the last rotation check. *out is owned by the caller
 * (free()). Works after the container stopped while its directory exists.
 * Errors: OAK_E_NOT_FOUND when there is no log. */
int runtime_logs(runtime_t *rt, const char *id, size_t tail_lines, char **out, oak_err_t *err);

/* Path of the bundle directory of id (owned by the caller); for tests and
 * tools. */
char *runtime_bundle_dir(const runtime_t *rt, const char *id);

/* True when id is a valid container id. */
bool runtime_id_valid(const char *id);

#endif
