/* Instances placed on this cluster: what the root asked for (PLACE/REMOVE
 * commands), where they run (worker scheduling with reservations), and
 * what the workers report. Documents live in collection "instances"
 * ({_id: "<service_id>-<n>", service_id, instance_number, generation,
 * service, status, status_detail, worker_id, host_ip, reserved, restarts,
 * excluded_workers, waiting_since}). Every decision is persisted before
 * the message that carries it is sent. Loop thread only. */
#ifndef CINSTANCES_H
#define CINSTANCES_H

#include <jansson.h>
#include <stdint.h>

#include "cluster_orchestrator/cm.h"
#include "cluster_orchestrator/worker_proto.h"
#include "proto/cluster.pb-c.h"

/* Applies a command from the root (and marks it applied, in the same
 * store transaction). */
void cinst_on_command(cm_t *cm, const Oak__Cluster__V1__Command *cmd);
/* A status message from worker_id about one instance. */
void cinst_on_worker_status(cm_t *cm, const char *worker_id, const char *service_id, int n,
                            uint64_t generation, const char *status, const char *detail);
/* A worker's full list of instances after it (re)connected: reconcile. */
void cinst_on_worker_state(cm_t *cm, const char *worker_id, const wp_inst_t *v, size_t n);
/* A worker is gone: move its instances. */
void cinst_on_worker_lost(cm_t *cm, const char *worker_id, const char *why);
/* Periodic: retry instances waiting for a worker, hand back the ones that
 * waited too long. */
void cinst_tick(cm_t *cm);
/* Rebuilds worker reservations from the stored instances (at start). */
int cinst_load(cm_t *cm, oak_err_t *err);
/* Queues a full-state report of every instance to the root. */
void cinst_report_all(cm_t *cm);

#endif
