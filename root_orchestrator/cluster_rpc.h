/* The root's gRPC service for clusters (proto/cluster.proto): Join, Report
 * and the Commands server stream, bound to the cluster registry and the
 * instance lifecycle. Handlers run on the loop thread. */
#ifndef CLUSTER_RPC_H
#define CLUSTER_RPC_H

#include <jansson.h>

#include "lib/oak_grpc.h"
#include "proto/cluster.pb-c.h"
#include "root_orchestrator/root.h"

/* Creates and starts the gRPC server on addr ("host:port"). */
oak_grpc_server_t *cluster_rpc_start(root_t *r, const char *addr, oak_err_t *err);
/* Periodic work: cluster liveness and rescheduling of lost clusters'
 * instances. Called from the daemon's tick. */
void cluster_rpc_tick(root_t *r);
/* The protobuf-free form of a reported capacity that clusters_set_capacity
 * reads: {cpu_millis_total, cpu_millis_free, memory_mb_total,
 * memory_mb_free, gpu_total, gpu_free, active_workers, virtualization[],
 * per_arch[{architecture, virtualization[], ...}], cpu_percent,
 * memory_percent}. cap is borrowed; returns a new reference. */
json_t *cluster_rpc_capacity_json(const Oak__Cluster__V1__Capacity *cap);

#endif
