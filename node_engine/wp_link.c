/* The worker protocol implementation shared with the cluster manager
 * (cluster_orchestrator/worker_proto.c, see docs/worker-protocol.md,
 * "Payload validation": both ends use one implementation). The top-level
 * Makefile links each daemon with its own archive and liboak only, so
 * node-engine gets that implementation through this unit. Remove it once
 * the Makefile links libcluster_orchestrator.a into node-engine (or the
 * protocol moves to lib/). In binaries that link both archives only one
 * copy is ever pulled in: both define exactly the same symbols. */
#include "cluster_orchestrator/worker_proto.c"
