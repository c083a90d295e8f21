/* What the root asks of and learns about the workers behind its clusters:
 * instance logs fetched from the worker through the cluster (a LOGS command
 * on the cluster's command stream, answered in a later Report), and the
 * worker list each cluster includes in its reports (GET /api/nodes/).
 * Loop thread only. */
#ifndef RELAY_H
#define RELAY_H

#include <jansson.h>

#include "lib/oak_http.h"
#include "proto/cluster.pb-c.h"
#include "root_orchestrator/clusters.h"
#include "root_orchestrator/root.h"

#define RELAY_LOGS_TAIL_DEFAULT 100
#define RELAY_LOGS_TAIL_MAX     10000

/* Answers GET /api/service/<id>/instance/<n>/logs for the visible service
 * document svc: checks the instance (404 when the service has no instance
 * n, 409 when it is not on a worker), its cluster (503 when the cluster's
 * command stream is not open), sends a LOGS command and defers the HTTP
 * answer until the cluster's LogsResult arrives or r->logs_timeout_ms pass
 * (504). tail: lines wanted (1..RELAY_LOGS_TAIL_MAX). */
void relay_logs_request(root_t *r, const json_t *svc, int n, int tail, const oak_http_req_t *req,
                        oak_http_resp_t *resp);
/* A cluster's answer to a LOGS command (from a Report): completes the
 * waiting HTTP request; unknown or late request ids are ignored. */
void relay_logs_result(root_t *r, const cluster_t *c, const Oak__Cluster__V1__LogsResult *res);
/* Replaces the worker list of cluster c (from a Report with
 * workers_included). */
void relay_set_workers(root_t *r, cluster_t *c, Oak__Cluster__V1__Worker **w, size_t n);
/* JSON array of the workers of every cluster (or only of cluster_id when
 * not NULL), for GET /api/nodes/. */
json_t *relay_nodes_json(root_t *r, const char *cluster_id);
/* Answers every waiting logs request with 503 and frees them (shutdown). */
void relay_stop(root_t *r);

#endif
