/* The cluster manager's side of the worker protocol: its MQTT session
 * (subscribed to nodes/+/...), dispatch of worker messages, worker
 * liveness (last will, silence) and worker registration over HTTP.
 * Loop thread only. */
#ifndef WLINK_H
#define WLINK_H

#include "cluster_orchestrator/cm.h"
#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_http.h"

/* Connects the manager's MQTT session to uri with the given credentials. */
int wlink_start(cm_t *cm, const char *uri, const char *user, const char *password, oak_err_t *err);
/* Publishes payload (consumed) to worker_id's control topic of kind, QoS 1. */
int wlink_publish(cm_t *cm, const char *worker_id, wp_kind_t kind, json_t *payload,
                  oak_err_t *err);
/* Periodic: workers silent for worker_dead_s are lost; capacity reports. */
void wlink_tick(cm_t *cm);

extern const oak_http_route_t wlink_routes[];
extern const size_t wlink_nroutes;

#endif
