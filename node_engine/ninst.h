/* The instances this worker runs. Desired state is persisted before it is
 * acted on, one JSON file per instance under <state_dir>/instances/
 * (`<service_id>-<instance_number>.json`: the deploy payload as received,
 * the container id, the last status reported). Deploy pipeline: image
 * pull on a worker thread -> back on the loop -> container created with
 * runc, handed to net-manager, started -> CREATED, RUNNING reported. An
 * exit reports DEAD with the exit code, or COMPLETED for a one-shot job
 * that exits 0; a failed pull or start reports FAILED with the reason. A
 * delete stops the container, reports UNDEPLOYED and removes the file.
 * Commands are idempotent on (service_id, instance_number, generation).
 *
 * At start (ninst_recover) running containers that a file claims are
 * adopted, containers no file claims are removed, and files whose
 * container is gone are started again (unless their instance had ended).
 * Freeing leaves the containers running.
 *
 * Everything runs on the loop thread except the pulls, which run on their
 * own threads and post back. */
#ifndef NINST_H
#define NINST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_err.h"
#include "lib/oak_loop.h"

typedef struct ninst ninst_t;

typedef struct {
    const char *state_dir;           /* instances/, containers/ live here */
    const char *image_dir;           /* the image content store (may be shared) */
    const char *runc_root;           /* runc --root */
    const char *cgroup_parent;       /* cgroup of every container of this worker */
    const char *runc_path;           /* "runc": looked up in PATH */
    const char *netmanager_socket;   /* net-manager's API; absent: the hook is a no-op */
    const char *insecure_registries; /* comma list of host:port allowed over plain HTTP */
    const char *oci_root;            /* oci:<dir> references only below it; NULL: refused */
    int stop_timeout_s;              /* SIGTERM -> SIGKILL grace on delete */
} ninst_opts_t;

/* Called on the loop thread for every status report of an instance (a
 * change, or a re-report asked for by a repeated deploy). job is borrowed. */
typedef void (*ninst_report_fn)(const wp_job_t *job, void *ctx);

/* Creates the instance table (no container is touched yet). Options are
 * copied. Errors: OAK_E_IO when the directories cannot be created,
 * whatever the image store and runtime report when they cannot open. */
int ninst_new(oak_loop_t *loop, const ninst_opts_t *o, ninst_report_fn report, void *ctx,
              ninst_t **out, oak_err_t *err);

/* Loads the desired-state files and reconciles with the runtime's
 * containers (see above). Statuses found are reported through the report
 * callback. Errors: OAK_E_IO when the state directory cannot be read. */
int ninst_recover(ninst_t *ni, oak_err_t *err);

/* A deploy command: raw is the payload as received (persisted, len bytes),
 * d its parsed form (borrowed). Newer generation: replaces the instance;
 * the same generation: re-reports its status (restarts it when it had
 * failed or died); older: ignored. */
void ninst_deploy(ninst_t *ni, const wp_deploy_t *d, const char *raw, size_t len);

/* A delete command: stops the instance (if its generation is not newer
 * than d's) and reports UNDEPLOYED; an unknown instance reports UNDEPLOYED
 * at once. */
void ninst_delete(ninst_t *ni, const wp_delete_t *d);

/* Every instance with its generation and current status, for the state
 * report. *out is owned by the caller (free()); returns the count. */
size_t ninst_state(ninst_t *ni, wp_inst_t **out);

/* Usage of the running instances since the previous call (cpu percent of
 * one core, memory MB). With only_changed, entries whose cpu moved by less
 * than one point and memory by less than 1 MB since they were last
 * returned are left out. *out owned by the caller; returns the count. */
size_t ninst_usage(ninst_t *ni, bool only_changed, wp_usage_t **out);

/* The last tail lines of instance (service_id, n)'s output into *out
 * (owned; free()). Errors: OAK_E_NOT_FOUND when this worker has no such
 * instance or it has no log yet. */
int ninst_logs(ninst_t *ni, const char *service_id, int n, int tail, char **out, oak_err_t *err);

/* Number of instances (any status). */
size_t ninst_count(const ninst_t *ni);

/* Stops every instance, reports each FAILED ("worker drained"), removes
 * their desired state, then calls done(loop, data) on the loop thread. */
void ninst_drain(ninst_t *ni, oak_loop_cb done, void *data);

/* Waits for the pull threads (asking them to give up) and drops their
 * results; the loop must still be able to run posted work afterwards
 * (drain it before ninst_free). Containers keep running. */
void ninst_shutdown(ninst_t *ni);

/* Frees the table and the runtime handle; containers keep running. NULL
 * is ignored. */
void ninst_free(ninst_t *ni);

/* For the CLI, without a daemon: the desired-state files of state_dir as
 * an array of {"instance", "service_id", "instance_number", "generation",
 * "job_name", "image", "status", "status_detail", "container_id"}; new
 * reference in *out. Errors: OAK_E_IO. */
int ninst_list(const char *state_dir, json_t **out, oak_err_t *err);

#endif
