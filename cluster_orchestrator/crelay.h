/* What the cluster relays between the root and its workers: instance logs
 * (a LOGS command from the root becomes a control/logs request to the
 * worker; the worker's nodes/<id>/logs answer, or a timeout, goes back in a
 * report) and the worker list the root shows under GET /api/nodes/.
 * Loop thread only. */
#ifndef CRELAY_H
#define CRELAY_H

#include <stddef.h>

#include "cluster_orchestrator/cm.h"
#include "proto/cluster.pb-c.h"

/* How long the cluster waits for a worker's logs answer. */
#define CRELAY_LOGS_TIMEOUT_MS 5000
/* The worker list goes to the root at least this often, and after a
 * change (workers come, go, or their capacity or placements change), but
 * not more often than every CRELAY_WORKERS_MIN_S plus 1 s per 1,000
 * workers (a list of 10,000 is about 1.5 MB of JSON to build and send). */
#define CRELAY_WORKERS_EVERY_S 15.0
#define CRELAY_WORKERS_MIN_S   2.0

/* A LOGS command from the root: answers at once when the instance or its
 * worker is unknown (404) or the worker is offline (503), else asks the
 * worker and waits up to CRELAY_LOGS_TIMEOUT_MS (then 504). */
void crelay_logs_request(cm_t *cm, const Oak__Cluster__V1__Command *cmd);
/* A message on nodes/<worker_id>/logs: forwards the answer to the root when
 * it answers a pending request sent to that very worker; anything else is
 * dropped (logged). */
void crelay_logs_answer(cm_t *cm, const char *worker_id, const void *payload, size_t len);
/* Sends the worker list to the root (see CRELAY_WORKERS_*). Call from the
 * tick, before capacity_dirty is cleared. */
void crelay_tick(cm_t *cm);
/* Drops the pending requests (shutdown). */
void crelay_stop(cm_t *cm);

#endif
