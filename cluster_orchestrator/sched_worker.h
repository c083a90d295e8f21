/* The cluster scheduler: picks a worker for an instance from the workers'
 * reported free capacity and reservations, and the service's constraints.
 * Pure function over the in-memory worker table; loop thread only. */
#ifndef SCHED_WORKER_H
#define SCHED_WORKER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_orchestrator/workers.h"

typedef enum { WSCHED_BESTFIT = 0, WSCHED_SPREAD = 1 } wsched_policy_t;

typedef struct {
    int64_t cpu_millis; /* vcpus * 1000 */
    int64_t mem_mb;
    int gpu;
    const char *virtualization; /* NULL = "container" */
    const json_t *arch;         /* array of acceptable architectures (or one string), or NULL */
    const char *direct_nodes;   /* "worker-a;worker-b" (host names or ids), or NULL */
    const json_t *exclude;      /* array of worker ids to avoid, or NULL */
} wsched_req_t;

/* Builds a request from a service document (Oakestra job: vcpus, memory,
 * vgpus, virtualization, arch, constraints[{type:"direct", node:"a;b"}]).
 * The request borrows from svc; exclude is left NULL. Missing, negative or
 * mistyped amounts count as 0. */
void wsched_req_from_service(const json_t *svc, wsched_req_t *req);

/* Parses a policy name ("bestfit" / "best_fit" / "spread"); -1 if unknown. */
int wsched_policy_parse(const char *name);

/* Picks an online worker. Filters: online, virtualization, arch, direct list
 * (each ';'-separated entry matches a host name or id exactly; blanks around
 * entries are ignored), exclude; then capacity (worker_free_*() >= the
 * request). WSCHED_BESTFIT picks the fitting worker left with the least
 * free cpu + memory, each normalised by the worker's totals; WSCHED_SPREAD
 * the most. Ties go to the smallest id. Does not reserve: the caller calls
 * worker_reserve() on the returned worker. On failure returns NULL and
 * writes "NO_QUALIFIED_WORKER_FOUND" (no online worker passes the
 * non-capacity filters) or "NO_WORKER_CAPACITY" (some do, none has room)
 * into status, and into detail what was needed and what is available.
 * status and detail may be NULL when their length is 0. */
worker_t *sched_worker_pick(workers_t *ws, const wsched_req_t *req, wsched_policy_t policy,
                            char *status, size_t status_len, char *detail, size_t detail_len);

#endif
