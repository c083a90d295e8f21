/* The cluster manager's context: the objects every cluster module is
 * handed. Owned by main.c; used only on the event loop thread. */
#ifndef CM_H
#define CM_H

#include <stdbool.h>

#include "lib/oak_loop.h"
#include "lib/oak_store.h"

typedef struct workers workers_t;
typedef struct root_link root_link_t;
typedef struct broker broker_t;
typedef struct oak_mqtt oak_mqtt_t;
typedef struct crelay_req crelay_req_t;

typedef struct cm {
    oak_loop_t *loop;
    oak_store_t *store;
    const char *state_dir;
    const char *cluster_name;
    workers_t *workers;
    root_link_t *root;
    broker_t *broker; /* broker administration (dynamic security) */
    oak_mqtt_t *mqtt; /* the manager's own MQTT session (nodes/#) */
    int mqtt_port;    /* advertised to workers */
    int worker_keepalive_s;
    long worker_dead_s; /* silence after which a worker is considered dead */
    double started;     /* wall time this manager started */
    long handback_s;    /* an instance no worker can take goes back to the root after this */
    int max_restarts;   /* FAILED/DEAD restarts before an instance stays FAILED */
    int sched_spread;   /* 1: spread, 0: best fit */
    char worker_token[64];
    bool capacity_dirty;
    bool workers_dirty;          /* a worker came, went or changed state (crelay.c) */
    double workers_sent_at;      /* wall time the worker list last went to the root */
    crelay_req_t *logreqs;       /* logs requests waiting for a worker (crelay.c) */
} cm_t;

#endif
