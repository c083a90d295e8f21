/* The life of instances at the root: request, placement on a cluster
 * (persisted together with the command that tells the cluster), status
 * reports from clusters (generation-checked), removal, hand-back and
 * rescheduling when a cluster is lost. Instances live inside their service
 * document (collection "services", field instance_list) as in Oakestra.
 * Loop thread only. */
#ifndef INSTANCES_H
#define INSTANCES_H

#include <jansson.h>
#include <stdint.h>

#include "root_orchestrator/clusters.h"
#include "root_orchestrator/root.h"

/* Appends count REQUESTED instances to svc in memory only, so that callers
 * can store them in the same transaction that creates the service. Returns
 * the first new instance number, or -1 (OAK_E_UNPROCESSABLE over 1000). */
int inst_add(json_t *svc, int count, oak_err_t *err);
/* Places instances first..first+count-1 of the stored svc; any that cannot
 * be placed now stay REQUESTED and are retried by the scheduler tick. */
void inst_place_new(root_t *r, json_t *svc, int first, int count);
/* Appends count REQUESTED instances to svc, persists, then places each.
 * svc is updated in place to the stored version. */
int inst_request(root_t *r, json_t *svc, int count, oak_err_t *err);
/* Undeploys instance n (or all when n < 0): queues REMOVE commands for
 * placed instances and drops them from svc, persisted. OAK_E_NOT_FOUND when
 * instance n does not exist. */
int inst_undeploy(root_t *r, json_t *svc, int n, oak_err_t *err);
/* A status report from cluster c about one instance. */
void inst_on_report(root_t *r, cluster_t *c, const char *service_id, int n, const char *status,
                    const char *detail, uint64_t generation, const json_t *extra);
/* Tries to place every instance waiting for capacity. */
void inst_schedule_pending(root_t *r);
/* Moves every instance of a lost cluster elsewhere. */
void inst_cluster_lost(root_t *r, cluster_t *c);
/* Recomputes svc's aggregate status/status_detail from its instances. */
void service_refresh_status(json_t *svc);

#endif
