/* The root scheduler: picks a cluster for an instance from the clusters'
 * reported free capacity minus reservations, and the SLA constraints.
 * Pure function over the in-memory cluster table; loop thread only. */
#ifndef SCHED_CLUSTER_H
#define SCHED_CLUSTER_H

#include <jansson.h>
#include <stdint.h>

#include "root_orchestrator/clusters.h"

typedef struct {
    int64_t cpu_millis; /* vcpus * 1000 */
    int64_t mem_mb;
    int gpu;
    const char *virtualization;
    const json_t *arch;        /* array of acceptable architectures, or NULL */
    const json_t *constraints; /* SLA constraints array, or NULL */
    const json_t *excluded;    /* array of cluster ids not to use, or NULL */
} sched_req_t;

/* Builds a request from a service document. */
void sched_req_from_service(const json_t *svc, sched_req_t *req);

/* Picks a cluster. On failure returns NULL, writes an Oakestra-style status
 * (NO_CLUSTER_CAPACITY, TargetClusterNotFound, TargetClusterNotActive,
 * TargetClusterNoCapacity) into status and a reason into detail. */
cluster_t *sched_pick(root_t *r, const sched_req_t *req, char *status, size_t status_len,
                      char *detail, size_t detail_len);

#endif
