/* The root's gRPC service for clusters (proto/cluster.proto): Join, Report
 * and the Commands server stream, bound to the cluster registry and the
 * instance lifecycle. Handlers run on the loop thread. */
#ifndef CLUSTER_RPC_H
#define CLUSTER_RPC_H

#include "lib/oak_grpc.h"
#include "root_orchestrator/root.h"

/* Creates and starts the gRPC server on addr ("host:port"). */
oak_grpc_server_t *cluster_rpc_start(root_t *r, const char *addr, oak_err_t *err);
/* Periodic work: cluster liveness and rescheduling of lost clusters'
 * instances. Called from the daemon's tick. */
void cluster_rpc_tick(root_t *r);

#endif
